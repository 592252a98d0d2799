/**
 * Runs untrusted models in a child process with a wall-time limit and a memory limit, so that a model
 * that loops forever, allocates without bound or crashes onnxruntime cannot hang or kill onnxforge.
 *
 * The child (`sandbox-worker`) receives a task over IPC (structured clone, so typed arrays and bigints
 * pass intact) and sends back the result. The parent polls the child's resident set size (from
 * `/proc/<pid>/status` on Linux, otherwise from the child's own reports) and kills it with SIGKILL
 * past the limit (`RUNTIME_OOM`) or past the deadline (`RUNTIME_TIMEOUT`). A child that dies on its
 * own without answering is `RUNTIME_CRASH`, with the signal or exit code and the tail of its stderr.
 */
import { ChildProcess, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ErrorCode, ErrorDetails, ErrorKind, inputError, OnnxForgeError } from '../core/errors.js';
import { Feed } from '../core/host-tensor.js';
import { SessionOptions } from './session.js';

export interface SandboxLimits {
  /** Wall-time limit in milliseconds, including model loading (default 120000). */
  timeoutMs?: number;
  /** Resident-memory limit of the child in bytes (default 4 GiB). */
  maxMemoryBytes?: number;
  /** RSS polling interval, milliseconds (default 25). */
  pollMs?: number;
  /** Progress reported by a `call` task with `progress: true`. */
  onProgress?: (done: number, total: number) => void;
}

/** Runs a model on feeds and returns the outputs. */
export interface RunTask {
  kind: 'run';
  /** A path, or the model bytes. */
  model: string | Uint8Array;
  feeds: Feed[];
  options?: SessionOptions;
  outputNames?: string[];
}

/** Calls an exported async function of a module inside the child (e.g. a whole benchmark). */
export interface CallTask {
  kind: 'call';
  /** Absolute path or file URL of the module. */
  module: string;
  export: string;
  args: unknown[];
  /** Appends a `(done, total) => void` progress callback to the arguments. */
  progress?: boolean;
}

export type SandboxTask = RunTask | CallTask;

export interface SandboxResult<T> {
  value: T;
  /** Peak RSS of the child as observed, bytes. */
  peakRssBytes: number;
  wallMs: number;
}

/** Messages from the worker. */
export type WorkerMessage =
  | { type: 'rss'; bytes: number }
  | { type: 'progress'; done: number; total: number }
  | { type: 'result'; value: unknown }
  | { type: 'error'; error: { code: ErrorCode; message: string; kind: ErrorKind; details: ErrorDetails } };

const DEFAULT_TIMEOUT = 120_000;
const DEFAULT_MEMORY = 4 * 1024 ** 3;

/** Where the worker lives: the .js next to this file when compiled, the .ts (run through tsx) in development. */
function workerEntry(): { path: string; execArgv: string[] } {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.ts')) return { path: here.replace(/sandbox\.ts$/, 'sandbox-worker.ts'), execArgv: ['--import', 'tsx'] };
  return { path: here.replace(/sandbox\.js$/, 'sandbox-worker.js'), execArgv: [] };
}

/** Resolves a module next to the caller for a `call` task, preferring .ts under tsx and .js when compiled. */
export function siblingModule(callerUrl: string, base: string): string {
  const dir = fileURLToPath(new URL('.', callerUrl));
  const ts = `${dir}${base}.ts`;
  const js = `${dir}${base}.js`;
  return callerUrl.endsWith('.ts') && existsSync(ts) ? ts : js;
}

async function readRss(pid: number): Promise<number | undefined> {
  if (process.platform !== 'linux') return undefined;
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Runs `task` in a child process under `limits`. Rejects with an OnnxForgeError on timeout, OOM or crash. */
export function runInSandbox<T = unknown>(task: SandboxTask, limits: SandboxLimits = {}): Promise<SandboxResult<T>> {
  const timeoutMs = limits.timeoutMs ?? DEFAULT_TIMEOUT;
  const maxMem = limits.maxMemoryBytes ?? DEFAULT_MEMORY;
  const pollMs = limits.pollMs ?? 25;
  const what = task.kind === 'run' ? (typeof task.model === 'string' ? task.model : '(in-memory model)') : `${task.module}#${task.export}`;
  const entry = workerEntry();
  const heapMb = Math.max(64, Math.floor(maxMem / 1024 ** 2));
  const t0 = performance.now();

  return new Promise<SandboxResult<T>>((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = fork(entry.path, [], {
        execArgv: [...entry.execArgv, `--max-old-space-size=${heapMb}`],
        serialization: 'advanced',
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        env: { ...process.env, ONNXFORGE_SANDBOX: '1' },
      });
    } catch (e) {
      reject(inputError('RUNTIME_CRASH', `could not start the sandbox process: ${(e as Error).message}`, { file: what }));
      return;
    }
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString('utf8')).slice(-8192);
    });
    let peak = 0;
    let settled = false;
    let verdict: OnnxForgeError | undefined;

    const finish = (err: OnnxForgeError | undefined, value?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearInterval(poller);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      if (err) reject(err);
      else resolve({ value: value as T, peakRssBytes: peak, wallMs: performance.now() - t0 });
    };
    const kill = (err: OnnxForgeError) => {
      verdict = err;
      finish(err);
    };
    const noteRss = (bytes: number) => {
      if (bytes > peak) peak = bytes;
      if (bytes > maxMem && !settled) {
        kill(
          inputError('RUNTIME_OOM', `${what} used ${mb(bytes)} of memory, over the limit of ${mb(maxMem)}; the run was stopped`, {
            file: what,
            rssBytes: bytes,
            limitBytes: maxMem,
          }),
        );
      }
    };

    const timer = setTimeout(() => {
      kill(inputError('RUNTIME_TIMEOUT', `${what} did not finish within ${(timeoutMs / 1000).toFixed(1)} s; the run was stopped`, { file: what, timeoutMs }));
    }, timeoutMs);
    let polling = false;
    const poller = setInterval(() => {
      if (polling || child.pid === undefined) return;
      polling = true;
      void readRss(child.pid).then((b) => {
        polling = false;
        if (b !== undefined) noteRss(b);
      });
    }, pollMs);

    child.on('message', (m: WorkerMessage) => {
      if (m.type === 'rss') noteRss(m.bytes);
      else if (m.type === 'progress') limits.onProgress?.(m.done, m.total);
      else if (m.type === 'result') finish(undefined, m.value);
      else if (m.type === 'error') finish(new OnnxForgeError(m.error.code, m.error.message, m.error.details, m.error.kind));
    });
    child.on('error', (e) => {
      if (!settled) finish(inputError('RUNTIME_CRASH', `the sandbox process for ${what} failed: ${e.message}`, { file: what }));
    });
    child.on('exit', (code, signal) => {
      if (settled || verdict) return;
      const tail = stderr.trim().split('\n').slice(-3).join(' | ');
      if (/heap out of memory|Allocation failed|bad_alloc|Failed to allocate/i.test(stderr)) {
        finish(inputError('RUNTIME_OOM', `${what} ran out of memory (limit ${mb(maxMem)}): ${tail}`, { file: what, limitBytes: maxMem }));
        return;
      }
      const how = signal ? `signal ${signal}` : `exit code ${code}`;
      finish(inputError('RUNTIME_CRASH', `the runtime crashed on ${what} (${how})${tail ? `: ${tail}` : ''}`, { file: what, exitCode: code, signal }));
    });
    child.send(task, (e) => {
      if (e && !settled) finish(inputError('RUNTIME_CRASH', `could not send the task to the sandbox: ${e.message}`, { file: what }));
    });
  });
}

function mb(bytes: number): string {
  return `${(bytes / 1024 ** 2).toFixed(0)} MB`;
}
