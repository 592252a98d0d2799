/**
 * Latency measurement that is fair on a noisy shared machine: the sessions under comparison run in
 * interleaved rounds (A B, B A, A B, ...), so a burst of load from another process hits all of them
 * alike. Each session gets its own warm-up first. Inputs are converted to ort tensors once, outside
 * the timed region. The timing itself is runtime/timer.ts's (shared with the gate), which also records
 * how contended the machine was.
 */
import { inputError } from '../core/errors.js';
import { Feed } from '../core/host-tensor.js';
import { Session } from './session.js';
import { Contention, percentile, timeInterleaved } from './timer.js';

export interface LatencyStats {
  runs: number;
  min: number;
  max: number;
  mean: number;
  p10: number;
  p50: number;
  p90: number;
  p99: number;
  stddev: number;
  /** (p90 - p10) / p50: relative spread, robust to outliers. */
  spread: number;
}

export interface LatencyOptions {
  /** Runs per session before timing starts (default 5). */
  warmup?: number;
  /** Timed runs per session (default 50). */
  runs?: number;
  /** Called after each timed round (for progress bars). */
  onRound?: (done: number, total: number) => void;
  /**
   * Runs per session and round, their mean the round's sample (default 1); 'auto': as many as fill a
   * few milliseconds (runtime/timer.ts), for models that run in well under one, whose single runs the
   * timer's resolution and the machine's jitter move by several percent.
   */
  inner?: number | 'auto';
}

export interface SessionLatency {
  name: string;
  createMs: number;
  /** Per-run wall times, milliseconds, in execution order. */
  samples: number[];
  stats: LatencyStats;
}

export interface LatencyReport {
  sessions: SessionLatency[];
  /** Peak resident set size of this process, bytes (process.resourceUsage().maxRSS). */
  peakRssBytes: number;
  /** Highest RSS sampled between runs, bytes. */
  sampledPeakRssBytes: number;
  /** How contended the machine was while timing. */
  contention: Contention;
}

export { percentile };

export function latencyStats(samples: readonly number[]): LatencyStats {
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(n, 1);
  const variance = n > 1 ? s.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1) : 0;
  const p50 = percentile(s, 50);
  const p10 = percentile(s, 10);
  const p90 = percentile(s, 90);
  return {
    runs: n,
    min: s[0] ?? NaN,
    max: s[n - 1] ?? NaN,
    mean,
    p10,
    p50,
    p90,
    p99: percentile(s, 99),
    stddev: Math.sqrt(variance),
    spread: p50 > 0 ? (p90 - p10) / p50 : NaN,
  };
}

/**
 * Times `sessions` on `feeds` in interleaved rounds (the one timer, runtime/timer.ts). Round r runs
 * every session once on `feeds[r % feeds.length]`, in an order that alternates direction each round.
 */
export async function measureLatency(sessions: readonly Pick<Session, 'name' | 'createMs' | 'runOrt'>[], feeds: readonly Feed[], options: LatencyOptions = {}): Promise<LatencyReport> {
  if (sessions.length === 0) throw inputError('BENCH_NO_MODEL', 'nothing to measure: no sessions given');
  if (feeds.length === 0) throw inputError('BENCH_NO_INPUTS', 'nothing to measure: the input source gave no samples');
  let sampledPeak = process.memoryUsage.rss();
  const sample = () => {
    const r = process.memoryUsage.rss();
    if (r > sampledPeak) sampledPeak = r;
  };
  const t = await timeInterleaved(
    sessions.map((session) => ({ session, feeds })),
    { rounds: options.runs ?? 50, warmup: options.warmup ?? 5, afterRound: sample, ...(options.onRound ? { onRound: options.onRound } : {}), ...(options.inner !== undefined ? { inner: options.inner } : {}) },
  );
  return {
    sessions: sessions.map((s, i) => ({ name: s.name, createMs: s.createMs, samples: t.entries[i]!.wallMs, stats: latencyStats(t.entries[i]!.wallMs) })),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    sampledPeakRssBytes: sampledPeak,
    contention: t.contention,
  };
}
