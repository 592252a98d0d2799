/**
 * Latency-aware decisions of quantize-static, made reproducible.
 *
 * Measuring. Each profiling round of the latency search takes `trials` trials; a trial profiles the
 * int8 build and the float model once each, one right after the other (alternating which goes
 * first), and charges every kernel to its compute layer (passes/quant/search.ts). Per layer, each
 * trial gives a paired ratio int8 / float: both sides were timed within a second of each other, so
 * a period of load on the machine inflates both and largely cancels (measured on PaddleOCR rec on
 * this 2-core VM at load average 14: a layer's float time moved 48-81 µs across trials, its int8
 * time 107-194 µs, their paired ratio stayed 1.9-2.8). The estimate is the median of the trial
 * ratios, its noise the width of the median's distribution-free confidence interval (the order
 * statistics n/2 - sqrt(n) to n/2 + sqrt(n), ~95%; all of them below 5 trials). A layer changes
 * precision from the default (int8) only when the slowdown clearly exceeds both the noise and the
 * margin, and is worth it per run:
 *
 *   float  when  ratio - 1 > max(margin, noise)  and  (ratio - 1) * float µs > worth
 *   int8   otherwise; 'uncertain' when ratio - 1 + noise > margin (the measurement cannot tell).
 *   worth = max(minUs, minShare * the float model's time per run)
 *
 * Why the median of the paired ratios and not the gate's median of the lowest third: the gate times
 * one model, whose time load can only inflate, so the fast trials are the true ones. A paired ratio
 * is not one-sided (load on the float side lowers it, on the int8 side raises it), and some int8
 * kernels vary by themselves: PaddleOCR det's p2o.Conv.48 took 60-183 µs in int8 across 36 trials of
 * one run while its float time (8-12 µs) and its neighbours' (±3%) stayed put. The lowest third
 * of its ratios put its slowdown at 73 µs against a worth floor of 73 µs, and resampling 12 of those
 * 36 trials landed it at or under the floor 44% of the time (so 2 of 10 runs wrote another file); the
 * median put it at 87-89 µs, under the floor in 0.3% of resamples of 12 and never of 36.
 *
 * The worth floor is relative to the whole model on purpose: a layer whose slowdown is a thousandth of
 * the model's time changes nothing any latency measurement of the model can see (the gate's noise on a
 * quiet machine is about 1%), while its absolute slowdown of a few µs sits right at any fixed µs floor
 * and drifts across it from run to run (measured on PaddleOCR rec at load 0: two 10 µs convolutions,
 * 1.46x and 1.52x slower in int8, i.e. 4.8-5.5 µs per run against the old fixed 5 µs floor, were
 * float in some runs and int8 in others, so the file changed).
 *
 * Near the floor, measure longer. Any floor has layers near it in some model, and 12 trials are few
 * for a layer whose int8 time varies by itself. So when a layer is clearly slower by its ratio and
 * its slowdown sits within its noise (or `nearWorth`, 25%) of the floor, the round takes
 * `extraTrials` (24) more trials of the same builds, once, and decides every layer on all of them.
 *
 * Ties and uncertain layers go to int8 (the default precision, the smaller model). The margin is
 * wide (30%) on purpose: on rec the layers between 1.05x and 1.3x slower in int8 sum to well under 1%
 * of the model's time, while their ratios drift by 0.1 from one run to the next under load, so
 * deciding them would change the file from run to run for nothing measurable.
 *
 * Replaying. The decisions are a schema-versioned JSON document ({@link DECISIONS_SCHEMA}) that
 * `quantize --decisions FILE` replays without profiling (same model bytes every time) and
 * `--update-decisions` rewrites. It is tied to the prepared float model's layer list (names, op
 * types and weight shapes of its compute layers, hashed), not to its weight values: retrained weights
 * keep their decisions, a changed architecture or other preparation presets do not. The quantized
 * model records the decisions compactly in metadata_props ({@link DECISIONS_METADATA_KEY}).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { inputError } from '../../core/errors.js';
import { constantOf, Model } from '../../ir/ir.js';
import { median, type Contention } from '../../runtime/timer.js';
import { COMPUTE_OPS } from './placement.js';

export const DECISIONS_SCHEMA = 'onnxforge.quantize-decisions/1';
/** metadata_props key of the quantized model: the layer-list hash, the latency-float and int8 layer sets. */
export const DECISIONS_METADATA_KEY = 'onnxforge.quantize.decisions';

/** Defaults of the measurement (quantize-static's `latency` option overrides them). */
export const DECISION_DEFAULTS = {
  /** Trials (one int8 and one float profile each) per profiling round. */
  trials: 12,
  /** Least relative slowdown in int8 (ratio - 1) that returns a layer to float. */
  margin: 0.3,
  /** Least slowdown per run (µs) worth a float layer. */
  minUs: 5,
  /** Least slowdown per run, as a share of the float model's time per run, worth a float layer. */
  minShare: 0.001,
  /**
   * Trials a round adds, once, when some layer is clearly slower in int8 but its slowdown per run sits
   * near the worth floor (within its noise, or within `nearWorth` of the floor): the decision is then
   * made on all the round's trials, so a noisy draw of 12 does not move it across the floor.
   */
  extraTrials: 24,
  /** Band around the worth floor (a share of it) inside which a clearly slower layer gets the extra trials. */
  nearWorth: 0.25,
};

export type Choice = 'int8' | 'float';

/** One layer's measurement and decision. */
export interface LayerDecision {
  node: string;
  op: string;
  choice: Choice;
  /** int8 / float time: median of the paired trial ratios. */
  ratio: number;
  /** Per-side estimates per run (µs): median of the lowest third of each side's trials. */
  floatUs: number;
  int8Us: number;
  /** Noise of the ratio (width of its median's confidence interval), in µs of the float time. */
  noiseUs: number;
  /** clear: beyond noise and margin in one direction; uncertain: the measurement cannot tell (int8 by rule). */
  certainty: 'clear' | 'uncertain';
  why: string;
  /** Profiling round that decided it (1-based). */
  round: number;
  /** Trials it was decided on (the round's, with the extra trials when some layer sat near the worth floor). */
  trials?: number;
  /** The worth floor it was held against (µs per run): max(minUs, minShare x the float model's time). */
  worthUs?: number;
  /** Clearly slower in int8, with a slowdown per run near the worth floor: the round took extra trials. */
  nearWorth?: boolean;
}

export interface DecisionsDocument {
  schema: typeof DECISIONS_SCHEMA;
  /** The prepared float model's layer list this document applies to. */
  layers: { hash: string; count: number };
  /** Layers the latency search returned to float, in model order (the only thing replay reads). */
  float: string[];
  /** Every measured layer, as the last round that profiled it saw it. */
  decisions: LayerDecision[];
  /** How it was measured: trials per round, rounds, margins, and the machine's contention meanwhile. */
  measured: { trials: number; extraTrials?: number; extendedRounds?: number; rounds: number; margin: number; minUs: number; minShare?: number; modelUs?: number; seconds: number; contention?: Contention };
  recordedAt: string;
}

/**
 * Median of the samples and the width of its distribution-free confidence interval: the order
 * statistics floor(n/2 - sqrt(n)) to ceil(n/2 + sqrt(n)) - 1 (0-based, clamped; ~95% from n = 12 on).
 */
export function medianWithNoise(samples: readonly number[]): { value: number; noise: number } {
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return { value: 0, noise: 0 };
  const lo = Math.max(0, Math.floor(n / 2 - Math.sqrt(n)));
  const hi = Math.min(n - 1, Math.ceil(n / 2 + Math.sqrt(n)) - 1);
  return { value: median(s), noise: s[hi]! - s[lo]! };
}

/** The gate's statistic: median of the lowest third (at least 3) of the samples, and the spread of that third. */
export function floorOf(samples: readonly number[]): { value: number; noise: number } {
  const s = [...samples].sort((a, b) => a - b);
  if (s.length === 0) return { value: 0, noise: 0 };
  const k = Math.min(s.length, Math.max(3, Math.ceil(s.length / 3)));
  const low = s.slice(0, k);
  return { value: median(low), noise: low[k - 1]! - low[0]! };
}

/**
 * Decides one layer from its paired per-trial float and int8 times (µs per run; index k = trial k):
 * float only when int8 is slower beyond the measured noise, the margin and the worth floor
 * (max(`minUs`, `minShare` x `modelUs`), the float model's time per run); otherwise int8.
 */
export function decideLayer(floatTrials: readonly number[], int8Trials: readonly number[], opts: { margin?: number; minUs?: number; minShare?: number; modelUs?: number; nearWorth?: number } = {}): Omit<LayerDecision, 'node' | 'op' | 'round'> {
  const margin = opts.margin ?? DECISION_DEFAULTS.margin;
  const minUs = Math.max(opts.minUs ?? DECISION_DEFAULTS.minUs, (opts.minShare ?? DECISION_DEFAULTS.minShare) * (opts.modelUs ?? 0));
  const band = opts.nearWorth ?? DECISION_DEFAULTS.nearWorth;
  const f = floorOf(floatTrials).value;
  const q = floorOf(int8Trials).value;
  const ratios = floatTrials.flatMap((fu, k) => (fu > 0 && int8Trials[k] !== undefined ? [int8Trials[k]! / fu] : []));
  const worthUs = Number(minUs.toFixed(1));
  if (ratios.length === 0) return { ratio: NaN, floatUs: f, int8Us: q, noiseUs: 0, choice: 'int8', certainty: 'clear', why: 'no float kernel time profiled for it: int8 (default)', trials: 0, worthUs };
  const r = medianWithNoise(ratios);
  // fewer than 3 trials: the spread is unknown, so nothing is clear
  const noise = ratios.length < 3 ? Infinity : r.noise;
  const excess = r.value - 1;
  const noiseUs = Number.isFinite(noise) ? noise * f : f;
  const clearlySlower = excess > Math.max(margin, noise);
  const slowdownUs = excess * f;
  // clearly slower by the ratio, and the slowdown per run within its noise (or the band) of the floor
  const nearWorth = clearlySlower && Math.abs(slowdownUs - minUs) <= Math.max(noiseUs, band * minUs);
  const base = { ratio: r.value, floatUs: f, int8Us: q, noiseUs, trials: ratios.length, worthUs, ...(nearWorth ? { nearWorth } : {}) };
  const figures = `int8 ${r.value.toFixed(2)}x float (${q.toFixed(0)} vs ${f.toFixed(0)} µs per run), noise ±${Number.isFinite(noise) ? noise.toFixed(2) : '?'}x, margin ${margin.toFixed(2)}x and ${worthUs} µs`;
  if (clearlySlower && slowdownUs > minUs) return { ...base, choice: 'float', certainty: 'clear', why: `slower in int8 beyond noise and margin: ${figures}` };
  if (excess + (Number.isFinite(noise) ? noise : Infinity) <= margin || slowdownUs <= minUs) return { ...base, choice: 'int8', certainty: 'clear', why: `not slower in int8 beyond the margin: ${figures}` };
  return { ...base, choice: 'int8', certainty: 'uncertain', why: `uncertain (slowdown within the noise), int8 by rule: ${figures}` };
}

/** The compute layers of a prepared model that decisions may name: named Conv/MatMul/Gemm/... nodes. */
export function decisionLayers(model: Model): Array<{ name: string; op: string; weight: readonly number[] }> {
  const out: Array<{ name: string; op: string; weight: readonly number[] }> = [];
  for (const n of model.graph.nodes) {
    if (!n.name || !COMPUTE_OPS.has(n.opType)) continue;
    const w = n.inputs[1] ? constantOf(n.inputs[1]) : undefined;
    out.push({ name: n.name, op: n.opType, weight: w ? w.dims.map(Number) : [] });
  }
  return out;
}

/** Hash of the prepared model's layer list (names, op types, weight shapes; not weight values). */
export function layerListHash(model: Model): { hash: string; count: number } {
  const layers = decisionLayers(model);
  const h = createHash('sha256');
  for (const l of layers) h.update(`${l.name}\u0000${l.op}\u0000${l.weight.join('x')}\n`);
  return { hash: h.digest('hex').slice(0, 16), count: layers.length };
}

const bad = (file: string, why: string) => inputError('QUANT_DECISIONS_BAD', `decisions file ${file}: ${why}`, { file });

/** Reads and checks the shape of a decisions file (not yet against a model). */
export function readDecisions(file: string): DecisionsDocument {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw bad(file, code === 'ENOENT' ? 'does not exist (record one with --decisions FILE --update-decisions)' : `cannot be read (${code ?? (e as Error).message})`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw bad(file, `is not JSON (${(e as Error).message})`);
  }
  return parseDecisions(doc, file);
}

/** Checks the fields replay relies on; the measurement fields are informative and only type-checked loosely. */
export function parseDecisions(doc: unknown, file: string): DecisionsDocument {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw bad(file, 'is not a JSON object');
  const d = doc as Record<string, unknown>;
  if (d.schema !== DECISIONS_SCHEMA) throw bad(file, `has schema ${JSON.stringify(d.schema)}, expected "${DECISIONS_SCHEMA}"`);
  const layers = d.layers as Record<string, unknown> | undefined;
  if (!layers || typeof layers.hash !== 'string' || !/^[0-9a-f]{16}$/.test(layers.hash) || typeof layers.count !== 'number') throw bad(file, 'field "layers" must be { hash: 16 hex digits, count: number }');
  if (!Array.isArray(d.float) || d.float.some((x) => typeof x !== 'string')) throw bad(file, 'field "float" must be an array of node names');
  if (new Set(d.float).size !== d.float.length) throw bad(file, 'field "float" names a node twice');
  if (d.decisions !== undefined && !Array.isArray(d.decisions)) throw bad(file, 'field "decisions" must be an array');
  return doc as DecisionsDocument;
}

/**
 * Checks a decisions document against the prepared model: same layer list (else QUANT_DECISIONS_MODEL),
 * every float name a compute layer of it (else QUANT_DECISIONS_UNKNOWN_NODE). Returns the float names.
 */
export function checkDecisions(doc: DecisionsDocument, model: Model, file: string): string[] {
  const here = layerListHash(model);
  if (doc.layers.hash !== here.hash) {
    throw inputError('QUANT_DECISIONS_MODEL', `decisions file ${file} was recorded for another model: its layer list (${doc.layers.count} layers, hash ${doc.layers.hash}) is not this model's after preparation (${here.count} layers, hash ${here.hash}); record it again with --update-decisions`, { file });
  }
  const known = new Set(decisionLayers(model).map((l) => l.name));
  const unknown = doc.float.filter((n) => !known.has(n));
  if (unknown.length) throw inputError('QUANT_DECISIONS_UNKNOWN_NODE', `decisions file ${file} names ${unknown.map((n) => `'${n}'`).join(', ')}, not a quantizable layer of this model (after preparation)`, { file, node: unknown[0] });
  return doc.float;
}

/** The compact record in the quantized model's metadata_props (no timings: the same decisions give the same bytes); both lists sorted, so a hand-edited file with its layers in another order gives the same bytes. */
export function decisionsMetadata(layers: { hash: string }, float: readonly string[], int8: readonly string[]): string {
  return JSON.stringify({ schema: DECISIONS_SCHEMA, layers: layers.hash, float: [...float].sort(), int8: [...int8].sort() });
}

/** The document as written (two-space JSON, trailing newline). */
export function formatDecisions(doc: DecisionsDocument): string {
  return `${JSON.stringify(doc, null, 2)}\n`;
}
