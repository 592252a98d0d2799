/**
 * Static INT8 quantization with a calibration set, in QDQ form for onnxruntime's CPU EP.
 *
 *   prepare (presets default + fuse, upgrade to opset 13)  ->  place Q/DQ (passes/quant/placement.ts)
 *   ->  collect ranges of the placed tensors on the calibration data (calibration/collect.ts)
 *   ->  uint8 asymmetric activations, int8 symmetric per-channel weights, int32 biases
 *       (passes/quant/scales.ts)  ->  emit (passes/quant/emit.ts)
 *
 * Activation x = s (q - zp), q in [0, 255]; weight w_c = s_c q, q in [-127, 127] (or [-64, 64] with
 * reduce-range); bias b_c = (s_x s_c) q, q int32. A tensor whose calibrated range is zero (constant
 * 0) cannot get a valid scale: the nodes around it stay float and the report says so.
 *
 * The algorithm is the plain function {@link quantizeStatic}; the pass reads the calibration data
 * from `ctx.data.calibration` (a function returning an async iterable of samples, or an iterable).
 */
import { inputError } from '../graph/errors.js';
import { constantOf, Model, Node, Value } from '../graph/ir.js';
import { cloneModel, serializeModel } from '../graph/onnx/index.js';
import { profileModel, OpProfileRow } from '../runtime/profile.js';
import { layerErrors } from './quant/debug.js';
import { createSessionFromModel } from '../runtime/from-model.js';
import { OutputComparison } from '../runtime/metrics.js';
import { attributeProfiles, BudgetTrial, decideLatency, rankSensitivity, searchAccuracyBudget, UnitTiming } from './quant/search.js';
import type { Sample } from '../calibration/data/index.js';
import type { Feed } from '../runtime/host-tensor.js';
import type { SessionOptions } from '../runtime/session.js';
import { collectStats } from '../calibration/collect.js';
import { CalibrationMethod, computeRange, RangeOptions, TensorRange, TensorStats, validateRangeOptions } from '../calibration/ranges.js';
import { definePass, PassContext } from './pass.js';
import { EmitResult, emitQdq, EmitStats } from './quant/emit.js';
import { COMPUTE_OPS, Placement, placeQdq, PlacementOptions } from './quant/placement.js';
import { prepareForQuantization, PrepareReport } from './quant/prepare.js';
import { ActivationParams, activationParams } from './quant/scales.js';

export interface QuantizeStaticOptions {
  method?: CalibrationMethod;
  percentile?: number;
  movingAverage?: number;
  symmetricActivations?: boolean;
  perChannel?: boolean;
  reduceRange?: boolean;
  excludeNodes?: string[];
  excludeOps?: string[];
  onlyOps?: string[];
  /** Quantize MatMul of two activations (default false). */
  activationMatMul?: boolean;
  /** Node names whose weights are int8 but activations float (sensitive layers that must stay small). */
  weightOnlyNodes?: string[];
  /** How new values are named (see EmitOptions.names; default 'compact'). */
  names?: 'compact' | 'descriptive';
  /** Run the default/fuse presets and the opset upgrade first (default true). */
  prepare?: boolean;
  /** Presets run before quantizing (default 'default,fuse'). */
  presets?: string;
  tensorsPerRun?: number;
  memoryBudgetBytes?: number;
  /** onnxruntime options of the calibration sessions (default: optimization 'all', ORT's thread count). */
  sessionOptions?: SessionOptions;
  /** Called with the prepared float model just before Q/DQ placement (e.g. to keep a copy). */
  onPrepared?: (model: Model) => void;
  /**
   * 'on': profile the float and int8 models in onnxruntime and return compute layers that are slower
   * in int8 to float (see passes/quant/search.ts). Default 'off' here (deterministic); the CLI defaults to 'on'.
   */
  latencyAware?: 'on' | 'off';
  /** Layers the latency search returns to float keep float weights ('speed', default) or int8 weights behind a DequantizeLinear ('size'). */
  prefer?: 'speed' | 'size';
  latency?: { feeds?: number; runs?: number; rounds?: number; margin?: number; profiler?: Profiler };
  /** Accuracy budget: the most sensitive layers return to float (int8 weights kept) until the drop holds. */
  accuracy?: AccuracyBudgetOptions;
}

/** Profiles a model on feeds (`runs` passes over them): one row per onnxruntime kernel. */
export type Profiler = (model: Model, feeds: Feed[], runs: number) => Promise<OpProfileRow[]>;

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
}

export interface LatencyReport {
  rounds: number;
  prefer: 'speed' | 'size';
  /** Layers returned to float, with their profiled times per run (µs). */
  floated: Array<{ node: string; op: string; floatUs: number; int8Us: number; weights: 'float' | 'int8'; extraBytes: number }>;
  /** Bytes the float weights of those layers add over int8 (0 with prefer 'size'). */
  extraBytes: number;
  /** Units kept in int8 with their last profiled times per run (µs). */
  kept: Array<{ node: string; floatUs: number; int8Us: number }>;
}

export interface AccuracyReport {
  maxDrop: number;
  reference: number;
  score: number;
  drop: number;
  met: boolean;
  floated: Array<{ node: string; op: string; sqnrDb: number; lossDb: number; gainDb?: number }>;
  rank: 'output' | 'sqnr';
  trials: BudgetTrial[];
  ms: number;
}

export type SampleSource = () => AsyncIterable<Sample>;

export interface FloatNode {
  node: string;
  op: string;
  reason: string;
}

export interface QuantizeStaticReport {
  prepare?: PrepareReport;
  method: CalibrationMethod;
  samples: number;
  calibrationMs: number;
  calibratedTensors: number;
  calibrationGroups: number;
  int8Nodes: number;
  quantizedOps: Record<string, number>;
  /** Every op type still running in float, with counts (Q/DQ and Constant not counted). */
  floatOps: Record<string, number>;
  /** Quantizable nodes (Conv, MatMul, Gemm, ...) left in float, with the reason. */
  float: FloatNode[];
  emit: EmitStats;
  warnings: string[];
  /** Calibrated ranges by tensor name (in the prepared model). */
  ranges: Record<string, TensorRange>;
  /** Calibrated tensor name -> the DequantizeLinear output carrying it in the quantized model. */
  dequantized: Record<string, string>;
  prefer: 'speed' | 'size';
  latency?: LatencyReport;
  accuracy?: AccuracyReport;
}

/** Quantizes `model` in place. */
export async function quantizeStatic(model: Model, source: SampleSource, options: QuantizeStaticOptions = {}, ctx?: PassContext): Promise<QuantizeStaticReport> {
  const method = options.method ?? 'minmax';
  const rangeOpts: RangeOptions = { method, symmetric: options.symmetricActivations ?? false };
  if (options.percentile !== undefined) rangeOpts.percentile = options.percentile;
  if (options.movingAverage !== undefined) rangeOpts.movingAverage = options.movingAverage;
  validateRangeOptions(rangeOpts);
  validateSearchOptions(options);
  const warnings: string[] = [];
  let prepare: PrepareReport | undefined;
  if (options.prepare ?? true) {
    prepare = await prepareForQuantization(model, ctx ?? silentContext(), options.presets !== undefined ? { presets: options.presets } : {});
    if (prepare.skipped.length) warnings.push(`not available, skipped before quantizing: ${prepare.skipped.join(', ')}`);
  }
  if ((model.opset('') ?? 1) < 13) throw inputError('QUANT_OPSET_TOO_OLD', `QDQ quantization needs opset 13 or later; the model has opset ${model.opset('')}`);

  options.onPrepared?.(model);
  const userWeightOnly = new Set(options.weightOnlyNodes ?? []);
  checkNodeNames(model, [...(options.excludeNodes ?? []), ...userWeightOnly]);
  const latencyAware = (options.latencyAware ?? 'off') === 'on';
  const prefer = options.prefer ?? 'speed';
  if (latencyAware) nameUnnamedComputeNodes(model);
  const prepared = model;

  const baseOpts: PlacementOptions = {
    perChannel: options.perChannel ?? true,
    activationMatMul: options.activationMatMul ?? false,
  };
  if (options.excludeNodes) baseOpts.excludeNodes = options.excludeNodes;
  if (options.excludeOps) baseOpts.excludeOps = options.excludeOps;
  if (options.onlyOps) baseOpts.onlyOps = options.onlyOps;

  // calibration of every tensor the unrestricted placement needs (later builds reuse the ranges)
  const first = placeQdq(cloneModel(prepared), baseOpts);
  const toCalibrate = calibratedTensors(first).map((v) => v.name);
  const ranges: Record<string, TensorRange> = {};
  const collectOpts = {
    method,
    ...(options.movingAverage !== undefined ? { movingAverage: options.movingAverage } : {}),
    ...(options.tensorsPerRun !== undefined ? { tensorsPerRun: options.tensorsPerRun } : {}),
    ...(options.memoryBudgetBytes !== undefined ? { memoryBudgetBytes: options.memoryBudgetBytes } : {}),
    ...(options.sessionOptions ? { sessionOptions: options.sessionOptions } : {}),
  };
  const progress = ctx?.progress?.('calibrating', 0);
  const collected = await collectStats(prepared, toCalibrate, source, { ...collectOpts, onProgress: () => progress?.tick() });
  progress?.done();
  let calibrationMs = collected.ms;
  const zeroWarned = new Set<string>();
  const addRanges = (stats: Map<string, TensorStats>) => {
    for (const [name, st] of stats) {
      const r = computeRange(st, rangeOpts);
      ranges[name] = r;
      if (!(r.hi - r.lo > 0) && !zeroWarned.has(name)) {
        zeroWarned.add(name);
        warnings.push(`tensor '${name}' is constant 0 on every calibration sample (zero range), so it gets no valid scale; the nodes around it stay float`);
      }
    }
  };
  addRanges(collected.stats);
  const ensureRanges = async (names: string[]) => {
    const missing = names.filter((n) => !(n in ranges));
    if (!missing.length) return;
    const extra = await collectStats(prepared, missing, source, collectOpts);
    calibrationMs += extra.ms;
    addRanges(extra.stats);
  };

  const build = async (floats: ReadonlyMap<number, string>, weightOnlyIdx: ReadonlySet<number>, names: 'compact' | 'descriptive'): Promise<Build> => {
    const m = cloneModel(prepared);
    const nodes = [...m.graph.nodes];
    const forced = new Map<Node, string>();
    for (const [i, why] of floats) forced.set(nodes[i]!, why);
    const weightOnly = new Set<Node>(nodes.filter((n, i) => weightOnlyIdx.has(i) || (n.name !== undefined && userWeightOnly.has(n.name))));
    let placement = placeQdq(m, { ...baseOpts, weightOnly, forceFloat: forced });
    for (let round = 0; round < 6; round++) {
      await ensureRanges(calibratedTensors(placement).map((v) => v.name));
      let changed = false;
      for (const t of placement.tensors) {
        const root = t.inheritFrom ?? t.value;
        const r = ranges[root.name];
        if (r && r.hi - r.lo > 0) continue;
        const reason = r ? `tensor '${root.name}' is constant 0 on every calibration sample (zero range), so it gets no valid scale` : `tensor '${root.name}' has no calibrated range`;
        for (const v of [t.value, root]) {
          if (v.producer && placement.int8.has(v.producer) && !forced.has(v.producer)) (forced.set(v.producer, reason), (changed = true));
          for (const c of v.consumers()) if (placement.int8.has(c) && !forced.has(c)) (forced.set(c, reason), (changed = true));
        }
      }
      if (!changed) break;
      placement = placeQdq(m, { ...baseOpts, weightOnly, forceFloat: forced });
    }
    const params = new Map<Value, ActivationParams>();
    for (const t of placement.tensors) {
      const root = t.inheritFrom ?? t.value;
      const r = ranges[root.name]!;
      params.set(root, activationParams(r.lo, r.hi, root.name));
      if (t.value !== root) params.set(t.value, params.get(root)!);
    }
    const int8Idx = new Set<number>();
    nodes.forEach((n, i) => placement.int8.has(n) && int8Idx.add(i));
    const unitIdx = placement.units.map((u) => nodes.indexOf(u.node));
    const emitted = emitQdq(m, placement, params, { reduceRange: options.reduceRange ?? false, names });
    return { model: m, placement, int8Idx, unitIdx, emitted };
  };

  const floats = new Map<number, string>();
  const weightOnlyIdx = new Set<number>();
  const preparedNodes = [...prepared.graph.nodes];
  const nodeLabelAt = (i: number) => preparedNodes[i]!.name ?? preparedNodes[i]!.label;

  // latency-aware choice: profile float and int8, return slower units to float, rebuild, repeat
  let latency: LatencyReport | undefined;
  if (latencyAware) {
    latency = await latencySearch(prepared, preparedNodes, source, options, floats, weightOnlyIdx, prefer, build);
  }

  // accuracy budget: most sensitive units back to float (int8 weights kept) until the metric holds
  let accuracy: AccuracyReport | undefined;
  if (options.accuracy) {
    accuracy = await accuracySearch(prepared, preparedNodes, source, options.accuracy, floats, weightOnlyIdx, build);
  }

  const final = await build(floats, weightOnlyIdx, options.names ?? 'compact');
  model.graph = final.model.graph;
  model.graph.model = model;
  const placement = final.placement;
  const emit = final.emitted.stats;
  if (emit.clampedBias > 0) warnings.push(`${emit.clampedBias} bias values exceeded the int32 range at scale s_x * s_w and were clamped`);
  const quantizedOps: Record<string, number> = {};
  for (const n of placement.int8) quantizedOps[n.opType] = (quantizedOps[n.opType] ?? 0) + 1;
  const floatOps: Record<string, number> = {};
  for (const n of model.graph.nodes) {
    if (placement.int8.has(n) || n.opType === 'Constant' || n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear') continue;
    floatOps[n.opType] = (floatOps[n.opType] ?? 0) + 1;
  }
  const usedRanges: Record<string, TensorRange> = {};
  for (const v of calibratedTensors(placement)) if (ranges[v.name]) usedRanges[v.name] = ranges[v.name]!;
  const report: QuantizeStaticReport = {
    method,
    samples: collected.samples,
    calibrationMs,
    calibratedTensors: Object.keys(ranges).length,
    calibrationGroups: collected.groups,
    int8Nodes: placement.int8.size,
    quantizedOps,
    floatOps,
    float: placement.float.map((f) => ({ node: f.node.name ?? f.node.label, op: f.node.opType, reason: f.reason })),
    emit,
    warnings,
    ranges: usedRanges,
    dequantized: Object.fromEntries(final.emitted.dequantized),
    prefer,
  };
  if (latency) report.latency = latency;
  if (accuracy) report.accuracy = accuracy;
  void nodeLabelAt;
  if (prepare) report.prepare = prepare;
  return report;
}

interface Build {
  model: Model;
  placement: Placement;
  /** Indices (in the prepared model) of the nodes running in int8. */
  int8Idx: Set<number>;
  /** Index of each placement unit's node. */
  unitIdx: number[];
  emitted: EmitResult;
}
type Builder = (floats: ReadonlyMap<number, string>, weightOnly: ReadonlySet<number>, names: 'compact' | 'descriptive') => Promise<Build>;

/** Gives unnamed Conv/MatMul/Gemm nodes a name, so profile rows can be traced back to them. */
function nameUnnamedComputeNodes(model: Model): void {
  const used = new Set<string>();
  for (const n of model.graph.nodes) if (n.name) used.add(n.name);
  let k = 0;
  for (const n of model.graph.nodes) {
    if (n.name || !COMPUTE_OPS.has(n.opType)) continue;
    let name: string;
    do name = `${n.opType.toLowerCase()}_${k++}`;
    while (used.has(name));
    used.add(name);
    n.name = name;
  }
}

async function firstFeeds(source: SampleSource, n: number): Promise<Feed[]> {
  const out: Feed[] = [];
  for await (const s of source()) {
    out.push(s.feed);
    if (out.length >= n) break;
  }
  return out;
}

/** onnxruntime profile of a model on `feeds` (1 thread, optimization 'all', no spinning). */
export const defaultProfiler: Profiler = async (m, feeds, runs) => {
  const r = await profileModel(serializeModel(m), feeds, { intraOpNumThreads: 1, graphOptimizationLevel: 'all', allowSpinning: false, runs, warmup: 1 } as never);
  return r.nodes;
};

function weightBytes(n: Node): number {
  const w = constantOf(n.inputs[1]);
  return w ? w.size : 0;
}

/**
 * Per-call cost of each profiled node: its fastest call (`minUs`), or the mean where a profiler gives
 * only totals. Machine load only adds time, so the minimum is the stable estimate (as in the gate).
 */
function perCall(rows: readonly OpProfileRow[]): OpProfileRow[] {
  return rows.map((r) => ({ ...r, totalUs: r.minUs !== undefined && Number.isFinite(r.minUs) ? r.minUs : r.totalUs / Math.max(1, r.calls), calls: 1 }));
}

/** Alternating int8/float profile pairs per latency-aware round. */
const PROFILE_PAIRS = 2;

/** Node-wise minimum of two per-call tables (nodes in either). */
function minRows(a: readonly OpProfileRow[], b: readonly OpProfileRow[]): OpProfileRow[] {
  const out = new Map(a.map((r) => [r.node, r]));
  for (const r of b) {
    const o = out.get(r.node);
    if (!o || r.totalUs < o.totalUs) out.set(r.node, r);
  }
  return [...out.values()];
}

async function latencySearch(prepared: Model, nodes: Node[], source: SampleSource, options: QuantizeStaticOptions, floats: Map<number, string>, weightOnly: Set<number>, prefer: 'speed' | 'size', build: Builder): Promise<LatencyReport> {
  const lo = options.latency ?? {};
  const profiler = lo.profiler ?? defaultProfiler;
  const runs = lo.runs ?? 3;
  const feeds = await firstFeeds(source, lo.feeds ?? 2);
  // each round profiles the int8 build and the float model alternately (int8, float, int8, float),
  // with the same number of calls each, and costs every node by its fastest call: both sides see the
  // same load, and a spike in some calls does not count (a minimum over more float calls than int8
  // calls would favour float, so the counts stay equal)
  const decided: LatencyReport['floated'] = [];
  const unitMap = new Map<Node, number>();
  let rounds = 0;
  let lastTimings: UnitTiming[] = [];
  for (; rounds < (lo.rounds ?? 3); ) {
    const b = await build(floats, weightOnly, 'descriptive');
    const live = new Set<number>();
    unitMap.clear();
    b.placement.units.forEach((u, k) => {
      const i = b.unitIdx[k]!;
      unitMap.set(nodes[i]!, i);
      if (!u.weightOnly) live.add(i);
    });
    if (live.size === 0) break;
    rounds++;
    let quantRows: OpProfileRow[] = [];
    let floatRows: OpProfileRow[] = [];
    for (let k = 0; k < PROFILE_PAIRS; k++) {
      quantRows = minRows(quantRows, perCall(await profiler(b.model, feeds, runs)));
      floatRows = minRows(floatRows, perCall(await profiler(prepared, feeds, runs)));
    }
    const int8 = new Set<Node>([...b.int8Idx].map((i) => nodes[i]!));
    lastTimings = attributeProfiles(prepared, unitMap, floatRows, quantRows, int8).filter((t) => live.has(t.index));
    const dec = decideLatency(lastTimings, lo.margin !== undefined ? { margin: lo.margin } : {});
    if (dec.length === 0) break;
    for (const d of dec) {
      floats.set(d.index, `latency-aware: ${d.reason}`);
      if (prefer === 'size') weightOnly.add(d.index);
      const t = lastTimings.find((x) => x.index === d.index)!;
      const n = nodes[d.index]!;
      decided.push({ node: n.name ?? n.label, op: n.opType, floatUs: t.floatUs, int8Us: t.int8Us, weights: prefer === 'size' ? 'int8' : 'float', extraBytes: prefer === 'size' ? 0 : weightBytes(n) * 3 });
    }
  }
  return {
    rounds,
    prefer,
    floated: decided,
    extraBytes: decided.reduce((a, d) => a + d.extraBytes, 0),
    kept: lastTimings.filter((t) => !floats.has(t.index)).map((t) => ({ node: nodes[t.index]!.name ?? nodes[t.index]!.label, floatUs: t.floatUs, int8Us: t.int8Us })),
  };
}

async function accuracySearch(prepared: Model, nodes: Node[], source: SampleSource, o: AccuracyBudgetOptions, floats: Map<number, string>, weightOnly: Set<number>, build: Builder): Promise<AccuracyReport> {
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
  // per-layer SQNR of this build on a few calibration samples
  const nSamples = o.debugSamples ?? (rankBy === 'output' ? 4 : 8);
  async function* limited() {
    let i = 0;
    for await (const s of source()) {
      if (i++ >= nSamples) break;
      yield s;
    }
  }
  const errors = await layerErrors(prepared, base.model, Object.fromEntries(base.emitted.dequantized), limited(), { sessionOptions: { intraOpNumThreads: 1 } });
  const units = base.placement.units
    .map((u, k) => ({ u, index: base.unitIdx[k]! }))
    .filter(({ u }) => !u.weightOnly)
    .map(({ u, index }) => ({ index, inputs: u.activationInputs.map((i) => nodes[index]!.inputs[i]!.name), output: outputNameIn(nodes[index]!, u.activation !== undefined) }));
  let ranked = rankSensitivity(errors, units);
  const gains = new Map<number, number>();
  if (rankBy === 'output') {
    const samples: Sample[] = [];
    for await (const s of limited()) samples.push(s);
    const outSqnr = await outputSqnr(prepared, samples);
    const base0 = await outSqnr(base.model);
    for (const r of ranked) {
      const f = new Map(floats);
      const w = new Set(weightOnly);
      f.set(r.index, 'candidate');
      w.add(r.index);
      gains.set(r.index, (await outSqnr((await build(f, w, 'compact')).model)) - base0);
    }
    ranked = [...ranked].sort((a, b) => gains.get(b.index)! - gains.get(a.index)!);
  }
  const res = await searchAccuracyBudget(
    ranked.map((r) => r.index),
    reference,
    o.maxDrop,
    async (fl) => {
      const f = new Map(floats);
      const w = new Set(weightOnly);
      for (const i of fl) (f.set(i, 'accuracy budget'), w.add(i));
      return o.evaluate((await build(f, w, 'compact')).model);
    },
    { initialScore: s0, ...(o.maxTrials !== undefined ? { maxTrials: o.maxTrials } : {}) },
  );
  const byIdx = new Map(ranked.map((r) => [r.index, r]));
  for (const i of res.floated) {
    const r = byIdx.get(i)!;
    const g = gains.get(i);
    floats.set(i, `accuracy budget: ${g !== undefined ? `alone in float it raises the output SQNR by ${g.toFixed(1)} dB; ` : ''}loses ${r.lossDb.toFixed(1)} dB SQNR itself (output ${r.sqnrDb.toFixed(1)} dB); int8 weights kept`);
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

/** A function giving the lowest output SQNR (dB) of a model against the float model on `samples`. */
async function outputSqnr(floatModel: Model, samples: readonly Sample[]): Promise<(m: Model) => Promise<number>> {
  const so = { intraOpNumThreads: 1, allowSpinning: false };
  const fs = await createSessionFromModel(floatModel, so, '(float model)');
  const refs: Feed[] = [];
  try {
    for (const s of samples) refs.push(await fs.run(s.feed));
  } finally {
    await fs.dispose();
  }
  return async (m) => {
    const qs = await createSessionFromModel(m, so, '(candidate)');
    const cmp = new OutputComparison();
    try {
      for (let i = 0; i < samples.length; i++) cmp.add(await qs.run(samples[i]!.feed), refs[i]!, samples[i]!.id);
    } finally {
      await qs.dispose();
    }
    return Math.min(...cmp.result().map((e) => (Number.isFinite(e.sqnrDb) ? e.sqnrDb : 200)));
  };
}

/** The tensor a unit writes: the compute node's output, or that of the Relu/Clip it absorbed. */
function outputNameIn(n: Node, absorbed: boolean): string {
  const out = n.outputs[0]!;
  if (!absorbed) return out.name;
  return out.consumers()[0]?.outputs[0]?.name ?? out.name;
}

function validateSearchOptions(o: QuantizeStaticOptions): void {
  if (o.latencyAware !== undefined && o.latencyAware !== 'on' && o.latencyAware !== 'off') throw inputError('QUANT_BAD_OPTION', `latencyAware must be 'on' or 'off', got '${String(o.latencyAware)}'`);
  if (o.prefer !== undefined && o.prefer !== 'speed' && o.prefer !== 'size') throw inputError('QUANT_BAD_OPTION', `prefer must be 'speed' or 'size', got '${String(o.prefer)}'`);
  if (o.accuracy && !(o.accuracy.maxDrop >= 0)) throw inputError('QUANT_BAD_OPTION', `the accuracy budget (max drop) must be a non-negative number, got ${o.accuracy.maxDrop}`);
}

/** The tensors whose range must be measured: placed tensors that do not inherit, plus inherited roots. */
export function calibratedTensors(p: Placement): Value[] {
  const out: Value[] = [];
  const seen = new Set<Value>();
  for (const t of p.tensors) {
    const v = t.inheritFrom ?? t.value;
    if (!seen.has(v)) {
      seen.add(v);
      out.push(v);
    }
  }
  return out;
}

function checkNodeNames(model: Model, names: readonly string[]): void {
  if (names.length === 0) return;
  const known = new Set<string>();
  for (const n of model.graph.allNodes()) if (n.name) known.add(n.name);
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length) {
    throw inputError('QUANT_UNKNOWN_NODE', `no node named ${unknown.map((n) => `'${n}'`).join(', ')} in the model (after preparation; names are listed by 'onnxforge inspect')`, { node: unknown[0] });
  }
}

function silentContext(): PassContext {
  return {
    logger: { info() {}, warn() {}, debug() {} },
    explain() {},
    explaining: false,
    data: {},
    shared: new Map(),
  };
}

/** Normalizes what a pipeline passes as data into a re-openable source. */
export function toSampleSource(data: unknown): SampleSource {
  if (typeof data === 'function') return data as SampleSource;
  if (data && typeof (data as Iterable<unknown>)[Symbol.iterator] === 'function') {
    const items = [...(data as Iterable<Sample | Feed>)];
    return async function* () {
      let i = 0;
      for (const x of items) yield asSample(x, i++);
    };
  }
  if (data && typeof (data as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
    // a one-shot async iterable: read it once, then replay from memory
    let cache: Sample[] | undefined;
    return async function* () {
      if (!cache) {
        cache = [];
        let i = 0;
        for await (const x of data as AsyncIterable<Sample | Feed>) cache.push(asSample(x, i++));
      }
      yield* cache;
    };
  }
  throw inputError('QUANT_NO_CALIBRATION', 'quantize-static needs calibration data (ctx.data.calibration, or --calibration SPEC on the command line)');
}

function asSample(x: Sample | Feed, i: number): Sample {
  const s = x as Sample;
  if (typeof s.id === 'string' && s.feed && typeof s.feed === 'object') return s;
  return { id: `sample#${i}`, feed: x as Feed };
}

/** The pass's options as its schema resolves them (every key present; movingAverage may be unset). */
export interface QuantizeStaticPassOptions extends Record<string, unknown> {
  method: string;
  percentile: number;
  movingAverage?: number;
  perChannel: boolean;
  reduceRange: boolean;
  symmetricActivations: boolean;
  excludeNodes: string[];
  excludeOps: string[];
  onlyOps: string[];
  activationMatMul: boolean;
  weightOnlyNodes: string[];
  names: string;
  prepare: boolean;
  latencyAware: string;
  prefer: string;
}

/** The {@link quantizeStatic} options that resolved pass options stand for (the pass and the CLI both use this). */
export function staticOptionsFromPass(o: QuantizeStaticPassOptions): QuantizeStaticOptions {
  const opts: QuantizeStaticOptions = {
    method: o.method as CalibrationMethod,
    percentile: o.percentile,
    perChannel: o.perChannel,
    reduceRange: o.reduceRange,
    symmetricActivations: o.symmetricActivations,
    excludeNodes: o.excludeNodes,
    excludeOps: o.excludeOps,
    activationMatMul: o.activationMatMul,
    weightOnlyNodes: o.weightOnlyNodes,
    names: o.names as 'compact' | 'descriptive',
    prepare: o.prepare,
    latencyAware: o.latencyAware as 'on' | 'off',
    prefer: o.prefer as 'speed' | 'size',
  };
  if (o.movingAverage !== undefined) opts.movingAverage = o.movingAverage;
  if (o.onlyOps.length) opts.onlyOps = o.onlyOps;
  return opts;
}

const pass = definePass<QuantizeStaticPassOptions>({
  name: 'quantize-static',
  description: 'Static INT8 quantization (QDQ, uint8 activations, int8 per-channel weights, int32 biases) calibrated on ctx.data.calibration.',
  idempotent: false,
  options: {
    method: { type: 'enum', values: ['minmax', 'percentile', 'entropy'], default: 'minmax', description: 'How activation ranges are estimated.' },
    percentile: { type: 'number', default: 99.999, min: 50, max: 100, exclusiveMin: true, description: 'Percentile kept by the percentile method.' },
    perChannel: { type: 'boolean', default: true, description: 'One weight scale per output channel.' },
    movingAverage: { type: 'number', min: 0, max: 1, exclusiveMin: true, description: 'minmax with an exponential moving average of per-sample extremes (constant in (0, 1]); unset: plain extremes.' },
    reduceRange: { type: 'boolean', default: true, description: 'Weights in [-64, 64] (avoids the saturation of AVX2 u8 x s8 pair sums).' },
    symmetricActivations: { type: 'boolean', default: false, description: 'Symmetric activation ranges (zero point 128).' },
    excludeNodes: { type: 'string[]', default: [], description: 'Node names left in float.' },
    excludeOps: { type: 'string[]', default: [], description: 'Op types left in float.' },
    onlyOps: { type: 'string[]', default: [], description: 'When not empty, only these op types run in int8.' },
    activationMatMul: { type: 'boolean', default: false, description: 'Also quantize MatMul of two activations.' },
    weightOnlyNodes: { type: 'string[]', default: [], description: 'Node names whose weights are int8 but whose activations stay float.' },
    names: { type: 'enum', values: ['compact', 'descriptive'], default: 'compact', description: 'New tensors get short ids (compact, smaller files) or names after the originals (descriptive).' },
    prepare: { type: 'boolean', default: true, description: 'Run the default and fuse presets and upgrade to opset 13 first.' },
    latencyAware: { type: 'enum', values: ['on', 'off'], default: 'on', description: 'Profile int8 and float layers in onnxruntime and keep in float what is slower in int8.' },
    prefer: { type: 'enum', values: ['speed', 'size'], default: 'speed', description: 'Layers kept float for latency keep float weights (speed) or int8 weights behind a DequantizeLinear (size).' },
  },
  async run(model, o, ctx) {
    const source = toSampleSource(ctx.data.calibration);
    const r = await quantizeStatic(model, source, staticOptionsFromPass(o), ctx);
    ctx.shared.set('quantize-static', r);
    for (const w of r.warnings) ctx.logger.warn(w);
    return {
      changed: r.int8Nodes > 0 || r.emit.weights > 0,
      stats: { int8Nodes: r.int8Nodes, qdqPairs: r.emit.qdqPairs, weights: r.emit.weights, biases: r.emit.biases, floatNodes: r.float.length, samples: r.samples },
    };
  },
});

export default pass;
