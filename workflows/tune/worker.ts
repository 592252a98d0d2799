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
 * Timing: every trial on one machine times under one lock (a Redis key per host name, taken with
 * SET NX PX and refreshed while held), so workers sharing a machine build, calibrate and evaluate at
 * once but never time at once. A trial child whose worker dies deletes its key before exiting; one
 * that cannot (the machine is gone) lets it expire TIMING_LOCK_TTL_MS after its last refresh.
 *
 * The processor is this module's compiled file (dist/), forked by BullMQ: start workers from the
 * built CLI (`onnxforge worker`), not from a test runner that transforms TypeScript in memory.
 *
 * Stopping: the first SIGINT/SIGTERM lets the running trials finish and posts them, then exits; a
 * second one stops at once (the unfinished job is left to the stalled-job check, so nothing is lost).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'bullmq';
import type { Job } from 'bullmq';
import { Redis } from 'ioredis';
import { isOnnxForgeError } from '../../core/errors.js';
import { connectQueue, DEFAULT_TIMINGS, parseQueueUrl } from './queue.js';
import type { QueueTimings, TrialJobData } from './queue.js';
import { openStore, type ContentStore } from './store.js';
import { runTrial } from './trial.js';
import type { TrialResult } from './types.js';

const ENV_STORE = 'ONNXFORGE_WORKER_STORE';
const ENV_CACHE = 'ONNXFORGE_WORKER_CACHE';
const ENV_ID = 'ONNXFORGE_WORKER_ID';
const ENV_QUEUE = 'ONNXFORGE_WORKER_QUEUE';

/** How long a timing lock outlives its last refresh (it is refreshed every third of this while held). */
export const TIMING_LOCK_TTL_MS = 15_000;
/** Deletes the key only when it still holds the caller's token (another holder's lock is left alone). */
const RELEASE_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
const REFRESH_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/** The key all workers on one host time under. */
export function timingLockKey(host = hostname()): string {
  return `onnxforge:tune:timing:${host}`;
}

/**
 * Takes the lock `key` (waiting while another process holds it) and resolves to its release. The key
 * expires `ttlMs` after the last refresh, so a holder killed while timing blocks others at most that long.
 */
export async function acquireTimingLock(redis: Redis, key: string, ttlMs = TIMING_LOCK_TTL_MS): Promise<() => void> {
  const token = `${hostname()}:${process.pid}:${randomBytes(6).toString('hex')}`;
  while ((await redis.set(key, token, 'PX', ttlMs, 'NX')) !== 'OK') await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
  const refresh = setInterval(() => void redis.eval(REFRESH_IF_OURS, 1, key, token, String(ttlMs)).catch(() => undefined), Math.max(10, Math.floor(ttlMs / 3)));
  let released: Promise<unknown> | undefined;
  const release = () => {
    clearInterval(refresh);
    released ??= redis.eval(RELEASE_IF_OURS, 1, key, token).catch(() => undefined);
    heldLocks.delete(release);
    return released;
  };
  heldLocks.add(release);
  return () => void release();
}

/** Locks this process holds, released before it exits because its worker died. */
const heldLocks = new Set<() => Promise<unknown>>();
let lockClient: Redis | undefined;
let watchingWorker = false;

/** The trial child's exit when its worker is gone: free the timing lock for the host's other workers first. */
function exitWithWorker(): void {
  const pending = [...heldLocks].map((r) => r());
  const bound = new Promise((r) => setTimeout(r, 1000));
  void Promise.race([Promise.all(pending), bound]).finally(() => process.exit(1));
}

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
  if (process.send && !watchingWorker) {
    watchingWorker = true;
    process.once('disconnect', exitWithWorker);
  }
  const { spec, store: jobStore } = job.data;
  let store: ContentStore;
  try {
    store = openStore(process.env[ENV_STORE] || jobStore, { mustExist: true, ...(process.env[ENV_CACHE] ? { cacheDir: process.env[ENV_CACHE] } : {}) });
  } catch (e) {
    // the job fails (and is retried, perhaps by a worker that has the store): keep the code in its reason
    throw isOnnxForgeError(e) ? new Error(e.format()) : e;
  }
  const worker = process.env[ENV_ID] || `${hostname()}:${process.pid}`;
  const queueUrl = process.env[ENV_QUEUE];
  if (queueUrl && !lockClient) {
    lockClient = new Redis({ ...parseQueueUrl(queueUrl).redis, maxRetriesPerRequest: null, retryStrategy: (n: number) => Math.min(200 * n, 5000) });
    lockClient.on('error', () => undefined);
  }
  const client = lockClient;
  return runTrial(spec, store.fetcher(), { store, worker, ...(client ? { timingLock: () => acquireTimingLock(client, timingLockKey()) } : {}) });
}

/** Connects (QUEUE_UNREACHABLE within the timeout when Redis does not answer) and starts taking trials. */
export async function startTuneWorker(options: TuneWorkerOptions): Promise<TuneWorker> {
  if (options.store) openStore(options.store, { mustExist: true });
  const target = await connectQueue(options.queue, options.connectTimeoutMs);
  const t = { ...DEFAULT_TIMINGS, ...options.timings };
  const id = `${hostname()}:${process.pid}`;
  const env: NodeJS.ProcessEnv = { ...process.env, [ENV_ID]: id, [ENV_QUEUE]: options.queue };
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
