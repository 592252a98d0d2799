import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ctcGreedy, editDistance, ocrCharset, rec } from '../../benchmarks/ocr-metrics.js';
import { fromValues } from '../../core/host-tensor.js';
import { compareTensors, loadMetric, OutputComparison, Top1Accuracy, Top1Agreement, UserMetricAccumulator } from '../../runtime/metrics.js';

describe('output error metrics', () => {
  it('is exact for identical tensors', () => {
    const a = fromValues('float32', [4], [1, -2, 3, 0]);
    const e = compareTensors(a, a);
    expect(e).toMatchObject({ maxAbs: 0, maxRel: 0, meanAbs: 0, cosine: 1, sqnrDb: Infinity, elements: 4 });
  });

  it('computes max abs/rel, cosine and SQNR', () => {
    const r = fromValues('float32', [4], [1, -2, 3, 4]);
    const a = fromValues('float32', [4], [1.1, -2, 3, 3.8]);
    const e = compareTensors(a, r);
    expect(e.maxAbs).toBeCloseTo(0.2, 6);
    expect(e.maxRel).toBeCloseTo(0.1, 6);
    expect(e.meanAbs).toBeCloseTo(0.075, 6);
    const signal = 1 + 4 + 9 + 16;
    const noise = 0.1 ** 2 + 0.2 ** 2;
    expect(e.sqnrDb).toBeCloseTo(10 * Math.log10(signal / noise), 3);
    const dot = 1.1 + 4 + 9 + 15.2;
    expect(e.cosine).toBeCloseTo(dot / Math.sqrt(1.21 + 4 + 9 + 14.44) / Math.sqrt(signal), 6);
  });

  it('accumulates over samples and rejects shape mismatches', () => {
    const c = new OutputComparison();
    c.add({ y: fromValues('float32', [2], [1, 2]) }, { y: fromValues('float32', [2], [1, 2]) });
    c.add({ y: fromValues('float32', [2], [1, 3]) }, { y: fromValues('float32', [2], [1, 2]) });
    expect(c.result()[0]!.maxAbs).toBe(1);
    expect(c.samples).toBe(2);
    expect(() => c.add({ y: fromValues('float32', [1], [1]) }, { y: fromValues('float32', [2], [1, 2]) }, 's.npy')).toThrow(/s\.npy: output 'y' has shape \[1\]/);
    expect(() => c.add({}, { y: fromValues('float32', [2], [1, 2]) })).toThrow(/missing/);
  });

  it('treats NaN disagreement as infinite error', () => {
    const e = compareTensors(fromValues('float32', [2], [NaN, 1]), fromValues('float32', [2], [0, 1]));
    expect(e.maxAbs).toBe(Infinity);
  });
});

describe('classification metrics', () => {
  it('top-1 accuracy and agreement', () => {
    const acc = new Top1Accuracy();
    acc.add({ p: fromValues('float32', [1, 3], [0.1, 0.7, 0.2]) }, 1);
    acc.add({ p: fromValues('float32', [1, 3], [0.8, 0.1, 0.1]) }, { class: 2 });
    expect(acc.result()).toBe(0.5);
    expect(() => acc.add({ p: fromValues('float32', [1, 3], [1, 0, 0]) }, 'cat')).toThrow(/numeric class label/);
    const ag = new Top1Agreement();
    ag.add({ p: fromValues('float32', [2, 2], [1, 0, 0, 1]) }, { p: fromValues('float32', [2, 2], [0.9, 0.1, 0.6, 0.4]) });
    expect(ag.result()).toBe(0.5);
  });
});

describe('user metrics', () => {
  const mod = fileURLToPath(new URL('./metric-fixture.mjs', import.meta.url));

  it('loads a module function and averages its records', async () => {
    const m = await loadMetric(mod);
    expect(m.name).toBe('default');
    const acc = new UserMetricAccumulator(m.name, m.fn);
    await acc.add({ y: fromValues('float32', [3], [1, 5, 3]) }, 1, { id: 'a' });
    await acc.add({ y: fromValues('float32', [3], [3, 2, 1]) }, 1, { id: 'b' });
    expect(acc.result()).toEqual({ mean: 2.5, hit: 0.5 });
  });

  it('reports unloadable modules and non-function exports', async () => {
    await expect(loadMetric('/nonexistent/metric.js')).rejects.toMatchObject({ code: 'METRIC_UNLOADABLE' });
    await expect(loadMetric(`${mod}#notAFunction`)).rejects.toMatchObject({ code: 'METRIC_NOT_A_FUNCTION' });
  });
});

describe('OCR metrics', () => {
  it('uses 6625 classes: blank, 6623 keys, space', () => {
    const cs = ocrCharset();
    expect(cs).toHaveLength(6625);
    expect(cs[0]).toBe('');
    expect(cs[6624]).toBe(' ');
  });

  it('greedy CTC collapses repeats, drops blanks and trims', () => {
    const cs = ocrCharset();
    const idx = (ch: string) => cs.indexOf(ch);
    const steps = [0, idx('a'), idx('a'), 0, idx('a'), 6624, idx('b'), 6624, 0];
    const t = new Float32Array(steps.length * cs.length);
    steps.forEach((k, i) => (t[i * cs.length + k] = 1));
    expect(ctcGreedy({ type: 'float32', dims: [1, steps.length, cs.length], data: t })).toBe('aa b');
  });

  it('edit distance and the rec metric with its reduction', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
    const recs = [
      { exact: 1, edits: 0, chars: 4, lineCer: 0 },
      { exact: 0, edits: 1, chars: 2, lineCer: 0.5 },
    ];
    expect(rec.reduce!(recs)).toEqual({ lineAccuracy: 0.5, cer: 0.25, corpusCer: 1 / 6, samples: 2 });
  });
});
