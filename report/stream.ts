/**
 * Terminal rendering of the streaming runs (models larger than memory): `quantize` streamed
 * (workflows/stream-int4.ts) and `convert` (workflows/stream.ts).
 */
import { formatBytes, renderTable } from './table.js';

/** What a streaming run reports besides its transformation. */
export interface StreamWriteReport {
  streamed: true;
  inputBytes: number;
  outputBytes: number;
  dataFiles: { path: string; bytes: number }[];
  externalTensors: number;
  resumed: { tensors: number; bytes: number };
  /** Peak resident memory of this process (VmHWM, bytes) when the run ended, where the OS reports it. */
  peakRssBytes?: number;
  wallMs: number;
  notes: string[];
}

export interface StreamInt4Weight {
  tensor: string;
  node: string;
  op: 'MatMul' | 'Gather' | 'Gemm';
  K: number;
  N: number;
  /** 4 or 8, or 0 when left float. */
  bits: number;
  /** How a quantized weight was rounded: GPTQ on the calibration data, or round to nearest. */
  method?: 'rtn' | 'gptq';
  reason?: string;
  floatBytes: number;
  bytes: number;
}

/** The layer-by-layer calibration of streamed GPTQ (workflows/stream-gptq.ts). */
export interface StreamCalibrationReport {
  /** Calibration samples, and the onnxruntime runs they made (samples stacked on the batch axis where possible). */
  samples: number;
  runs: number;
  /** Parts of the graph run one at a time, and the bytes of initializers and input moments each may hold. */
  segments: number;
  segmentBytes: number;
  largestSegmentBytes: number;
  /** Activations kept in memory before spilling, and the most held at once. */
  activationBudgetBytes: number;
  peakActivationBytes: number;
  /** Activation bytes written to disk (and tensors), and the folder (removed at the end). */
  spilledBytes: number;
  spilledTensors: number;
  spillDir?: string;
  gptqWeights: number;
  /** Milliseconds: the segments' runs, GPTQ, and the whole calibration. */
  ms: { calibrate: number; gptq: number; total: number };
}

export interface StreamInt4Report {
  schema: 'onnxforge.quantize-stream/1';
  mode: 'int4';
  input: string;
  output: string;
  method: 'rtn' | 'gptq';
  /** GPTQ's layer-by-layer calibration (method gptq). */
  calibration?: StreamCalibrationReport;
  blockSize: number;
  symmetric: boolean;
  accuracyLevel: number;
  weights: StreamInt4Weight[];
  write: StreamWriteReport;
}

export interface StreamWeightsReport {
  schema: 'onnxforge.quantize-stream/1';
  mode: 'weights' | 'fp16';
  input: string;
  output: string;
  /** Weights converted (int8 behind DequantizeLinear, or float16 behind Cast) and float ones kept. */
  converted: number;
  keptFloat: number;
  floatBytes: number;
  bytes: number;
  write: StreamWriteReport;
}

export function renderStreamWeightsReport(r: StreamWeightsReport): string {
  const rows = [['converted weights', `${r.converted} (${formatBytes(r.floatBytes)} -> ${formatBytes(r.bytes)}), ${r.keptFloat} kept float32`], ...writeRows(r.write)];
  return `${renderTable(['', ''], rows, { title: `quantize --mode ${r.mode} (streamed) ${r.input} -> ${r.output}` })}${notes(r.write.notes)}`;
}

export interface ConvertReport {
  schema: 'onnxforge.convert/1';
  input: string;
  output: string;
  /** Written by the streaming writer (external data, --max-data-file-size, --resume) or by saveModel. */
  streamed: boolean;
  bytes: number;
  dataFiles: { path: string; bytes: number }[];
  externalTensors: number;
  resumed?: { tensors: number; bytes: number };
  notes: string[];
  wallMs: number;
}

function writeRows(w: StreamWriteReport): string[][] {
  const rows = [
    ['input weights', formatBytes(w.inputBytes)],
    ['output', `${formatBytes(w.outputBytes)} (${(w.outputBytes / Math.max(1, w.inputBytes)).toFixed(3)}x), ${w.externalTensors} tensors in ${w.dataFiles.length} data file${w.dataFiles.length === 1 ? '' : 's'}`],
    ['wall time', `${(w.wallMs / 1000).toFixed(1)} s`],
  ];
  if (w.peakRssBytes !== undefined) rows.push(['peak RSS', formatBytes(w.peakRssBytes)]);
  if (w.resumed.tensors) rows.push(['resumed', `${w.resumed.tensors} tensors, ${formatBytes(w.resumed.bytes)}`]);
  return rows;
}

function notes(list: readonly string[]): string {
  return list.length ? `\n${list.map((n) => `note: ${n}`).join('\n')}` : '';
}

export function renderStreamInt4Report(r: StreamInt4Report): string {
  const head = renderTable(['', ''], writeRows(r.write), {
    title: `quantize --mode int4 (streamed) ${r.input} -> ${r.output} (msft, method ${r.method}, block ${r.blockSize}, ${r.symmetric ? 'symmetric' : 'zero points'}, accuracy_level ${r.accuracyLevel})`,
  });
  const counts = new Map<string, number>();
  for (const w of r.weights) {
    const key = w.bits ? `${w.op} at ${w.bits} bits` : `${w.op} left float: ${w.reason ?? ''}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const weights = renderTable(['weights', 'count'], [...counts].map(([k, n]) => [k, String(n)]), { title: 'weights' });
  const c = r.calibration;
  const calibration = c
    ? `\n${renderTable(['', ''], [
        ['calibration', `${c.samples} samples (${c.runs} runs) through ${c.segments} segment${c.segments === 1 ? '' : 's'} of at most ${formatBytes(c.segmentBytes)} of weights and moments (largest ${formatBytes(c.largestSegmentBytes)})`],
        ['activations', `at most ${formatBytes(c.peakActivationBytes)} in memory (budget ${formatBytes(c.activationBudgetBytes)}); ${c.spilledBytes ? `${formatBytes(c.spilledBytes)} in ${c.spilledTensors} tensors spilled to ${c.spillDir ?? 'disk'} (removed)` : 'nothing spilled'}`],
        ['time', `${(c.ms.calibrate / 1000).toFixed(1)} s running segments, ${(c.ms.gptq / 1000).toFixed(1)} s GPTQ of ${c.gptqWeights} weights`],
      ], { title: 'GPTQ, layer by layer' })}`
    : '';
  return `${head}\n${weights}${calibration}${notes(r.write.notes)}`;
}

export function renderConvertReport(r: ConvertReport): string {
  const files = r.dataFiles.map((f) => `${f.path} (${formatBytes(f.bytes)})`).join(', ');
  const line = `wrote ${r.output} (${r.bytes} bytes${r.dataFiles.length ? `; ${r.externalTensors} tensors in ${files}` : ''}${r.streamed ? '; streamed' : ''})`;
  const resumed = r.resumed?.tensors ? `\nresumed ${r.resumed.tensors} tensors (${formatBytes(r.resumed.bytes)}) from the interrupted run` : '';
  return `${line}${resumed}${notes(r.notes)}`;
}
