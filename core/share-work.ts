/**
 * Independent jobs shared between the caller and helper threads: the caller runs jobs itself, in
 * order, while each helper that is up takes the next one not yet taken; a helper still starting when
 * the caller has taken the last job gets none, so a cold start never makes the caller wait, and a job
 * a helper fails on is run by the caller. Results come back in the jobs' order. Order the jobs
 * longest first: the last jobs then are short ones, and neither side waits long for the other.
 */
export interface WorkHelpers<J, R> {
  /** Helpers that can run a job at the same time. */
  readonly size: number;
  /** Resolves true when the helpers are up, false when they cannot start. */
  ready(): Promise<boolean>;
  run(job: J): Promise<R>;
}

export async function shareWork<J, R>(jobs: readonly J[], local: (job: J, index: number) => Promise<R>, helpers?: WorkHelpers<J, R>, onDone?: (index: number) => void): Promise<R[]> {
  const results: R[] = new Array(jobs.length);
  let next = 0;
  let finished!: () => void;
  const callerDone = new Promise<false>((r) => (finished = () => r(false)));
  const helper = async (): Promise<void> => {
    if (!(await Promise.race([helpers!.ready(), callerDone]))) return;
    while (next < jobs.length) {
      const i = next++;
      try {
        results[i] = await helpers!.run(jobs[i]!);
      } catch {
        results[i] = await local(jobs[i]!, i);
      }
      onDone?.(i);
    }
  };
  const remote = helpers && helpers.size > 0 && jobs.length > 1 ? Array.from({ length: Math.min(helpers.size, jobs.length - 1) }, helper) : [];
  try {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await local(jobs[i]!, i);
      onDone?.(i);
    }
  } catch (e) {
    next = jobs.length;
    finished();
    await Promise.allSettled(remote);
    throw e;
  }
  finished();
  for (const r of await Promise.allSettled(remote)) if (r.status === 'rejected') throw r.reason;
  return results;
}

/**
 * Whether `helpers` are up already: their ready() if it settles within this turn of the event loop,
 * else false (a caller that can start helper work now, and would rather not wait for a cold start).
 */
export function threadsUp(helpers: { ready(): Promise<boolean> }): Promise<boolean> {
  return Promise.race([helpers.ready(), new Promise<boolean>((r) => setTimeout(() => r(false), 0))]);
}
