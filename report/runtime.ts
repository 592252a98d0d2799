/**
 * Benchmark and comparison reports (`onnxforge.bench/1`, `onnxforge.compare/1`, built by
 * workflows/bench.ts) and their terminal rendering (the JSON forms are the reports themselves).
 */
import type { LatencyStats } from '../runtime/latency.js';
import type { OutputError } from '../runtime/metrics.js';
import type { ProfileReport } from '../runtime/profile.js';
import { type Contention, describeContention } from '../runtime/timer.js';
import { type Backend, type BackendInfo, describeBackend } from '../runtime/backend.js';

export interface BenchModelResult {
  model: string;
  /** Where it ran (absent in reports written before backends existed: node). */
  backend?: Backend;
  createMs: number;
  stats: LatencyStats;
  profile?: ProfileReport;
}

export interface BenchReport {
  schema: 'onnxforge.bench/1';
  inputs: string;
  samples: number;
  warmup: number;
  runs: number;
  threads: number | 'default';
  /** The backends the models ran on, with their runtime, threads and (WASM) SIMD. */
  backends?: BackendInfo[];
  /** Whether idle intra-op threads spin (off unless asked for). */
  spinning: boolean;
  models: BenchModelResult[];
  /** Peak RSS of the process that ran the benchmark, bytes. */
  peakRssBytes: number;
  /** Set when the benchmark ran in the sandbox: peak RSS of the child as seen from outside. */
  sandbox?: { peakRssBytes: number; wallMs: number };
  /** How contended the machine was while timing (runtime/timer.ts). */
  contention?: Contention;
}

export interface CompareReport {
  schema: 'onnxforge.compare/1';
  reference: string;
  candidate: string;
  inputs: string;
  samples: number;
  tolerance: number;
  outputs: (OutputError & { pass: boolean })[];
  /** User metrics of the candidate, and of the reference. */
  metrics: Record<string, Record<string, number>>;
  referenceMetrics: Record<string, Record<string, number>>;
  pass: boolean;
  /** Set when the runs used backends other than onnxruntime-node alone: where the reference and the candidate ran. */
  backends?: { reference: BackendInfo; candidate: BackendInfo };
  /** With --debug-layers: the first tensor where the two backends part. */
  layers?: LayerDivergence;
}

export interface LayerDivergenceRow {
  /** Position in the graph's node order among the compared tensors. */
  index: number;
  tensor: string;
  node: string;
  op: string;
  maxAbs: number;
  /** maxAbs over the reference's largest magnitude of the tensor. */
  relative: number;
  sqnrDb: number;
}

export interface LayerDivergence {
  backends: [Backend, Backend];
  samples: number;
  /** Float tensors compared. */
  tensors: number;
  /** Relative error past which a tensor counts as parted. */
  tolerance: number;
  /** The first tensor (in node order) past the tolerance; absent when none is. */
  first?: LayerDivergenceRow;
  /** The tensors with the largest relative errors. */
  worst: LayerDivergenceRow[];
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n');
}

const ms = (v: number) => v.toFixed(3);
const num = (v: number) => (Number.isFinite(v) ? (Math.abs(v) >= 1e-3 || v === 0 ? v.toPrecision(4) : v.toExponential(2)) : String(v));
const mb = (b: number) => `${(b / 1024 ** 2).toFixed(0)} MB`;

export function renderBench(r: BenchReport): string {
  const lines = [
    `inputs ${r.inputs} (${r.samples} sample${r.samples === 1 ? '' : 's'}), warm-up ${r.warmup}, ${r.runs} interleaved runs, threads ${r.threads}`,
    ...(r.backends ?? []).map((b) => `backend ${describeBackend(b)}`),
    '',
    table([
      ['model', 'backend', 'load ms', 'min', 'mean', 'p50', 'p90', 'p99', 'stddev', 'spread'],
      ...r.models.map((m) => [m.model, m.backend ?? 'node', m.createMs.toFixed(1), ms(m.stats.min), ms(m.stats.mean), ms(m.stats.p50), ms(m.stats.p90), ms(m.stats.p99), ms(m.stats.stddev), `${(m.stats.spread * 100).toFixed(1)}%`]),
    ]),
    '',
    `latency in ms; spread = (p90 - p10) / p50; peak RSS ${mb(r.sandbox?.peakRssBytes ?? r.peakRssBytes)}${r.contention ? `; ${describeContention(r.contention)}` : ''}`,
  ];
  for (const m of r.models) {
    if (!m.profile) continue;
    lines.push('', `profile of ${m.model} on ${m.backend ?? 'node'} (${m.profile.runs} runs, kernel time per op type):`);
    lines.push(
      table([
        ['op type', 'nodes', 'calls', 'total µs', 'share'],
        ...m.profile.opTypes.slice(0, 15).map((t) => [t.opType, String(t.nodes), String(t.calls), t.totalUs.toFixed(0), `${(t.share * 100).toFixed(1)}%`]),
      ]),
    );
    lines.push('', 'slowest nodes:');
    lines.push(
      table([
        ['node', 'op type', 'calls', 'total µs', 'share'],
        ...m.profile.nodes.slice(0, 10).map((n) => [n.node, n.opType, String(n.calls), n.totalUs.toFixed(0), `${(n.share * 100).toFixed(1)}%`]),
      ]),
    );
  }
  return lines.join('\n');
}

export function renderCompare(r: CompareReport): string {
  const lines = [
    `${r.candidate} vs ${r.reference} on ${r.inputs} (${r.samples} samples), tolerance ${r.tolerance} (max abs)`,
    ...(r.backends ? [`reference on ${describeBackend(r.backends.reference)}`, `candidate on ${describeBackend(r.backends.candidate)}`] : []),
    '',
    table([
      ['output', 'max abs', 'max rel', 'mean abs', 'cosine', 'SQNR dB', ''],
      ...r.outputs.map((o) => [o.name, num(o.maxAbs), num(o.maxRel), num(o.meanAbs), o.cosine.toFixed(6), Number.isFinite(o.sqnrDb) ? o.sqnrDb.toFixed(1) : 'inf', o.pass ? 'ok' : 'FAIL']),
    ]),
  ];
  for (const [name, vals] of Object.entries(r.metrics)) {
    const ref = r.referenceMetrics[name];
    lines.push('', `metric ${name}:`);
    for (const [k, v] of Object.entries(vals)) lines.push(`  ${k}: ${num(v)}${ref && ref[k] !== undefined ? `  (reference ${num(ref[k])})` : ''}`);
  }
  if (r.layers) {
    const l = r.layers;
    lines.push('', `layers (${l.tensors} float tensors on ${l.samples} samples, ${l.backends[1]} vs ${l.backends[0]}, relative error = max abs / largest |reference|):`);
    lines.push(l.first ? `first tensor past ${l.tolerance}: ${l.first.tensor} (#${l.first.index}, ${l.first.op} ${l.first.node}), relative ${num(l.first.relative)}, max abs ${num(l.first.maxAbs)}` : `no tensor is past ${l.tolerance}`);
    lines.push(
      table([
        ['#', 'tensor', 'op', 'max abs', 'relative', 'SQNR dB'],
        ...l.worst.map((w) => [String(w.index), w.tensor, w.op, num(w.maxAbs), num(w.relative), Number.isFinite(w.sqnrDb) ? w.sqnrDb.toFixed(1) : 'inf']),
      ]),
    );
  }
  lines.push('', r.pass ? 'PASS' : 'FAIL: outputs differ beyond the tolerance');
  return lines.join('\n');
}
