import { describe, expect, it } from 'vitest';
import { adaptiveEstimate, contentionLevel, floorEstimate, mergeContention } from '../../runtime/timer.js';

/** A fake clock advanced by each trial, and trials from a list (no timing anywhere). */
function fakeTrials(ratios: number[] | ((i: number) => number), secondsPerTrial = 1) {
  let t = 0;
  let i = 0;
  const at = typeof ratios === 'function' ? ratios : (k: number) => ratios[k % ratios.length]!;
  return {
    now: () => t,
    trial: async () => {
      t += secondsPerTrial;
      return at(i++);
    },
    count: () => i,
  };
}

describe('floor estimate', () => {
  it('is the median of the lowest third and its noise the spread of that third', () => {
    const e = floorEstimate([1.3, 1.0, 1.02, 1.5, 1.01, 1.2, 1.1, 1.4, 1.25]);
    expect(e.used).toBe(3);
    expect(e.value).toBeCloseTo(1.01, 9);
    expect(e.noise).toBeCloseTo(0.02 / 1.01, 9);
    // at least three trials make the estimate; fewer than three have unknown noise
    expect(floorEstimate([2, 1]).noise).toBe(Infinity);
    expect(floorEstimate([1, 1.1, 1.2, 5]).used).toBe(3);
  });

  it('estimates the same quantity from more trials (a quantile, not the minimum)', () => {
    const pattern = [1.0, 1.02, 1.04, 1.1, 1.2, 1.3, 1.15, 1.25, 1.35];
    const few = floorEstimate(pattern);
    const many = floorEstimate([...pattern, ...pattern, ...pattern]);
    expect(few.value).toBeCloseTo(1.02, 9);
    expect(many.value).toBeCloseTo(1.02, 9);
  });
});

describe('adaptive estimate', () => {
  it('stops at the least trials when they agree', async () => {
    const f = fakeTrials([1.0, 1.005, 1.01, 1.3, 1.2]);
    const e = await adaptiveEstimate(f.trial, { now: f.now, minTrials: 5, tolerance: 0.02 });
    expect(e.stable).toBe(true);
    expect(e.trials).toHaveLength(5);
    expect(e.value).toBeCloseTo(1.005, 9);
  });

  it('keeps measuring while the fastest trials disagree, and stops when they settle', async () => {
    // the first trials scatter (contention), later ones settle at 1.0
    const f = fakeTrials([1.3, 1.0, 1.2, 1.1, 1.25, 1.001, 1.002, 1.0, 1.15, 1.003]);
    const e = await adaptiveEstimate(f.trial, { now: f.now, minTrials: 5, tolerance: 0.01 });
    expect(e.stable).toBe(true);
    expect(e.trials.length).toBeGreaterThan(5);
    expect(e.value).toBeCloseTo(1.0005, 3);
  });

  it('gives up at the time limit with a reason when the trials never agree', async () => {
    // every trial slower than the last (a machine getting busier): the fastest third never agrees
    const f = fakeTrials((i) => 1 + 0.05 * i, 2);
    const e = await adaptiveEstimate(f.trial, { now: f.now, minTrials: 4, tolerance: 0.01, maxSeconds: 20 });
    expect(e.stable).toBe(false);
    expect(e.seconds).toBe(20);
    expect(e.reason).toMatch(/still differ by .*time limit/);
  });

  it('stops when the caller says the answer is clear, even before it is stable', async () => {
    const f = fakeTrials([1.0, 1.5, 1.6, 1.7, 1.8, 1.9]);
    const e = await adaptiveEstimate(f.trial, { now: f.now, minTrials: 3, tolerance: 0.001, done: (x) => x.trials.length >= 4 });
    expect(e.trials).toHaveLength(4);
    expect(e.stable).toBe(false);
  });

  it('refuses a trial without a usable ratio', async () => {
    await expect(adaptiveEstimate(async () => 0)).rejects.toMatchObject({ code: 'TIMER_BAD_TRIAL' });
  });
});

describe('contention', () => {
  it('classifies and merges contention records', () => {
    const quiet = { wallMs: 100, cpuMs: 99, cpuOverWall: 0.99, involuntaryContextSwitches: 1, preemptedSlots: 0, slotSpread: 0.02 };
    const busy = { wallMs: 100, cpuMs: 40, cpuOverWall: 0.4, involuntaryContextSwitches: 50, preemptedSlots: 0.6, slotSpread: 0.5 };
    expect(contentionLevel(quiet)).toBe('low');
    expect(contentionLevel(busy)).toBe('high');
    const m = mergeContention([quiet, busy]);
    expect(m.cpuOverWall).toBeCloseTo(139 / 200, 9);
    expect(m.involuntaryContextSwitches).toBe(51);
    expect(m.preemptedSlots).toBeCloseTo(0.3, 9);
  });
});
