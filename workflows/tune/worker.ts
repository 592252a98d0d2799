/**
 * `onnxforge worker`: takes trial jobs from the tune queue, fetches the model and data by hash from
 * the store, runs the trial (runTrial), puts the candidate in the store and posts the TrialResult as
 * the job's return value.
 *
 * The trial runs in a child process (BullMQ's sandboxed processor: this module's default export),
 * so that the worker's event loop stays free to renew the job's lock while passes run synchronously;
 * a worker killed mid-trial stops renewing, and BullMQ's stalled-job check gives the job to another
 * worker after about lockDuration. The child exits when its worker's IPC channel closes, so a killed
 * worker leaves no orphan trial behind.
 *
 * Stopping: the first SIGINT/SIGTERM lets the running trials finish and posts them, then exits; a
 * second one stops at once (the unfinished job is left to the stalled-job check, so nothing is lost).
 */
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'bullmq';
import type { Job } from 'bullmq';
import { connectQueue, DEFAULT_TIMINGS } from './queue.js';
import type { QueueTimings, TrialJobData } from './queue.js';
import { openStore } from './store.js';
import { runTrial } from './trial.js';
import type { TrialResult } from './types.js';

const ENV_STORE = 'ONNXFORGE_WORKER_STORE';
const ENV_CACHE = 'ONNXFORGE_WORKER_CACHE';
const ENV_ID = 'ONNXFORGE_WORKER_ID';

export interface TuneWorkerOptions {
  queue: string;
  /** Overrides the store URL the jobs carry (the shared folder mounted elsewhere on this machine). */
  store?: string;
  /** Where fetched inputs are cached (default: the store's own cache folder). */
  cacheDir?: string;
  /** Trials run at once (default 1: concurrent trials on one machine contend for its cores). */
  concurrency?: number;
  timings?: Partial<QueueTimings>;
  connectTimeoutMs?: number;
  /** Events for the log: a trial taken, finished (with its outcome) or failed. */
  onEvent?: (e: { kind: 'ready' | 'taken' | 'finished' | 'failed' | 'closing'; id?: string; detail?: string }) => void;
}

export interface TuneWorker {
  /** `host:pid`, as it appears in the results this worker posts. */
  readonly id: string;
  /** Stops taking jobs; `force` stops the running trials at once (they are retried elsewhere). */
  close(force?: boolean): Promise<void>;
}

/** The sandboxed processor (runs in BullMQ's child process): one job in, its TrialResult out. */
export default async function processTrialJob(job: Pick<Job<TrialJobData, TrialResult>, 'data'>): Promise<TrialResult> {
  // A worker killed with SIGKILL closes the IPC channel: stop the trial rather than run on unseen.
  if (process.send) process.once('disconnect', () => process.exit(1));
  const { spec, store: jobStore } = job.data;
  const store = openStore(process.env[ENV_STORE] || jobStore, process.env[ENV_CACHE] ? { cacheDir: process.env[ENV_CACHE] } : {});
  const worker = process.env[ENV_ID] || `${hostname()}:${process.pid}`;
  return runTrial(spec, store.fetcher(), { store, worker });
}

/** Connects (QUEUE_UNREACHABLE within the timeout when Redis does not answer) and starts taking trials. */
export async function startTuneWorker(options: TuneWorkerOptions): Promise<TuneWorker> {
  const target = await connectQueue(options.queue, options.connectTimeoutMs);
  const t = { ...DEFAULT_TIMINGS, ...options.timings };
  const id = `${hostname()}:${process.pid}`;
  const env: NodeJS.ProcessEnv = { ...process.env, [ENV_ID]: id };
  if (options.store) env[ENV_STORE] = options.store;
  if (options.cacheDir) env[ENV_CACHE] = options.cacheDir;
  const emit = options.onEvent ?? (() => undefined);
  const worker = new Worker<TrialJobData, TrialResult>(target.name, fileURLToPath(import.meta.url), {
    connection: target.connection,
    concurrency: options.concurrency ?? 1,
    lockDuration: t.lockDuration,
    stalledInterval: t.stalledInterval,
    maxStalledCount: t.maxStalledCount,
    name: id,
    workerForkOptions: { env },
  });
  worker.on('error', (e) => emit({ kind: 'failed', detail: e.message }));
  worker.on('active', (job) => emit({ kind: 'taken', id: job.id ?? '' }));
  worker.on('completed', (job, r) => emit({ kind: 'finished', id: job.id ?? '', detail: r.outcome === 'ok' ? 'ok' : `error ${r.error?.code ?? ''}` }));
  worker.on('failed', (job, e) => emit({ kind: 'failed', id: job?.id ?? '', detail: e.message }));
  await worker.waitUntilReady();
  emit({ kind: 'ready', detail: `${options.queue} as ${id}` });
  return {
    id,
    async close(force = false) {
      emit({ kind: 'closing', detail: force ? 'now' : 'after the running trials' });
      await worker.close(force);
    },
  };
}
