/**
 * The quantize command's reports (typed JSON documents) and their terminal rendering: the static mode's
 * report (`onnxforge.quantize/1`) and the data-free modes' report (`onnxforge.quantize-mode/1`, weight
 * compression and dynamic INT8). The workflows in workflows/quantize/ build them; nothing here runs a model.
 */
import { type BackendInfo, describeBackend } from '../runtime/backend.js';
import type { LayerError } from '../passes/quantize/debug.js';
import type { LatencyReport, QuantizeStaticReport } from '../passes/quantize/quantize-static.js';
import { describeContention } from '../runtime/timer.js';
import type { QuantizeWeightsReport } from '../passes/quantize/quantize-weights.js';
import type { QuantizeDynamicReport } from '../passes/quantize/quantize-dynamic.js';
import type { OutputError } from '../runtime/metrics.js';
import { renderDefaultRecipe } from './quantize-recipe.js';
import { formatBytes, renderTable } from './table.js';

/** A user metric on the quantized model beside the same metric on FP32. */
export interface QuantizeAccuracy {
  metric: string;
  fp32: Record<string, number>;
  int8: Record<string, number>;
}

export interface QuantizeCommandReport {
  schema: 'onnxforge.quantize/1';
  input: string;
  output: string;
  mode: 'static';
  size: { fp32Bytes: number; int8Bytes: number; ratio: number };
  /** `backend`: set when the model was quantized for another backend than onnxruntime-node (`--target wasm`): where latency and outputs were measured. */
  latency: { fp32Ms: number; int8Ms: number; ratio: number; runs: number; threads: number; backend?: BackendInfo };
  /** Output error of the quantized model vs FP32 on the eval set (or the calibration set). */
  outputs: OutputError[];
  evalSamples: number;
  accuracy?: QuantizeAccuracy[];
  layers?: LayerError[];
  quantization: Omit<QuantizeStaticReport, 'ranges' | 'dequantized'>;
  /** What the quantizer left alone and why (e.g. weight layers inside subgraphs). */
  notes: string[];
  wallMs: number;
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
  accuracy?: QuantizeAccuracy[];
  weights?: Omit<QuantizeWeightsReport, 'prepare'>;
  dynamic?: Omit<QuantizeDynamicReport, 'prepare'>;
  wallMs: number;
}

const fmt = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : String(x));

function outputTable(outputs: readonly OutputError[], title: string): string {
  return renderTable(['output', 'SQNR dB', 'max abs err', 'cosine'], outputs.map((o) => [o.name, fmt(o.sqnrDb, 1), o.maxAbs.toPrecision(3), o.cosine.toFixed(5)]), { title });
}

function accuracyTables(accuracy: readonly QuantizeAccuracy[] | undefined): string[] {
  return (accuracy ?? []).map((a) => {
    const keys = [...new Set([...Object.keys(a.fp32), ...Object.keys(a.int8)])];
    return renderTable(['metric', 'FP32', 'INT8'], keys.map((k) => [k, fmt(a.fp32[k] ?? NaN, 4), fmt(a.int8[k] ?? NaN, 4)]), { title: `task accuracy: ${a.metric}` });
  });
}

/**
 * The latency-aware decisions: how they were made (measured with trials and contention, or replayed
 * from a decisions file), then the layers kept float and the uncertain ones (int8 by rule) with their
 * float and int8 times and noise; every layer's decision is in the JSON report.
 */
export function renderLatencyDecisions(l: Omit<LatencyReport, 'document'>): string {
  const uncertain = l.decisions.filter((d) => d.certainty === 'uncertain');
  const floatSet = new Set(l.floated.map((f) => f.node));
  const rows = l.decisions.filter((d) => floatSet.has(d.node) || d.certainty === 'uncertain');
  const how = l.source === 'replayed'
    ? `replayed from ${l.file ?? 'a decisions file'} (no profiling)`
    : `measured: ${l.rounds} profiling rounds of ${l.trials} int8/float trials${l.extendedRounds ? ` (${l.extraTrials} more in ${l.extendedRounds} of them, a layer near the worth floor)` : ''}, ${fmt(l.seconds, 0)} s${l.contention ? `, ${describeContention(l.contention)}` : ''}${l.file ? `; written to ${l.file}` : ''}`;
  const title = `latency-aware decisions ${how}: ${l.floated.length} layers kept float (prefer ${l.prefer}, float weights cost ${formatBytes(l.extraBytes)} more than int8), ${l.kept.length} int8 of which ${uncertain.length} uncertain (within the noise: int8 by rule)`;
  if (rows.length === 0) return title;
  return renderTable(['layer', 'op', 'choice', 'float µs', 'int8 µs', 'int8/float', 'noise µs', 'why'], rows.map((d) => [d.node, d.op, floatSet.has(d.node) ? 'float' : `${d.choice} (${d.certainty})`, fmt(d.floatUs, 0), fmt(d.int8Us, 0), fmt(d.ratio, 2), fmt(d.noiseUs, 1), d.why.split(':')[0]!]), { title });
}

export function renderQuantizeReport(r: QuantizeCommandReport): string {
  const parts: string[] = [];
  const q = r.quantization;
  parts.push(
    renderTable(
      ['', 'FP32', 'INT8', 'ratio'],
      [
        ['size', formatBytes(r.size.fp32Bytes), formatBytes(r.size.int8Bytes), fmt(r.size.ratio, 3)],
        [r.latency.backend ? `latency p50 (${describeBackend(r.latency.backend)})` : `latency p50 (${r.latency.threads} thread)`, `${fmt(r.latency.fp32Ms, 2)} ms`, `${fmt(r.latency.int8Ms, 2)} ms`, fmt(r.latency.ratio, 3)],
      ],
      { title: `quantize ${r.input} -> ${r.output} (${q.method}, ${q.samples} calibration samples, ${fmt(q.calibrationMs / 1000, 1)} s)` },
    ),
  );
  parts.push(outputTable(r.outputs, `output error vs FP32 (${r.evalSamples} samples)`));
  parts.push(...accuracyTables(r.accuracy));
  parts.push(
    renderTable(
      ['int8 ops', 'count'],
      Object.entries(q.quantizedOps).sort((x, y) => y[1] - x[1]).map(([k, v]) => [k, v]),
      { title: `${q.int8Nodes} int8 nodes, ${q.emit.qdqPairs} Q/DQ pairs, ${q.emit.weights} int8 weights, ${q.emit.biases} int32 biases` },
    ),
  );
  const floatOps = Object.entries(q.floatOps).sort((x, y) => y[1] - x[1]);
  if (floatOps.length) parts.push(renderTable(['float ops', 'count'], floatOps.map(([k, v]) => [k, v]), { title: 'ops left in float' }));
  if (q.latency) parts.push(renderLatencyDecisions(q.latency));
  if (q.accuracy) {
    const c = q.accuracy;
    parts.push(renderTable(['returned to float (accuracy)', 'op', 'output gain dB', 'SQNR dB', 'loses dB'], c.floated.map((f) => [f.node, f.op, f.gainDb !== undefined ? fmt(f.gainDb, 2) : '-', fmt(f.sqnrDb, 1), fmt(f.lossDb, 1)]), { title: `accuracy budget ${c.maxDrop} (ranked by ${c.rank}): FP32 ${fmt(c.reference, 4)}, INT8 ${fmt(c.score, 4)} (drop ${fmt(c.drop, 4)}) ${c.met ? 'met' : 'NOT met'} after ${c.trials.length} evaluations; int8 weights kept` }));
  }
  if (q.float.length) parts.push(renderTable(['left float', 'op', 'reason'], q.float.map((f) => [f.node, f.op, f.reason]), { title: `${q.float.length} quantizable nodes left in float` }));
  if (r.layers) parts.push(renderTable(['tensor', 'producer', 'SQNR dB', 'max abs err'], r.layers.slice(0, 30).map((l) => [l.tensor, l.producer, fmt(l.sqnrDb, 1), l.maxAbs.toPrecision(3)]), { title: `per-layer SQNR, worst ${Math.min(30, r.layers.length)} of ${r.layers.length}` }));
  const recipe = renderDefaultRecipe(q);
  if (recipe) parts.push(recipe);
  for (const w of q.warnings) parts.push(`warning: ${w}`);
  for (const n of r.notes) parts.push(`note: ${n}`);
  return parts.join('\n\n');
}

export function renderQuantizeModeReport(r: QuantizeModeReport): string {
  const parts: string[] = [];
  const rows = [['size', formatBytes(r.size.fp32Bytes), formatBytes(r.size.int8Bytes), fmt(r.size.ratio, 3)]];
  const l = r.latency;
  if (l) {
    rows.push([`latency p50 (${l.threads} thread)${r.mode === 'weights' ? ', via createSession' : ''}`, `${fmt(l.fp32Ms, 2)} ms`, `${fmt(l.int8Ms, 2)} ms`, fmt(l.ratio, 3)]);
    if (l.rawMs !== undefined) rows.push(['latency p50, raw model in onnxruntime', `${fmt(l.fp32Ms, 2)} ms`, `${fmt(l.rawMs, 2)} ms`, fmt(l.rawRatio!, 3)]);
  }
  parts.push(renderTable(['', 'FP32', 'INT8', 'ratio'], rows, { title: `quantize --mode ${r.mode} ${r.input} -> ${r.output}` }));
  if (r.outputs.length) parts.push(outputTable(r.outputs, `output error vs FP32 (${r.evalSamples} samples of ${r.measuredOn ?? 'data'}${r.mode === 'weights' ? ', raw model' : ''})`));
  parts.push(...accuracyTables(r.accuracy));
  if (r.weights) parts.push(`${r.weights.weights} weights int8 (${r.weights.perChannel} per channel) ${JSON.stringify(r.weights.byOp)}; ${r.weights.keptFloat} float constants kept; tagged onnxforge.weights=int8`);
  if (r.dynamic) {
    parts.push(`quantized ${JSON.stringify(r.dynamic.quantized)}; weights ${formatBytes(r.dynamic.weightBytesBefore)} -> ${formatBytes(r.dynamic.weightBytesAfter)}`);
    if (r.dynamic.float.length) parts.push(renderTable(['left float', 'op', 'reason'], r.dynamic.float.slice(0, 30).map((f) => [f.node, f.op, f.reason]), { title: `${r.dynamic.float.length} candidates left in float` }));
  }
  for (const n of r.notes) parts.push(`note: ${n}`);
  return parts.join('\n\n');
}
