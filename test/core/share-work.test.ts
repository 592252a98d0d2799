/**
 * core/share-work.ts: jobs shared between the caller and helpers. Results come back in the jobs'
 * order whoever ran them; a helper that fails hands its job back to the caller; a helper still
 * starting when the caller has run out of jobs gets none and is not waited for; the caller's own
 * error rejects the whole call.
 */
import { describe, expect, it } from 'vitest';
import { shareLarge, shareWork, type WorkHelpers } from '../../core/share-work.js';

const tick = () => new Promise<void>((r) => setTimeout(r, 2));
const jobs = Array.from({ length: 12 }, (_, i) => i);

function helpers(run: (job: number) => Promise<number>, ready: Promise<boolean> = Promise.resolve(true), size = 1): WorkHelpers<number, number> & { ran: number[] } {
  const ran: number[] = [];
  return {
    size,
    ran,
    ready: () => ready,
    run: async (job) => {
      ran.push(job);
      return run(job);
    },
  };
}

describe('shareWork', () => {
  it('splits the jobs between the caller and the helpers, results in the jobs order', async () => {
    const local: number[] = [];
    const h = helpers(async (j) => (await tick(), j * j), Promise.resolve(true), 2);
    const out = await shareWork(jobs, async (j) => (local.push(j), await tick(), j * j), h);
    expect(out).toEqual(jobs.map((j) => j * j));
    expect(h.ran.length).toBeGreaterThan(0);
    expect(local.length).toBeGreaterThan(0);
    expect([...local, ...h.ran].sort((a, b) => a - b)).toEqual(jobs);
  });

  it('runs a job the helper fails on itself', async () => {
    const local: number[] = [];
    const h = helpers(async (j) => {
      await tick();
      if (j % 2 === 1) throw new Error('thread died');
      return -j;
    });
    const out = await shareWork(jobs, async (j) => (local.push(j), await tick(), -j), h);
    expect(out).toEqual(jobs.map((j) => -j));
    for (const j of h.ran.filter((x) => x % 2 === 1)) expect(local).toContain(j);
  });

  it('does not wait for helpers that are not up when the caller is done, nor for ones that cannot start', async () => {
    const never = helpers(async (j) => j, new Promise<boolean>(() => {}));
    expect(await shareWork(jobs, async (j) => j + 1, never)).toEqual(jobs.map((j) => j + 1));
    expect(never.ran).toEqual([]);
    const broken = helpers(async (j) => j, Promise.resolve(false));
    expect(await shareWork(jobs, async (j) => j + 1, broken)).toEqual(jobs.map((j) => j + 1));
    expect(broken.ran).toEqual([]);
  });

  it("rejects with the caller's own error, after the helpers stop", async () => {
    let helperActive = false;
    const h = helpers(async (j) => {
      helperActive = true;
      await tick();
      helperActive = false;
      return j;
    });
    await expect(shareWork(jobs, async (j) => {
      await tick();
      if (j >= 4) throw new Error('bad weight');
      return j;
    }, h)).rejects.toThrow('bad weight');
    expect(helperActive).toBe(false);
  });

  it('backup: out of jobs, the caller also runs the jobs a slow helper holds and keeps the first result; a helper answering first stops the caller\'s run', async () => {
    // a caller's run: a few ticks, a backup (with a signal) `steps`, stopping when its signal aborts
    // (the job's value, or -1 from a backup that ran to the end)
    const aborted: number[] = [];
    const caller = (steps: number, onBackup?: () => void) => async (j: number, _i: number, signal?: AbortSignal) => {
      if (signal) onBackup?.();
      for (let k = 0; k < (signal ? steps : 2); k++) {
        await tick();
        if (signal?.aborted) {
          aborted.push(j);
          throw new Error('aborted');
        }
      }
      return signal ? -1 : j * 10;
    };
    // a helper that answers only once let go, after shareWork has returned: the caller's backup result is kept
    let letGo!: () => void;
    const gate = new Promise<void>((r) => (letGo = r));
    let answered = false;
    const slow = helpers(async (j) => (await gate, (answered = true), j * 10));
    const out = await shareWork(jobs, caller(3), slow, { backup: true });
    expect(slow.ran.length).toBe(1);
    expect(out).toEqual(jobs.map((j) => (j === slow.ran[0] ? -1 : j * 10)));
    expect(answered).toBe(false);
    letGo();
    expect(aborted).toEqual([]);
    // a helper let go once the caller's backup of its job has started: the helper's result is kept, the backup stops
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const quick = helpers(async (j) => (await held, j * 10));
    const out2 = await shareWork(jobs, caller(1000, () => release()), quick, { backup: true });
    expect(out2).toEqual(jobs.map((j) => j * 10));
    expect(aborted).toEqual([quick.ran[0]]);
  });

  it('backupAfter: the caller waits that long for a helper before backing its job up', async () => {
    const two = [0, 1];
    // a helper that answers within the wait: no backup run
    const backedUp: number[] = [];
    const local = async (j: number, _i: number, signal?: AbortSignal) => {
      if (signal) backedUp.push(j);
      else await tick();
      return j * 10;
    };
    const soon = helpers(async (j) => (await new Promise((r) => setTimeout(r, 20)), j * 10));
    expect(await shareWork(two, local, soon, { backup: true, backupAfter: () => 5000 })).toEqual([0, 10]);
    expect(soon.ran).toEqual([1]);
    expect(backedUp).toEqual([]);
    // one that stalls past it: the caller runs the job after the wait, and keeps its result
    let letGo!: () => void;
    const stalled = helpers(async (j) => (await new Promise<void>((r) => (letGo = r)), j * 100));
    expect(await shareWork(two, local, stalled, { backup: true, backupAfter: () => 30 })).toEqual([0, 10]);
    expect(stalled.ran).toEqual([1]);
    expect(backedUp).toEqual([1]);
    letGo();
  });

  it("cancel: the helper's job is called off when the caller's backup of it finishes first, not when the helper's result comes first", async () => {
    const two = [0, 1];
    const local = async (j: number, _i: number, signal?: AbortSignal) => {
      if (!signal) await tick();
      return j * 10;
    };
    const cancelled: number[] = [];
    let letGo!: () => void;
    const stalled = { ...helpers(async (j) => (await new Promise<void>((r) => (letGo = r)), j * 100)), cancel: (i: number) => cancelled.push(i) };
    expect(await shareWork(two, local, stalled, { backup: true })).toEqual([0, 10]);
    expect(cancelled).toEqual([1]);
    letGo();
    // the helper answers within the wait: nothing to cancel
    const soon = { ...helpers(async (j) => (await tick(), j * 10)), cancel: (i: number) => cancelled.push(i) };
    expect(await shareWork(two, local, soon, { backup: true, backupAfter: () => 5000 })).toEqual([0, 10]);
    expect(cancelled).toEqual([1]);
  });

  it('without helpers, runs every job itself in order', async () => {
    const order: number[] = [];
    expect(await shareWork(jobs, async (j) => (order.push(j), j))).toEqual(jobs);
    expect(order).toEqual(jobs);
  });
});

describe('shareLarge', () => {
  it('copies large typed arrays into shared memory once each, leaves small, shared and non-array values, and copies containers only where they change', () => {
    const big = new Float32Array(32768).map((_, i) => i);
    const small = new Float32Array(8).fill(2);
    const already = new Float64Array(new SharedArrayBuffer(1 << 17));
    const feeds = [{ w: { type: 'float32', dims: [32768], data: big }, x: { data: small } }, { w: { type: 'float32', dims: [32768], data: big }, h: already, n: 3 }];
    const out = shareLarge(feeds);
    expect(out).not.toBe(feeds);
    const w0 = out[0]!.w.data;
    expect(w0.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(w0).toEqual(big);
    expect(out[1]!.w!.data).toBe(w0);
    expect(out[0]!.x).toBe(feeds[0]!.x);
    expect(out[1]!.h).toBe(already);
    expect(out[1]!.n).toBe(3);
    // the input is left as it was
    expect(feeds[0]!.w.data).toBe(big);
    const plain = { a: [small], b: 'text' };
    expect(shareLarge(plain)).toBe(plain);
  });
});
