/**
 * Trial executors on this machine: in this process (one trial at a time), or `--workers K` child
 * processes (`child_process.fork` of local-worker.ts), each taking one trial at a time over IPC.
 *
 * A worker that exits during a trial (killed, out of memory, a user metric that crashes the process)
 * loses nothing: the trial goes back to the front of the queue and runs again in a fresh worker, up
 * to MAX_ATTEMPTS starts; only a trial that takes its worker down every time becomes a
 * TUNE_WORKER_DIED row (the search goes on). The result of a retried trial records its `attempts`.
 *
 * Latency under concurrent trials: the workers share one timing lock held here, so only one trial
 * times at once while the others build, calibrate and evaluate; the timed trial also measures its
 * ratios interleaved (input, candidate, reference workload in alternating rounds) and, at one thread,
 * by CPU time, so what the other worker does meanwhile moves both sides of the ratio alike.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openStore, type ContentStore } from './store.js';
import { runTrial } from './trial.js';
import type { TrialExecutor, TrialResult, TrialSpec } from './types.js';

/** Runs trials in this process, one after another (concurrent `run` calls queue). */
export class InProcessExecutor implements TrialExecutor {
  readonly describe = 'in-process';
  private chain: Promise<unknown> = Promise.resolve();
  constructor(private readonly store: ContentStore) {}

  run(trials: readonly TrialSpec[], onResult: (r: TrialResult) => void): Promise<TrialResult[]> {
    const job = this.chain.then(async () => {
      const out: TrialResult[] = [];
      for (const t of trials) {
        const r = await runTrial(t, this.store.fetcher(), { store: this.store });
        onResult(r);
        out.push(r);
      }
      return out;
    });
    this.chain = job.catch(() => undefined);
    return job;
  }

  async close(): Promise<void> {
    await this.chain;
  }
}

/** Messages between the search and a local worker. */
export type ToWorker = { type: 'trial'; spec: TrialSpec; store: string } | { type: 'granted' };
export type FromWorker = { type: 'result'; result: TrialResult } | { type: 'lock' } | { type: 'unlock' };

function workerEntry(): { path: string; execArgv: string[] } {
  const here = fileURLToPath(import.meta.url);
  const ts = here.replace(/executors\.(ts|js)$/, 'local-worker.ts');
  if (here.endsWith('.ts') && existsSync(ts)) return { path: ts, execArgv: ['--import', 'tsx'] };
  return { path: here.replace(/executors\.(ts|js)$/, 'local-worker.js'), execArgv: [] };
}

/** How often a local trial is started before a worker exit during it becomes its result. */
export const MAX_ATTEMPTS = 2;

interface Job {
  spec: TrialSpec;
  done: (r: TrialResult) => void;
  /** Starts so far, this one included once dispatched. */
  attempts: number;
  /** Exits of earlier attempts, for the error row. */
  deaths: string[];
}

interface Slot {
  child: ChildProcess;
  busy?: Job & { t0: number };
}

/** K child processes on this machine; one trial each at a time; one timing lock for all. */
export class LocalWorkersExecutor implements TrialExecutor {
  readonly describe: string;
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private lockHolder: Slot | undefined;
  private readonly lockWaiters: Slot[] = [];
  private closed = false;

  constructor(private readonly k: number, private readonly storeUrl: string, private readonly timingLock = true) {
    this.describe = `${k} local worker${k === 1 ? '' : 's'} (child processes${timingLock ? ', one timing at a time' : ''})`;
  }

  run(trials: readonly TrialSpec[], onResult: (r: TrialResult) => void): Promise<TrialResult[]> {
    return Promise.all(
      trials.map(
        (spec) =>
          new Promise<TrialResult>((resolve) => {
            this.queue.push({
              spec,
              done: (r) => {
                onResult(r);
                resolve(r);
              },
              attempts: 0,
              deaths: [],
            });
            this.dispatch();
          }),
      ),
    );
  }

  private spawn(): Slot {
    const entry = workerEntry();
    const child = fork(entry.path, [], { execArgv: entry.execArgv, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const slot: Slot = { child };
    child.on('message', (m: FromWorker) => this.onMessage(slot, m));
    child.on('exit', (code, signal) => this.onExit(slot, code, signal));
    this.slots.push(slot);
    return slot;
  }

  private dispatch(): void {
    while (this.queue.length && !this.closed) {
      let slot = this.slots.find((s) => !s.busy);
      if (!slot && this.slots.length < this.k) slot = this.spawn();
      if (!slot) return;
      const job = this.queue.shift()!;
      job.attempts++;
      slot.busy = Object.assign(job, { t0: performance.now() });
      slot.child.send({ type: 'trial', spec: job.spec, store: this.storeUrl } satisfies ToWorker);
    }
  }

  private grant(slot: Slot): void {
    if (!this.timingLock || !this.lockHolder) {
      this.lockHolder = slot;
      slot.child.send({ type: 'granted' } satisfies ToWorker);
    } else this.lockWaiters.push(slot);
  }

  private release(slot: Slot): void {
    const w = this.lockWaiters.indexOf(slot);
    if (w >= 0) this.lockWaiters.splice(w, 1);
    if (this.lockHolder !== slot) return;
    this.lockHolder = undefined;
    const next = this.lockWaiters.shift();
    if (next) this.grant(next);
  }

  private onMessage(slot: Slot, m: FromWorker): void {
    if (m.type === 'lock') this.grant(slot);
    else if (m.type === 'unlock') this.release(slot);
    else if (m.type === 'result') {
      const job = slot.busy;
      slot.busy = undefined;
      this.release(slot);
      job?.done(job.attempts > 1 ? { ...m.result, attempts: job.attempts } : m.result);
      this.dispatch();
    }
  }

  private onExit(slot: Slot, code: number | null, signal: NodeJS.Signals | null): void {
    this.slots.splice(this.slots.indexOf(slot), 1);
    this.release(slot);
    const job = slot.busy;
    if (job) {
      job.deaths.push(`local worker ${slot.child.pid} exited (${signal ?? `code ${code}`})`);
      if (job.attempts < MAX_ATTEMPTS && !this.closed) this.queue.unshift(job);
      else
        job.done({
          id: job.spec.id,
          outcome: 'error',
          error: { code: 'TUNE_WORKER_DIED', message: `the trial took its worker down ${job.attempts} times: ${job.deaths.join('; ')}` },
          seconds: (performance.now() - job.t0) / 1000,
          worker: `local:${slot.child.pid}`,
          attempts: job.attempts,
        });
    }
    this.dispatch();
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      this.slots.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.child.exitCode !== null || s.child.signalCode !== null) return resolve();
            s.child.once('exit', () => resolve());
            s.child.kill();
          }),
      ),
    );
  }
}

/** Opens the local store for an in-process executor. */
export function inProcess(storeUrl: string): InProcessExecutor {
  return new InProcessExecutor(openStore(storeUrl));
}
