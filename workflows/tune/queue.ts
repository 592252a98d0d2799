/**
 * Trials on a BullMQ queue in Redis (`onnxforge tune --queue redis://HOST:PORT`): the search adds each
 * TrialSpec as a job whose id is the trial id (a resumed or retried search finds the job it added
 * before instead of adding it twice) and waits for the results `onnxforge worker` processes post.
 *
 * What BullMQ gives and how it is set here: a worker holds a lock on the job it runs and renews it
 * every lockDuration/2; a worker that dies stops renewing, the stalled-job check (every
 * stalledInterval) moves its job back to waiting and another worker takes it. maxStalledCount bounds
 * how often one job may be lost that way before it fails; `attempts` bounds how often a processor may
 * throw (a store outage, not a failed trial: a trial that fails is a result row). Workers run the trial
 * in a child process, so a synchronous pass cannot block lock renewal.
 *
 * Redis that does not answer is bad input (QUEUE_UNREACHABLE, exit 2) after at most connectTimeoutMs:
 * ioredis retries forever by default, so the first connection is made by a probe that does not retry.
 */
import * as path from 'node:path';
import { Job, Queue, QueueEvents } from 'bullmq';
import type { ConnectionOptions } from 'bullmq';
import { Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';
import { inputError } from '../../core/errors.js';
import type { TrialExecutor, TrialResult, TrialSpec } from './types.js';

export const DEFAULT_QUEUE_NAME = 'onnxforge-tune';
/** How often the executor looks at its unfinished jobs besides listening for their events (ms). */
const POLL_MS = 5000;

/** What a job carries: the trial and the store its refs point into (a worker may override the store). */
export interface TrialJobData {
  spec: TrialSpec;
  store: string;
}

/** Lock and stall timings shared by the executor's jobs and the workers. */
export interface QueueTimings {
  /** How long a job's lock lasts without renewal (ms); a dead worker's job is retried after about this. */
  lockDuration: number;
  /** How often workers look for stalled jobs (ms). */
  stalledInterval: number;
  /** How often one job may stall (its worker died) before it fails. */
  maxStalledCount: number;
  /** How often a job's processor may throw before it fails. */
  attempts: number;
}

export const DEFAULT_TIMINGS: QueueTimings = { lockDuration: 60_000, stalledInterval: 30_000, maxStalledCount: 3, attempts: 2 };

export interface QueueTarget {
  /** The URL as the user gave it (for messages). */
  url: string;
  /** The queue name (`?queue=NAME` in the URL; default onnxforge-tune). */
  name: string;
  redis: RedisOptions;
}

/** Parses `redis://[user:pass@]host:port[/db][?queue=NAME]` (or `rediss://` for TLS). */
export function parseQueueUrl(url: string): QueueTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw inputError('QUEUE_BAD_URL', `--queue ${url}: not a URL (expected redis://HOST:PORT)`, { url });
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw inputError('QUEUE_BAD_URL', `--queue ${url}: expected redis://HOST:PORT or rediss://HOST:PORT`, { url });
  if (!u.hostname) throw inputError('QUEUE_BAD_URL', `--queue ${url}: no host`, { url });
  const port = u.port ? Number(u.port) : 6379;
  const dbText = u.pathname.replace(/^\//, '');
  if (dbText && !/^\d+$/.test(dbText)) throw inputError('QUEUE_BAD_URL', `--queue ${url}: the path must be a database number, not '${dbText}'`, { url });
  const name = u.searchParams.get('queue') ?? DEFAULT_QUEUE_NAME;
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw inputError('QUEUE_BAD_URL', `--queue ${url}: queue name '${name}' may use only letters, digits, '_', '.', '-'`, { url });
  const redis: RedisOptions = { host: u.hostname.replace(/^\[|\]$/g, ''), port, db: dbText ? Number(dbText) : 0 };
  if (u.username) redis.username = decodeURIComponent(u.username);
  if (u.password) redis.password = decodeURIComponent(u.password);
  if (u.protocol === 'rediss:') redis.tls = {};
  return { url, name, redis };
}

/**
 * Connects once without retrying, so an unreachable server fails within `timeoutMs`, then returns the
 * options BullMQ connects with (retrying with backoff, so a running search rides out a Redis restart).
 */
export async function connectQueue(url: string, timeoutMs = 3000): Promise<QueueTarget & { connection: ConnectionOptions }> {
  const target = parseQueueUrl(url);
  const probe = new Redis({ ...target.redis, lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  let cause: Error | undefined;
  probe.on('error', (e: Error) => (cause = e));
  let timer: NodeJS.Timeout | undefined;
  try {
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    await Promise.race([probe.connect().then(() => probe.ping()), deadline]);
  } catch (e) {
    const why = cause?.message || (e as Error).message || String(e);
    throw inputError('QUEUE_UNREACHABLE', `--queue ${url}: Redis at ${target.redis.host}:${target.redis.port} is unreachable (${why})`, { url });
  } finally {
    clearTimeout(timer);
    probe.disconnect();
  }
  const connection: ConnectionOptions = {
    ...target.redis,
    maxRetriesPerRequest: null,
    connectTimeout: timeoutMs,
    retryStrategy: (times: number) => Math.min(200 * times, 5000),
  };
  return { ...target, connection };
}

export interface QueueExecutorOptions {
  /** The store URL the specs' refs point into; workers fetch from it unless given their own --store. */
  store: string;
  timings?: Partial<QueueTimings>;
  connectTimeoutMs?: number;
}

function errorRow(id: string, message: string): TrialResult {
  return { id, outcome: 'error', error: { code: 'QUEUE_TRIAL_FAILED', message }, seconds: 0, worker: '' };
}

/** Runs trials on the queue; workers started with `onnxforge worker --queue URL` process them. */
export class QueueExecutor implements TrialExecutor {
  readonly describe: string;

  private constructor(
    private readonly queue: Queue<TrialJobData, TrialResult>,
    private readonly events: QueueEvents,
    private readonly storeUrl: string,
    private readonly timings: QueueTimings,
    url: string,
  ) {
    this.describe = `queue ${url}`;
  }

  /** Connects (QUEUE_UNREACHABLE within the timeout when Redis does not answer) and opens the queue. */
  static async open(url: string, options: QueueExecutorOptions): Promise<QueueExecutor> {
    const target = await connectQueue(url, options.connectTimeoutMs);
    const queue = new Queue<TrialJobData, TrialResult>(target.name, { connection: target.connection });
    const events = new QueueEvents(target.name, { connection: target.connection });
    queue.on('error', () => undefined);
    events.on('error', () => undefined);
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    // a folder path travels as an absolute path: a worker started elsewhere resolves it the same way
    const store = /^[a-z][a-z0-9+.-]*:\/\//i.test(options.store) ? options.store : path.resolve(options.store);
    return new QueueExecutor(queue, events, store, { ...DEFAULT_TIMINGS, ...options.timings }, url);
  }

  async run(trials: readonly TrialSpec[], onResult: (r: TrialResult) => void): Promise<TrialResult[]> {
    const pending = new Map<string, { resolve: (r: TrialResult) => void }>();
    const results = new Map<string, Promise<TrialResult>>();
    for (const spec of trials) {
      if (results.has(spec.id)) continue;
      results.set(spec.id, new Promise<TrialResult>((resolve) => pending.set(spec.id, { resolve })));
    }
    const settle = (id: string, r: TrialResult) => {
      const p = pending.get(id);
      if (!p) return;
      pending.delete(id);
      onResult(r);
      p.resolve(r);
    };
    const settleFromJob = async (id: string) => {
      const job = await Job.fromId<TrialJobData, TrialResult>(this.queue, id);
      if (!job) return settle(id, errorRow(id, `trial ${id}: its job vanished from the queue`));
      const state = await job.getState();
      if (state === 'completed') settle(id, job.returnvalue);
      else if (state === 'failed') settle(id, errorRow(id, `trial ${id} failed on the queue after ${job.attemptsMade} attempt(s) and ${job.stalledCounter} stall(s): ${job.failedReason}`));
    };
    const added = new Set<string>();
    const check = (id: string) => void settleFromJob(id).catch(() => undefined);
    const onCompleted = ({ jobId }: { jobId: string }) => check(jobId);
    const onFailed = ({ jobId }: { jobId: string }) => check(jobId);
    this.events.on('completed', onCompleted);
    this.events.on('failed', onFailed);
    // Events are a stream read over one connection; should one be missed (a reconnect), the job's state
    // still answers: look at the unfinished ones now and then.
    const poll = setInterval(() => {
      for (const id of pending.keys()) if (added.has(id)) check(id);
    }, POLL_MS);
    try {
      const t = this.timings;
      for (const spec of trials) {
        if (!pending.has(spec.id)) continue;
        const job = await this.queue.add('trial', { spec, store: this.storeUrl }, {
          jobId: spec.id,
          attempts: t.attempts,
          backoff: { type: 'fixed', delay: 1000 },
          removeOnComplete: false,
          removeOnFail: false,
        });
        // The id existed (a resumed search, or the same trial twice): a finished job answers now; a
        // failed one is run again with fresh attempts, since a failed job means its workers died or
        // could not run it (no store on that machine), not a failed trial.
        const state = await job.getState();
        if (state === 'completed') await settleFromJob(spec.id);
        else if (state === 'failed') await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
        added.add(spec.id);
      }
      return await Promise.all([...results.values()]);
    } finally {
      clearInterval(poll);
      this.events.off('completed', onCompleted);
      this.events.off('failed', onFailed);
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.events.close(), this.queue.close()]);
  }
}
