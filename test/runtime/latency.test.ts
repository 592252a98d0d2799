import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { latencyStats, measureLatency, percentile } from '../../runtime/latency.js';
import { parseProfile, profileModel } from '../../runtime/profile.js';
import { fromValues } from '../../core/host-tensor.js';
import { createSession } from '../../runtime/session.js';
import { benchmark } from '../../workflows/bench.js';
import { timeInterleaved, type TimedSession } from '../../runtime/timer.js';
import { affineModel, reluModel } from './models.js';

describe('latency statistics', () => {
  it('computes percentiles by interpolation and the spread', () => {
    const s = [5, 1, 4, 2, 3, 6, 7, 8, 9, 10];
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    const st = latencyStats(s);
    expect(st.min).toBe(1);
    expect(st.max).toBe(10);
    expect(st.mean).toBe(5.5);
    expect(st.p50).toBe(5.5);
    expect(st.p10).toBeCloseTo(1.9);
    expect(st.p90).toBeCloseTo(9.1);
    expect(st.p99).toBeCloseTo(9.91);
    expect(st.spread).toBeCloseTo((9.1 - 1.9) / 5.5);
    expect(st.stddev).toBeCloseTo(3.02765, 4);
  });
});

describe('measureLatency', () => {
  it('times every session once per round with warm-up, and reports memory', async () => {
    const a = await createSession(affineModel(2, 1), {}, 'a');
    const b = await createSession(affineModel(3, 0), {}, 'b');
    const rounds: number[] = [];
    const feed = { x: fromValues('float32', [1, 8], [1, 2, 3, 4, 5, 6, 7, 8]) };
    const r = await measureLatency([a, b], [feed], { warmup: 2, runs: 7, onRound: (d) => rounds.push(d) });
    expect(r.sessions.map((s) => s.name)).toEqual(['a', 'b']);
    for (const s of r.sessions) {
      expect(s.samples).toHaveLength(7);
      expect(s.stats.runs).toBe(7);
      expect(s.stats.min).toBeGreaterThan(0);
      expect(s.stats.p50).toBeGreaterThanOrEqual(s.stats.min);
      expect(s.createMs).toBeGreaterThan(0);
    }
    expect(rounds).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(r.peakRssBytes).toBeGreaterThan(10 * 1024 * 1024);
    expect(r.sampledPeakRssBytes).toBeGreaterThan(0);
    await expect(measureLatency([a], [], {})).rejects.toMatchObject({ code: 'BENCH_NO_INPUTS' });
    await expect(measureLatency([a], [feed], { runs: 0 })).rejects.toMatchObject({ code: 'BENCH_BAD_RUNS' });
  });

  it('benchmarks models end to end from a data spec', async () => {
    const r = await benchmark({ models: [], inputs: 'random' }).catch((e: unknown) => e);
    expect(r).toMatchObject({ code: 'BENCH_NO_MODEL' });
  });
});

describe('timeInterleaved inner auto', () => {
  /** A session whose runs busy-wait `ms` (the first `slowFirst` runs 12 ms: a pause during calibration). */
  const fake = (ms: number, slowFirst = 0): TimedSession & { runs: number } => {
    const s = {
      runs: 0,
      async runOrt() {
        const until = performance.now() + (s.runs++ < slowFirst ? 12 : ms);
        while (performance.now() < until);
        return {};
      },
    };
    return s;
  };
  const feed = { x: fromValues('float32', [1], [0]) };

  it('gives every session one count of runs per slot, from its fastest calibration run', async () => {
    // the fast session's first calibration run is caught by a pause: its count still follows its fastest run
    const fast = fake(0.25, 1);
    const twin = fake(0.25);
    const r = await timeInterleaved([{ session: fast, feeds: [feed] }, { session: twin, feeds: [feed] }], { rounds: 2, warmup: 0, inner: 'auto' });
    const [a, b] = r.entries.map((e) => e.inner);
    expect(a).toBe(b);
    // 5 ms / ~0.25 ms a run (at most 20; at least 5 even on a loaded machine)
    expect(a).toBeGreaterThanOrEqual(5);
    expect(a).toBeLessThanOrEqual(20);
  });

  it('caps a slow session so its slot stays near 50 ms', async () => {
    const r = await timeInterleaved([{ session: fake(0.25), feeds: [feed] }, { session: fake(10), feeds: [feed] }], { rounds: 1, warmup: 0, inner: 'auto' });
    expect(r.entries[1]!.inner).toBeLessThanOrEqual(5);
    expect(r.entries[1]!.inner).toBeGreaterThanOrEqual(3);
    expect(r.entries[0]!.inner).toBeGreaterThanOrEqual(5);
  });
});

describe('profiles', () => {
  it('parses a trace into per-node and per-op-type tables', () => {
    const trace = [
      { cat: 'Session', name: 'model_run', dur: 100 },
      { cat: 'Node', name: 'mul_kernel_time', dur: 30, args: { op_name: 'Mul' } },
      { cat: 'Node', name: 'add_kernel_time', dur: 10, args: { op_name: 'Add' } },
      { cat: 'Node', name: 'mul_kernel_time', dur: 20, args: { op_name: 'Mul' } },
      { cat: 'Node', name: 'add_fence_before', dur: 1, args: { op_name: 'Add' } },
    ];
    const p = parseProfile(trace, 2);
    expect(p.totalUs).toBe(60);
    expect(p.nodes[0]).toEqual({ node: 'mul', opType: 'Mul', totalUs: 50, calls: 2, minUs: 20, share: 50 / 60 });
    expect(p.opTypes.map((t) => t.opType)).toEqual(['Mul', 'Add']);
    expect(() => parseProfile({})).toThrow(/not a JSON array/);
  });

  it('profiles a real run and deletes the trace', async () => {
    const before = readdirSync(tmpdir()).filter((f) => f.startsWith('onnxforge-profile-')).length;
    const p = await profileModel(affineModel(2, 1), [{ x: fromValues('float32', [1, 8], [1, 2, 3, 4, 5, 6, 7, 8]) }], { graphOptimizationLevel: 'disabled', runs: 3 });
    expect(p.nodes.map((n) => n.node).sort()).toEqual(['add', 'mul']);
    expect(p.nodes.every((n) => n.calls === 3)).toBe(true);
    expect(p.opTypes.reduce((a, t) => a + t.share, 0)).toBeCloseTo(1);
    expect(readdirSync(tmpdir()).filter((f) => f.startsWith('onnxforge-profile-')).length).toBe(before);
    expect(existsSync(tmpdir())).toBe(true);
    const relu = await profileModel(reluModel(), [{ x: fromValues('float32', [2, 4], new Array(8).fill(1)) }]);
    expect(relu.nodes[0]!.opType).toBe('Relu');
  });
});
