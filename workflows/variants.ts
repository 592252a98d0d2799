/**
 * Every deployment variant in one run (`onnxforge variants model.onnx -o dir/`): the transformers.js
 * dtype set under its file names, each built by the existing workflow on its defaults, then measured
 * side by side against the float32 input and written together.
 *
 *   model.onnx            fp32: the `transformer` preset (optimize workflow)
 *   model_fp16.onnx       quantize --mode fp16
 *   model_quantized.onnx  q8: dynamic int8 (DynamicQuantizeMatMul form); weights as transformers.js'
 *                         q8 picks them: int8, or uint8 when the model already has MultiHeadAttention/
 *                         GroupQueryAttention (its QUINT8_OPS; Conv is in that list for onnxruntime-web's
 *                         missing int8 ConvInteger, which never arises here: Conv stays float)
 *   model_int8.onnx       dynamic int8 with int8 weights
 *   model_uint8.onnx      dynamic int8 with uint8 weights (zero point 128)
 *   model_q4.onnx         quantize --mode int4 (MatMulNBits)
 *   model_q4f16.onnx      quantize --mode q4f16
 *
 * fp16 is built from model.onnx (as transformers.js builds every dtype from one export); the int8
 * variants, q4 and q4f16 from the input model (the int8 ones fused after quantization, q4 and q4f16
 * through int4's own transformer step), so that their weights stay quantizable. Measured on the evaluation data, else the calibration data, else in-domain random inputs
 * (token ids within the vocabulary, masks of ones; symbolic dims get a default): fidelity against the
 * float32 INPUT (max abs error, cosine, SQNR; KL divergence and top-1 agreement on logits outputs;
 * non-finite values; the user's metrics with --eval), latency of every variant interleaved with fp32
 * in one timing run (runtime/timer.ts, p50), file size. A variant that fails to build, load or run is
 * a row with its error. Files are built in a staging folder inside the output folder and renamed into
 * place at the end; the staging folder is removed whatever happens.
 *
 * `target` (default node) is the backend the set is for, as `quantize --target`: fidelity and latency
 * are measured there (wasm: onnxruntime-web's WASM backend in this process, its own thread count, 1 by
 * default), so a variant that does not load or run there is a failed row; the int8 variants (q8, int8,
 * uint8) are checked against the target's integer kernels (runtime/backend-kernels.ts: a node with no
 * fast kernel fails the row, QUANT_SLOW_KERNEL), and the measured choices of q4 and q4f16's int4 step
 * (kernel, accuracy_level, first/last layers) are made on the target.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { checkError, OnnxForgeError, inputError } from '../core/errors.js';
import { toFloat64, type Feed, type HostTensor } from '../core/host-tensor.js';
import { openDataSource, type Sample } from '../data/index.js';
import { loadModel, loadModelSync } from '../onnx/index.js';
import { randomSamples } from '../passes/convert/convert-float16.js';
import type { Model } from '../ir/ir.js';
import { measureLatency } from '../runtime/latency.js';
import { argmaxRows, loadMetric, type OutputError, type UserMetric } from '../runtime/metrics.js';
import { backendInfo, openSession, type Backend, type BackendInfo, type BackendSession } from '../runtime/backend.js';
import { slowIntegerKernels } from '../runtime/backend-kernels.js';
import type { SessionOptions } from '../runtime/session.js';
import { evaluate } from './evaluate.js';
import { optimizeWorkflow } from './optimize.js';
import { quantizeDynamicWorkflow } from './quantize/dynamic.js';
import { quantizeFp16Workflow } from './quantize/fp16.js';
import { quantizeInt4Workflow } from './quantize/int4.js';
import { quantizeQ4f16Workflow } from './quantize/q4f16.js';

export const VARIANT_NAMES = ['fp32', 'fp16', 'q8', 'int8', 'uint8', 'q4', 'q4f16'] as const;
export type VariantName = (typeof VARIANT_NAMES)[number];

/** transformers.js file names (its `dtype` -> `model_<suffix>.onnx`, q8 -> `quantized`). */
export const VARIANT_FILES: Record<VariantName, string> = {
  fp32: 'model.onnx',
  fp16: 'model_fp16.onnx',
  q8: 'model_quantized.onnx',
  int8: 'model_int8.onnx',
  uint8: 'model_uint8.onnx',
  q4: 'model_q4.onnx',
  q4f16: 'model_q4f16.onnx',
};

/** Which variant to ship: the smallest one that loads, runs, gives finite outputs and stays within all of these. */
export interface VariantBudget {
  /** Lowest cosine similarity to fp32 on every output (default 0.999). */
  minCosine: number;
  /** Lowest top-1 agreement with fp32 on logits outputs (default 0.99). */
  minTop1: number;
  /** Largest relative change of each --eval metric field vs fp32 (default 0.01). */
  maxMetricChange: number;
  /** Largest p50 latency ratio to fp32 (default: none). */
  maxLatencyRatio?: number;
  /** Largest size ratio to fp32 (default: none). */
  maxSizeRatio?: number;
}

export const DEFAULT_BUDGET: VariantBudget = { minCosine: 0.999, minTop1: 0.99, maxMetricChange: 0.01 };

export interface LatencySetting {
  /** Row label, e.g. 'seq 128'. */
  label: string;
  /** Dims for the random latency inputs: input name or dim name -> dims. */
  shapes: Record<string, number[]>;
}

export interface VariantsWorkflowOptions {
  /** The float32 .onnx file (never modified). */
  model: string;
  /** Output folder (created; an existing file there is an error). */
  outDir: string;
  /** Calibration data (a data spec) for fp16 ranges and int4 (GPTQ); absent: their defaults on random inputs. */
  calibration?: string;
  /** Evaluation data (a data spec) fidelity and latency are measured on. */
  eval?: string;
  /** Task metric modules (`path[#export]`) evaluated on `eval`. */
  metrics?: string[];
  /** Measure on at most this many samples (default 16 of given data; 4 random). */
  limit?: number;
  /** Symbolic dims for generated inputs: input name or dim name -> dims. */
  shapes?: Record<string, number[]>;
  /** Variants to build (default all). */
  variants?: VariantName[];
  /** Overrides of the default budget. */
  budget?: Partial<VariantBudget>;
  /** Output names treated as logits (default: outputs whose name contains 'logits'). */
  logits?: string[];
  /** Intra-op threads (default 1; target node). */
  threads?: number;
  /** The backend the variants are for (default 'node'): measured there, int8 kernels checked for it. */
  target?: Backend;
  /** Timed rounds per latency setting, interleaved (default 20). */
  latencyRuns?: number;
  /** Extra latency settings on random inputs of these dims (e.g. seq 1 and 128), besides the measurement data. */
  latencyAt?: LatencySetting[];
  progress?: (e: VariantsProgress) => void;
}

export interface VariantsProgress {
  phase: 'build' | 'measure' | 'latency';
  variant?: VariantName;
  done: number;
  total: number;
}

export interface VariantRow {
  variant: VariantName;
  file: string;
  /** What built it. */
  recipe: string;
  /** Built, loaded by the target backend and run on every measured sample. */
  ok: boolean;
  /** Why not (build, load or run error), when not ok. */
  error?: { code?: string; message: string; stage: 'build' | 'load' | 'run' };
  bytes?: number;
  /** Size / fp32 variant size. */
  sizeRatio?: number;
  /** Build wall time (the workflow, its own checks included), ms. */
  buildMs?: number;
  /** Fidelity vs the float32 input. */
  outputs?: OutputError[];
  /** Lowest cosine over the outputs. */
  minCosine?: number;
  /** Per logits output: mean KL(fp32 || variant) in nats per row, and top-1 agreement. */
  logits?: { output: string; kl: number; top1: number }[];
  nonFinite?: number;
  /** User metrics (with --eval --metric). */
  metrics?: Record<string, Record<string, number>>;
  /** p50 ms per latency setting label, and its ratio to fp32. */
  latencyMs?: Record<string, number>;
  latencyRatio?: Record<string, number>;
  /** The workflow's own report (full detail). */
  details?: unknown;
  /** Budget verdict: the reasons it is out, empty when within. */
  outOfBudget?: string[];
}

export interface VariantsReport {
  schema: 'onnxforge.variants/1';
  input: string;
  outDir: string;
  inputBytes: number;
  measuredOn: string;
  samples: number;
  threads: number;
  /** The backend measured on: its runtime, threads and (WASM) SIMD. */
  backend: BackendInfo;
  latencyRuns: number;
  latencySettings: string[];
  /** The float32 input as run: p50 ms per setting, and its metrics. */
  reference: { latencyMs: Record<string, number>; metrics?: Record<string, Record<string, number>> };
  budget: VariantBudget;
  budgetText: string;
  rows: VariantRow[];
  /** The variant to ship under the budget, and why; absent when none qualifies. */
  ship?: { variant: VariantName; file: string; why: string };
  shipNote: string;
  notes: string[];
  wallMs: number;
}

/** How each variant is built from model.onnx (`src`) into `out`. */
type Builder = (src: string, out: string, o: VariantsWorkflowOptions, model: Model) => Promise<{ recipe: string; details: unknown }>;

const RECIPES: Record<VariantName, string> = {
  fp32: 'optimize --preset transformer',
  fp16: 'quantize --mode fp16',
  q8: 'quantize --mode dynamic (weights as transformers.js q8 picks), then optimize --preset transformer',
  int8: 'quantize --mode dynamic, then optimize --preset transformer',
  uint8: 'quantize --mode dynamic (uint8 weights), then optimize --preset transformer',
  q4: 'quantize --mode int4',
  q4f16: 'quantize --mode q4f16',
};

/** transformers.js' QUINT8_OPS minus Conv (see the module comment). */
const UINT8_OPS = new Set(['MultiHeadAttention', 'GroupQueryAttention']);

const common = (src: string, out: string, o: VariantsWorkflowOptions) => ({ model: src, output: out, threads: o.threads ?? 1, latencyRuns: 3, ...(o.shapes ? { shapes: o.shapes } : {}) });
const withCalibration = (o: VariantsWorkflowOptions) => (o.calibration ? { calibration: o.calibration } : {});

/**
 * Quantizes the INPUT model with `quantize`, then runs the transformer preset on the result: the fusions
 * still match around the quantized projections (attention becomes MultiHeadAttention reading them),
 * while quantizing model.onnx would leave the packed QKV weight of a fused com.microsoft Attention in
 * float (measured on bert-ts17: dynamic int8 0.41x of fp32 that way, 0.26x this way).
 */
async function quantizeThenFuse(o: VariantsWorkflowOptions, out: string, quantize: (src: string, tmp: string) => Promise<unknown>): Promise<unknown> {
  const tmp = out.replace(/\.onnx$/, '.unfused.onnx');
  const details = await quantize(o.model, tmp);
  try {
    const fused = await optimizeWorkflow({ model: tmp, output: out, preset: 'transformer' });
    return { quantize: details, fused: { pipeline: fused.pipeline, sizeBefore: fused.sizeBefore, sizeAfter: fused.sizeAfter } };
  } finally {
    rmSync(tmp, { force: true });
  }
}

const dynamic = (weightType: 'int8' | 'uint8'): Builder => async (_src, out, o) => {
  const details = await quantizeThenFuse(o, out, (src, tmp) => quantizeDynamicWorkflow({ ...common(src, tmp, o), pass: { weightType } }));
  checkKernels(out, o.target ?? 'node');
  return { recipe: `quantize --mode dynamic${weightType === 'uint8' ? ' (uint8 weights)' : ''}, then optimize --preset transformer`, details };
};

/** As `quantize --target`: an int8 variant with an integer node the target has no fast kernel for is not written. */
function checkKernels(file: string, target: Backend): void {
  if (target === 'node') return;
  const slow = slowIntegerKernels(loadModelSync(file), target);
  if (slow.length) {
    rmSync(file, { force: true });
    throw checkError('QUANT_SLOW_KERNEL', `--target ${target}: ${slow.length} node(s) would run without a fast kernel: ${slow.slice(0, 3).map((k) => `${k.node} (${k.op}: ${k.reason})`).join('; ')}`, { file });
  }
}

const BUILDERS: Record<Exclude<VariantName, 'fp32'>, Builder> = {
  fp16: async (src, out, o) => ({ recipe: RECIPES.fp16, details: await quantizeFp16Workflow({ ...common(src, out, o), ...withCalibration(o) }) }),
  // transformers.js q8: int8 weights unless the exported model has one of its QUINT8_OPS
  q8: (src, out, o, model) => dynamic(model.graph.nodes.some((n) => UINT8_OPS.has(n.opType)) ? 'uint8' : 'int8')(src, out, o, model),
  int8: dynamic('int8'),
  uint8: dynamic('uint8'),
  // int4 from the INPUT model, through its own transformer step: q4 (kernel auto) keeps the fused Attention below hidden 768 and
  // quantizes its packed Q/K/V weight (unpacked at load, the fp32 model's attention), from 768 on it leaves Q/K/V MatMulNBits; q4f16 (kernel nbits) fuses
  // attention unpacked (MultiHeadAttention) so that Q/K/V run as MatMulNBits, which a model.onnx with Attention already fused would prevent
  q4: async (_src, out, o) => ({ recipe: RECIPES.q4, details: await quantizeInt4Workflow({ ...common(o.model, out, o), ...withCalibration(o), ...(o.target ? { target: o.target } : {}) }) }),
  q4f16: async (_src, out, o) => ({ recipe: RECIPES.q4f16, details: await quantizeQ4f16Workflow({ ...common(o.model, out, o), ...withCalibration(o), ...(o.target ? { target: o.target } : {}) }) }),
};

function errorOf(e: unknown, stage: 'build' | 'load' | 'run'): NonNullable<VariantRow['error']> {
  const code = e instanceof OnnxForgeError ? e.code : undefined;
  return { ...(code ? { code } : {}), message: ((e as Error)?.message ?? String(e)).split('\n')[0]!.slice(0, 400), stage };
}

/** Checks the paths before anything is built; returns the resolved output folder. */
function checkPaths(o: VariantsWorkflowOptions, names: readonly VariantName[]): string {
  if (!existsSync(o.model)) throw inputError('FILE_NOT_FOUND', `${o.model}: no such model file`, { file: o.model });
  if (!statSync(o.model).isFile()) throw inputError('FILE_NOT_REGULAR', `${o.model} is not a file`, { file: o.model });
  const dir = resolve(o.outDir);
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw inputError('OUTPUT_BAD_LOCATION', `-o ${o.outDir} is a file; variants writes a folder of models`, { file: o.outDir });
  for (const n of names) if (resolve(dir, VARIANT_FILES[n]) === resolve(o.model)) throw inputError('OUTPUT_IS_INPUT', `${VARIANT_FILES[n]} in ${o.outDir} would overwrite the input model; choose another folder`, { file: o.model });
  for (const n of o.variants ?? []) if (!VARIANT_NAMES.includes(n)) throw inputError('USAGE_BAD_VALUE', `unknown variant '${n}'; expected ${VARIANT_NAMES.join(', ')}`, { field: 'variants' });
  const threads = o.threads ?? 1;
  if (!Number.isInteger(threads) || threads < 0) throw inputError('USAGE_BAD_VALUE', `--threads must be a non-negative integer, got ${threads}`);
  if (o.metrics?.length && !o.eval) throw inputError('USAGE_MISSING', '--metric needs --eval SPEC (labelled evaluation data)');
  return dir;
}

/** Softmax KL(ref || cand) over the last axis, mean per row; top-1 agreement of the rows. */
export function logitsAgreement(cand: HostTensor, ref: HostTensor): { kl: number; top1: number; rows: number } {
  const a = toFloat64(cand);
  const r = toFloat64(ref);
  const k = ref.dims.at(-1) ?? 1;
  const rows = k ? r.length / k : 0;
  const logSoftmax = (x: Float64Array, o: number, out: Float64Array) => {
    let m = -Infinity;
    for (let j = 0; j < k; j++) m = Math.max(m, x[o + j]!);
    let s = 0;
    for (let j = 0; j < k; j++) s += Math.exp(x[o + j]! - m);
    const l = m + Math.log(s);
    for (let j = 0; j < k; j++) out[j] = x[o + j]! - l;
  };
  const lp = new Float64Array(k);
  const lq = new Float64Array(k);
  let kl = 0;
  for (let i = 0; i < rows; i++) {
    logSoftmax(r, i * k, lp);
    logSoftmax(a, i * k, lq);
    for (let j = 0; j < k; j++) kl += Math.exp(lp[j]!) * (lp[j]! - lq[j]!);
  }
  const pa = argmaxRows(cand);
  const pr = argmaxRows(ref);
  let agree = 0;
  for (let i = 0; i < pr.length; i++) if (pa[i] === pr[i]) agree++;
  return { kl: rows ? kl / rows : 0, top1: pr.length ? agree / pr.length : NaN, rows };
}

/** One metric per variant: KL and top-1 on the logits outputs, and non-finite output values. */
function fidelityMetric(logits: readonly string[]): UserMetric {
  const fn = (outputs: Feed, _label: unknown, ctx: { reference?: Feed }) => {
    const rec: Record<string, number> = { nonFinite: 0 };
    for (const t of Object.values(outputs)) {
      if (t.type !== 'float32' && t.type !== 'float16' && t.type !== 'float64') continue;
      for (const x of toFloat64(t)) if (!Number.isFinite(x)) rec.nonFinite!++;
    }
    for (const name of logits) {
      const c = outputs[name];
      const r = ctx.reference?.[name];
      if (!c || !r) continue;
      const g = logitsAgreement(c, r);
      rec[`kl:${name}`] = g.kl;
      rec[`top1:${name}`] = g.top1;
    }
    return rec;
  };
  return Object.assign(fn, {
    needsReference: true,
    // nonFinite is a count over every sample; KL and top-1 are means of the per-sample means
    reduce: (records: Record<string, number>[]) => {
      const out: Record<string, number> = {};
      for (const key of new Set(records.flatMap((x) => Object.keys(x)))) {
        const vals = records.map((x) => x[key]).filter((v): v is number => v !== undefined);
        out[key] = key === 'nonFinite' ? vals.reduce((s, v) => s + v, 0) : vals.reduce((s, v) => s + v, 0) / Math.max(vals.length, 1);
      }
      return out;
    },
  });
}

/** The bytes of a written model and any external data file that starts with its stem. */
function writtenBytes(dir: string, file: string): number {
  const stem = file.replace(/\.onnx$/, '');
  return readdirSync(dir).filter((f) => f === file || (f.startsWith(stem) && !f.endsWith('.onnx'))).reduce((s, f) => s + statSync(join(dir, f)).size, 0);
}

/** Reasons a row is outside the budget (empty: within). */
function budgetReasons(row: VariantRow, b: VariantBudget, refMetrics: Record<string, Record<string, number>> | undefined): string[] {
  if (!row.ok) return ['did not build, load or run'];
  const out: string[] = [];
  if ((row.nonFinite ?? 0) > 0) out.push(`${row.nonFinite} non-finite output values`);
  if (row.minCosine !== undefined && !(row.minCosine >= b.minCosine)) out.push(`cosine ${row.minCosine.toFixed(5)} < ${b.minCosine}`);
  for (const l of row.logits ?? []) if (!(l.top1 >= b.minTop1)) out.push(`top-1 agreement on ${l.output} ${l.top1.toFixed(4)} < ${b.minTop1}`);
  for (const [m, fields] of Object.entries(row.metrics ?? {})) {
    for (const [k, v] of Object.entries(fields)) {
      const ref = refMetrics?.[m]?.[k];
      if (ref === undefined || !Number.isFinite(ref)) continue;
      const change = Math.abs(v - ref) / Math.max(Math.abs(ref), 1e-12);
      if (!(change <= b.maxMetricChange)) out.push(`${m}.${k} ${v.toPrecision(4)} vs fp32 ${ref.toPrecision(4)} (${(100 * change).toFixed(2)}% > ${(100 * b.maxMetricChange).toFixed(2)}%)`);
    }
  }
  if (b.maxLatencyRatio !== undefined) for (const [k, r] of Object.entries(row.latencyRatio ?? {})) if (!(r <= b.maxLatencyRatio)) out.push(`latency ${k} ${r.toFixed(3)}x > ${b.maxLatencyRatio}x`);
  if (b.maxSizeRatio !== undefined && !((row.sizeRatio ?? Infinity) <= b.maxSizeRatio)) out.push(`size ${row.sizeRatio?.toFixed(3)}x > ${b.maxSizeRatio}x`);
  return out;
}

export function describeBudget(b: VariantBudget): string {
  const parts = [`cosine >= ${b.minCosine} on every output`, `top-1 agreement >= ${b.minTop1} on logits`, `--eval metrics within ${(100 * b.maxMetricChange).toFixed(1)}% of fp32`, 'no NaN/Inf'];
  if (b.maxLatencyRatio !== undefined) parts.push(`latency <= ${b.maxLatencyRatio}x fp32`);
  if (b.maxSizeRatio !== undefined) parts.push(`size <= ${b.maxSizeRatio}x fp32`);
  return parts.join(', ');
}

/** Samples fidelity is measured on, and where they came from. */
function measurementSamples(o: VariantsWorkflowOptions, inputs: BackendSession['inputs'], model: Model): { spec: string; open: () => AsyncIterable<Sample> } {
  const shapes = o.shapes ?? {};
  const spec = o.eval ?? o.calibration;
  if (spec) return { spec: `${o.eval ? '--eval' : '--calibration'} ${spec}`, open: () => openDataSource(spec, inputs, { shapes, limit: o.limit ?? 16 }) };
  const n = o.limit ?? 4;
  // a fresh generator per pass: every variant sees the same samples
  return { spec: `random:${n} (in-domain: token ids within the vocabulary, masks of ones)`, open: () => randomSamples(model, n, shapes)() };
}

/** Median over rounds of a[i] / b[i] (samples in round order, one per round). */
export function pairedRatio(a: readonly number[], b: readonly number[]): number {
  const r = a.slice(0, b.length).map((x, i) => x / b[i]!).sort((x, y) => x - y);
  if (!r.length) return NaN;
  const m = r.length >> 1;
  return r.length % 2 ? r[m]! : (r[m - 1]! + r[m]!) / 2;
}

async function firstFeeds(samples: AsyncIterable<Sample>, n: number): Promise<Feed[]> {
  const out: Feed[] = [];
  for await (const s of samples) if (out.length < n) out.push(s.feed);
  return out;
}

export async function variantsWorkflow(o: VariantsWorkflowOptions): Promise<VariantsReport> {
  const t0 = performance.now();
  const names = o.variants?.length ? VARIANT_NAMES.filter((n) => o.variants!.includes(n)) : [...VARIANT_NAMES];
  const dir = checkPaths(o, names);
  const budget: VariantBudget = { ...DEFAULT_BUDGET, ...o.budget };
  const threads = o.threads ?? 1;
  const latencyRuns = o.latencyRuns ?? 20;
  // a default export is named after its file (the table's column reads 'accuracy.top1', not 'default.top1')
  const metrics = await Promise.all((o.metrics ?? []).map(async (spec) => {
    const m = await loadMetric(spec);
    return m.name === 'default' ? { ...m, name: basename(spec.replace(/#.*$/, '')).replace(/\.[^.]+$/, '') } : m;
  }));
  const input = await loadModel(o.model);
  const target = o.target ?? 'node';
  // WASM sessions run on the backend's own thread count (1 by default), not --threads
  const so: SessionOptions = target === 'wasm' ? { allowSpinning: false } : { intraOpNumThreads: threads, allowSpinning: false };
  const reference = await openSession(target, o.model, so, o.model);
  const logits = o.logits ?? reference.outputs.map((x) => x.name).filter((n) => /logits/i.test(n));
  mkdirSync(dir, { recursive: true });
  const staging = mkdtempSync(join(dir, '.variants-staging-'));
  const sessions: (BackendSession | undefined)[] = [];
  const notes: string[] = [];
  try {
    // 1. build: fp32 first (the others start from it)
    const rows: VariantRow[] = [];
    let src = o.model;
    for (const [i, v] of names.entries()) {
      o.progress?.({ phase: 'build', variant: v, done: i, total: names.length });
      const file = VARIANT_FILES[v];
      const out = join(staging, file);
      const b0 = performance.now();
      try {
        if (v === 'fp32') {
          const r = await optimizeWorkflow({ model: o.model, output: out, preset: 'transformer' });
          rows.push({ variant: v, file, recipe: RECIPES.fp32, ok: true, details: { pipeline: r.pipeline, sizeBefore: r.sizeBefore, sizeAfter: r.sizeAfter } });
          src = out;
        } else {
          const r = await BUILDERS[v](src, out, o, input);
          rows.push({ variant: v, file, recipe: r.recipe, ok: true, details: r.details });
        }
      } catch (e) {
        rows.push({ variant: v, file, recipe: RECIPES[v], ok: false, error: errorOf(e, 'build') });
        if (v === 'fp32') notes.push('model.onnx (the transformer preset) failed; the other variants are built from the input model');
      }
      rows.at(-1)!.buildMs = performance.now() - b0;
      if (rows.at(-1)!.ok) rows.at(-1)!.bytes = writtenBytes(staging, file);
    }
    const inputBytes = statSync(o.model).size;
    const fp32Bytes = rows.find((r) => r.variant === 'fp32' && r.ok)?.bytes ?? inputBytes;
    for (const r of rows) if (r.bytes !== undefined) r.sizeRatio = r.bytes / fp32Bytes;
    if (!rows.some((r) => r.variant === 'fp32' && r.ok)) notes.push('size ratios are to the input file (no model.onnx)');

    // 2. fidelity against the float32 input, per variant
    const data = measurementSamples(o, reference.inputs, input);
    const fid = { name: 'fidelity', fn: fidelityMetric(logits) };
    let samples = 0;
    let refMetrics: Record<string, Record<string, number>> | undefined;
    const live: { row: VariantRow; session: BackendSession }[] = [];
    for (const [i, row] of rows.entries()) {
      if (!row.ok) continue;
      o.progress?.({ phase: 'measure', variant: row.variant, done: i, total: rows.length });
      let s: BackendSession;
      try {
        s = await openSession(target, join(staging, row.file), so, row.file);
        sessions.push(s);
      } catch (e) {
        Object.assign(row, { ok: false, error: errorOf(e, 'load') });
        continue;
      }
      try {
        const ev = await evaluate(s, reference, data.open(), { metrics: [fid, ...metrics] });
        samples = ev.samples;
        row.outputs = ev.outputs ?? [];
        row.minCosine = Math.min(...row.outputs.map((x) => x.cosine));
        const f = ev.metrics.fidelity ?? {};
        row.nonFinite = f.nonFinite ?? 0;
        row.logits = logits.filter((n) => f[`kl:${n}`] !== undefined).map((n) => ({ output: n, kl: f[`kl:${n}`]!, top1: f[`top1:${n}`]! }));
        if (metrics.length) {
          row.metrics = Object.fromEntries(metrics.map((m) => [m.name, ev.metrics[m.name] ?? {}]));
          refMetrics ??= Object.fromEntries(metrics.map((m) => [m.name, ev.referenceMetrics?.[m.name] ?? {}]));
        }
        live.push({ row, session: s });
      } catch (e) {
        Object.assign(row, { ok: false, error: errorOf(e, 'run') });
      }
    }

    // 3. latency: every variant that runs, interleaved with the float32 input and model.onnx, per setting
    const settings: { label: string; feeds: () => Promise<Feed[]> }[] = [{ label: 'data', feeds: () => firstFeeds(data.open(), 4) }];
    for (const l of o.latencyAt ?? []) settings.push({ label: l.label, feeds: () => firstFeeds(randomSamples(input, 2, { ...o.shapes, ...l.shapes })(), 2) });
    // ratios are paired: the median over rounds of variant / fp32 in the same round (a load burst
    // hits both sides of a pair alike); latencyMs is each session's own p50
    const refLatency: Record<string, number> = {};
    const fp32Index = live.findIndex((x) => x.row.variant === 'fp32');
    if (fp32Index < 0) notes.push('latency ratios are to the input model (no model.onnx)');
    for (const [i, st] of settings.entries()) {
      o.progress?.({ phase: 'latency', done: i, total: settings.length });
      const feeds = await st.feeds();
      const timed = [reference, ...live.map((x) => x.session)];
      try {
        // several runs per round for sub-millisecond models (the trained LM at sequence 1: ~0.13 ms): with
        // one, its q4 / fp32 ratio moved between 0.92x and 1.06x from run to run, though its q4 file
        // runs the same float32 MatMuls once onnxruntime has unpacked the weights at load
        const lat = await measureLatency(timed, feeds, { runs: latencyRuns, warmup: 3, inner: 'auto' });
        refLatency[st.label] = lat.sessions[0]!.stats.p50;
        const base = lat.sessions[fp32Index + 1]!.samples;
        live.forEach((x, j) => {
          const own = lat.sessions[j + 1]!;
          (x.row.latencyMs ??= {})[st.label] = own.stats.p50;
          (x.row.latencyRatio ??= {})[st.label] = pairedRatio(own.samples, base);
        });
      } catch (e) {
        notes.push(`latency '${st.label}' not measured: ${errorOf(e, 'run').message}`);
      }
    }

    // 4. the budget and the variant to ship: the smallest within it, the faster on a tie
    for (const r of rows) r.outOfBudget = budgetReasons(r, budget, refMetrics);
    const within = rows.filter((r) => r.outOfBudget!.length === 0).sort((a, b) => a.bytes! - b.bytes! || (a.latencyMs?.data ?? Infinity) - (b.latencyMs?.data ?? Infinity));
    const pick = within[0];
    const lat = (r: VariantRow) => Object.entries(r.latencyRatio ?? {}).map(([k, x]) => `${x.toFixed(2)}x latency (${k})`).join(', ');
    const ship = pick ? { variant: pick.variant, file: pick.file, why: `smallest within the budget: ${(pick.sizeRatio ?? 1).toFixed(3)}x size, ${lat(pick)}, min cosine ${pick.minCosine?.toFixed(5)}` } : undefined;

    // 5. write: rename every staged file into the folder
    for (const f of readdirSync(staging)) renameSync(join(staging, f), join(dir, f));
    return {
      schema: 'onnxforge.variants/1',
      input: o.model,
      outDir: o.outDir,
      inputBytes,
      measuredOn: data.spec,
      samples,
      threads,
      backend: backendInfo(target, threads),
      latencyRuns,
      latencySettings: settings.map((s) => s.label),
      reference: { latencyMs: refLatency, ...(refMetrics ? { metrics: refMetrics } : {}) },
      budget,
      budgetText: describeBudget(budget),
      rows,
      ...(ship ? { ship } : {}),
      shipNote: ship ? `ship ${ship.file} (${ship.variant}): ${ship.why}` : `no variant meets the budget (${describeBudget(budget)}); ship model.onnx or loosen the budget`,
      notes,
      wallMs: performance.now() - t0,
    };
  } finally {
    for (const s of [reference, ...sessions]) await s?.dispose();
    rmSync(staging, { recursive: true, force: true });
  }
}
