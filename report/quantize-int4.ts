/**
 * The report of `quantize --mode int4` (`onnxforge.quantize-int4/1`) and its terminal rendering: size
 * and latency beside float32, output error, and the pass's own account per weight (method, block
 * size, bits, why a weight kept 8 bits or float, its error), the accuracy_level measurements and the
 * first/last-layer decisions, with the time spent per phase.
 */
import type { QuantizeInt4Report } from '../passes/quantize/quantize-int4.js';
import type { FusionStep } from '../passes/transformer-step.js';
import type { OutputError } from '../runtime/metrics.js';
import { formatBytes, renderTable } from './table.js';

/** The transformer fusion step the int4, fp16 and q4f16 workflows run first. */
export type { FusionStep };

export interface Int4Report {
  schema: 'onnxforge.quantize-int4/1';
  mode: 'int4';
  input: string;
  output: string;
  size: { fp32Bytes: number; bytes: number; ratio: number };
  /** p50 latency beside float32, interleaved; absent when no data fixes the input shapes (see notes). */
  latency?: { fp32Ms: number; ms: number; ratio: number; runs: number; threads: number };
  outputs: OutputError[];
  evalSamples: number;
  measuredOn?: string;
  /** Where the calibration feeds came from ('--calibration SPEC' or none). */
  calibration: string;
  int4: QuantizeInt4Report;
  /** The transformer fusion step run before quantizing. */
  fusion?: FusionStep;
  notes: string[];
  wallMs: number;
}

const fmt = (x: number | undefined, d: number) => (x === undefined ? '' : Number.isFinite(x) ? x.toFixed(d) : String(x));
const exp = (x: number | undefined) => (x === undefined ? '' : x.toExponential(2));

export function renderInt4Report(r: Int4Report): string {
  const q = r.int4;
  const rows = [['size', formatBytes(r.size.fp32Bytes), formatBytes(r.size.bytes), fmt(r.size.ratio, 3)]];
  if (r.latency) rows.push([`latency p50 (${r.latency.threads} thread)`, `${fmt(r.latency.fp32Ms, 3)} ms`, `${fmt(r.latency.ms, 3)} ms`, fmt(r.latency.ratio, 3)]);
  const parts = [
    renderTable(['', 'FP32', 'INT4', 'ratio'], rows, {
      title: `quantize --mode int4 ${r.input} -> ${r.output} (${q.format}, method ${q.method}${q.method === 'gptq' ? ` (moments on ${q.momentSamples} of ${q.calibrationSamples} samples)` : ''}, block ${q.blockSize}, ${q.symmetric ? 'symmetric' : 'zero points'}, accuracy_level ${q.accuracyLevel.chosen}; calibration: ${r.calibration})`,
    }),
  ];
  if (r.outputs.length) {
    parts.push(renderTable(['output', 'SQNR dB', 'max abs err', 'cosine'], r.outputs.map((o) => [o.name, fmt(o.sqnrDb, 1), o.maxAbs.toPrecision(3), o.cosine.toFixed(6)]), { title: `output error vs FP32 (${r.evalSamples} samples of ${r.measuredOn ?? 'data'})` }));
  }
  parts.push(
    renderTable(
      ['weight', 'op', 'K x N', 'bits', 'method', 'weight err', 'layer out err', 'RTN out err', 'bytes', 'note'],
      q.weights.map((w) => [w.tensor.slice(0, 48), w.op, `${w.K} x ${w.N}`, String(w.bits || 'float'), w.method, exp(w.weightError), exp(w.outputError), exp(w.rtnOutputError), `${formatBytes(w.floatBytes)} -> ${formatBytes(w.bytes)}`, (w.reason ?? '').slice(0, 80)]),
      { title: `weights: ${formatBytes(q.floatBytes)} float -> ${formatBytes(q.quantizedBytes)} (errors relative: ||dW||^2/||W||^2; layer output on the calibration inputs)` },
    ),
  );
  if (q.accuracyLevel.measured.length) {
    parts.push(renderTable(['accuracy_level', 'ms (median)', 'rel. output err', 'SQNR dB'], q.accuracyLevel.measured.map((m) => [String(m.level), fmt(m.ms, 3), exp(m.relativeError), fmt(m.sqnrDb, 2)]), { title: `accuracy_level ${q.accuracyLevel.chosen}: ${q.accuracyLevel.reason}` }));
  } else parts.push(`accuracy_level ${q.accuracyLevel.chosen}: ${q.accuracyLevel.reason}`);
  if (q.keepInt8.length) {
    parts.push(renderTable(['layer', 'position', 'out err all 4-bit', 'with 8 bits', 'gain', 'kept 8 bits'], q.keepInt8.map((k) => [k.tensor.slice(0, 48), k.position, exp(k.errorAll4), exp(k.errorWith8), `${fmt(100 * k.gain, 1)}%`, k.kept ? 'yes' : 'no']), { title: 'first/last layers: 8 bits kept where they cut the model output error enough' }));
  }
  const ms = q.ms;
  parts.push(`time: prepare ${fmt(ms.prepare / 1000, 2)} s, calibration moments ${fmt(ms.moments / 1000, 2)} s, quantize ${fmt(ms.quantize / 1000, 2)} s, sensitivity ${fmt(ms.sensitivity / 1000, 2)} s, accuracy_level ${fmt(ms.accuracyLevel / 1000, 2)} s; whole command ${fmt(r.wallMs / 1000, 2)} s`);
  if (r.fusion) parts.push(`transformer fusions first: ${r.fusion.reason}`);
  for (const n of r.notes) parts.push(`note: ${n}`);
  return parts.join('\n\n');
}
