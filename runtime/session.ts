/**
 * onnxruntime-node sessions: created from bytes (no temporary files) or a path, with the options
 * onnxforge exposes, plus conversion between `ort.Tensor` and {@link HostTensor}. Creation time is
 * measured, and failures become {@link OnnxForgeError}s naming the model.
 */
import * as ort from 'onnxruntime-node';
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { inputError, OnnxForgeError } from '../core/errors.js';
import { Feed, formatDims, HostData, HostTensor, hostDType } from '../core/host-tensor.js';
import type { ModelSource, SessionOptions, ValueInfo } from './runner-types.js';

export type { ModelSource, SessionOptions, ValueInfo } from './runner-types.js';

export class Session {
  private constructor(
    readonly ort: ort.InferenceSession,
    /** File path, or a label for in-memory models. */
    readonly name: string,
    /** Wall time spent in `InferenceSession.create`, milliseconds. */
    readonly createMs: number,
  ) {}

  static async create(source: ModelSource, options: SessionOptions = {}, name?: string): Promise<Session> {
    const label = name ?? (typeof source === 'string' ? source : '(in-memory model)');
    // a path goes to onnxruntime as a path (after the same readability check), so that external data
    // resolves beside the model rather than in the working folder
    const input = typeof source === 'string' ? await readablePath(source) : source;
    const t0 = performance.now();
    let s: ort.InferenceSession;
    try {
      s = await ort.InferenceSession.create(input as string, toOrtOptions(options));
    } catch (e) {
      throw inputError('RUNTIME_LOAD_FAILED', `onnxruntime could not load ${label}: ${firstLine(e)}`, { file: label });
    }
    return new Session(s, label, performance.now() - t0);
  }

  get inputs(): ValueInfo[] {
    return this.ort.inputMetadata.map(toValueInfo);
  }

  get outputs(): ValueInfo[] {
    return this.ort.outputMetadata.map(toValueInfo);
  }

  /** Runs the model; `outputNames` defaults to all outputs. */
  async run(feed: Feed, outputNames?: readonly string[]): Promise<Feed> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feed)) feeds[k] = toOrtTensor(v, k);
    let result: ort.InferenceSession.OnnxValueMapType;
    try {
      result = outputNames ? await this.ort.run(feeds, outputNames as string[]) : await this.ort.run(feeds);
    } catch (e) {
      throw inputError('RUNTIME_RUN_FAILED', `onnxruntime failed to run ${this.name}: ${firstLine(e)}`, { file: this.name });
    }
    const out: Feed = {};
    for (const [k, v] of Object.entries(result)) {
      out[k] = fromOrtTensor(v as ort.Tensor, k);
      (v as ort.Tensor).dispose?.();
    }
    return out;
  }

  /** Runs with ort tensors already built (used by latency loops to keep conversion out of timings). */
  async runOrt(feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.OnnxValueMapType> {
    try {
      return await this.ort.run(feeds);
    } catch (e) {
      throw inputError('RUNTIME_RUN_FAILED', `onnxruntime failed to run ${this.name}: ${firstLine(e)}`, { file: this.name });
    }
  }

  endProfiling(): void {
    this.ort.endProfiling();
  }

  async dispose(): Promise<void> {
    await this.ort.release();
  }
}

/** The bytes of a model given as a path or as bytes (read errors name the file). */
export async function readModelBytes(source: ModelSource): Promise<Uint8Array> {
  if (typeof source !== 'string') return source;
  try {
    return new Uint8Array(await readFile(source));
  } catch (e) {
    throw inputError('RUNTIME_MODEL_UNREADABLE', `cannot read model ${source}: ${(e as Error).message}`, { file: source });
  }
}

/** `file` when it can be read as a model file (the errors of {@link readModelBytes}). */
async function readablePath(file: string): Promise<string> {
  try {
    const st = await stat(file);
    if (st.isDirectory()) throw Object.assign(new Error(`EISDIR: illegal operation on a directory, read`), { code: 'EISDIR' });
    await access(file, constants.R_OK);
  } catch (e) {
    throw inputError('RUNTIME_MODEL_UNREADABLE', `cannot read model ${file}: ${(e as Error).message}`, { file });
  }
  return file;
}

/** Creates a session from model bytes or a path. */
export function createSession(source: ModelSource, options: SessionOptions = {}, name?: string): Promise<Session> {
  return Session.create(source, options, name);
}

export function toOrtOptions(o: SessionOptions): ort.InferenceSession.SessionOptions {
  const opts: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: o.graphOptimizationLevel ?? 'all' };
  if (o.intraOpNumThreads !== undefined && o.intraOpNumThreads > 0) opts.intraOpNumThreads = o.intraOpNumThreads;
  if (o.interOpNumThreads !== undefined && o.interOpNumThreads > 0) opts.interOpNumThreads = o.interOpNumThreads;
  if (o.executionMode) opts.executionMode = o.executionMode;
  if (o.enableCpuMemArena !== undefined) opts.enableCpuMemArena = o.enableCpuMemArena;
  if (o.enableMemPattern !== undefined) opts.enableMemPattern = o.enableMemPattern;
  if (o.enableProfiling) opts.enableProfiling = true;
  if (o.profileFilePrefix) opts.profileFilePrefix = o.profileFilePrefix;
  if (o.optimizedModelFilePath) opts.optimizedModelFilePath = o.optimizedModelFilePath;
  opts.logSeverityLevel = o.logSeverityLevel ?? 3;
  if (o.extra || o.allowSpinning !== undefined) {
    const extra = structuredClone(o.extra ?? {}) as { session?: { intra_op?: Record<string, unknown>; inter_op?: Record<string, unknown> } };
    if (o.allowSpinning !== undefined) {
      const v = o.allowSpinning ? '1' : '0';
      extra.session = { ...extra.session, intra_op: { ...extra.session?.intra_op, allow_spinning: v }, inter_op: { ...extra.session?.inter_op, allow_spinning: v } };
    }
    opts.extra = extra;
  }
  return opts;
}

function toValueInfo(m: ort.InferenceSession.ValueMetadata): ValueInfo {
  if (!m.isTensor) return { name: m.name, type: 'non-tensor', shape: [], isTensor: false };
  return { name: m.name, type: hostDType(m.type) ?? m.type, shape: [...m.shape], isTensor: true };
}

/** HostTensor -> ort.Tensor (no copy of the typed array). */
export function toOrtTensor(t: HostTensor, name = 'tensor'): ort.Tensor {
  try {
    const data = unshared(t.data);
    if (t.type === 'bool') return new ort.Tensor('bool', data as Uint8Array, t.dims);
    return new ort.Tensor(t.type as ort.Tensor.Type, data as ort.Tensor.DataType, t.dims);
  } catch (e) {
    throw inputError('RUNTIME_BAD_TENSOR', `input ${name}: cannot build a ${t.type} tensor ${formatDims(t.dims)}: ${firstLine(e)}`, { tensor: name });
  }
}

/** Copies of shared-memory data made for onnxruntime, kept while the shared array lives (a feed run again reuses its copy). */
const unsharedCopies = new WeakMap<object, HostData>();

/**
 * `data` in ordinary memory: onnxruntime-node refuses a typed array on a SharedArrayBuffer ("Invalid
 * argument"), which a helper thread gets from core/share-work.ts shareLarge; copied once per array.
 */
function unshared(data: HostData): HostData {
  if (!ArrayBuffer.isView(data) || !(data.buffer instanceof SharedArrayBuffer)) return data;
  let copy = unsharedCopies.get(data);
  if (!copy) unsharedCopies.set(data, (copy = (data as Float32Array).slice() as unknown as HostData));
  return copy;
}

/** ort.Tensor -> HostTensor (shares the data). */
export function fromOrtTensor(t: ort.Tensor, name = 'tensor'): HostTensor {
  const type = hostDType(t.type);
  if (!type) throw inputError('RUNTIME_UNSUPPORTED_TYPE', `output ${name} has type ${t.type}, which onnxforge cannot read`, { tensor: name });
  let data = t.data as HostData;
  if (type === 'bool' && !(data instanceof Uint8Array)) data = Uint8Array.from(data as unknown as ArrayLike<number>);
  if (type === 'float16' && !(data instanceof Uint16Array)) {
    const v = data as unknown as { buffer: ArrayBufferLike; byteOffset: number; length: number };
    data = new Uint16Array(v.buffer, v.byteOffset, v.length);
  }
  return { type, dims: [...t.dims], data };
}

export function firstLine(e: unknown): string {
  if (e instanceof OnnxForgeError) return e.message;
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0]!.slice(0, 500);
}
