/**
 * Helper threads for Node ({@link Threads}): worker threads that each load onnxruntime-node and run
 * {@link ThreadTask}s (a module URL and an export name) on jobs the caller hands them. One pool per
 * process, made on first use: `ONNXFORGE_THREADS` threads (default: one per core beyond the first, at
 * most 4; 0 turns them off). A thread holds the process open only while it runs a job, so an idle pool
 * never delays exit; a thread that fails is dropped and its job rejected (callers run it themselves).
 *
 * From the built package a thread starts from thread-entry.js beside this file; from the TypeScript
 * sources (tests, benchmarks under tsx) it first registers tsx's loader, which only the sources need.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { ThreadTask, Threads } from './runner-types.js';

interface Job {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

interface Helper {
  worker: Worker;
  up: Promise<boolean>;
  job?: Job;
  /** Up (its ready message came). */
  started: boolean;
  /** Handed to a caller, until its job's answer comes. */
  busy: boolean;
  dead: boolean;
}

/** Threads the pool makes: ONNXFORGE_THREADS, else one per core beyond the first (at most 4). */
function threadCount(): number {
  const env = process.env.ONNXFORGE_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    return Number.isInteger(n) && n >= 0 ? Math.min(n, 16) : 0;
  }
  return Math.max(0, Math.min(4, availableParallelism() - 1));
}

/** A worker running thread-entry: the built .js, or the .ts source through tsx's loader. */
function startWorker(): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./thread-entry.js', here));
  // tsx's ESM loader API, found from its package.json (require.resolve would give its CommonJS build)
  const require = createRequire(here);
  const pkg = require.resolve('tsx/package.json');
  const api = (require(pkg) as { exports: Record<string, { import: { default: string } }> }).exports['./esm/api']!.import.default;
  const tsx = pathToFileURL(join(dirname(pkg), api)).href;
  const entry = new URL('./thread-entry.ts', here).href;
  const src = `import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(src, { eval: true });
}

/**
 * Threads still starting hold the process open (a caller waits for them); the ready message lets go
 * of each again unless it is busy by then, so an idle thread never does.
 */
function holdUntilUp(hs: readonly Helper[]): void {
  for (const h of hs) if (!h.started && !h.dead) h.worker.ref();
}

class NodeThreads implements Threads {
  private helpers: Helper[] | undefined;
  private readonly waiting: Array<(h: Helper | undefined) => void> = [];

  constructor(private readonly count: number) {}

  get size(): number {
    return this.helpers ? this.helpers.filter((h) => !h.dead).length : this.count;
  }

  private spawn(): Helper[] {
    if (this.helpers) return this.helpers;
    this.helpers = [];
    for (let i = 0; i < this.count; i++) {
      let worker: Worker;
      try {
        worker = startWorker();
      } catch {
        continue;
      }
      let up!: (ok: boolean) => void;
      const h: Helper = { worker, up: new Promise<boolean>((r) => (up = r)), started: false, busy: false, dead: false };
      const fail = (error: Error) => {
        if (h.dead) return;
        h.dead = true;
        up(false);
        const job = h.job;
        h.job = undefined;
        job?.reject(error);
        void worker.terminate();
        // a caller waiting for an idle thread gets none when every thread is gone
        if (this.size === 0) for (const w of this.waiting.splice(0)) w(undefined);
      };
      worker.on('message', (m: { ready?: true; value?: unknown; error?: { message: string } }) => {
        if (m.ready) {
          h.started = true;
          // held open only while someone waited for it to come up (ready()), not any longer
          if (!h.busy) worker.unref();
          up(true);
          this.release(h);
          return;
        }
        const job = h.job;
        h.job = undefined;
        worker.unref();
        if (m.error) job?.reject(new Error(`helper thread: ${m.error.message}`));
        else job?.resolve(m.value);
      });
      worker.on('error', (e) => fail(e instanceof Error ? e : new Error(String(e))));
      worker.on('exit', (code) => fail(new Error(`helper thread exited (code ${code})`)));
      // after the listeners (a 'message' listener refs the worker again): an idle or starting thread never holds the process open
      worker.unref();
      this.helpers.push(h);
    }
    return this.helpers;
  }

  /** Hands an idle, started thread to the longest waiting caller. */
  private release(h: Helper): void {
    if (h.dead || h.busy || !h.started) return;
    const next = this.waiting.shift();
    if (!next) return;
    h.busy = true;
    next(h);
  }

  start(): void {
    this.helpers ?? this.spawn();
  }

  async ready(): Promise<boolean> {
    const hs = this.spawn();
    holdUntilUp(hs);
    const ups = await Promise.all(hs.map((h) => h.up));
    return ups.some(Boolean);
  }

  private idle(): Promise<Helper | undefined> {
    const hs = this.spawn();
    if (hs.every((h) => h.dead)) return Promise.resolve(undefined);
    holdUntilUp(hs);
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      // a thread up and idle takes the caller now; one still starting calls release when it is up
      for (const h of hs) this.release(h);
    });
  }

  /** Gives a reserved thread back to the pool. */
  private free(h: Helper): void {
    h.busy = false;
    this.release(h);
  }

  /** Posts `message` to the reserved thread `h` and waits for its answer. */
  private call(h: Helper, message: unknown, transfer: ArrayBuffer[] = []): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      h.job = { resolve, reject };
      h.worker.ref();
      try {
        h.worker.postMessage(message, transfer);
      } catch (e) {
        h.job = undefined;
        h.worker.unref();
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  async run<R>(task: ThreadTask, args: unknown, transfer: ArrayBuffer[] = []): Promise<R> {
    const h = await this.idle();
    if (!h) throw new Error('no helper thread could start');
    try {
      return (await this.call(h, { task, args }, transfer)) as R;
    } finally {
      this.free(h);
    }
  }
}

let pool: NodeThreads | undefined;

/** The process's helper threads (started on first use). */
export function nodeThreads(): Threads {
  return (pool ??= new NodeThreads(threadCount()));
}
