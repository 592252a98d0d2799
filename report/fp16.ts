/**
 * The report of `quantize --mode fp16` / `q4f16` (`onnxforge.quantize-fp16/1`) and its terminal
 * rendering: size and latency beside float32, output error, non-finite outputs, and the conversion's
 * own account (ops in half, what stayed float32 and why, Casts added).
 */
import type { FusionStep } from './quantize-int4.js';
import type { ConvertFloat16Report } from '../passes/convert/convert-float16.js';
import type { OutputError } from '../runtime/metrics.js';
import { formatBytes, renderTable } from './table.js';

export interface Fp16Report {
  schema: 'onnxforge.quantize-fp16/1';
  mode: 'fp16' | 'q4f16';
  input: string;
  output: string;
  size: { fp32Bytes: number; bytes: number; ratio: number };
  /** p50 latency beside float32, interleaved runs; absent when no data fixes the input shapes (see notes). */
  latency?: { fp32Ms: number; ms: number; ratio: number; runs: number; threads: number };
  outputs: OutputError[];
  evalSamples: number;
  measuredOn?: string;
  /** Non-finite values in the converted model's outputs over the measured samples, and in float32's. */
  nonFinite: { samples: number; values: number; fp32Values: number };
  /** The int4 step of q4f16 (the int4 pass's report), when it ran. */
  int4?: unknown;
  conversion: ConvertFloat16Report;
  /** The transformer fusion step run before the conversion. */
  fusion?: FusionStep;
  notes: string[];
  wallMs: number;
}

const fmt = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : String(x));

/** What stayed float32, grouped by reason and op, for the terminal. */
function keptRows(c: ConvertFloat16Report): string[][] {
  const groups = new Map<string, { reason: string; op: string; count: number; example: string }>();
  for (const k of c.keptFloat) {
    const key = `${k.reason}\u0000${k.op}`;
    const g = groups.get(key);
    if (g) g.count++;
    else groups.set(key, { reason: k.reason, op: k.op, count: 1, example: k.detail ? `${k.node}: ${k.detail}` : k.node });
  }
  return [...groups.values()].sort((a, b) => b.count - a.count).map((g) => [g.reason, g.op, String(g.count), g.example.slice(0, 90)]);
}

/** Where the activation ranges came from, in words. */
function rangesLine(r: ConvertFloat16Report['ranges']): string {
  const parts: string[] = [];
  if (r.samples) parts.push(`${r.samples} samples${r.skipped ? `, ${r.skipped} skipped: non-finite float32 outputs` : ''}`);
  if (r.on) parts.push(`measured on ${r.on}`);
  if (r.filled?.evaluated.length) parts.push(`${r.filled.evaluated.length} tensors computed from constants evaluated exactly`);
  if (r.filled?.measured.length) parts.push(`${r.filled.measured.length} tensors it did not name measured here on ${r.filled.samples} samples`);
  if (r.notNeeded) parts.push('not measured: no node could compute in half whatever the ranges');
  if (r.unmeasured?.length) parts.push(`${r.unmeasured.length} float32 activations without a range (${r.unmeasured.slice(0, 3).join(', ')})`);
  return `${r.source}${parts.length ? ` (${parts.join('; ')})` : ''}`;
}

export function renderFp16Report(r: Fp16Report): string {
  const c = r.conversion;
  const name = c.half === 'float16' ? 'FP16' : 'BF16';
  const rows = [['size', formatBytes(r.size.fp32Bytes), formatBytes(r.size.bytes), fmt(r.size.ratio, 3)]];
  if (r.latency) rows.push([`latency p50 (${r.latency.threads} thread)`, `${fmt(r.latency.fp32Ms, 2)} ms`, `${fmt(r.latency.ms, 2)} ms`, fmt(r.latency.ratio, 3)]);
  const parts = [renderTable(['', 'FP32', r.mode === 'q4f16' ? 'Q4F16' : name, 'ratio'], rows, { title: `quantize --mode ${r.mode} ${r.input} -> ${r.output} (target ${c.target}, io ${c.keepIoTypes ? 'float32' : c.half})` })];
  if (r.outputs.length) {
    parts.push(renderTable(['output', 'SQNR dB', 'max abs err', 'cosine'], r.outputs.map((o) => [o.name, fmt(o.sqnrDb, 1), o.maxAbs.toPrecision(3), o.cosine.toFixed(6)]), { title: `output error vs FP32 (${r.evalSamples} samples of ${r.measuredOn ?? 'data'}); non-finite output values: ${r.nonFinite.values} (FP32: ${r.nonFinite.fp32Values})` }));
  }
  const ops = Object.entries(c.halfOps).sort((a, b) => b[1] - a[1]).map(([op, n]) => `${op} ${n}`).join(', ');
  parts.push(
    `${c.halfNodes} nodes in ${c.half}${ops ? ` (${ops})` : ''}; ${c.rewrite.castsAdded} Casts added, ${c.rewrite.castsRetargeted} retargeted; ${c.rewrite.constantsConverted} constants stored in ${c.half} (${formatBytes(c.rewrite.floatBytes)} -> ${formatBytes(c.rewrite.halfBytes)}), ${c.rewrite.halfWeightsWithCast} of them read by float32 ops through a Cast; ranges: ${rangesLine(c.ranges)}`,
  );
  if (c.keptFloat.length) parts.push(renderTable(['kept float32: reason', 'op', 'nodes', 'example'], keptRows(c), { title: `${c.keptFloat.length} float nodes stay float32` }));
  if (r.fusion) parts.push(`transformer fusions first: ${r.fusion.reason}`);
  for (const n of [...c.notes, ...r.notes]) parts.push(`note: ${n}`);
  return parts.join('\n\n');
}
