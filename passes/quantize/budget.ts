/**
 * The budgets of quantize-static: which int8 layers return to float (int8 weights kept, so the size
 * barely moves) because the model's outputs need them.
 *
 * Both budgets rank the int8 layers the same way and search the same way:
 * - rank ('output', default): each int8 layer alone is returned to float and the gain in the model
 *   outputs' SQNR vs the float model is measured on a few calibration samples; or ('sqnr') by the
 *   SQNR a layer loses itself in one per-layer comparison ({@link rankSensitivity});
 * - search: the top k of the ranking return to float for k = 1, 2, 4, ... until the budget holds,
 *   then a bisection keeps as few as possible in float ({@link searchAccuracyBudget}).
 *
 * They differ in what must hold:
 * - accuracy budget: a caller's metric (labels allowed, e.g. a task metric on an evaluation set)
 *   drops by at most `maxDrop` from the float model's;
 * - fidelity budget (label-free, the default): the lowest SQNR of the model's outputs against the float
 *   model, SQNR = 10 log10(sum r^2 / sum (q - r)^2) over every element of the first `samples`
 *   calibration samples, is at least `minSqnrDb`. Only layers that alone in float raise that SQNR by
 *   at least `minGainDb` are candidates: a layer that costs the outputs little is not worth its int8
 *   speed, and when the bar is out of reach (int8 weights alone may cost more than the bar allows)
 *   the search stops at the layers that matter instead of returning every layer to float. Up to
 *   `maxRounds` rounds, each ranking anew what the last one left. It needs nothing but the
 *   calibration data.
 */
import type { Model, Node } from '../../ir/ir.js';
import { cloneModel } from '../../onnx/index.js';
import type { Sample } from '../../data/index.js';
import type { Feed } from '../../core/host-tensor.js';
import { nodeRunner, type Runner } from '../../runtime/runner.js';
import { OutputComparison, OutputError } from '../../runtime/metrics.js';
import { layerErrors } from './debug.js';
import type { EmitResult } from './emit.js';
import type { Placement } from './placement.js';
import { BudgetTrial, rankSensitivity, searchAccuracyBudget, SensitivityEntry } from './search.js';

import { firstSamples, type SampleSource } from './sample-source.js';

export { firstSamples, type SampleSource };

/** One QDQ build of the prepared model with some units in float. */
export interface Build {
  model: Model;
  placement: Placement;
  /** Indices (in the prepared model) of the nodes running in int8. */
  int8Idx: Set<number>;
  /** Index of each placement unit's node. */
  unitIdx: number[];
  emitted: EmitResult;
}

/** Builds the QDQ model with the units at the given indices in float (`weightOnly`: int8 weights kept). */
export type Builder = (floats: ReadonlyMap<number, string>, weightOnly: ReadonlySet<number>, names: 'compact' | 'descriptive') => Promise<Build>;

export interface AccuracyBudgetOptions {
  /** Largest allowed `reference - score`. */
  maxDrop: number;
  /** Scores a model (higher is better), e.g. a task metric on an evaluation set. */
  evaluate: (model: Model) => Promise<number>;
  /** Score of the float model (default: evaluate the prepared float model). */
  reference?: number;
  /** Most evaluations of quantized candidates (default 10). */
  maxTrials?: number;
  /** Calibration samples used for the ranking (default 8 for 'sqnr', 4 for 'output'). */
  debugSamples?: number;
  /**
   * How layers are ranked: 'output' (default) measures, for each int8 layer alone returned to float,
   * how much the model outputs' SQNR vs float improves on a few calibration samples; 'sqnr' ranks by
   * the SQNR a layer loses itself (cheaper; misled by clipped outliers that later layers normalize away).
   */
  rank?: 'output' | 'sqnr';
  /** With rank 'output': only layers whose return to float alone raises the output SQNR by at least this (dB) are candidates. */
  minGainDb?: number;
  /** Scores candidates for the 'output' rank (default: built on the ranking samples). */
  scorer?: OutputScorer;
  /** When the budget cannot be met: keep the largest prefix tried (default) or the best-scoring one. */
  unmet?: 'largest' | 'best';
  /** How onnxruntime is reached for the ranking (default onnxruntime-node's; a pass gives its `ctx.runner`). */
  runner?: Runner;
}

export interface BudgetLayer {
  node: string;
  op: string;
  /** SQNR of the layer's output in the build before the search (dB). */
  sqnrDb: number;
  /** SQNR the layer loses itself: lowest input SQNR minus output SQNR (dB). */
  lossDb: number;
  /** Gain in the lowest output SQNR when this layer alone returns to float (rank 'output'). */
  gainDb?: number;
}

export interface AccuracyReport {
  maxDrop: number;
  reference: number;
  score: number;
  drop: number;
  met: boolean;
  floated: BudgetLayer[];
  rank: 'output' | 'sqnr';
  trials: BudgetTrial[];
  ms: number;
}

export interface FidelityOptions {
  /** Lowest allowed SQNR (dB) of each model output against the float model on the calibration samples. */
  minSqnrDb: number;
  /** Least gain (dB) in the lowest output SQNR a layer must bring alone in float to be a candidate. */
  minGainDb: number;
  /** Calibration samples scored (the first ones; default {@link FIDELITY_SAMPLES}). */
  samples?: number;
  /**
   * Calibration samples of the per-layer ranking (default: enough for {@link RANK_INPUT_ELEMENTS}
   * input values, at least 4, at most the scored samples).
   */
  rankSamples?: number;
  /** Most evaluations of candidates per round (default 10). */
  maxTrials?: number;
  /** Most rounds of ranking and search (default {@link FIDELITY_ROUNDS}). */
  maxRounds?: number;
  /** How onnxruntime is reached (default onnxruntime-node's; a pass gives its `ctx.runner`). */
  runner?: Runner;
}

/** One round of the fidelity search: the ranking is measured anew on the build the last round left. */
export interface FidelityRound {
  beforeDb: number;
  afterDb: number;
  floated: BudgetLayer[];
  /** Every evaluated candidate: layers in float in this round and lowest output SQNR (score, dB). */
  trials: BudgetTrial[];
}

export interface FidelityReport {
  minSqnrDb: number;
  minGainDb: number;
  /** Calibration samples of the per-layer ranking. */
  rankSamples: number;
  /** Calibration samples scored. */
  samples: number;
  /** Lowest output SQNR before and after the search (dB). */
  beforeDb: number;
  afterDb: number;
  met: boolean;
  /** Each output's SQNR before and after (dB). */
  outputs: Array<{ name: string; beforeDb: number; afterDb: number }>;
  /** Layers returned to float, round by round in ranking order, with why. */
  floated: BudgetLayer[];
  rounds: FidelityRound[];
  ms: number;
}

/** Calibration samples the fidelity budget scores by default. */
export const FIDELITY_SAMPLES = 64;

/**
 * Rounds of the fidelity search by default. A layer's gain alone is measured with every other layer
 * in int8; once the worst are float, others may matter more (their errors were hidden behind the
 * worst ones), so the ranking is measured again on what the last round left.
 */
export const FIDELITY_ROUNDS = 3;

/**
 * Input values the per-layer ranking of the fidelity budget runs on at least (small inputs take more
 * samples, so the ranking of a model on short text lines is as steady as one on a page, at a similar cost).
 */
export const RANK_INPUT_ELEMENTS = 2 ** 19;

function inputElements(s: Sample | undefined): number {
  let n = 0;
  if (s) for (const t of Object.values(s.feed)) n += t.data.length;
  return n;
}

/** An infinite SQNR (identical outputs) counts as this many dB. */
const SQNR_CAP = 200;

/** Candidate models scored against the float model on fixed samples (the float outputs computed once). */
export interface OutputScorer {
  samples: readonly Sample[];
  /** Per output, the error over every sample; `limit` scores only the first samples. */
  score(m: Model, limit?: number): Promise<OutputError[]>;
}

/** Bytes of samples and float outputs a scorer keeps at most (it keeps at least one sample). */
export const SCORER_BYTES = 256 * 2 ** 20;

/** Keeps the float outputs of `samples` (those that fit in {@link SCORER_BYTES} with their inputs). */
export async function outputScorer(floatModel: Model, all: readonly Sample[], maxBytes = SCORER_BYTES, runner: Runner = nodeRunner): Promise<OutputScorer> {
  const so = { intraOpNumThreads: 1, allowSpinning: false };
  const fs = await runner.open(floatModel, so, '(float model)');
  const refs: Feed[] = [];
  const samples: Sample[] = [];
  const bytes = (f: Feed) => {
    let n = 0;
    for (const t of Object.values(f)) n += ArrayBuffer.isView(t.data) ? t.data.byteLength : t.data.length * 8;
    return n;
  };
  let held = 0;
  try {
    for (const s of all) {
      const out = await fs.run(s.feed);
      held += bytes(s.feed) + bytes(out);
      if (samples.length > 0 && held > maxBytes) break;
      samples.push(s);
      refs.push(out);
    }
  } finally {
    await fs.dispose();
  }
  return {
    samples,
    async score(m, limit = samples.length) {
      const qs = await runner.open(m, so, '(candidate)');
      const cmp = new OutputComparison();
      try {
        for (let i = 0; i < Math.min(limit, samples.length); i++) cmp.add(await qs.run(samples[i]!.feed), refs[i]!, samples[i]!.id);
      } finally {
        await qs.dispose();
      }
      return cmp.result();
    },
  };
}

/** The lowest output SQNR (dB, capped) of a comparison. */
export function lowestSqnr(errors: readonly OutputError[]): number {
  return Math.min(...errors.map((e) => (Number.isFinite(e.sqnrDb) ? e.sqnrDb : SQNR_CAP)));
}

/** The tensor a unit writes: the compute node's output, or that of the Relu/Clip it absorbed. */
function outputNameIn(n: Node, absorbed: boolean): string {
  const out = n.outputs[0]!;
  if (!absorbed) return out.name;
  return out.consumers()[0]?.outputs[0]?.name ?? out.name;
}

/**
 * Returns the most sensitive int8 units to float (int8 weights kept) until `o.evaluate` is within
 * `o.maxDrop` of the reference; adds them to `floats`/`weightOnly` with a reason starting with `label`.
 */
export async function accuracySearch(prepared: Model, nodes: Node[], source: SampleSource, o: AccuracyBudgetOptions, floats: Map<number, string>, weightOnly: Set<number>, build: Builder, label = 'accuracy budget'): Promise<AccuracyReport> {
  const t0 = performance.now();
  const reference = o.reference ?? (await o.evaluate(cloneModel(prepared)));
  const base = await build(floats, weightOnly, 'compact');
  const s0 = await o.evaluate(base.model);
  const rankBy = o.rank ?? 'output';
  const report: AccuracyReport = { maxDrop: o.maxDrop, reference, score: s0, drop: reference - s0, met: reference - s0 <= o.maxDrop, floated: [], rank: rankBy, trials: [], ms: 0 };
  if (report.met) {
    report.trials.push({ floated: 0, score: s0, drop: reference - s0, ok: true });
    report.ms = performance.now() - t0;
    return report;
  }
  const ranking = await firstSamples(source, o.debugSamples ?? (rankBy === 'output' ? 4 : 8));
  const units = base.placement.units
    .map((u, k) => ({ u, index: base.unitIdx[k]! }))
    .filter(({ u }) => !u.weightOnly)
    .map(({ u, index }) => ({ index, inputs: u.activationInputs.map((i) => nodes[index]!.inputs[i]!.name), output: outputNameIn(nodes[index]!, u.activation !== undefined) }));
  // per-layer SQNR of this build on the ranking samples, for the given units' tensors only (all of a
  // large model's tensors at once would hold every activation of a sample in memory)
  const sensitivity = async (us: typeof units): Promise<SensitivityEntry[]> => {
    const pairs: Record<string, string> = {};
    for (const u of us) for (const t of [...u.inputs, u.output]) if (base.emitted.dequantized.has(t)) pairs[t] = base.emitted.dequantized.get(t)!;
    if (Object.keys(pairs).length === 0) return [];
    async function* replay() {
      yield* ranking;
    }
    return rankSensitivity(await layerErrors(prepared, base.model, pairs, replay(), { sessionOptions: { intraOpNumThreads: 1 }, ...(o.runner ? { runner: o.runner } : {}) }), us);
  };
  const sens = new Map<number, SensitivityEntry>();
  let order: number[];
  const gains = new Map<number, number>();
  if (rankBy === 'output') {
    // each layer alone in float: the gain in the lowest output SQNR
    const scorer = o.scorer ?? (await outputScorer(prepared, ranking, SCORER_BYTES, o.runner));
    const n = ranking.length;
    const base0 = lowestSqnr(await scorer.score(base.model, n));
    for (const u of units) {
      const f = new Map(floats);
      const w = new Set(weightOnly);
      f.set(u.index, 'candidate');
      w.add(u.index);
      gains.set(u.index, lowestSqnr(await scorer.score((await build(f, w, 'compact')).model, n)) - base0);
    }
    order = units.map((u) => u.index).sort((a, b) => gains.get(b)! - gains.get(a)! || a - b);
    if (o.minGainDb !== undefined) order = order.filter((i) => gains.get(i)! >= o.minGainDb!);
  } else {
    const ranked = await sensitivity(units);
    for (const e of ranked) sens.set(e.index, e);
    order = ranked.map((e) => e.index);
  }
  const res = await searchAccuracyBudget(
    order,
    reference,
    o.maxDrop,
    async (fl) => {
      const f = new Map(floats);
      const w = new Set(weightOnly);
      for (const i of fl) (f.set(i, label), w.add(i));
      return o.evaluate((await build(f, w, 'compact')).model);
    },
    { initialScore: s0, ...(o.maxTrials !== undefined ? { maxTrials: o.maxTrials } : {}), ...(o.unmet ? { unmet: o.unmet } : {}) },
  );
  if (rankBy === 'output' && res.floated.length) {
    const fl = new Set(res.floated);
    for (const e of await sensitivity(units.filter((u) => fl.has(u.index)))) sens.set(e.index, e);
  }
  for (const i of res.floated) {
    const r = sens.get(i) ?? { index: i, sqnrDb: NaN, lossDb: NaN };
    const g = gains.get(i);
    const own = Number.isFinite(r.lossDb) ? `loses ${r.lossDb.toFixed(1)} dB SQNR itself (output ${r.sqnrDb.toFixed(1)} dB); ` : '';
    floats.set(i, `${label}: ${g !== undefined ? `alone in float it raises the output SQNR by ${g.toFixed(1)} dB; ` : ''}${own}int8 weights kept`);
    weightOnly.add(i);
    report.floated.push({ node: nodes[i]!.name ?? nodes[i]!.label, op: nodes[i]!.opType, sqnrDb: r.sqnrDb, lossDb: r.lossDb, ...(g !== undefined ? { gainDb: g } : {}) });
  }
  report.score = res.score;
  report.drop = res.drop;
  report.met = res.met;
  report.trials = res.trials;
  report.ms = performance.now() - t0;
  return report;
}

/**
 * The label-free fidelity budget: the accuracy search with, as its metric, the lowest output SQNR
 * against the float model on the first calibration samples, `minSqnrDb` as the bar, and as candidates
 * the layers worth at least `minGainDb` alone. `scorer` may be shared with an earlier step (it holds
 * the float outputs of the scored samples).
 */
export async function fidelitySearch(prepared: Model, nodes: Node[], source: SampleSource, o: FidelityOptions, floats: Map<number, string>, weightOnly: Set<number>, build: Builder, scorer?: OutputScorer): Promise<FidelityReport> {
  const t0 = performance.now();
  const sc = scorer ?? (await outputScorer(prepared, await firstSamples(source, o.samples ?? FIDELITY_SAMPLES), SCORER_BYTES, o.runner));
  const rankSamples = o.rankSamples ?? Math.min(sc.samples.length, Math.max(4, Math.ceil(RANK_INPUT_ELEMENTS / Math.max(1, inputElements(sc.samples[0])))));
  const rounds: FidelityRound[] = [];
  let first: OutputError[] | undefined;
  let last: OutputError[] | undefined;
  let met = false;
  for (let r = 0; r < (o.maxRounds ?? FIDELITY_ROUNDS) && !met; r++) {
    // every evaluation in call order: the first is the build before the search, then one per trial
    const seen: OutputError[][] = [];
    const acc = await accuracySearch(
      prepared,
      nodes,
      source,
      {
        maxDrop: 0,
        reference: o.minSqnrDb,
        evaluate: async (m) => {
          const e = await sc.score(m);
          seen.push(e);
          return lowestSqnr(e);
        },
        rank: 'output',
        debugSamples: rankSamples,
        minGainDb: o.minGainDb,
        scorer: sc,
        unmet: 'best',
        ...(o.maxTrials !== undefined ? { maxTrials: o.maxTrials } : {}),
        ...(o.runner ? { runner: o.runner } : {}),
      },
      floats,
      weightOnly,
      build,
      'fidelity budget',
    );
    // trials are recorded in evaluation order (the first, k = 0, reuses the evaluation before the search)
    const at = acc.trials.findIndex((t) => t.floated === acc.floated.length);
    const after = seen[Math.max(0, at)] ?? seen[0]!;
    first ??= seen[0]!;
    last = after;
    met = acc.met;
    rounds.push({ beforeDb: lowestSqnr(seen[0]!), afterDb: lowestSqnr(after), floated: acc.floated, trials: acc.trials });
    if (acc.floated.length === 0) break;
  }
  const afterBy = new Map(last!.map((e) => [e.name, e.sqnrDb]));
  return {
    minSqnrDb: o.minSqnrDb,
    minGainDb: o.minGainDb,
    rankSamples,
    samples: sc.samples.length,
    beforeDb: lowestSqnr(first!),
    afterDb: lowestSqnr(last!),
    met,
    outputs: first!.map((e) => ({ name: e.name, beforeDb: e.sqnrDb, afterDb: afterBy.get(e.name) ?? e.sqnrDb })),
    floated: rounds.flatMap((r) => r.floated),
    rounds,
    ms: performance.now() - t0,
  };
}
