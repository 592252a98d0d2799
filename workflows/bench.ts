/**
 * Benchmarks and comparisons as plain functions over serializable options (so a benchmark can run
 * whole inside the sandbox child): load models, read inputs from a data source, measure latency in
 * interleaved rounds, optionally profile per op; or run two models over a data source and compare
 * their outputs.
 */
import { collectSamples, openDataSource, PreprocessConfig } from '../data/index.js';
import { checkError, inputError } from '../core/errors.js';
import { evaluate } from './evaluate.js';
import { measureLatency } from '../runtime/latency.js';
import { loadMetric } from '../runtime/metrics.js';
import { profileModel } from '../runtime/profile.js';
import { runInSandbox, SandboxLimits, siblingModule } from '../runtime/sandbox.js';
import { Session, SessionOptions, ValueInfo } from '../runtime/session.js';
import type { BenchModelResult, BenchReport, CompareReport } from '../report/runtime.js';
import { createSession as createExpandedSession } from '../passes/quantize/compressed.js';

export type { BenchModelResult, BenchReport, CompareReport };

export interface BenchOptions {
  models: string[];
  /** Data source spec (default 'random'). */
  inputs?: string;
  preprocess?: string | PreprocessConfig;
  shapes?: Record<string, number[]>;
  /** Distinct input samples cycled through the timed runs (default 1). */
  samples?: number;
  warmup?: number;
  runs?: number;
  session?: SessionOptions;
  profile?: boolean;
  /** Load weight-compressed models (onnxforge.weights=int8) through the expanding helper (default false: as written). */
  expandCompressed?: boolean;
}

/** Runs a benchmark in this process. `onProgress` gets (round, total) during timing. */
export async function benchmark(o: BenchOptions, onProgress?: (done: number, total: number) => void): Promise<BenchReport> {
  if (o.models.length === 0) throw inputError('BENCH_NO_MODEL', 'name at least one model to benchmark');
  const sessions: Session[] = [];
  // Idle intra-op threads do not spin by default: spinning threads of one session steal the cores of
  // another in A/B rounds, and of other processes on a shared machine (measured: a 4x slower rec p50
  // under load). The same default for one model or several keeps their numbers comparable.
  const sessionOptions: SessionOptions = { allowSpinning: false, ...(o.session ?? {}) };
  try {
    for (const m of o.models) sessions.push(o.expandCompressed ? await createExpandedSession(m, sessionOptions, m) : await Session.create(m, sessionOptions));
    const first = sessions[0]!;
    for (const s of sessions.slice(1)) {
      const a = first.inputs.map((i) => `${i.name}:${i.type}`).join(',');
      const b = s.inputs.map((i) => `${i.name}:${i.type}`).join(',');
      if (a !== b) throw inputError('BENCH_INPUTS_DIFFER', `${s.name} has inputs (${b}), ${first.name} has (${a}); models benchmarked together must take the same inputs`, { file: s.name });
    }
    const spec = o.inputs ?? 'random';
    const samples = await collectSamples(spec, first.inputs, { limit: o.samples ?? 1, shapes: o.shapes ?? {}, ...(o.preprocess ? { preprocess: o.preprocess } : {}) });
    const feeds = samples.map((s) => s.feed);
    const lat = await measureLatency(sessions, feeds, { warmup: o.warmup ?? 5, runs: o.runs ?? 50, ...(onProgress ? { onRound: onProgress } : {}) });
    const models: BenchModelResult[] = lat.sessions.map((s) => ({ model: s.name, createMs: s.createMs, stats: s.stats }));
    if (o.profile) {
      for (let i = 0; i < models.length; i++) {
        models[i]!.profile = await profileModel(o.models[i]!, feeds, { ...sessionOptions, runs: Math.max(1, Math.min(o.runs ?? 50, 20)) });
      }
    }
    return {
      schema: 'onnxforge.bench/1',
      inputs: spec,
      samples: feeds.length,
      warmup: o.warmup ?? 5,
      runs: o.runs ?? 50,
      threads: o.session?.intraOpNumThreads || 'default',
      spinning: sessionOptions.allowSpinning ?? true,
      models,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      contention: lat.contention,
    };
  } finally {
    for (const s of sessions) await s.dispose();
  }
}

/** Runs {@link benchmark} in a sandboxed child process under time and memory limits. */
export async function benchmarkInSandbox(o: BenchOptions, limits: SandboxLimits = {}): Promise<BenchReport> {
  const r = await runInSandbox<BenchReport>({ kind: 'call', module: siblingModule(import.meta.url, 'bench'), export: 'benchmark', args: [o], progress: Boolean(limits.onProgress) }, limits);
  return { ...r.value, sandbox: { peakRssBytes: r.peakRssBytes, wallMs: r.wallMs } };
}

export interface CompareOptions {
  /** The reference model (A). */
  reference: string;
  /** The candidate model (B). */
  candidate: string;
  inputs?: string;
  preprocess?: string | PreprocessConfig;
  shapes?: Record<string, number[]>;
  limit?: number;
  /** Largest allowed max-abs error of any output (default 1e-4). */
  tolerance?: number;
  /** User metric modules (`path[#export]`). */
  metrics?: string[];
  session?: SessionOptions;
}

export async function compareModels(o: CompareOptions, onSample?: (done: number) => void): Promise<CompareReport> {
  const tolerance = o.tolerance ?? 1e-4;
  if (!(tolerance >= 0)) throw inputError('USAGE_BAD_VALUE', `tolerance must be a non-negative number, got ${o.tolerance}`);
  const metrics = await Promise.all((o.metrics ?? []).map((m) => loadMetric(m)));
  const sessionOptions: SessionOptions = { allowSpinning: false, ...(o.session ?? {}) };
  const ref = await Session.create(o.reference, sessionOptions);
  let cand: Session | undefined;
  try {
    cand = await Session.create(o.candidate, sessionOptions);
    const compatible = (i: ValueInfo, j: ValueInfo) =>
      j.name === i.name && j.type === i.type && j.shape.length === i.shape.length && i.shape.every((d, k) => typeof d !== 'number' || typeof j.shape[k] !== 'number' || d === j.shape[k]);
    const missing = ref.inputs.filter((i) => !cand!.inputs.some((j) => compatible(i, j)));
    if (missing.length) {
      throw checkError(
        'COMPARE_INPUTS_DIFFER',
        `${o.candidate} has no input matching ${missing.map((i) => `'${i.name}' (${i.type} [${i.shape.join(',')}])`).join(', ')} of ${o.reference}`,
        { file: o.candidate },
      );
    }
    const spec = o.inputs ?? 'random';
    const src = openDataSource(spec, ref.inputs, { shapes: o.shapes ?? {}, ...(o.limit !== undefined ? { limit: o.limit } : {}), ...(o.preprocess ? { preprocess: o.preprocess } : {}) });
    const r = await evaluate(cand, ref, src, { metrics, ...(onSample ? { onSample } : {}) });
    if (r.samples === 0) throw inputError('DATA_EMPTY', `--inputs ${spec} gave no samples`);
    const outputs = (r.outputs ?? []).map((e) => ({ ...e, pass: e.maxAbs <= tolerance }));
    return {
      schema: 'onnxforge.compare/1',
      reference: o.reference,
      candidate: o.candidate,
      inputs: spec,
      samples: r.samples,
      tolerance,
      outputs,
      metrics: r.metrics,
      referenceMetrics: r.referenceMetrics ?? {},
      pass: outputs.every((e) => e.pass),
    };
  } finally {
    await ref.dispose();
    await cand?.dispose();
  }
}
