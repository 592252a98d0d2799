/**
 * The search space of `onnxforge tune`: an ordered list of candidate pipelines. The default space is
 * derived from the model (what onnxforge can do to it) and ordered cheapest / most promising first for
 * the objective, so that a search with few trials still reaches the likely winners; `--space FILE`
 * replaces it with the user's list.
 *
 * Two relations let the search prune the space by earlier results (search.ts):
 * - `after`: a refinement of another entry (an option changed on the same mode). It runs only once
 *   that entry ran, and not at all when that entry failed the accuracy budget or errored: a mode that
 *   lost too much accuracy is not refined.
 * - `ladder`: entries that differ only in a pruning ratio share a key; a larger ratio is not tried when
 *   a smaller one on the same key lost too much accuracy (derived from the pipeline text, so it holds
 *   for space files too).
 *
 * A space file (YAML or JSON):
 *
 *     trials:
 *       - quantize-weights                                   # pipeline text
 *       - "@default,quantize-static<method=minmax>"
 *       - label: int8 per-tensor                             # or a mapping with passes as a
 *         passes: [ { quantize-static: { per-channel: false } } ]   # pipeline file takes them
 *
 * Every entry is validated as a pipeline file's `passes` (the same errors, with "did you mean").
 */
import * as fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { inputError, isOnnxForgeError } from '../../core/errors.js';
import { constantOf, type Model } from '../../ir/ir.js';
import { parsePipelineFile, suggest } from '../../passes/pipeline-file.js';
import { formatPipeline } from '../../passes/pipeline.js';

export type TuneObjective = 'size' | 'latency';

export interface SpaceEntry {
  /** Unique, short, for the report ("int8 static", "prune 0.2 + int8 static"). */
  label: string;
  /** What kind of change it is: preset, static, dynamic, weights, int4, fp16, prune, custom. */
  family: string;
  /** The pipeline in the text grammar parsePipeline reads. */
  pipeline: string;
  /** Label of the entry this refines (run after it, skipped when it failed accuracy or errored). */
  after?: string;
  /** Pruning ladder: same key, larger value -> not tried once a smaller value failed accuracy. */
  ladder?: { key: string; value: number };
  /** Needs calibration data (quantize-static). */
  needsCalibration?: boolean;
}

/** What the default space looks at in the model. */
export interface ModelTraits {
  /** Conv nodes with a constant weight (channel pruning, static int8). */
  convs: number;
  /** MatMul/Gemm nodes with a constant 2-D weight (dynamic int8, int4). */
  matmuls: number;
  /** Elements of float32 constants (fp16 and weight compression have something to do). */
  floatWeights: number;
  /** int4 block sizes (16..256) that divide K of every MatMul weight int4 would quantize (>= 1024 values). */
  int4Blocks?: number[];
}

const INT4_BLOCKS = [16, 32, 64, 128, 256];
const INT4_MIN_ELEMENTS = 1024;

export function modelTraits(model: Model): ModelTraits {
  const t: ModelTraits = { convs: 0, matmuls: 0, floatWeights: 0 };
  const seen = new Set<unknown>();
  let blocks = INT4_BLOCKS;
  for (const n of model.graph.allNodes()) {
    const w = constantOf(n.inputs[1]);
    if (n.opType === 'Conv' && w) t.convs++;
    if ((n.opType === 'MatMul' || n.opType === 'Gemm') && w && w.dims.length === 2) {
      t.matmuls++;
      const [k, m] = w.dims as [number, number];
      if (n.opType === 'MatMul' && k * m >= INT4_MIN_ELEMENTS) blocks = blocks.filter((b) => k % b === 0);
    }
    // constants (initializers or Constant nodes) read by a node, each counted once
    for (const v of n.inputs) {
      const c = v && !seen.has(v) ? constantOf(v) : undefined;
      if (!c) continue;
      seen.add(v);
      if (c.dataType === 1) t.floatWeights += c.dims.reduce((a, b) => a * b, 1);
    }
  }
  t.int4Blocks = blocks;
  return t;
}

export interface SpaceOptions {
  objective: TuneObjective;
  calibration: boolean;
  /** Training data given: pruning trials recover by distillation. */
  train: boolean;
}

const PRUNE_RATIOS = [0.1, 0.2, 0.3];

interface Draft extends Omit<SpaceEntry, 'ladder'> {
  /** Position when the objective is size / latency (lower first). */
  rank: Record<TuneObjective, number>;
}

/**
 * The default space: presets; quantize static (method, per-channel, latency-aware, fidelity budget),
 * dynamic, weights; int4 (block size) and fp16 where the model has the weights for them; channel
 * pruning ratios (alone and followed by static int8), with distillation when training data is given.
 */
export function defaultSpace(traits: ModelTraits, o: SpaceOptions): SpaceEntry[] {
  const d: Draft[] = [];
  const add = (label: string, family: string, pipeline: string, size: number, latency: number, more: Partial<Draft> = {}) =>
    d.push({ label, family, pipeline, rank: { size, latency }, ...more });
  const cal = o.calibration;
  if (cal) {
    // the default recipe first: latency-aware int8 with the label-free fidelity budget
    add('int8 static', 'static', 'quantize-static', 2, 1, { needsCalibration: true });
    add('int8 static, size-first', 'static', 'quantize-static<prefer=size>', 3, 12, { after: 'int8 static', needsCalibration: true });
    add('int8 static, all layers', 'static', 'quantize-static<latencyAware=off>', 4, 11, { after: 'int8 static', needsCalibration: true });
    add('int8 static, no fidelity budget', 'static', 'quantize-static<fidelity=0>', 5, 3, { after: 'int8 static', needsCalibration: true });
    add('int8 static, minmax', 'static', 'quantize-static<method=minmax>', 9, 5, { after: 'int8 static', needsCalibration: true });
    add('int8 static, per-tensor', 'static', 'quantize-static<no-perChannel>', 12, 9, { after: 'int8 static', needsCalibration: true });
    add('int8 static, fidelity 30 dB', 'static', 'quantize-static<fidelity=30>', 10, 8, { after: 'int8 static', needsCalibration: true });
    add('int8 static, entropy', 'static', 'quantize-static<method=entropy>', 13, 13, { after: 'int8 static', needsCalibration: true });
  }
  if (traits.floatWeights > 0) add('int8 weights', 'weights', 'quantize-weights', 1, 22, {});
  if (traits.matmuls > 0) {
    add('int8 dynamic', 'dynamic', 'quantize-dynamic', 8, 6);
    // int4 only with block sizes that divide every K (PaddleOCR rec's K = 120 takes none): the pass's
    // default 64 first, then one size down (more accurate) and one up (smaller)
    const blocks = traits.int4Blocks ?? INT4_BLOCKS;
    const first = blocks.includes(64) ? 64 : blocks[blocks.length - 1];
    if (first !== undefined) {
      const at = blocks.indexOf(first);
      const label = (b: number) => `int4 block ${b}`;
      add(label(first), 'int4', first === 64 ? 'quantize-int4' : `quantize-int4<blockSize=${first}>`, 6, 14);
      const down = blocks[at - 1];
      const up = blocks[at + 1];
      if (down !== undefined) add(label(down), 'int4', `quantize-int4<blockSize=${down}>`, 7, 16, { after: label(first) });
      if (up !== undefined) add(label(up), 'int4', `quantize-int4<blockSize=${up}>`, 11, 17, { after: label(first) });
    }
  }
  if (traits.floatWeights > 0) add('fp16 weights', 'fp16', 'convert-float16', 14, 20);
  add('preset fuse', 'preset', '@default,@fuse', 30, 2);
  add('preset default', 'preset', '@default', 31, 4);
  if (traits.convs > 0) {
    const recover = o.train ? ',distill' : '';
    const how = o.train ? ' + distill' : '';
    PRUNE_RATIOS.forEach((r, i) => {
      if (cal) add(`prune ${r}${how} + int8 static`, 'prune', `prune-channels<ratio=${r}>${recover},quantize-static`, 15 + i, 7 + 3 * i, { needsCalibration: true });
      add(`prune ${r}${how}`, 'prune', `prune-channels<ratio=${r}>${recover}`, 20 + i, 10 + 3 * i);
    });
  }
  return d
    .map((x, i) => ({ x, i }))
    .sort((a, b) => a.x.rank[o.objective] - b.x.rank[o.objective] || a.i - b.i)
    .map(({ x }) => {
      const { rank: _rank, ...e } = x;
      return withLadder(e);
    });
}

/** The pruning ladder of an entry, from its pipeline text (prune-channels<ratio=R>). */
export function withLadder(e: SpaceEntry): SpaceEntry {
  const m = /prune-channels<([^>]*)>/.exec(e.pipeline);
  if (!m) return e;
  const opts = m[1]!.split(';');
  const r = opts.find((s) => /^ratio=/.test(s));
  if (!r) return e;
  const key = e.pipeline.replace(m[0], `prune-channels<${opts.map((s) => (s === r ? 'ratio=*' : s)).join(';')}>`);
  return { ...e, ladder: { key, value: Number(r.slice(6)) } };
}

const SPACE_KEYS = ['trials'];
const ENTRY_KEYS = ['label', 'passes', 'after'];

/** Reads and validates a space file; unknown passes and options fail like a pipeline file's (exit 2). */
export function readSpaceFile(file: string): SpaceEntry[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw inputError('FILE_NOT_FOUND', `${file}: no such search space file`, { file });
  }
  let doc: unknown;
  try {
    doc = file.toLowerCase().endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw inputError('PIPELINE_FILE_SYNTAX', `${file}: cannot parse: ${(e as Error).message.split('\n')[0]}`, { file });
  }
  const bad = (field: string, msg: string): never => {
    throw inputError('PIPELINE_FILE_INVALID', `${file}: ${field}: ${msg}`, { file, field });
  };
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return bad('(top level)', 'must be a mapping with a trials list');
  for (const k of Object.keys(doc)) if (!SPACE_KEYS.includes(k)) bad(k, `unknown field.${suggest(k, SPACE_KEYS)} Valid fields: ${SPACE_KEYS.join(', ')}.`);
  const trials = (doc as { trials?: unknown }).trials;
  if (!Array.isArray(trials) || trials.length === 0) return bad('trials', 'must be a non-empty list of pipelines');
  const out: SpaceEntry[] = [];
  trials.forEach((item, i) => {
    const field = `trials[${i}]`;
    let passes: unknown = item;
    let label: string | undefined;
    let after: string | undefined;
    if (typeof item === 'object' && item !== null && !Array.isArray(item) && 'passes' in item) {
      for (const k of Object.keys(item)) if (!ENTRY_KEYS.includes(k)) bad(`${field}.${k}`, `unknown field.${suggest(k, ENTRY_KEYS)} Valid fields: ${ENTRY_KEYS.join(', ')}.`);
      const o = item as Record<string, unknown>;
      passes = o.passes;
      if (o.label !== undefined) label = typeof o.label === 'string' && o.label ? o.label : bad(`${field}.label`, 'must be a non-empty string');
      if (o.after !== undefined) after = typeof o.after === 'string' && o.after ? o.after : bad(`${field}.after`, 'must be the label of an earlier trial');
    }
    const pipeline = validatePasses(passes, file, `${field}${passes === item ? '' : '.passes'}`);
    const e: SpaceEntry = { label: label ?? pipeline, family: familyOf(pipeline), pipeline };
    if (after !== undefined) {
      if (!out.some((x) => x.label === after)) bad(`${field}.after`, `no earlier trial is labelled '${after}'.${suggest(after, out.map((x) => x.label))}`);
      e.after = after;
    }
    if (out.some((x) => x.label === e.label)) bad(`${field}`, `the label '${e.label}' is used twice`);
    if (/quantize-static/.test(pipeline)) e.needsCalibration = true;
    out.push(withLadder(e));
  });
  return out;
}

/** Validates one `passes` value with the pipeline file's validator; returns it as pipeline text. */
function validatePasses(passes: unknown, file: string, field: string): string {
  const synthetic = JSON.stringify({ model: 'model.onnx', output: 'out.onnx', passes, data: { calibration: 'random:1' } });
  try {
    return formatPipeline(parsePipelineFile(synthetic, `${file}.json`).steps);
  } catch (e) {
    if (!isOnnxForgeError(e)) throw e;
    // the validator names `passes...` in a file named like ours: point the message at the trial
    const msg = e.message.replace(`${file}.json: passes`, `${file}: ${field}`).replace(`${file}.json: `, `${file}: ${field}: `);
    throw inputError(e.code === 'PIPELINE_FILE_SYNTAX' ? 'PIPELINE_FILE_SYNTAX' : 'PIPELINE_FILE_INVALID', msg, { file, field });
  }
}

const FAMILIES: [RegExp, string][] = [
  [/prune-/, 'prune'],
  [/quantize-static/, 'static'],
  [/quantize-int4/, 'int4'],
  [/quantize-dynamic/, 'dynamic'],
  [/quantize-weights/, 'weights'],
  [/convert-float16/, 'fp16'],
];

function familyOf(pipeline: string): string {
  return FAMILIES.find(([re]) => re.test(pipeline))?.[1] ?? 'custom';
}
