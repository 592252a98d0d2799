/**
 * Latency-aware decisions of quantize-static, made reproducible.
 *
 * Measuring. Each profiling round of the latency search takes `trials` trials; a trial profiles the
 * int8 build and the float model once each (alternating which goes first) and charges every kernel
 * to its compute layer (passes/quant/search.ts). Per layer and side, the estimate is the gate's
 * statistic over the trials (runtime/timer.ts): the median of the lowest third of the per-trial
 * times (load only adds time), and its noise the spread of that lowest third, in µs. A layer changes
 * precision from the default (int8) only when its int8 time exceeds its float time by more than the
 * noise of both sides plus the margin (`margin` relative to the float time, and at least `minUs`):
 *
 *   float  when  int8 - float - (noise_int8 + noise_float) > max(margin * float, minUs)
 *   int8   otherwise; a layer whose difference is within the noise is 'uncertain' and stays int8.
 *
 * Ties and uncertain layers go to int8 (the default precision, the smaller model), so a layer near
 * the boundary does not flip from run to run with the load on the machine.
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
  trials: 6,
  /** Relative margin on the float time. */
  margin: 0.05,
  /** Absolute margin, µs: below it timings are noise whatever the spread says. */
  minUs: 2,
};

export type Choice = 'int8' | 'float';

/** One layer's measurement and decision. */
export interface LayerDecision {
  node: string;
  op: string;
  choice: Choice;
  /** Estimates per run (µs): median of the lowest third of the trials. */
  floatUs: number;
  int8Us: number;
  /** Noise of the difference, µs: spread of the lowest third of the float trials plus the int8 trials'. */
  noiseUs: number;
  /** clear: the difference is beyond noise and margin in one direction; uncertain: within them (default side). */
  certainty: 'clear' | 'uncertain';
  why: string;
  /** Profiling round that decided it (1-based). */
  round: number;
}

export interface DecisionsDocument {
  schema: typeof DECISIONS_SCHEMA;
  /** The prepared float model's layer list this document applies to. */
  layers: { hash: string; count: number };
  /** Layers the latency search returned to float, in decision order (the only thing replay reads). */
  float: string[];
  /** Every measured layer, as the last round that profiled it saw it. */
  decisions: LayerDecision[];
  /** How it was measured: trials per round, rounds, margins, and the machine's contention meanwhile. */
  measured: { trials: number; rounds: number; margin: number; minUs: number; seconds: number; contention?: Contention };
  recordedAt: string;
}

/** The estimate of one side: median of the lowest third of the trial times (at least 3) and its spread (µs). */
export function floorUs(samples: readonly number[]): { value: number; noise: number } {
  const s = [...samples].sort((a, b) => a - b);
  if (s.length === 0) return { value: 0, noise: 0 };
  const k = Math.min(s.length, Math.max(3, Math.ceil(s.length / 3)));
  const low = s.slice(0, k);
  return { value: median(low), noise: low[k - 1]! - low[0]! };
}

/**
 * Decides one layer from its per-trial float and int8 times (µs per run): float only when int8 is
 * slower beyond the measured noise and the margin; otherwise int8 (uncertain when within them).
 */
export function decideLayer(floatTrials: readonly number[], int8Trials: readonly number[], opts: { margin?: number; minUs?: number } = {}): Omit<LayerDecision, 'node' | 'op' | 'round'> {
  const margin = opts.margin ?? DECISION_DEFAULTS.margin;
  const minUs = opts.minUs ?? DECISION_DEFAULTS.minUs;
  const f = floorUs(floatTrials);
  const q = floorUs(int8Trials);
  // fewer than 3 trials: the spread is unknown, so the difference itself is the noise (nothing is clear)
  const noiseUs = Math.min(floatTrials.length, int8Trials.length) < 3 ? Math.abs(q.value - f.value) : f.noise + q.noise;
  const diff = q.value - f.value;
  const bar = Math.max(margin * f.value, minUs);
  const base = { floatUs: f.value, int8Us: q.value, noiseUs };
  const figures = `int8 ${q.value.toFixed(1)} µs vs float ${f.value.toFixed(1)} µs per run, noise ±${noiseUs.toFixed(1)} µs, margin ${bar.toFixed(1)} µs`;
  if (diff - noiseUs > bar) return { ...base, choice: 'float', certainty: 'clear', why: `slower in int8 beyond noise and margin: ${figures}` };
  if (diff + noiseUs <= bar) return { ...base, choice: 'int8', certainty: 'clear', why: `not slower in int8 beyond the margin: ${figures}` };
  return { ...base, choice: 'int8', certainty: 'uncertain', why: `uncertain (difference within the noise), int8 by rule: ${figures}` };
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

/** The compact record in the quantized model's metadata_props (no timings: the same decisions give the same bytes). */
export function decisionsMetadata(layers: { hash: string }, float: readonly string[], int8: readonly string[]): string {
  return JSON.stringify({ schema: DECISIONS_SCHEMA, layers: layers.hash, float, int8: [...int8].sort() });
}

/** The document as written (two-space JSON, trailing newline). */
export function formatDecisions(doc: DecisionsDocument): string {
  return `${JSON.stringify(doc, null, 2)}\n`;
}
