/**
 * Backends: where a model runs. 'node' is onnxruntime-node's CPU execution provider, 'wasm' is
 * onnxruntime-web's WASM backend run in this Node process (what a browser page runs on the CPU).
 * Both open sessions with the same shape ({@link BackendSession}) and give a {@link Runner}, so the
 * workflows and passes above pick a backend by name.
 */
import { inputError } from '../core/errors.js';
import { serializeModel } from '../onnx/index.js';
import { onnxruntimeVersion } from './timer.js';
import type { Runner, RunnableModel } from './runner.js';
import { nodeRunner } from './runner.js';
import { Session, type ModelSource, type SessionOptions } from './session.js';
import { profileWebModel, WebSession, wasmInfo } from './web-session.js';

export const BACKENDS = ['node', 'wasm'] as const;
export type Backend = (typeof BACKENDS)[number];

/** A session of either backend. */
export type BackendSession = Session | WebSession;

/** What reports print next to a backend's figures. */
export interface BackendInfo {
  backend: Backend;
  /** 'onnxruntime-node 1.30.0' or 'onnxruntime-web 1.30.0 (WASM)'. */
  runtime: string;
  /** Intra-op threads (node: the number asked for, 0 = onnxruntime's default) or WASM threads. */
  threads: number;
  /** WASM only: whether WebAssembly SIMD runs. */
  simd?: boolean;
}

/** Parses `--backend` values: 'node', 'wasm', 'node,wasm', or a repeated flag. */
export function parseBackends(spec: string | readonly string[] | undefined, fallback: Backend = 'node'): Backend[] {
  if (spec === undefined) return [fallback];
  const parts = (typeof spec === 'string' ? [spec] : spec).flatMap((s) => String(s).split(',')).map((s) => s.trim()).filter(Boolean);
  const out: Backend[] = [];
  for (const p of parts) {
    if (!(BACKENDS as readonly string[]).includes(p)) throw inputError('USAGE_BAD_VALUE', `--backend ${p}: expected ${BACKENDS.join(', ')} (or a comma-separated list)`, { field: 'backend' });
    if (!out.includes(p as Backend)) out.push(p as Backend);
  }
  if (out.length === 0) throw inputError('USAGE_BAD_VALUE', '--backend needs at least one of node, wasm', { field: 'backend' });
  return out;
}

/** Opens a session on `backend`. */
export function openSession(backend: Backend, source: ModelSource, options: SessionOptions = {}, name?: string): Promise<BackendSession> {
  return backend === 'wasm' ? WebSession.create(source, options, name) : Session.create(source, options, name);
}

/** The backend's runtime, threads and (WASM) SIMD, for reports. `threads` is what sessions were asked for. */
export function backendInfo(backend: Backend, threads = 0): BackendInfo {
  if (backend === 'node') return { backend, runtime: `onnxruntime-node ${onnxruntimeVersion()}`, threads };
  const w = wasmInfo();
  return { backend, runtime: `onnxruntime-web ${w.version} (WASM)`, threads: w.threads, simd: w.simd };
}

/** One line: 'wasm: onnxruntime-web 1.30.0 (WASM), 1 thread, SIMD'. */
export function describeBackend(b: BackendInfo): string {
  const threads = b.threads > 0 ? `${b.threads} thread${b.threads === 1 ? '' : 's'}` : "onnxruntime's default threads";
  return `${b.backend}: ${b.runtime}, ${threads}${b.simd === undefined ? '' : b.simd ? ', SIMD' : ', no SIMD'}`;
}

const source = (m: RunnableModel): ModelSource => (typeof m === 'string' || m instanceof Uint8Array ? m : serializeModel(m));

/** onnxruntime-web's WASM backend as a {@link Runner}: sessions and per-node profiles. */
export const wasmRunner: Runner = {
  open: (model, options = {}, name) => WebSession.create(source(model), options, name ?? (typeof model === 'string' ? model : '(in-memory model)')),
  profile: (model, feeds, options = {}) => profileWebModel(source(model), feeds, options),
};

/** The runner of a backend. */
export function runnerFor(backend: Backend): Runner {
  return backend === 'wasm' ? wasmRunner : nodeRunner;
}
