/**
 * onnxruntime-web's WASM backend (1.30, run in Node: no browser needed) behind the same session
 * shape as onnxruntime-node's {@link Session}: create from bytes or a path, run on host tensors,
 * `runOrt` for the timer, and per-node profiles.
 *
 * - Threads: onnxruntime-web runs a model on `env.wasm.numThreads` threads, fixed for the process when
 *   the WASM module starts (the first session). onnxforge's default is 1 thread, which is what a page
 *   gets unless it is cross-origin isolated; `intraOpNumThreads` of the first WASM session sets it.
 * - SIMD: onnxruntime-web 1.30 ships only SIMD builds (ort-wasm-simd-threaded*.wasm); {@link wasmInfo}
 *   reports whether this engine validates a SIMD module (it must, or the backend would not start).
 * - Profiles: the WASM build's profiler does not write a file the host can read; `endProfiling()` prints
 *   the Chrome-trace JSON through Emscripten's stdout, which in Node is `fs.writeSync(1, ...)` called
 *   synchronously inside `endProfiling()`. {@link profileWebModel} captures exactly those writes and
 *   parses them with the same parser as onnxruntime-node's profile files (runtime/profile.ts).
 *
 * onnxruntime-node and onnxruntime-web share one onnxruntime-common (one backend registry, one Tensor
 * class): onnxruntime-node owns 'cpu' (priority 100 over web's 10), so sessions here ask for the
 * 'wasm' execution provider by name and node sessions are unaffected.
 */
import fs from 'node:fs';
import * as ortWeb from 'onnxruntime-web';
import { inputError, internalError } from '../core/errors.js';
import type { Feed } from '../core/host-tensor.js';
import { parseProfile, type ProfileReport } from './profile.js';
import { firstLine, fromOrtTensor, readModelBytes, toOrtTensor, type ModelSource, type SessionOptions, type ValueInfo } from './session.js';
import { hostDType } from '../core/host-tensor.js';

/** WASM threads onnxforge uses unless told otherwise: what a page that is not cross-origin isolated gets. */
export const DEFAULT_WASM_THREADS = 1;

export interface WasmInfo {
  /** onnxruntime-web's version. */
  version: string;
  /** Threads the WASM backend runs on (`env.wasm.numThreads`). */
  threads: number;
  /** Whether the engine runs WebAssembly SIMD (the builds onnxruntime-web 1.30 ships need it). */
  simd: boolean;
}

// The smallest module using a SIMD instruction (i8x16.splat of i32.const 0): WebAssembly.validate says whether the engine has SIMD.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);

let started: number | undefined;

/** Sets the WASM thread count before the first session; afterwards only the same count is accepted. */
function ensureThreads(threads: number | undefined): number {
  const want = threads && threads > 0 ? threads : DEFAULT_WASM_THREADS;
  if (started === undefined) {
    ortWeb.env.wasm.numThreads = want;
    started = want;
  } else if (threads && threads > 0 && threads !== started) {
    throw inputError('USAGE_BAD_VALUE', `onnxruntime-web already runs on ${started} WASM thread(s) in this process; it cannot switch to ${threads} (the thread count is fixed when the WASM module starts)`);
  }
  return started;
}

/** The WASM backend's version, threads and SIMD support. */
export function wasmInfo(): WasmInfo {
  return { version: ortWeb.env.versions.web ?? 'unknown', threads: started ?? (ortWeb.env.wasm.numThreads || DEFAULT_WASM_THREADS), simd: WebAssembly.validate(SIMD_PROBE) };
}

function webOptions(o: SessionOptions): ortWeb.InferenceSession.SessionOptions {
  return {
    executionProviders: ['wasm'],
    graphOptimizationLevel: o.graphOptimizationLevel === 'layout' ? 'all' : (o.graphOptimizationLevel ?? 'all'),
    logSeverityLevel: o.logSeverityLevel ?? 3,
    ...(o.enableProfiling ? { enableProfiling: true } : {}),
    ...(o.executionMode ? { executionMode: o.executionMode } : {}),
  };
}

function toValueInfo(m: ortWeb.InferenceSession.ValueMetadata): ValueInfo {
  if (!m.isTensor) return { name: m.name, type: 'non-tensor', shape: [], isTensor: false };
  return { name: m.name, type: hostDType(m.type) ?? m.type, shape: [...m.shape], isTensor: true };
}

function metadata(s: ortWeb.InferenceSession, which: 'inputs' | 'outputs'): ValueInfo[] {
  return (which === 'inputs' ? s.inputMetadata : s.outputMetadata).map(toValueInfo);
}

/** An onnxruntime-web WASM session. */
export class WebSession {
  readonly backend = 'wasm' as const;
  private constructor(
    readonly ort: ortWeb.InferenceSession,
    readonly name: string,
    /** Wall time spent in `InferenceSession.create`, milliseconds. */
    readonly createMs: number,
  ) {}

  static async create(source: ModelSource, options: SessionOptions = {}, name?: string): Promise<WebSession> {
    const label = name ?? (typeof source === 'string' ? source : '(in-memory model)');
    const bytes = await readModelBytes(source);
    ensureThreads(options.intraOpNumThreads);
    const t0 = performance.now();
    let s: ortWeb.InferenceSession;
    try {
      s = await ortWeb.InferenceSession.create(bytes, webOptions(options));
    } catch (e) {
      throw inputError('RUNTIME_LOAD_FAILED', `onnxruntime-web (WASM) could not load ${label}: ${firstLine(e)}`, { file: label });
    }
    return new WebSession(s, label, performance.now() - t0);
  }

  /** The model's inputs and outputs as onnxruntime-web reports them. */
  get inputs(): ValueInfo[] {
    return metadata(this.ort, 'inputs');
  }
  get outputs(): ValueInfo[] {
    return metadata(this.ort, 'outputs');
  }

  async run(feed: Feed, outputNames?: readonly string[]): Promise<Feed> {
    const feeds: Record<string, ortWeb.Tensor> = {};
    for (const [k, v] of Object.entries(feed)) feeds[k] = toOrtTensor(v, k) as unknown as ortWeb.Tensor;
    const result = await this.runOrt(feeds, outputNames);
    const out: Feed = {};
    for (const [k, v] of Object.entries(result)) {
      const t = fromOrtTensor(v as never, k);
      // WASM output tensors are views the next run may reuse: copy before disposing.
      out[k] = { ...t, data: t.data.slice() as typeof t.data };
      (v as ortWeb.Tensor).dispose?.();
    }
    return out;
  }

  /** Runs with tensors already built (onnxruntime-node's and -web's Tensor are one class, onnxruntime-common's). */
  async runOrt(feeds: Record<string, unknown>, outputNames?: readonly string[]): Promise<ortWeb.InferenceSession.OnnxValueMapType> {
    try {
      const f = feeds as Record<string, ortWeb.Tensor>;
      return outputNames ? await this.ort.run(f, outputNames as string[]) : await this.ort.run(f);
    } catch (e) {
      throw inputError('RUNTIME_RUN_FAILED', `onnxruntime-web (WASM) failed to run ${this.name}: ${firstLine(e)}`, { file: this.name });
    }
  }

  /** Ends profiling and returns the trace text the WASM module printed (see the file comment). */
  endProfilingTrace(): string {
    const chunks: string[] = [];
    const original = fs.writeSync;
    const capture = ((fd: number, data: unknown, ...rest: unknown[]) => {
      if (fd === 1 && typeof data === 'string') {
        chunks.push(data);
        return Buffer.byteLength(data);
      }
      return (original as (...a: unknown[]) => number)(fd, data, ...rest);
    }) as typeof fs.writeSync;
    fs.writeSync = capture;
    try {
      this.ort.endProfiling();
    } finally {
      fs.writeSync = original;
    }
    return chunks.join('');
  }

  async dispose(): Promise<void> {
    await this.ort.release();
  }
}

/** Per-node profile of `feeds` (each `runs` times) in onnxruntime-web's WASM backend. */
export async function profileWebModel(source: ModelSource, feeds: readonly Feed[], options: SessionOptions & { runs?: number; warmup?: number } = {}): Promise<ProfileReport> {
  const session = await WebSession.create(source, { ...options, enableProfiling: true });
  const runs = options.runs ?? 1;
  let text: string;
  try {
    for (let r = 0; r < runs; r++) for (const f of feeds) await session.run(f);
    text = session.endProfilingTrace();
  } finally {
    await session.dispose();
  }
  const start = text.indexOf('[');
  const end = text.lastIndexOf(']');
  if (start < 0 || end < start) throw internalError('PROFILE_NO_TRACE', `onnxruntime-web printed no profile trace (${text.length} characters captured)`);
  let trace: unknown;
  try {
    trace = JSON.parse(text.slice(start, end + 1));
  } catch (e) {
    throw inputError('PROFILE_BAD_TRACE', `onnxruntime-web's profile trace is not JSON: ${firstLine(e)}`);
  }
  return parseProfile(trace, runs * feeds.length);
}
