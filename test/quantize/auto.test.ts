/**
 * The default recipe of quantize-static: method 'auto' (per-tensor range choice by quantization
 * error, clip weight measured on the outputs), bias correction, and the label-free fidelity budget.
 * Numerics are checked in onnxruntime against the float model.
 */
import { describe, expect, it } from 'vitest';
import type { Sample } from '../../data/index.js';
import { Histogram } from '../../calibration/histogram.js';
import { computeRange, TensorStats } from '../../calibration/ranges.js';
import { GraphBuilder } from '../../ir/builder.js';
import { checkModel } from '../../ir/checker.js';
import type { Model } from '../../ir/ir.js';
import { cloneModel } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import { OPTIONS } from '../../passes/quantize/quantize-static.js';
import { recipeLabel } from '../../passes/quantize/auto-range.js';
import { renderDefaultRecipe } from '../../report/quantize-recipe.js';
import { activationParams, fakeQuantize } from '../../passes/quantize/scales.js';
import { createSessionFromModel } from '../../runtime/from-model.js';
import { byName, outputError } from './helpers.js';
import { convRelu, gaussianSource, randn } from './models.js';
import { mulberry32 } from '../../data/index.js';
import { quantizeStatic } from '../../passes/api.js';

const feedOf = (name: string, dims: number[], data: Float32Array): Sample['feed'] => ({ [name]: { type: 'float32', dims, data } });

function source(make: (i: number) => Sample['feed'], count: number, seed = 0): () => AsyncIterable<Sample> {
  return async function* () {
    for (let i = 0; i < count; i++) yield { id: `s#${seed + i}`, feed: make(seed + i) };
  };
}

/** Laplace(0, 1) values (inverse CDF of a seeded uniform). */
function laplace(n: number, seed: number): Float32Array {
  const rnd = mulberry32(seed);
  return Float32Array.from({ length: n }, () => {
    const p = Math.min(Math.max(rnd(), 1e-9), 1 - 1e-9);
    return p < 0.5 ? Math.log(2 * p) : -Math.log(2 - 2 * p);
  });
}

function statsOf(values: Float32Array): TensorStats {
  const s = new TensorStats('t', true);
  let mn = Infinity;
  let mx = -Infinity;
  for (const v of values) (mn = Math.min(mn, v)), (mx = Math.max(mx, v));
  s.add(values, mn, mx, [values.length]);
  return s;
}

/** Mean squared error of fake-quantizing `x` to the uint8 grid of [lo, hi], computed directly. */
function directMse(x: Float32Array, lo: number, hi: number): number {
  const q = fakeQuantize(x, activationParams(lo, hi));
  let e = 0;
  for (let i = 0; i < x.length; i++) e += (q[i]! - x[i]!) ** 2;
  return e / x.length;
}

describe('quantization error from a histogram', () => {
  it('matches fake quantization of the values for ranges that round and that clip', () => {
    const x = randn(50000, 3);
    const h = new Histogram();
    h.add(x);
    for (const [lo, hi] of [
      [h.min, h.max],
      [-2, 2],
      [-1, 0.5],
    ] as const) {
      const direct = directMse(x, Math.min(lo, 0), Math.max(hi, 0));
      expect(h.quantError(Math.min(lo, 0), Math.max(hi, 0))).toBeCloseTo(direct, 4);
      expect(Math.abs(h.quantError(Math.min(lo, 0), Math.max(hi, 0)) / direct - 1)).toBeLessThan(0.1);
    }
    // clipped values weigh `clipWeight` times, rounded ones once
    const clipped = h.quantError(-1, 1, 255, 4) - h.quantError(-1, 1, 255, 1);
    expect(clipped).toBeGreaterThan(0);
    expect(h.quantError(-1, 1, 255, 7) - h.quantError(-1, 1, 255, 1)).toBeCloseTo(2 * clipped, 6);
  });

  it('auto keeps min/max for a bounded tensor and clips a rare outlier', () => {
    const uniform = Float32Array.from({ length: 40000 }, (_, i) => ((i * 7919) % 40000) / 20000 - 1);
    const bounded = computeRange(statsOf(uniform), { method: 'auto' });
    expect(bounded.chosen).toBe('minmax');
    expect(bounded).toMatchObject({ lo: -1, hi: uniform.reduce((a, b) => Math.max(a, b)) });

    // a Laplace tail: the last few values cost less clipped than the coarser rounding of the bulk
    const tail = laplace(40000, 5);
    const max = tail.reduce((a, b) => Math.max(a, b));
    const clipped = computeRange(statsOf(tail), { method: 'auto' });
    expect(clipped.chosen).not.toBe('minmax');
    expect(clipped.hi).toBeLessThan(max);
    // a lone far outlier costs more clipped than rounded, unless clipping weighs little
    const lone = randn(40000, 6);
    lone[123] = 400;
    expect(computeRange(statsOf(lone), { method: 'auto' }).hi).toBeGreaterThan(300);
    expect(computeRange(statsOf(lone), { method: 'auto', clipWeight: 1 / 4096 }).hi).toBeLessThan(10);
    // the infinite clip weight never clips
    expect(computeRange(statsOf(tail), { method: 'auto', clipWeight: Infinity })).toMatchObject({ hi: max, chosen: 'minmax' });
  });
});

/**
 * Two inputs: u[1,4,8,8] uniform on [-1, 1] (bounded: min/max ranges lose little) and t[1,4,8,8]
 * Laplace-distributed (a long thin tail worth clipping). Each goes through a 1x1 conv; the sum goes
 * through a 1x1 conv to y.
 */
function twoInputs(): Model {
  const b = new GraphBuilder({ opset: 13 });
  const u = b.input('u', 'float32', [1, 4, 8, 8]);
  const t = b.input('t', 'float32', [1, 4, 8, 8]);
  const [cu] = b.op('Conv', [u, b.initializer('wu', Tensor.from('float32', [6, 4, 1, 1], randn(24, 31, 0.5)))], {}, { name: 'convU' });
  const [ct] = b.op('Conv', [t, b.initializer('wt', Tensor.from('float32', [6, 4, 1, 1], randn(24, 32, 0.5)))], {}, { name: 'convT' });
  const [s] = b.op('Add', [cu!, ct!], {}, { name: 'sum' });
  const [y] = b.op('Conv', [s!, b.initializer('wy', Tensor.from('float32', [8, 6, 1, 1], randn(48, 33, 0.5)))], {}, { name: 'convY' });
  b.output(y!, 'y', 'float32', [1, 8, 8, 8]);
  return b.model();
}

function twoFeed(i: number): Sample['feed'] {
  const rnd = mulberry32(1000 + i);
  const u = Float32Array.from({ length: 256 }, () => 2 * rnd() - 1);
  const t = Float32Array.from(laplace(256, 2000 + i), (v) => 3 * v);
  return { u: { type: 'float32', dims: [1, 4, 8, 8], data: u }, t: { type: 'float32', dims: [1, 4, 8, 8], data: t } };
}

const lowest = (e: { sqnrDb: number }[]) => Math.min(...e.map((x) => x.sqnrDb));

async function maxOf(samples: () => AsyncIterable<Sample>, input: string): Promise<number> {
  let m = -Infinity;
  for await (const s of samples()) for (const v of s.feed[input]!.data as Float32Array) m = Math.max(m, v);
  return m;
}

describe('quantize-static method auto', () => {
  it('is the schema default and picks a method per tensor, measured on the outputs', async () => {
    expect(OPTIONS.method.default).toBe('auto');
    const ref = twoInputs();
    const calib = source(twoFeed, 16);
    const held = source(twoFeed, 8, 500);
    const m = cloneModel(ref);
    const r = await quantizeStatic(m, calib, { reduceRange: true, fidelity: 0 });
    expect(checkModel(m)).toEqual([]);
    expect(r.method).toBe('auto');
    // t's tail is clipped; u (bounded) keeps (nearly) its min/max; other tensors take other methods
    expect(r.ranges.t!.chosen).not.toBe('minmax');
    expect(r.ranges.t!.hi).toBeLessThan(await maxOf(calib, 't'));
    expect(r.ranges.u!.hi).toBeGreaterThan(0.99 * (await maxOf(calib, 'u')));
    expect(new Set(Object.values(r.ranges).map((x) => x.chosen)).size).toBeGreaterThan(1);
    expect(Object.keys(r.rangeMethods!).length).toBeGreaterThan(1);
    // every candidate recipe was scored; the kept one has the best lowest-output SQNR
    const best = Math.max(...r.recipe!.candidates.map((c) => c.sqnrDb));
    expect(r.recipe!.candidates.find((c) => c.label === recipeLabel(r.recipe!.chosen))!.sqnrDb).toBe(best);

    // --method minmax forces min/max everywhere, and is much worse here (checked in onnxruntime)
    const mm = cloneModel(ref);
    const rm = await quantizeStatic(mm, calib, { reduceRange: true, fidelity: 0, method: 'minmax' });
    expect(rm.method).toBe('minmax');
    expect(rm.ranges.t!.hi).toBe(await maxOf(calib, 't'));
    expect(rm.rangeMethods).toBeUndefined();
    // on the samples the recipe was scored on, auto is at least as good as min/max (one of its candidates)
    expect(lowest(await outputError(ref, m, calib()))).toBeGreaterThanOrEqual(lowest(await outputError(ref, mm, calib())) - 1e-6);
    // and on held-out samples still close or better
    expect(lowest(await outputError(ref, m, held()))).toBeGreaterThan(lowest(await outputError(ref, mm, held())) - 0.5);
  });
});

/**
 * x[1,4,6,6]: channel 0 spans [-100, 100] on every position (no rare tail to clip), channels 1-3
 * are small (|x| < 0.3) and are what convA reads with large weights; channel 0 it reads with a tiny
 * weight. One uint8 scale for x (step ~0.8) wipes channels 1-3 out: convA breaks the outputs whatever
 * the range method, and only float activations for convA help. convB -> y downstream is benign.
 */
function breakModel(): Model {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', 'float32', [1, 4, 6, 6]);
  const wa = randn(8 * 4 * 9, 41, 2);
  for (let o = 0; o < 8; o++) for (let k = 0; k < 9; k++) wa[o * 36 + k] = 0.001;
  const [a] = b.op('Conv', [x, b.initializer('wa', Tensor.from('float32', [8, 4, 3, 3], wa))], { pads: [1, 1, 1, 1] }, { name: 'convA' });
  const [r] = b.op('Relu', [a!], {}, { name: 'relu' });
  const [c] = b.op('Conv', [r!, b.initializer('wc', Tensor.from('float32', [8, 8, 1, 1], randn(64, 42, 0.4)))], {}, { name: 'convC' });
  const [y] = b.op('Conv', [c!, b.initializer('wb', Tensor.from('float32', [4, 8, 1, 1], randn(32, 43, 0.4)))], {}, { name: 'convB' });
  b.output(y!, 'y', 'float32', [1, 4, 6, 6]);
  return b.model();
}

function breakFeed(i: number): Sample['feed'] {
  const d = randn(4 * 36, 900 + i, 0.1);
  for (let k = 0; k < 36; k++) d[k] = ((((i + 1) * 37 + k * 53) % 201) - 100) * 1;
  return feedOf('x', [1, 4, 6, 6], d);
}

describe('quantize-static fidelity budget (label-free)', () => {
  it('returns the layer that breaks the outputs to float and reports it layer by layer', async () => {
    const ref = breakModel();
    const calib = source(breakFeed, 10);
    const held = source(breakFeed, 6, 300);
    const plain = cloneModel(ref);
    await quantizeStatic(plain, calib, { reduceRange: true, method: 'minmax', fidelity: 0 });
    const plainDb = lowest(await outputError(ref, plain, held()));
    expect(plainDb).toBeLessThan(10);

    const m = cloneModel(ref);
    const r = await quantizeStatic(m, calib, { reduceRange: true, method: 'minmax' });
    expect(checkModel(m)).toEqual([]);
    const f = r.fidelity!;
    expect(f.minSqnrDb).toBe(OPTIONS.fidelity.default);
    expect(f.floated.map((l) => l.node)).toEqual(['convA']);
    expect(f.floated[0]!.gainDb).toBeGreaterThan(f.minGainDb);
    expect(f.beforeDb).toBeLessThan(f.minSqnrDb);
    expect(f.met).toBe(true);
    expect(f.afterDb).toBeGreaterThanOrEqual(f.minSqnrDb);
    expect(f.outputs).toEqual([{ name: 'y', beforeDb: f.beforeDb, afterDb: f.afterDb }]);
    // convA keeps int8 weights behind a DequantizeLinear, its input is no longer quantized; the rest stays int8
    expect(byName(m, 'convA').inputs[1]!.producer!.opType).toBe('DequantizeLinear');
    expect(byName(m, 'convA').inputs[0]!.name).toBe('x');
    expect(r.quantizedOps.Conv).toBe(2);
    expect(r.float.find((x) => x.node === 'convA')!.reason).toMatch(/^fidelity budget: alone in float it raises the output SQNR by/);
    // in onnxruntime, on samples the budget never saw
    const after = lowest(await outputError(ref, m, held()));
    expect(after).toBeGreaterThan(plainDb + 15);
    // the report renders each decision
    const text = renderDefaultRecipe(r);
    expect(text).toContain('convA');
    expect(text).toContain(`${f.minSqnrDb}`);
  });

  it('floats nothing when the outputs already hold the bar, and is off with fidelity 0', async () => {
    const calib = gaussianSource('x', () => [1, 4, 8, 8], 6);
    const r = await quantizeStatic(convRelu(), calib, { reduceRange: true });
    expect(r.fidelity!.beforeDb).toBeGreaterThan(OPTIONS.fidelity.default);
    expect(r.fidelity!.floated).toEqual([]);
    expect(r.fidelity!.met).toBe(true);
    expect(r.fidelity!.rounds).toHaveLength(1);
    expect(r.quantizedOps.Conv).toBe(2);
    const ref = breakModel();
    const off = await quantizeStatic(cloneModel(ref), source(breakFeed, 6), { reduceRange: true, method: 'minmax', fidelity: 0 });
    expect(off.fidelity).toBeUndefined();
    expect(off.quantizedOps.Conv).toBe(3);
    await expect(quantizeStatic(cloneModel(ref), source(breakFeed, 6), { fidelity: -3 })).rejects.toThrow(/fidelity budget must be an SQNR/);
  });
});

describe('bias correction', () => {
  /** x (positive mean after a Relu) -> conv (3x3, pads 1, on a 3x3 map: most taps read padding) -> y. */
  function padded(): Model {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 6, 3, 3]);
    const [p] = b.op('Relu', [x], {}, { name: 'pre' });
    const [y] = b.op('Conv', [p!, b.initializer('w', Tensor.from('float32', [5, 6, 3, 3], randn(5 * 54, 51, 0.5))), b.initializer('b', Tensor.from('float32', [5], randn(5, 52, 0.1)))], { pads: [1, 1, 1, 1] }, { name: 'conv' });
    b.output(y!, 'y', 'float32', [1, 5, 3, 3]);
    return b.model();
  }
  // channel c has mean 1 + c, the same at every position
  const feed = (i: number) => feedOf('x', [1, 6, 3, 3], Float32Array.from(randn(54, 60 + i), (v, k) => v + 1 + Math.floor(k / 9)));

  /** Mean over samples and positions of (int8 - float) per output channel, from onnxruntime. */
  async function meanShift(ref: Model, q: Model, samples: () => AsyncIterable<Sample>): Promise<number[]> {
    const a = await createSessionFromModel(ref, { intraOpNumThreads: 1 });
    const b = await createSessionFromModel(q, { intraOpNumThreads: 1 });
    const sum = new Float64Array(5);
    let n = 0;
    for await (const s of samples()) {
      const fy = (await a.run(s.feed)).y!.data as Float32Array;
      const qy = (await b.run(s.feed)).y!.data as Float32Array;
      for (let i = 0; i < fy.length; i++) sum[Math.floor(i / 9)] += qy[i]! - fy[i]!;
      n++;
    }
    await a.dispose();
    await b.dispose();
    return Array.from(sum, (v) => v / (n * 9));
  }

  it('cancels the mean output shift of rounded weights, padding included (checked in onnxruntime)', async () => {
    const ref = padded();
    const calib = source(feed, 40);
    const opts = { reduceRange: true, method: 'percentile' as const, fidelity: 0, weightOnlyNodes: ['conv'] };
    const plain = cloneModel(ref);
    const rp = await quantizeStatic(plain, calib, { ...opts, biasCorrection: false });
    const corrected = cloneModel(ref);
    const rc = await quantizeStatic(corrected, calib, opts);
    expect(rp.emit.biasCorrected).toBe(0);
    expect(rc.emit.biasCorrected).toBe(1);
    const before = await meanShift(ref, plain, calib);
    const after = await meanShift(ref, corrected, calib);
    const worst = (v: number[]) => Math.max(...v.map(Math.abs));
    expect(worst(before)).toBeGreaterThan(1e-3);
    expect(worst(after)).toBeLessThan(worst(before) / 20);
  });
});
