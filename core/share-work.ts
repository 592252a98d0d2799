/**
 * Independent jobs shared between the caller and helper threads: the caller runs jobs itself, in
 * order, while each helper that is up takes the next one not yet taken; a helper still starting when
 * the caller has taken the last job gets none, so a cold start never makes the caller wait, and a job
 * a helper fails on is run by the caller (with `backup`, also one a helper is slow on). Results come
 * back in the jobs' order. Order the jobs longest first: the last jobs then are short ones, and
 * neither side waits long for the other.
 */
export interface WorkHelpers<J, R> {
  /** Helpers that can run a job at the same time. */
  readonly size: number;
  /** Resolves true when the helpers are up, false when they cannot start. */
  ready(): Promise<boolean>;
  run(job: J): Promise<R>;
  /**
   * Called when the caller's backup of job `index` settled it while a helper still runs it: the
   * helper may stop (its result would be dropped; a helper thread still computing it takes a core
   * from the caller's next work).
   */
  cancel?(index: number): void;
}

export interface ShareOptions {
  /** Called as each job's result comes in. */
  onDone?: (index: number) => void;
  /**
   * When the caller has no job left to start, it also runs the jobs helpers still hold, the earliest
   * taken first, and keeps whichever result comes first: a helper slower than the caller (a thread
   * still compiling its code in a cold process) then never makes the caller wait longer than running
   * the job itself would. `local` gets a signal that aborts once the helper's result is in; it should
   * stop then (throw) rather than finish work whose result is dropped.
   */
  backup?: boolean;
  /**
   * With `backup`: how long (ms) the caller first waits for a helper's result before it runs the job
   * itself (default 0), read when it is out of jobs: a helper that is merely a little behind then costs
   * no duplicate work, one that stalls no longer than this wait.
   */
  backupAfter?: () => number;
}

export async function shareWork<J, R>(jobs: readonly J[], local: (job: J, index: number, signal?: AbortSignal) => Promise<R>, helpers?: WorkHelpers<J, R>, options: ShareOptions = {}): Promise<R[]> {
  const { onDone, backup, backupAfter } = options;
  const results: R[] = new Array(jobs.length);
  const settled = new Array<boolean>(jobs.length).fill(false);
  // the first result of a job counts (a helper's, or the caller's backup of it)
  const settle = (i: number, r: R): void => {
    if (settled[i]) return;
    settled[i] = true;
    results[i] = r;
    onDone?.(i);
  };
  // jobs a helper holds, in the order they were taken, with a way to learn when the helper's result is in
  const held: Array<{ index: number; done: Promise<void> }> = [];
  let next = 0;
  let finished!: () => void;
  const callerDone = new Promise<false>((r) => (finished = () => r(false)));
  const helper = async (): Promise<void> => {
    if (!(await Promise.race([helpers!.ready(), callerDone]))) return;
    while (next < jobs.length) {
      const i = next++;
      const run = helpers!.run(jobs[i]!);
      held.push({ index: i, done: run.then(() => undefined, () => undefined) });
      let r: R;
      try {
        r = await run;
      } catch {
        if (settled[i]) continue;
        r = await local(jobs[i]!, i);
      }
      settle(i, r);
    }
  };
  // the caller's first job is taken before the helpers start; helpers that are up then post theirs
  // before the caller runs it: a job that runs onnxruntime holds this thread until its run ends, and
  // a helper's job not yet posted with it (15 ms in a trial)
  const first = next++;
  const remote = helpers && helpers.size > 0 && jobs.length > 1 ? Array.from({ length: Math.min(helpers.size, jobs.length - 1) }, helper) : [];
  try {
    if (remote.length > 0) await nextTurn();
    if (first < jobs.length) settle(first, await local(jobs[first]!, first));
    while (next < jobs.length) {
      const i = next++;
      settle(i, await local(jobs[i]!, i));
    }
    // backups of the jobs helpers still hold, the earliest taken first
    for (let h = 0; backup && h < held.length; h++) {
      const { index: i, done } = held[h]!;
      if (settled[i]) continue;
      const wait = backupAfter?.() ?? 0;
      if (wait > 0) await Promise.race([done, delay(wait)]);
      if (settled[i]) continue;
      const abort = new AbortController();
      void done.then(() => settled[i] && abort.abort());
      try {
        const r = await local(jobs[i]!, i, abort.signal);
        if (!settled[i]) helpers?.cancel?.(i);
        settle(i, r);
      } catch (e) {
        // the helper's result came first (or the helper failed and its loop runs the job here again)
        if (!abort.signal.aborted) throw e;
      }
    }
  } catch (e) {
    next = jobs.length;
    finished();
    await Promise.allSettled(remote);
    throw e;
  }
  finished();
  // every result in (backups): helpers still on a job settled here are not waited for
  if (settled.every(Boolean)) {
    for (const r of remote) r.catch(() => {});
    return results;
  }
  for (const r of await Promise.allSettled(remote)) if (r.status === 'rejected') throw r.reason;
  return results;
}

/**
 * Whether `helpers` are up already: their ready() if it settles within this turn of the event loop,
 * else false (a caller that can start helper work now, and would rather not wait for a cold start).
 */
export function threadsUp(helpers: { ready(): Promise<boolean> }): Promise<boolean> {
  return Promise.race([helpers.ready(), delay(0).then(() => false)]);
}

/** Resolves (with undefined) after `ms` milliseconds: the end of a wait raced against a helper's result. */
export function delay(ms: number): Promise<undefined> {
  return new Promise((r) => setTimeout(() => r(undefined), ms));
}

/** Resolves once the event loop has turned (setImmediate): the microtasks queued before it, a helper's task posted among them, have run. */
export function nextTurn(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** What long work checks between its steps to stop early: an AbortSignal is one, {@link flagCancellation} another. */
export type Cancellation = Pick<AbortSignal, 'throwIfAborted'>;

/** A flag another thread can raise (one int32 of a SharedArrayBuffer): {@link raiseFlag}, read by {@link flagCancellation}. */
export function cancelFlag(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4));
}

export function raiseFlag(flag: Int32Array): void {
  Atomics.store(flag, 0, 1);
}

/** A {@link Cancellation} that throws once `flag` is raised (by any thread holding it). */
export function flagCancellation(flag: Int32Array): Cancellation {
  return {
    throwIfAborted() {
      if (Atomics.load(flag, 0) !== 0) throw new Error('cancelled: another thread finished this work first');
    },
  };
}

/** Typed arrays at least this large are copied into shared memory by {@link shareLarge}. */
const SHARE_MIN_BYTES = 64 * 1024;

/**
 * `value` for posting to another thread, its large typed arrays (nested in arrays and plain objects)
 * copied into SharedArrayBuffers: posting then shares them instead of serializing them. Serializing
 * a typed array for postMessage ran at ~300 MB/s here (2 MB: ~6 ms on the posting thread, more to
 * read it back), a copy into shared memory at memory speed, and the receiver reads it in place. A
 * typed array referenced twice becomes one shared copy; arrays already shared stay as they are;
 * containers are copied only where something in them changed. (onnxruntime-node refuses shared
 * memory as a tensor's data: runtime/session.ts copies it back for a run.)
 */
export function shareLarge<T>(value: T, seen = new Map<ArrayBufferView, ArrayBufferView>(), depth = 0): T {
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (ArrayBuffer.isView(value)) {
    if (value.buffer instanceof SharedArrayBuffer || value.byteLength < SHARE_MIN_BYTES || value instanceof DataView) return value;
    let copy = seen.get(value);
    if (!copy) {
      const Ctor = value.constructor as new (b: SharedArrayBuffer) => ArrayBufferView & { set(a: ArrayBufferView): void };
      const shared = new Ctor(new SharedArrayBuffer(value.byteLength));
      shared.set(value);
      seen.set(value, (copy = shared));
    }
    return copy as T;
  }
  if (Array.isArray(value)) {
    const out = value.map((v) => shareLarge(v, seen, depth + 1));
    return (out.some((v, i) => v !== value[i]) ? out : value) as T;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  let changed = false;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = shareLarge(v, seen, depth + 1);
    if (out[k] !== v) changed = true;
  }
  return (changed ? out : value) as T;
}
