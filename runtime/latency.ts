/**
 * Latency measurement that is fair on a noisy shared machine: the sessions under comparison run in
 * interleaved rounds (A B, B A, A B, ...), so a burst of load from another process hits all of them
 * alike. Each session gets its own warm-up first. Inputs are converted to ort tensors once, outside
 * the timed region.
 */
import * as ort from 'onnxruntime-node';
import { inputError } from '../core/errors.js';
import { Feed } from '../core/host-tensor.js';
import { Session, toOrtTensor } from './session.js';

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
}

/** Percentile by linear interpolation over sorted values (p in [0, 100]). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const pos = ((sorted.length - 1) * p) / 100;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

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
 * Times `sessions` on `feeds` in interleaved rounds. Round r runs every session once on
 * `feeds[r % feeds.length]`, in an order that alternates direction each round.
 */
export async function measureLatency(sessions: readonly Session[], feeds: readonly Feed[], options: LatencyOptions = {}): Promise<LatencyReport> {
  if (sessions.length === 0) throw inputError('BENCH_NO_MODEL', 'nothing to measure: no sessions given');
  if (feeds.length === 0) throw inputError('BENCH_NO_INPUTS', 'nothing to measure: the input source gave no samples');
  const warmup = options.warmup ?? 5;
  const runs = options.runs ?? 50;
  if (!Number.isInteger(runs) || runs < 1) throw inputError('BENCH_BAD_RUNS', `runs must be a positive integer, got ${runs}`);
  if (!Number.isInteger(warmup) || warmup < 0) throw inputError('BENCH_BAD_WARMUP', `warmup must be a non-negative integer, got ${warmup}`);

  const ortFeeds = feeds.map((f) => {
    const o: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(f)) o[k] = toOrtTensor(v, k);
    return o;
  });
  let sampledPeak = process.memoryUsage.rss();
  const sample = () => {
    const r = process.memoryUsage.rss();
    if (r > sampledPeak) sampledPeak = r;
  };

  for (const s of sessions) {
    for (let i = 0; i < warmup; i++) disposeAll(await s.runOrt(ortFeeds[i % ortFeeds.length]!));
    sample();
  }

  const samples: number[][] = sessions.map(() => []);
  for (let r = 0; r < runs; r++) {
    const feed = ortFeeds[r % ortFeeds.length]!;
    const order = r % 2 === 0 ? sessions.map((_, i) => i) : sessions.map((_, i) => sessions.length - 1 - i);
    for (const i of order) {
      const t0 = performance.now();
      const out = await sessions[i]!.runOrt(feed);
      const dt = performance.now() - t0;
      samples[i]!.push(dt);
      disposeAll(out);
    }
    sample();
    options.onRound?.(r + 1, runs);
  }

  return {
    sessions: sessions.map((s, i) => ({ name: s.name, createMs: s.createMs, samples: samples[i]!, stats: latencyStats(samples[i]!) })),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    sampledPeakRssBytes: sampledPeak,
  };
}

function disposeAll(out: ort.InferenceSession.OnnxValueMapType): void {
  for (const v of Object.values(out)) (v as ort.Tensor).dispose?.();
}
