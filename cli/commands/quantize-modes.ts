/**
 * Handlers of `onnxforge quantize --mode weights|dynamic` (the static mode lives in quantize.ts):
 * quantize in memory, check the model, load it in onnxruntime (weight-compressed models both raw and
 * through the expanding helper), compare outputs and latency against FP32 on the eval data (default:
 * generated inputs), and write the model last, only when all of that succeeded.
 */
import { writeFileAtomic } from '../../core/files.js';
import { measurementData } from '../../data/measure.js';
import { subgraphNote } from '../../passes/quantize/subgraphs.js';
import { parseShapeArg } from '../../data/generate.js';
import { checkModel } from '../../ir/checker.js';
import { checkError, inputError } from '../../core/errors.js';
import { loadModel, saveModel, serializeModel } from '../../onnx/index.js';
import dynamicPass, { QuantizeDynamicReport } from '../../passes/quantize/quantize-dynamic.js';
import weightsPass, { QuantizeWeightsReport } from '../../passes/quantize/quantize-weights.js';
import { resolveOptions } from '../../passes/pipeline.js';
import { passOptionsFrom } from '../schema-options.js';
import { formatBytes, renderTable } from '../../report/table.js';
import { createSession as createExpandedSession } from '../../passes/quantize/compressed.js';
import { evaluate } from '../../workflows/evaluate.js';
import { measureLatency } from '../../runtime/latency.js';
import { loadMetric, OutputError } from '../../runtime/metrics.js';
import { Session } from '../../runtime/session.js';
import { saveOptionsFrom, WriteArgs } from '../options.js';
import { quantizeDynamic, quantizeWeights } from '../../passes/api.js';

export interface QuantizeModeArgs extends WriteArgs {
  model: string;
  output: string;
  mode: string;
  shape?: string[];
  eval?: string;
  evalPreprocess?: string;
  preprocess?: string;
  metric?: string[];
  limit?: number;
  report?: string;
  threads: number;
  latencyRuns: number;
  json: boolean;
  excludeNodes?: string[];
  reduceRange?: boolean;
  perChannel?: boolean;
  minElements?: number;
}

export interface QuantizeModeReport {
  schema: 'onnxforge.quantize-mode/1';
  mode: 'weights' | 'dynamic';
  input: string;
  output: string;
  size: { fp32Bytes: number; int8Bytes: number; ratio: number };
  /** Latency vs FP32; for weights, `int8Ms` is the helper-loaded model and `rawMs` the model as written. Absent when no data fixes the input shapes (see notes). */
  latency?: { fp32Ms: number; int8Ms: number; ratio: number; rawMs?: number; rawRatio?: number; runs: number; threads: number };
  outputs: OutputError[];
  evalSamples: number;
  /** The data latency and output error ran on ('random:4', '--eval data/dev'). */
  measuredOn?: string;
  /** What was left out of the report and why (e.g. no data fixes a symbolic input dimension). */
  notes: string[];
  accuracy?: { metric: string; fp32: Record<string, number>; int8: Record<string, number> }[];
  weights?: Omit<QuantizeWeightsReport, 'prepare'>;
  dynamic?: Omit<QuantizeDynamicReport, 'prepare'>;
  wallMs: number;
}

/** Comma-separated or repeated list options ('a,b' --x c) -> ['a', 'b', 'c']. */
export const list = (v: unknown): string[] | undefined =>
  v === undefined ? undefined : (Array.isArray(v) ? v : [v]).flatMap((x) => String(x).split(',')).map((s) => s.trim()).filter(Boolean);

/** The checks, data options and FP32 model every quantize mode starts from (the model serialized once). */
export async function quantizeSetup(a: { model: string; threads: number; latencyRuns: number; metric?: string[]; eval?: string; shape?: string[] } & WriteArgs) {
  if (!Number.isInteger(a.threads) || a.threads < 0) throw inputError('USAGE_BAD_VALUE', `--threads must be a non-negative integer, got ${a.threads}`);
  if (!Number.isInteger(a.latencyRuns) || a.latencyRuns < 1) throw inputError('USAGE_BAD_VALUE', `--latency-runs must be a positive integer, got ${a.latencyRuns}`);
  if (a.metric && !a.eval) throw inputError('USAGE_MISSING', '--metric needs --eval SPEC (labelled evaluation data)');
  const save = saveOptionsFrom(a);
  const shapes = Object.fromEntries((a.shape ?? []).map(parseShapeArg));
  const metrics = await Promise.all((a.metric ?? []).map((m) => loadMetric(m)));
  const model = await loadModel(a.model);
  const fp32Model = serializeModel(model);
  return { save, shapes, metrics, model, fp32Model, fp32Bytes: fp32Model.byteLength };
}

export async function runQuantizeMode(a: QuantizeModeArgs): Promise<QuantizeModeReport> {
  const t0 = performance.now();
  if (a.mode !== 'weights' && a.mode !== 'dynamic') throw inputError('USAGE_BAD_VALUE', `--mode ${a.mode}: expected static, weights or dynamic`);
  const { save, shapes, metrics, model, fp32Model, fp32Bytes } = await quantizeSetup(a);
  const so = { intraOpNumThreads: a.threads, allowSpinning: false };
  const fp32 = await Session.create(fp32Model, so, a.model);

  let weights: QuantizeWeightsReport | undefined;
  let dynamic: QuantizeDynamicReport | undefined;
  if (a.mode === 'weights') {
    weights = await quantizeWeights(model, resolveOptions(weightsPass, passOptionsFrom(weightsPass, a, { perChannel: 'perChannel', minElements: 'minElements' })));
  } else {
    const flags = { ...a, excludeNodes: list(a.excludeNodes) };
    dynamic = await quantizeDynamic(model, resolveOptions(dynamicPass, passOptionsFrom(dynamicPass, flags, { reduceRange: 'reduceRange', excludeNodes: 'excludeNodes', minElements: 'minElements' })));
  }
  const issues = checkModel(model);
  if (issues.length) throw checkError('QUANT_INVALID_MODEL', `the quantized model fails the checker (nothing written): ${issues.slice(0, 3).map((i) => `${i.code} ${i.message}`).join('; ')}`, { file: a.output });
  const bytes = serializeModel(model);
  const load = (p: Promise<Session>) =>
    p.catch((e: Error) => {
      throw checkError('QUANT_LOAD_FAILED', `onnxruntime cannot load the quantized model (nothing written): ${e.message}`, { file: a.output });
    });
  const int8 = await load(a.mode === 'weights' ? createExpandedSession(bytes, so, `${a.output} (expanded)`) : Session.create(bytes, so, a.output));
  const raw = a.mode === 'weights' ? await load(Session.create(bytes, so, a.output)) : undefined;
  try {
    const prep = a.evalPreprocess ?? a.preprocess;
    const given = a.eval ? { spec: a.eval, flag: '--eval', options: { ...(prep ? { preprocess: prep } : {}), ...(a.limit !== undefined ? { limit: a.limit } : {}) } } : undefined;
    const data = measurementData(fp32.inputs, [given], shapes, 'latency and output error');
    const report: QuantizeModeReport = {
      schema: 'onnxforge.quantize-mode/1',
      mode: a.mode,
      input: a.model,
      output: a.output,
      size: { fp32Bytes, int8Bytes: bytes.byteLength, ratio: bytes.byteLength / fp32Bytes },
      outputs: [],
      evalSamples: 0,
      notes: [],
      wallMs: 0,
    };
    let ev: Awaited<ReturnType<typeof evaluate>> | undefined;
    if (data.ok) {
      ev = await evaluate(raw ?? int8, fp32, data.open(), { metrics });
      const feeds = await data.feeds(4);
      const sessions = raw ? [fp32, int8, raw] : [fp32, int8];
      const lat = await measureLatency(sessions, feeds, { runs: a.latencyRuns, warmup: 3 });
      const [f, q, r] = lat.sessions.map((s) => s.stats.p50) as [number, number, number | undefined];
      report.latency = { fp32Ms: f, int8Ms: q, ratio: q / f, ...(r !== undefined ? { rawMs: r, rawRatio: r / f } : {}), runs: a.latencyRuns, threads: a.threads };
      report.outputs = ev.outputs ?? [];
      report.evalSamples = ev.samples;
      report.measuredOn = data.from === 'random inputs' ? data.spec : `${data.from} ${data.spec}`;
    } else {
      report.notes.push(data.skipped);
    }
    const sub = subgraphNote(model);
    if (sub) report.notes.push(sub);
    if (ev && metrics.length) report.accuracy = metrics.map((m) => ({ metric: m.name, fp32: ev.referenceMetrics?.[m.name] ?? {}, int8: ev.metrics[m.name] ?? {} }));
    if (weights) {
      const { prepare: _p, ...rest } = weights;
      report.weights = rest;
    }
    if (dynamic) {
      const { prepare: _p, ...rest } = dynamic;
      report.dynamic = rest;
    }
    await saveModel(model, a.output, save);
    report.wallMs = performance.now() - t0;
    if (a.report) writeFileAtomic(a.report, `${JSON.stringify(report, null, 2)}\n`);
    return report;
  } finally {
    for (const s of [fp32, int8, raw]) await s?.dispose();
  }
}

const fmt = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : String(x));

export function renderQuantizeModeReport(r: QuantizeModeReport): string {
  const parts: string[] = [];
  const rows = [['size', formatBytes(r.size.fp32Bytes), formatBytes(r.size.int8Bytes), fmt(r.size.ratio)]];
  const l = r.latency;
  if (l) {
    rows.push([`latency p50 (${l.threads} thread)${r.mode === 'weights' ? ', via createSession' : ''}`, `${fmt(l.fp32Ms, 2)} ms`, `${fmt(l.int8Ms, 2)} ms`, fmt(l.ratio)]);
    if (l.rawMs !== undefined) rows.push(['latency p50, raw model in onnxruntime', `${fmt(l.fp32Ms, 2)} ms`, `${fmt(l.rawMs, 2)} ms`, fmt(l.rawRatio!)]);
  }
  parts.push(renderTable(['', 'FP32', 'INT8', 'ratio'], rows, { title: `quantize --mode ${r.mode} ${r.input} -> ${r.output}` }));
  if (r.outputs.length) parts.push(renderTable(['output', 'SQNR dB', 'max abs err', 'cosine'], r.outputs.map((o) => [o.name, fmt(o.sqnrDb, 1), o.maxAbs.toPrecision(3), o.cosine.toFixed(5)]), { title: `output error vs FP32 (${r.evalSamples} samples of ${r.measuredOn ?? 'data'}${r.mode === 'weights' ? ', raw model' : ''})` }));
  for (const a of r.accuracy ?? []) {
    const keys = [...new Set([...Object.keys(a.fp32), ...Object.keys(a.int8)])];
    parts.push(renderTable(['metric', 'FP32', 'INT8'], keys.map((k) => [k, fmt(a.fp32[k] ?? NaN, 4), fmt(a.int8[k] ?? NaN, 4)]), { title: `task accuracy: ${a.metric}` }));
  }
  if (r.weights) parts.push(`${r.weights.weights} weights int8 (${r.weights.perChannel} per channel) ${JSON.stringify(r.weights.byOp)}; ${r.weights.keptFloat} float constants kept; tagged onnxforge.weights=int8`);
  if (r.dynamic) {
    parts.push(`quantized ${JSON.stringify(r.dynamic.quantized)}; weights ${formatBytes(r.dynamic.weightBytesBefore)} -> ${formatBytes(r.dynamic.weightBytesAfter)}`);
    if (r.dynamic.float.length) parts.push(renderTable(['left float', 'op', 'reason'], r.dynamic.float.slice(0, 30).map((f) => [f.node, f.op, f.reason]), { title: `${r.dynamic.float.length} candidates left in float` }));
  }
  for (const n of r.notes) parts.push(`note: ${n}`);
  return parts.join('\n\n');
}

