/**
 * The one onnxruntime timer. Every timed measurement of onnxforge (`bench`, `measureLatency`, the CI
 * gate's estimator, latency-aware quantization's profiling) goes through here, and every one of them
 * records how contended the machine was while it ran ({@link Contention}).
 *
 * - {@link timeInterleaved}: sessions run in interleaved rounds (A B, B A, ...), so a burst of load
 *   hits them alike; each slot is timed by wall time and by this process's CPU time. A slot may repeat
 *   a run `inner` times (`auto`: one count for every session, so that a slot of the fastest lasts a
 *   few milliseconds), after one untimed run that brings its weights into the caches.
 * - {@link ratioTrial}: one trial of the gate's estimator: fresh sessions of two models, timed
 *   interleaved; the trial's ratio is the fastest slot of A over the fastest slot of B.
 * - {@link adaptiveEstimate} / {@link floorEstimate}: trials repeat until the estimate is stable or a
 *   time limit is reached. The estimate is a low quantile of the trial ratios (the median of their
 *   lowest third), its noise the spread of that lowest third. A quantile (not the minimum) is used so
 *   that a baseline measured with more trials estimates the same quantity as a check with fewer.
 *
 * Why trials of fresh sessions: measured on this 2-core VM, the fastest slot of PaddleOCR cls moved
 * between 0.70 and 1.03 ms of CPU time from one session (and one period of tens of seconds) to the
 * next while the reference workload moved by <= 5%; CPU time in a VM also counts time stolen by the
 * hypervisor and cache lost to neighbours. One long run of one session pair measures one such state;
 * many short trials spread over time sample them, and their lowest third is the machine's clean state.
 */
import * as ort from 'onnxruntime-node';
import { inputError } from '../core/errors.js';
import type { Feed } from '../core/host-tensor.js';
import { ModelSource, Session, SessionOptions, toOrtTensor } from './session.js';

/** How contended the machine was while a measurement ran. */
export interface Contention {
  /** Wall time of the timed loop, ms. */
  wallMs: number;
  /** CPU time this process used meanwhile, ms. */
  cpuMs: number;
  /**
   * cpuMs / wallMs. With single-threaded sessions 1.0 means the timing thread had a core the whole
   * time; 0.6 means it waited 40% of the time for one (other processes had the cores).
   */
  cpuOverWall: number;
  /** Involuntary context switches of this process meanwhile (process.resourceUsage()). */
  involuntaryContextSwitches: number;
  /** Fraction of slots whose CPU time was below 90% of their wall time (preempted while timed). */
  preemptedSlots: number;
  /** (p90 - p10) / p50 of the slot times (wall), the largest over the timed sessions. */
  slotSpread: number;
}

/** 'low' | 'moderate' | 'high' for rendering, from cpuOverWall and the preempted slots. */
export function contentionLevel(c: Contention): 'low' | 'moderate' | 'high' {
  if (c.cpuOverWall < 0.7 || c.preemptedSlots > 0.3) return 'high';
  if (c.cpuOverWall < 0.9 || c.preemptedSlots > 0.1) return 'moderate';
  return 'low';
}

/** One line for terminal/Markdown reports. */
export function describeContention(c: Contention): string {
  return `contention ${contentionLevel(c)}: CPU/wall ${(c.cpuOverWall * 100).toFixed(0)}%, ${c.involuntaryContextSwitches} involuntary context switches, ${(c.preemptedSlots * 100).toFixed(0)}% slots preempted, slot spread ${(c.slotSpread * 100).toFixed(1)}%`;
}

/** Combines the contention of several measurements (sums of times and switches, worst spreads). */
export function mergeContention(cs: readonly Contention[]): Contention {
  const wallMs = cs.reduce((a, c) => a + c.wallMs, 0);
  const cpuMs = cs.reduce((a, c) => a + c.cpuMs, 0);
  const slots = cs.reduce((a, c) => a + c.preemptedSlots * c.wallMs, 0);
  return {
    wallMs,
    cpuMs,
    cpuOverWall: wallMs > 0 ? cpuMs / wallMs : 1,
    involuntaryContextSwitches: cs.reduce((a, c) => a + c.involuntaryContextSwitches, 0),
    preemptedSlots: wallMs > 0 ? slots / wallMs : 0,
    slotSpread: cs.length ? median(cs.map((c) => c.slotSpread)) : 0,
  };
}

/** Starts a contention probe; `stop(slotSpread, preemptedSlots)` returns the record. */
export function contentionProbe(): { stop: (slotSpread: number, preemptedSlots: number) => Contention } {
  const w0 = performance.now();
  const c0 = process.cpuUsage();
  const ru0 = process.resourceUsage().involuntaryContextSwitches;
  return {
    stop: (slotSpread, preemptedSlots) => {
      const wallMs = performance.now() - w0;
      const c = process.cpuUsage(c0);
      const cpuMs = (c.user + c.system) / 1000;
      return { wallMs, cpuMs, cpuOverWall: wallMs > 0 ? cpuMs / wallMs : 1, involuntaryContextSwitches: process.resourceUsage().involuntaryContextSwitches - ru0, preemptedSlots, slotSpread };
    },
  };
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

/** Percentile by linear interpolation over sorted values (p in [0, 100]). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const pos = ((sorted.length - 1) * p) / 100;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** (p90 - p10) / p50 of a sample. */
export function relativeSpread(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const p50 = percentile(s, 50);
  return p50 > 0 ? (percentile(s, 90) - percentile(s, 10)) / p50 : NaN;
}

/** What the timer needs of a session (onnxruntime-node's `Session` and runtime/web-session.ts's `WebSession` are ones). */
export type TimedSession = Pick<Session, 'runOrt'>;

export interface TimedEntry {
  session: TimedSession;
  /** Round r runs feeds[r % feeds.length]. */
  feeds: readonly Feed[];
}

export interface InterleavedOptions {
  /** Timed rounds (default 50). */
  rounds?: number;
  /** Untimed runs per session first (default 5). */
  warmup?: number;
  /** Runs per timed slot: a number, or 'auto' to repeat fast models until a slot lasts >= 5 ms (default 1). */
  inner?: number | 'auto';
  onRound?: (done: number, total: number) => void;
  /** Called between rounds (memory sampling). */
  afterRound?: () => void;
}

export interface EntryTimes {
  /** Per slot: mean wall time of one run, ms. */
  wallMs: number[];
  /** Per slot: mean CPU time of this process for one run, ms. */
  cpuMs: number[];
  inner: number;
}

export interface InterleavedTimes {
  entries: EntryTimes[];
  contention: Contention;
}

type OrtFeed = Record<string, ort.Tensor>;

function toOrtFeed(feed: Feed): OrtFeed {
  const out: OrtFeed = {};
  for (const [k, v] of Object.entries(feed)) out[k] = toOrtTensor(v, k);
  return out;
}

function disposeAll(out: ort.InferenceSession.OnnxValueMapType): void {
  for (const v of Object.values(out)) (v as ort.Tensor).dispose?.();
}

const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** Calibration runs per session for `inner: 'auto'` (the fastest counts). */
const CALIBRATION_RUNS = 3;
/** `inner: 'auto'`: a slot of the fastest session lasts about this long (ms), a slower session's at most {@link SLOT_MAX_MS}. */
const SLOT_MS = 5;
const SLOT_MAX_MS = 50;
const INNER_MAX = 50;

/**
 * Runs per slot for `inner: 'auto'`: one count for every session, from the fastest of
 * {@link CALIBRATION_RUNS} runs of each, so that a slot of the fastest lasts about {@link SLOT_MS}
 * (at most {@link INNER_MAX} runs); a session slow enough that the count would make its slot longer
 * than {@link SLOT_MAX_MS} runs fewer. One count, not one per session: the first run of a slot
 * follows the other sessions' runs and pays for their weights in the caches, and a slot of fewer runs
 * averages more of that in (the trained LM at sequence 1, ~0.12 ms a run: a q4 session whose only
 * calibration run was caught by a pause got 1-2 runs per slot against ~40 for float32, and timed
 * 2.09x float32 in one bench run where both run the same float32 MatMuls; 0.96-1.02x otherwise).
 */
async function autoInner(sessions: number, run: (i: number, r: number) => Promise<void>): Promise<number[]> {
  const fastest: number[] = [];
  for (let i = 0; i < sessions; i++) {
    let best = Infinity;
    for (let k = 0; k < CALIBRATION_RUNS; k++) {
      const t0 = performance.now();
      await run(i, k);
      best = Math.min(best, performance.now() - t0);
    }
    fastest.push(Math.max(best, 0.01));
  }
  const common = Math.max(1, Math.min(INNER_MAX, Math.ceil(SLOT_MS / Math.min(...fastest))));
  return fastest.map((t) => Math.max(1, Math.min(common, Math.ceil(SLOT_MAX_MS / t))));
}

/** Times sessions in interleaved rounds, each slot by wall and CPU time; records contention. */
export async function timeInterleaved(entries: readonly TimedEntry[], opts: InterleavedOptions = {}): Promise<InterleavedTimes> {
  if (entries.length === 0) throw inputError('BENCH_NO_MODEL', 'nothing to measure: no sessions given');
  const rounds = opts.rounds ?? 50;
  const warmup = opts.warmup ?? 5;
  if (!Number.isInteger(rounds) || rounds < 1) throw inputError('BENCH_BAD_RUNS', `runs must be a positive integer, got ${rounds}`);
  if (!Number.isInteger(warmup) || warmup < 0) throw inputError('BENCH_BAD_WARMUP', `warmup must be a non-negative integer, got ${warmup}`);
  for (const e of entries) if (e.feeds.length === 0) throw inputError('BENCH_NO_INPUTS', 'nothing to measure: the input source gave no samples');
  const feeds = entries.map((e) => e.feeds.map(toOrtFeed));
  const run = async (i: number, r: number) => {
    const out = await entries[i]!.session.runOrt(feeds[i]![r % feeds[i]!.length]!);
    disposeAll(out);
  };
  for (let i = 0; i < entries.length; i++) {
    for (let k = 0; k < warmup; k++) await run(i, k);
    opts.afterRound?.();
  }
  const given = opts.inner;
  const inner = given === 'auto' ? await autoInner(entries.length, run) : entries.map(() => Math.max(1, Math.floor(given ?? 1)));
  const times: EntryTimes[] = entries.map((_, i) => ({ wallMs: [], cpuMs: [], inner: inner[i]! }));
  let preempted = 0;
  const probe = contentionProbe();
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? entries.map((_, i) => i) : entries.map((_, i) => entries.length - 1 - i);
    for (const i of order) {
      const n = inner[i]!;
      // a slot of several runs starts with one untimed: it follows the other sessions' runs and pays
      // for its weights in the caches, which the timed runs then find there
      if (n > 1) await run(i, r);
      const w0 = performance.now();
      const c0 = cpuNow();
      for (let k = 0; k < n; k++) await run(i, r);
      const c = cpuNow() - c0;
      const w = performance.now() - w0;
      times[i]!.wallMs.push(w / n);
      times[i]!.cpuMs.push(c / n);
      if (c < 0.9 * w) preempted++;
    }
    opts.afterRound?.();
    opts.onRound?.(r + 1, rounds);
  }
  const spread = Math.max(...times.map((t) => relativeSpread(t.wallMs)));
  return { entries: times, contention: probe.stop(Number.isFinite(spread) ? spread : 0, preempted / (rounds * entries.length)) };
}

export interface RatioSide {
  source: ModelSource;
  feed: Feed;
  name: string;
}

export interface RatioTrial {
  /** Fastest slot of A / fastest slot of B (CPU time with one thread, else wall time). */
  ratio: number;
  aMinMs: number;
  bMinMs: number;
  aP50Ms: number;
  bP50Ms: number;
  contention: Contention;
}

export interface TrialOptions {
  /** Interleaved rounds per trial (default 40). */
  rounds?: number;
  warmup?: number;
  clock?: 'cpu' | 'wall';
  session?: SessionOptions;
}

/** One trial: fresh sessions of A and B, timed interleaved. */
export async function ratioTrial(a: RatioSide, b: RatioSide, opts: TrialOptions = {}): Promise<RatioTrial> {
  const so: SessionOptions = { intraOpNumThreads: 1, graphOptimizationLevel: 'all', allowSpinning: false, ...(opts.session ?? {}) };
  const sa = await Session.create(a.source, so, a.name);
  try {
    const sb = await Session.create(b.source, so, b.name);
    try {
      const t = await timeInterleaved([{ session: sa, feeds: [a.feed] }, { session: sb, feeds: [b.feed] }], { rounds: opts.rounds ?? 40, warmup: opts.warmup ?? 3, inner: 'auto' });
      const clock = opts.clock ?? ((so.intraOpNumThreads ?? 1) === 1 ? 'cpu' : 'wall');
      const pick = (e: EntryTimes) => (clock === 'cpu' ? e.cpuMs : e.wallMs);
      const [ta, tb] = [pick(t.entries[0]!), pick(t.entries[1]!)];
      const aMinMs = Math.min(...ta);
      const bMinMs = Math.min(...tb);
      return { ratio: aMinMs / bMinMs, aMinMs, bMinMs, aP50Ms: median(ta), bP50Ms: median(tb), contention: t.contention };
    } finally {
      await sb.dispose();
    }
  } finally {
    await sa.dispose();
  }
}

/** The estimate of a set of trial ratios: the median of their lowest third, and its relative noise. */
export function floorEstimate(ratios: readonly number[]): { value: number; noise: number; used: number } {
  const s = [...ratios].sort((a, b) => a - b);
  if (s.length === 0) return { value: NaN, noise: Infinity, used: 0 };
  const k = Math.min(s.length, Math.max(3, Math.ceil(s.length / 3)));
  const low = s.slice(0, k);
  const value = median(low);
  // noise: how far apart the trials that make the estimate are (with fewer than 3 trials: unknown)
  const noise = s.length < 3 ? Infinity : (low[k - 1]! - low[0]!) / value;
  return { value, noise, used: k };
}

export interface StableEstimate {
  value: number;
  /** Relative noise of the value (spread of the trials it is made of). */
  noise: number;
  trials: number[];
  stable: boolean;
  /** Why the estimate is not stable (when it is not). */
  reason?: string;
  seconds: number;
}

export interface AdaptiveOptions {
  /** Trials before the estimate may stop (default 5). */
  minTrials?: number;
  /** Most trials (default 200). */
  maxTrials?: number;
  /** Time limit, seconds (default 60). */
  maxSeconds?: number;
  /** Stable when the noise is at most this (default 0.02). */
  tolerance?: number;
  /**
   * Stop early when this returns true for the current estimate (e.g. the gate's verdict is clear).
   * Without it, the loop stops as soon as the estimate is stable.
   */
  done?: (e: StableEstimate) => boolean;
  /** Clock in seconds (injectable for tests). */
  now?: () => number;
  onTrial?: (e: StableEstimate) => void;
}

/** Runs `trial` until the floor estimate is stable (or `done` says so) or the time limit is reached. */
export async function adaptiveEstimate(trial: () => Promise<number>, opts: AdaptiveOptions = {}): Promise<StableEstimate> {
  const now = opts.now ?? (() => performance.now() / 1000);
  const minTrials = opts.minTrials ?? 5;
  const maxTrials = opts.maxTrials ?? 200;
  const maxSeconds = opts.maxSeconds ?? 60;
  const tolerance = opts.tolerance ?? 0.02;
  const t0 = now();
  const trials: number[] = [];
  for (;;) {
    const r = await trial();
    if (!(r > 0) || !Number.isFinite(r)) throw inputError('TIMER_BAD_TRIAL', `a timing trial gave no usable ratio (${r})`);
    trials.push(r);
    const f = floorEstimate(trials);
    const seconds = now() - t0;
    const e: StableEstimate = { value: f.value, noise: f.noise, trials: [...trials], stable: trials.length >= minTrials && f.noise <= tolerance, seconds };
    opts.onTrial?.(e);
    if (trials.length < minTrials) continue;
    if (opts.done ? opts.done(e) : e.stable) return e;
    const outOfTime = seconds >= maxSeconds;
    if (outOfTime || trials.length >= maxTrials) {
      if (!e.stable) e.reason = `the ${f.used} fastest of ${trials.length} timing trials still differ by ${(f.noise * 100).toFixed(1)}% (stable below ${(tolerance * 100).toFixed(1)}%) after ${seconds.toFixed(0)} s (${outOfTime ? 'time' : 'trial'} limit)`;
      return e;
    }
  }
}

/** onnxruntime-node's version (for environment records). */
export function onnxruntimeVersion(): string {
  return ort.env.versions?.node ?? 'unknown';
}
