/**
 * Benchmark and comparison reports (`onnxforge.bench/1`, `onnxforge.compare/1`, built by
 * workflows/bench.ts) and their terminal rendering (the JSON forms are the reports themselves).
 */
import type { LatencyStats } from '../runtime/latency.js';
import type { OutputError } from '../runtime/metrics.js';
import type { ProfileReport } from '../runtime/profile.js';
import { type Contention, describeContention } from '../runtime/timer.js';

export interface BenchModelResult {
  model: string;
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
    '',
    table([
      ['model', 'load ms', 'min', 'mean', 'p50', 'p90', 'p99', 'stddev', 'spread'],
      ...r.models.map((m) => [m.model, m.createMs.toFixed(1), ms(m.stats.min), ms(m.stats.mean), ms(m.stats.p50), ms(m.stats.p90), ms(m.stats.p99), ms(m.stats.stddev), `${(m.stats.spread * 100).toFixed(1)}%`]),
    ]),
    '',
    `latency in ms; spread = (p90 - p10) / p50; peak RSS ${mb(r.sandbox?.peakRssBytes ?? r.peakRssBytes)}${r.contention ? `; ${describeContention(r.contention)}` : ''}`,
  ];
  for (const m of r.models) {
    if (!m.profile) continue;
    lines.push('', `profile of ${m.model} (${m.profile.runs} runs, kernel time per op type):`);
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
  lines.push('', r.pass ? 'PASS' : 'FAIL: outputs differ beyond the tolerance');
  return lines.join('\n');
}
