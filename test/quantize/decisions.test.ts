/**
 * Reproducible latency-aware decisions (passes/quant/decisions.ts), with injected profilers and never
 * real timings:
 * - the margin rule: a layer goes to float only when int8 is slower beyond the measured noise and the
 *   margin (median of the paired trial ratios, noise the width of its confidence interval); a
 *   difference within the noise is 'uncertain' and stays int8;
 * - through quantize-static with a noisy fake profiler: different noise draws give the same decisions
 *   and byte-identical models, and the report and metadata_props record them;
 * - replay: the recorded document gives the same bytes without profiling; documents for another model,
 *   naming unknown layers or with another schema are refused with catalogued input errors.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../data/index.js';
import type { Model } from '../../ir/ir.js';
import { serializeModel } from '../../onnx/index.js';
import { quantizeStatic } from '../../passes/api.js';
import { decideLayer, DECISIONS_METADATA_KEY, DECISIONS_SCHEMA, DecisionsDocument, floorOf, layerListHash, medianWithNoise, readDecisions } from '../../passes/quantize/decisions.js';
import { Profiler, writeDecisions } from '../../passes/quantize/quantize-static.js';
import type { OpProfileRow } from '../../runtime/profile.js';
import { convRelu, gaussianSource, residual } from './models.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-decisions-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('the margin rule', () => {
  it('estimates by the median of the lowest third of the trials, noise by its spread', () => {
    expect(floorOf([10, 50, 11, 12, 40, 13])).toEqual({ value: 11, noise: 2 });
    expect(floorOf([100, 104, 101, 300, 102, 103, 250, 105, 106])).toEqual({ value: 101, noise: 2 });
  });

  it('estimates a ratio by the median of the trials, its noise by the median\'s ~95% confidence interval', () => {
    // 12 trials: order statistics 3rd to 10th
    expect(medianWithNoise([12, 1, 11, 2, 10, 3, 9, 4, 8, 5, 7, 6])).toEqual({ value: 6.5, noise: 7 });
    // 36 trials: 13th to 24th; 3 trials: all of them
    expect(medianWithNoise(Array.from({ length: 36 }, (_, i) => i + 1))).toEqual({ value: 18.5, noise: 11 });
    expect(medianWithNoise([1.15, 1.55, 1.35])).toEqual({ value: 1.35, noise: expect.closeTo(0.4, 10) });
  });

  it('an int8 kernel that varies by itself is judged by its median, not by its fastest trials', () => {
    // float 10 µs steady; int8 60-180 µs (as PaddleOCR det's p2o.Conv.48): median ratio 10, lowest third 7
    const f = Array(12).fill(10);
    const q = [60, 70, 80, 90, 100, 100, 100, 100, 110, 120, 150, 180];
    // worth floor 80 µs (0.1% of 80 ms): a 90 µs slowdown is worth a float layer; the lowest third's 60 µs was not
    const d = decideLayer(f, q, { modelUs: 80000 });
    expect(d).toMatchObject({ choice: 'float', certainty: 'clear', ratio: 10 });
    expect((floorOf(q.map((x) => x / 10)).value - 1) * 10).toBeLessThan(80);
  });

  it('decides on paired trial ratios, so a period of load on both sides cancels', () => {
    // the same layer in a quiet and in a loaded period: each side's time moves by 60%, the ratio by little
    const f = [50, 52, 51, 80, 82, 81];
    const q = [100, 105, 103, 160, 170, 165];
    const d = decideLayer(f, q);
    expect(d.ratio).toBeCloseTo(2, 1);
    expect(d).toMatchObject({ choice: 'float', certainty: 'clear', floatUs: 51, int8Us: 103 });
    expect(d.why).toMatch(/^slower in int8 beyond noise and margin: int8 2\.0\dx/);
  });

  it('floats a layer only beyond noise, margin and minUs; within the noise it stays int8 (uncertain)', () => {
    // 35% slower, trials agree: float
    expect(decideLayer([100, 100, 100, 100], [135, 136, 135, 137])).toMatchObject({ choice: 'float', certainty: 'clear' });
    // 35% slower by the estimate, but the lowest third of the ratios spreads by 0.4: uncertain, int8 by rule
    const noisy = decideLayer([100, 100, 100], [115, 135, 155]);
    expect(noisy).toMatchObject({ choice: 'int8', certainty: 'uncertain' });
    expect(noisy.noiseUs).toBeCloseTo(40, 5);
    expect(noisy.why).toMatch(/^uncertain/);
    // 20% slower with no noise: within the 30% margin, clearly int8; a margin of 10% floats it
    expect(decideLayer([100, 100, 100], [120, 120, 120])).toMatchObject({ choice: 'int8', certainty: 'clear' });
    expect(decideLayer([100, 100, 100], [120, 120, 120], { margin: 0.1 })).toMatchObject({ choice: 'float' });
    // faster in int8
    expect(decideLayer([100, 100, 100], [60, 61, 60])).toMatchObject({ choice: 'int8', certainty: 'clear' });
    // twice as slow but 4 µs per run: below minUs (5), not worth a float layer
    expect(decideLayer([4, 4, 4], [8, 8, 8])).toMatchObject({ choice: 'int8', certainty: 'clear' });
    expect(decideLayer([4, 4, 4], [8, 8, 8], { minUs: 2 })).toMatchObject({ choice: 'float' });
  });

  it('a slowdown under a thousandth of the model time per run is not worth a float layer', () => {
    // 1.5x slower, 6 µs per run: worth it in a 2 ms model (floor max(5, 2) µs), not in a 20 ms one (floor 20 µs)
    expect(decideLayer([12, 12, 12, 12], [18, 18, 18, 18], { modelUs: 2000 })).toMatchObject({ choice: 'float', certainty: 'clear' });
    const big = decideLayer([12, 12, 12, 12], [18, 18, 18, 18], { modelUs: 20000 });
    expect(big).toMatchObject({ choice: 'int8', certainty: 'clear' });
    expect(big.why).toMatch(/margin 0\.30x and 20 µs$/);
    // the share is an option: 0.0001 of 20 ms is 2 µs, so the 6 µs slowdown floats again
    expect(decideLayer([12, 12, 12, 12], [18, 18, 18, 18], { modelUs: 20000, minShare: 0.0001 })).toMatchObject({ choice: 'float' });
    // a big layer's slowdown clears the floor: 1.5x of 200 µs is 100 µs per run
    expect(decideLayer([200, 200, 200, 200], [300, 300, 300, 300], { modelUs: 20000 })).toMatchObject({ choice: 'float' });
  });

  it('flags a clearly slower layer whose slowdown sits near the worth floor (it gets extra trials)', () => {
    // 1.5x slower, 6 µs per run, floor 6 µs (0.001 x 6 ms): near it
    const near = decideLayer([12, 12, 12, 12], [18, 18, 18, 18], { modelUs: 6000 });
    expect(near).toMatchObject({ nearWorth: true, worthUs: 6, trials: 4 });
    // 7.5 µs against 6: within the 25% band; 9 µs: outside it and outside the noise (none here)
    expect(decideLayer([15, 15, 15], [22.5, 22.5, 22.5], { modelUs: 6000 }).nearWorth).toBe(true);
    expect(decideLayer([18, 18, 18], [27, 27, 27], { modelUs: 6000 }).nearWorth).toBeUndefined();
    // noisy trials widen the band: 8 µs slowdown (1.8x of 10 µs) against 6 is outside the 25% band,
    // but its ratio noise 0.5 x 10 µs = 5 µs reaches the floor
    expect(decideLayer([10, 10, 10], [17, 18, 22], { modelUs: 6000 }).nearWorth).toBe(true);
    expect(decideLayer([10, 10, 10], [18, 18, 18], { modelUs: 6000 }).nearWorth).toBeUndefined();
    // within the margin by its ratio: the floor does not matter, no extra trials
    expect(decideLayer([30, 30, 30], [36, 36, 36], { modelUs: 6000 }).nearWorth).toBeUndefined();
  });

  it('with fewer than 3 trials or no float time nothing is clear enough to float', () => {
    expect(decideLayer([100], [300])).toMatchObject({ choice: 'int8', certainty: 'uncertain' });
    expect(decideLayer([0, 0, 0], [30, 30, 30])).toMatchObject({ choice: 'int8', certainty: 'clear' });
  });
});

const row = (node: string, opType: string, totalUs: number): OpProfileRow => ({ node, opType, totalUs, calls: 1, share: 0 });

/**
 * A fake profiler with noise: every conv's per-call time is its table value times (1 + U(0, jitter))
 * (load only adds time), from a seeded generator; int8 convs (DQ(Q(x)) and DQ weight) are reported as
 * fused QLinearConv rows, float ones under onnxruntime's NCHWc name.
 */
function noisyProfiler(floatUs: Record<string, number>, int8Us: Record<string, number>, seed: number, jitter = 0.3): { profiler: Profiler; calls: () => number } {
  const rand = mulberry32(seed);
  let calls = 0;
  const profiler: Profiler = async (m: Model) => {
    calls++;
    const rows: OpProfileRow[] = [];
    for (const n of m.graph.nodes) {
      if (n.opType !== 'Conv' || !n.name) continue;
      const int8 = n.inputs[0]?.producer?.opType === 'DequantizeLinear' && n.inputs[0].producer.inputs[0]?.producer?.opType === 'QuantizeLinear' && n.inputs[1]?.producer?.opType === 'DequantizeLinear';
      const us = (int8 ? int8Us[n.name]! : floatUs[n.name]!) * (1 + jitter * rand());
      rows.push(int8 ? row(`${n.name}_token_3`, 'QLinearConv', us) : row(`${n.outputs[0]!.name}_nchwc`, 'Conv', us));
    }
    return rows;
  };
  return { profiler, calls: () => calls };
}

const calib = gaussianSource('x', () => [1, 4, 8, 8], 6);
// conv2 is 3x slower in int8 (clear); conv1 25% slower, within the 30% margin once the noise is counted
const FLOAT_US = { conv1: 100, conv2: 100 };
const INT8_US = { conv1: 125, conv2: 300 };

async function measured(seed: number): Promise<{ model: Model; report: Awaited<ReturnType<typeof quantizeStatic>>; calls: number }> {
  const model = convRelu();
  const p = noisyProfiler(FLOAT_US, INT8_US, seed);
  const report = await quantizeStatic(model, calib, { latencyAware: 'on', latency: { profiler: p.profiler, runs: 1, feeds: 1 } });
  return { model, report, calls: p.calls() };
}

const throwingProfiler: Profiler = async () => {
  throw new Error('replay must not profile');
};

describe('latency-aware decisions through quantize-static (noisy fake profiler)', () => {
  it('gives the same decisions and model bytes for different noise draws, and records them', async () => {
    const runs = await Promise.all([1, 2, 3, 4].map((s) => measured(s)));
    const bytes = runs.map((r) => Buffer.from(serializeModel(r.model)));
    for (const b of bytes.slice(1)) expect(b.equals(bytes[0]!)).toBe(true);
    const { report, model, calls } = runs[0]!;
    const l = report.latency!;
    expect(l.source).toBe('measured');
    // round 1 floats conv2, round 2 re-profiles the new build and changes nothing: 2 rounds x 12 trials x 2 profiles
    expect(l.rounds).toBe(2);
    expect(l.trials).toBe(12);
    expect(calls).toBe(48);
    expect(l.floated.map((f) => f.node)).toEqual(['conv2']);
    const byNode = Object.fromEntries(l.decisions.map((d) => [d.node, d]));
    expect(byNode.conv2).toMatchObject({ choice: 'float', certainty: 'clear', round: 1 });
    expect(byNode.conv1!.choice).toBe('int8');
    expect(byNode.conv1!.floatUs).toBeGreaterThanOrEqual(100);
    expect(byNode.conv1!.noiseUs).toBeGreaterThan(0);
    expect(l.contention!.wallMs).toBeGreaterThan(0);
    expect(report.float.find((f) => f.node === 'conv2')!.reason).toMatch(/^latency-aware: slower in int8 beyond noise and margin/);
    // the document and the model's metadata
    const doc = l.document!;
    expect(doc.schema).toBe(DECISIONS_SCHEMA);
    expect(doc.float).toEqual(['conv2']);
    expect(doc.measured.trials).toBe(12);
    const meta = JSON.parse(model.metadata(DECISIONS_METADATA_KEY)!) as { schema: string; layers: string; float: string[]; int8: string[] };
    expect(meta).toEqual({ schema: DECISIONS_SCHEMA, layers: doc.layers.hash, float: ['conv2'], int8: ['conv1'] });
  });

  it('measures longer in a round where a clearly slower layer sits near the worth floor', async () => {
    // conv1: ~2.4x slower but ~5.5 µs per run against the 5 µs floor; conv2 clearly worth float
    const p = noisyProfiler({ conv1: 4, conv2: 100 }, { conv1: 9.5, conv2: 300 }, 11, 0.1);
    const report = await quantizeStatic(convRelu(), calib, { latencyAware: 'on', latency: { profiler: p.profiler, runs: 1, feeds: 1 } });
    const l = report.latency!;
    const byNode = Object.fromEntries(l.decisions.map((d) => [d.node, d]));
    expect(byNode.conv1).toMatchObject({ nearWorth: true, trials: 36, worthUs: 5 });
    expect(l.extendedRounds).toBeGreaterThanOrEqual(1);
    expect(l.document!.measured).toMatchObject({ trials: 12, extraTrials: 24, extendedRounds: l.extendedRounds });
    // every extended round profiles 36 pairs instead of 12
    expect(p.calls()).toBe(2 * (12 * l.rounds + 24 * l.extendedRounds!));
    // extraTrials 0 turns it off
    const q = noisyProfiler({ conv1: 4, conv2: 100 }, { conv1: 9.5, conv2: 300 }, 11, 0.1);
    const off = await quantizeStatic(convRelu(), calib, { latencyAware: 'on', latency: { profiler: q.profiler, runs: 1, feeds: 1, extraTrials: 0 } });
    expect(off.latency!.extendedRounds).toBe(0);
    expect(q.calls()).toBe(2 * 12 * off.latency!.rounds);
  });

  it('replays a recorded decisions file without profiling, byte for byte', async () => {
    const rec = await measured(7);
    const file = path.join(tmp, 'conv-relu.decisions.json');
    writeDecisions(file, rec.report.latency!.document!);
    const again = [];
    for (let i = 0; i < 2; i++) {
      const m = convRelu();
      const r = await quantizeStatic(m, calib, { latencyAware: 'on', decisions: file, latency: { profiler: throwingProfiler } });
      expect(r.latency!.source).toBe('replayed');
      expect(r.latency!.floated.map((f) => f.node)).toEqual(['conv2']);
      expect(r.latency!.decisions).toEqual(rec.report.latency!.decisions);
      again.push(Buffer.from(serializeModel(m)));
    }
    const recorded = Buffer.from(serializeModel(rec.model));
    expect(again[0]!.equals(recorded)).toBe(true);
    expect(again[1]!.equals(recorded)).toBe(true);
    // the order of the float layers in the file (the order rounds decided them) does not change the bytes:
    // residual's conv1 and conv3 float, conv2 int8 between them
    const calib8 = gaussianSource('x', () => [1, 8, 6, 6], 6);
    const res = residual();
    const slow = noisyProfiler({ conv1: 100, conv2: 100, conv3: 100 }, { conv1: 300, conv2: 50, conv3: 300 }, 3);
    const measuredRes = await quantizeStatic(res, calib8, { latencyAware: 'on', latency: { profiler: slow.profiler, runs: 1, feeds: 1 } });
    expect(measuredRes.latency!.document!.float).toEqual(['conv1', 'conv3']);
    const inOrder = async (float: string[]) => {
      const m = residual();
      await quantizeStatic(m, calib8, { latencyAware: 'on', decisions: { ...measuredRes.latency!.document!, float }, latency: { profiler: throwingProfiler } });
      return Buffer.from(serializeModel(m));
    };
    const forward = await inOrder(['conv1', 'conv3']);
    expect(forward.equals(Buffer.from(serializeModel(res)))).toBe(true);
    expect((await inOrder(['conv3', 'conv1'])).equals(forward)).toBe(true);
    // a hand-edited file with no float layer gives the all-int8 model
    writeDecisions(file, { ...readDecisions(file), float: [] });
    const m = convRelu();
    const r = await quantizeStatic(m, calib, { latencyAware: 'on', decisions: file, latency: { profiler: throwingProfiler } });
    expect(r.latency!.floated).toEqual([]);
    expect(r.quantizedOps.Conv).toBe(2);
  });

  it('refuses files for another model, unknown layers, other schemas and missing files (input errors)', async () => {
    const rec = await measured(9);
    const doc = rec.report.latency!.document!;
    const run = (d: string | DecisionsDocument) => quantizeStatic(convRelu(), calib, { latencyAware: 'on', decisions: d, latency: { profiler: throwingProfiler } });
    await expect(run({ ...doc, layers: { hash: '0123456789abcdef', count: 2 } })).rejects.toMatchObject({ code: 'QUANT_DECISIONS_MODEL', kind: 'input' });
    await expect(run({ ...doc, float: ['conv9'] })).rejects.toMatchObject({ code: 'QUANT_DECISIONS_UNKNOWN_NODE', kind: 'input' });
    // a Relu is a node of the model but not a layer a decision can name
    await expect(run({ ...doc, float: ['relu1'] })).rejects.toMatchObject({ code: 'QUANT_DECISIONS_UNKNOWN_NODE' });
    await expect(run({ ...doc, schema: 'onnxforge.quantize-decisions/0' as typeof DECISIONS_SCHEMA })).rejects.toMatchObject({ code: 'QUANT_DECISIONS_BAD' });
    await expect(run(path.join(tmp, 'missing.json'))).rejects.toMatchObject({ code: 'QUANT_DECISIONS_BAD', message: expect.stringMatching(/does not exist/) });
    const garbage = path.join(tmp, 'garbage.json');
    fs.writeFileSync(garbage, '{ not json');
    await expect(run(garbage)).rejects.toMatchObject({ code: 'QUANT_DECISIONS_BAD', message: expect.stringMatching(/not JSON/) });
    // the hash follows the layer list: another architecture has another one
    expect(layerListHash(residual()).hash).not.toBe(layerListHash(convRelu()).hash);
    await expect(quantizeStatic(convRelu(), calib, { latencyAware: 'off', decisions: doc })).rejects.toMatchObject({ code: 'QUANT_BAD_OPTION' });
    await expect(quantizeStatic(convRelu(), calib, { latencyAware: 'on', updateDecisions: true })).rejects.toMatchObject({ code: 'QUANT_BAD_OPTION' });
  });
});
