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
import { runInSandbox, SandboxLimits, siblingModule } from '../runtime/sandbox.js';
import { readModelBytes, SessionOptions, ValueInfo } from '../runtime/session.js';
import { Backend, backendInfo, BackendSession, openSession, runnerFor } from '../runtime/backend.js';
import { DEFAULT_WASM_THREADS } from '../runtime/web-session.js';
import type { BenchModelResult, BenchReport, CompareReport } from '../report/runtime.js';
import { expandCompressedWeights } from '../passes/quantize/compressed.js';
import { divergingLayers } from './compare-layers.js';

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
  /** Backends every model runs on (default ['node']); all model x backend pairs are timed in the same interleaved rounds. */
  backends?: Backend[];
  /** WASM threads (default 1, what a page that is not cross-origin isolated gets). */
  wasmThreads?: number;
}

/** Session options of a backend: `session` for node; for WASM the WASM thread count instead of intra-op threads. */
export function backendSessionOptions(backend: Backend, session: SessionOptions, wasmThreads?: number): SessionOptions {
  return backend === 'wasm' ? { ...session, intraOpNumThreads: wasmThreads ?? DEFAULT_WASM_THREADS } : session;
}

/** Opens `model` on `backend`, expanding weight-compressed weights first when asked. */
export async function openModel(model: string, backend: Backend, options: SessionOptions, expand = false): Promise<BackendSession> {
  return expand ? openSession(backend, expandCompressedWeights(await readModelBytes(model)), options, model) : openSession(backend, model, options, model);
}

/** Runs a benchmark in this process. `onProgress` gets (round, total) during timing. */
export async function benchmark(o: BenchOptions, onProgress?: (done: number, total: number) => void): Promise<BenchReport> {
  if (o.models.length === 0) throw inputError('BENCH_NO_MODEL', 'name at least one model to benchmark');
  const sessions: BackendSession[] = [];
  const backends = o.backends?.length ? o.backends : (['node'] as Backend[]);
  const pairs = o.models.flatMap((model) => backends.map((backend) => ({ model, backend })));
  // Idle intra-op threads do not spin by default: spinning threads of one session steal the cores of
  // another in A/B rounds, and of other processes on a shared machine (measured: a 4x slower rec p50
  // under load). The same default for one model or several keeps their numbers comparable.
  const sessionOptions: SessionOptions = { allowSpinning: false, ...(o.session ?? {}) };
  try {
    for (const p of pairs) sessions.push(await openModel(p.model, p.backend, backendSessionOptions(p.backend, sessionOptions, o.wasmThreads), o.expandCompressed));
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
    const models: BenchModelResult[] = lat.sessions.map((s, i) => ({ model: s.name, backend: pairs[i]!.backend, createMs: s.createMs, stats: s.stats }));
    if (o.profile) {
      for (let i = 0; i < models.length; i++) {
        const { model, backend } = pairs[i]!;
        const bytes = o.expandCompressed ? expandCompressedWeights(await readModelBytes(model)) : model;
        models[i]!.profile = await runnerFor(backend).profile(bytes, feeds, { ...backendSessionOptions(backend, sessionOptions, o.wasmThreads), runs: Math.max(1, Math.min(o.runs ?? 50, 20)) });
      }
    }
    return {
      schema: 'onnxforge.bench/1',
      inputs: spec,
      samples: feeds.length,
      warmup: o.warmup ?? 5,
      runs: o.runs ?? 50,
      threads: o.session?.intraOpNumThreads || 'default',
      backends: backends.map((b) => backendInfo(b, o.session?.intraOpNumThreads ?? 0)),
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
  /** The candidate model (B); absent: the reference itself, run on the second backend. */
  candidate?: string;
  inputs?: string;
  preprocess?: string | PreprocessConfig;
  shapes?: Record<string, number[]>;
  limit?: number;
  /** Largest allowed max-abs error of any output (default 1e-4). */
  tolerance?: number;
  /** User metric modules (`path[#export]`). */
  metrics?: string[];
  session?: SessionOptions;
  /**
   * Where the reference and the candidate run: one backend for both (default ['node']), or two (the
   * reference on the first, the candidate on the second: `compare a.onnx --backend node,wasm`).
   */
  backends?: Backend[];
  /** WASM threads (default 1). */
  wasmThreads?: number;
  /** Also compare every intermediate float tensor and name the first one where the two runs part (see workflows/compare-layers.ts). */
  debugLayers?: boolean;
}

/** The backends of the reference and the candidate from `backends` (one or two). */
export function compareBackends(o: Pick<CompareOptions, 'backends' | 'candidate'>): [Backend, Backend] {
  const b = o.backends?.length ? o.backends : (['node'] as Backend[]);
  if (b.length > 2) throw inputError('USAGE_BAD_VALUE', `compare runs on one or two backends (reference, candidate), got ${b.join(',')}`, { field: 'backend' });
  if (o.candidate === undefined && b.length < 2) throw inputError('USAGE_MISSING', 'compare needs a candidate model, or one model and two backends (--backend node,wasm)');
  return [b[0]!, b[b.length - 1]!];
}

export async function compareModels(o: CompareOptions, onSample?: (done: number) => void): Promise<CompareReport> {
  const tolerance = o.tolerance ?? 1e-4;
  if (!(tolerance >= 0)) throw inputError('USAGE_BAD_VALUE', `tolerance must be a non-negative number, got ${o.tolerance}`);
  const [refBackend, candBackend] = compareBackends(o);
  const candidate = o.candidate ?? o.reference;
  const metrics = await Promise.all((o.metrics ?? []).map((m) => loadMetric(m)));
  const sessionOptions: SessionOptions = { allowSpinning: false, ...(o.session ?? {}) };
  const ref = await openSession(refBackend, o.reference, backendSessionOptions(refBackend, sessionOptions, o.wasmThreads), o.reference);
  let cand: BackendSession | undefined;
  try {
    cand = await openSession(candBackend, candidate, backendSessionOptions(candBackend, sessionOptions, o.wasmThreads), candidate);
    const compatible = (i: ValueInfo, j: ValueInfo) =>
      j.name === i.name && j.type === i.type && j.shape.length === i.shape.length && i.shape.every((d, k) => typeof d !== 'number' || typeof j.shape[k] !== 'number' || d === j.shape[k]);
    const missing = ref.inputs.filter((i) => !cand!.inputs.some((j) => compatible(i, j)));
    if (missing.length) {
      throw checkError(
        'COMPARE_INPUTS_DIFFER',
        `${candidate} has no input matching ${missing.map((i) => `'${i.name}' (${i.type} [${i.shape.join(',')}])`).join(', ')} of ${o.reference}`,
        { file: candidate },
      );
    }
    const spec = o.inputs ?? 'random';
    const dataOptions = { shapes: o.shapes ?? {}, ...(o.limit !== undefined ? { limit: o.limit } : {}), ...(o.preprocess ? { preprocess: o.preprocess } : {}) };
    const r = await evaluate(cand, ref, openDataSource(spec, ref.inputs, dataOptions), { metrics, ...(onSample ? { onSample } : {}) });
    if (r.samples === 0) throw inputError('DATA_EMPTY', `--inputs ${spec} gave no samples`);
    const outputs = (r.outputs ?? []).map((e) => ({ ...e, pass: e.maxAbs <= tolerance }));
    const report: CompareReport = {
      schema: 'onnxforge.compare/1',
      reference: o.reference,
      candidate,
      inputs: spec,
      samples: r.samples,
      tolerance,
      outputs,
      metrics: r.metrics,
      referenceMetrics: r.referenceMetrics ?? {},
      pass: outputs.every((e) => e.pass),
    };
    if (refBackend !== candBackend || o.backends?.length) {
      report.backends = { reference: backendInfo(refBackend, sessionOptions.intraOpNumThreads ?? 0), candidate: backendInfo(candBackend, sessionOptions.intraOpNumThreads ?? 0) };
    }
    if (o.debugLayers) {
      if (candidate !== o.reference) throw inputError('USAGE_BAD_VALUE', '--debug-layers compares one model on two backends (compare a.onnx --backend node,wasm --debug-layers)', { field: 'debug-layers' });
      const src = () => openDataSource(spec, ref.inputs, { ...dataOptions, limit: Math.min(o.limit ?? 4, 4) });
      report.layers = await divergingLayers(o.reference, [refBackend, candBackend], src, {
        reference: backendSessionOptions(refBackend, sessionOptions, o.wasmThreads),
        candidate: backendSessionOptions(candBackend, sessionOptions, o.wasmThreads),
      });
    }
    return report;
  } finally {
    await ref.dispose();
    await cand?.dispose();
  }
}
