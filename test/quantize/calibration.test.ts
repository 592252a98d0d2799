/**
 * Calibration statistics (histogram re-binning, percentile, entropy, moving average) and bad
 * calibration data: a set that does not match the model, an empty set, NaN/Inf values, a tensor that
 * is constant zero.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDataSource, Sample } from '../../data/index.js';
import { entropyThreshold, Histogram } from '../../calibration/histogram.js';
import { computeRange, TensorStats } from '../../calibration/ranges.js';
import { GraphBuilder } from '../../ir/builder.js';
import { checkModel } from '../../ir/checker.js';
import { Tensor } from '../../core/tensor.js';

import { byName, nodesOf } from './helpers.js';
import { convRelu, gaussianSource, randn } from './models.js';
import { quantizeStatic } from '../../passes/api.js';

describe('Histogram', () => {
  it('re-bins exactly when the range grows and merges samples of different sizes', () => {
    const a = randn(5000, 1, 0.5);
    const b = randn(3000, 2, 4); // a wider sample forces merges
    const grown = new Histogram(256);
    grown.add(a);
    const w0 = grown.width;
    grown.add(b);
    expect(grown.width).toBeGreaterThan(w0);
    expect(grown.width / w0).toBe(2 ** Math.round(Math.log2(grown.width / w0)));
    expect(grown.total).toBe(8000);
    // counts equal a histogram built directly on the final grid
    const direct = new Float64Array(512);
    for (const v of [...a, ...b]) direct[Math.min(511, Math.max(0, Math.floor(v / grown.width) + 256))]++;
    expect(Array.from(grown.counts)).toEqual(Array.from(direct));
  });

  it('estimates quantiles within one bin of the sorted data', () => {
    const x = randn(20000, 3);
    const h = new Histogram();
    h.add(x.subarray(0, 7000));
    h.add(x.subarray(7000));
    const sorted = Float64Array.from(x).sort();
    for (const q of [0.001, 0.1, 0.5, 0.9, 0.999]) {
      expect(Math.abs(h.quantile(q) - sorted[Math.floor(q * (sorted.length - 1))]!)).toBeLessThan(2 * h.width);
    }
    expect(h.quantile(1)).toBe(h.max);
  });

  it('handles all-zero samples before the first non-zero one', () => {
    const h = new Histogram(8);
    h.add(new Float32Array(10));
    h.add(Float32Array.of(1, -1));
    expect(h.total).toBe(12);
    expect(h.counts.reduce((s, c) => s + c, 0)).toBe(12);
  });

  it('the entropy threshold clips a long tail but keeps the bulk', () => {
    const x = randn(50000, 4);
    const tail = Float32Array.of(60, -55);
    const h = new Histogram();
    h.add(x);
    h.add(tail);
    const t = entropyThreshold(h);
    expect(t).toBeGreaterThan(2.5);
    expect(t).toBeLessThan(30);
  });
});

describe('ranges', () => {
  const stats = (samples: number[][], hist = false, ma?: number) => {
    const s = new TensorStats('t', hist, ma);
    for (const v of samples) s.add(Float32Array.from(v), Math.min(...v), Math.max(...v));
    return s;
  };
  it('minmax keeps 0 inside, moving average follows per-sample extremes, symmetric widens', () => {
    expect(computeRange(stats([[1, 2], [3, 5]]), { method: 'minmax' })).toEqual({ lo: 0, hi: 5 });
    const r = computeRange(stats([[-1, 1], [-3, 3]], false, 0.5), { method: 'minmax', movingAverage: 0.5 });
    expect(r).toEqual({ lo: -2, hi: 2 });
    expect(computeRange(stats([[-1, 4]]), { method: 'minmax', symmetric: true })).toEqual({ lo: -4, hi: 4 });
  });
  it('percentile ignores a rare outlier that minmax keeps', () => {
    const bulk = Array.from(randn(100000, 9));
    const s = stats([bulk, [1000]], true);
    const p = computeRange(s, { method: 'percentile', percentile: 99.99 });
    expect(p.hi).toBeLessThan(10);
    expect(computeRange(s, { method: 'minmax' }).hi).toBe(1000);
  });
});

describe('bad calibration data', () => {
  it('names the file and input when the data does not match the model', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'onnxforge-calib-'));
    const file = join(dir, 'sample.json');
    writeFileSync(file, JSON.stringify({ x: { dims: [1, 3, 8, 8], dtype: 'float32', data: new Array(192).fill(0.5) } }));
    const inputs = [{ name: 'x', type: 'float32', shape: [1, 4, 8, 8], isTensor: true }];
    const m = convRelu();
    await expect(quantizeStatic(m, () => openDataSource(`json:${file}`, inputs))).rejects.toMatchObject({
      code: 'DATA_SHAPE_MISMATCH',
      message: expect.stringMatching(/sample\.json.*'x'/),
    });
    const wrongName = join(dir, 'wrong.json');
    writeFileSync(wrongName, JSON.stringify({ image: { dims: [1, 4, 8, 8], dtype: 'float32', data: new Array(256).fill(0.5) } }));
    await expect(quantizeStatic(convRelu(), () => openDataSource(`json:${wrongName}`, inputs))).rejects.toMatchObject({ code: 'DATA_UNKNOWN_INPUT', details: { file: wrongName, tensor: 'image' } });
  });

  it('rejects an empty set', async () => {
    const empty = async function* (): AsyncGenerator<Sample> {};
    await expect(quantizeStatic(convRelu(), empty)).rejects.toMatchObject({ code: 'CALIB_EMPTY' });
  });

  it('rejects NaN and infinite inputs, naming the sample and input', async () => {
    for (const bad of [NaN, Infinity]) {
      const src = async function* (): AsyncGenerator<Sample> {
        const data = randn(256, 1);
        data[17] = bad;
        yield { id: 'frame-3.npy', feed: { x: { type: 'float32', dims: [1, 4, 8, 8], data } } };
      };
      await expect(quantizeStatic(convRelu(), src)).rejects.toMatchObject({ code: 'CALIB_NONFINITE_INPUT', details: { file: 'frame-3.npy', tensor: 'x' } });
    }
  });

  it('rejects activations that overflow to infinity, naming the tensor', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 4, 4, 4]);
    const big = b.constant('big', Tensor.from('float32', [], Float32Array.of(1e38)));
    const [y] = b.op('Mul', [x, big], {}, { name: 'blowup' });
    const [c] = b.op('Conv', [y!, b.initializer('w', Tensor.from('float32', [4, 4, 1, 1], randn(16, 5)))], {}, { name: 'conv' });
    b.output(c!, 'out', 'float32');
    const m = b.model();
    await expect(quantizeStatic(m, gaussianSource('x', () => [1, 4, 4, 4], 2, 1, 100))).rejects.toMatchObject({ code: 'CALIB_NONFINITE_ACTIVATION', details: { tensor: expect.any(String) } });
  });

  for (const method of ['minmax', 'percentile'] as const) {
    it(`rejects NaN activations, naming the tensor (${method})`, async () => {
      const b = new GraphBuilder({ opset: 13 });
      const x = b.input('x', 'float32', [1, 4, 4, 4]);
      const [y] = b.op('Log', [x], {}, { name: 'log', names: ['log_out'] });
      const [c] = b.op('Conv', [y!, b.initializer('w', Tensor.from('float32', [4, 4, 1, 1], randn(16, 5)))], {}, { name: 'conv' });
      b.output(c!, 'out', 'float32');
      await expect(quantizeStatic(b.model(), gaussianSource('x', () => [1, 4, 4, 4], 2), { method })).rejects.toMatchObject({ code: 'CALIB_NONFINITE_ACTIVATION', details: { tensor: 'log_out' } });
    });
  }

  it('leaves the nodes around a constant-zero tensor in float and says so', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 4, 4, 4]);
    const zero = b.constant('zero', Tensor.from('float32', [], Float32Array.of(0)));
    const [z] = b.op('Mul', [x, zero], {}, { name: 'zeroed' });
    const [c1] = b.op('Conv', [z!, b.initializer('w1', Tensor.from('float32', [4, 4, 1, 1], randn(16, 6)))], {}, { name: 'conv_dead' });
    const [s] = b.op('Add', [c1!, x], {}, { name: 'sum' });
    const [c2] = b.op('Conv', [s!, b.initializer('w2', Tensor.from('float32', [4, 4, 1, 1], randn(16, 7)))], {}, { name: 'conv_live' });
    b.output(c2!, 'out', 'float32');
    const m = b.model();
    const r = await quantizeStatic(m, gaussianSource('x', () => [1, 4, 4, 4], 4));
    expect(r.warnings.join('\n')).toMatch(/zeroed.*zero range|zero range/);
    expect(r.float).toContainEqual({ node: 'conv_dead', op: 'Conv', reason: expect.stringContaining('constant 0') });
    expect(checkModel(m)).toEqual([]);
    // conv_live is still int8, and no Q carries a zero scale
    expect(byName(m, 'conv_live').inputs[1]!.producer!.opType).toBe('DequantizeLinear');
    for (const q of nodesOf(m, 'QuantizeLinear')) expect(q.inputs[1] && (q.inputs[1].graph!.initializerTensor(q.inputs[1])!.toFloat32()[0]! > 0)).toBe(true);
  });
});
