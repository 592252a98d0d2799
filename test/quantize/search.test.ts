/**
 * The two searches of quantize-static, deterministically: latency-aware decisions from injected
 * profiles (never real timings), and the accuracy budget returning an outlier-fed layer to float.
 */
import { describe, expect, it } from 'vitest';
import { checkModel } from '../../ir/checker.js';
import { GraphBuilder } from '../../ir/builder.js';
import { constantOf, Model } from '../../ir/ir.js';
import { cloneModel } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import type { Sample } from '../../data/index.js';
import { searchAccuracyBudget, rankSensitivity } from '../../passes/quantize/search.js';
import { Profiler } from '../../passes/quantize/quantize-static.js';
import { createSessionFromModel } from '../../runtime/from-model.js';
import type { OpProfileRow } from '../../runtime/profile.js';
import { byName, nodesOf } from './helpers.js';
import { convRelu, gaussianSource, randn } from './models.js';
import { quantizeStatic } from '../../passes/api.js';

const row = (node: string, opType: string, totalUs: number): OpProfileRow => ({ node, opType, totalUs, calls: 1, share: 0 });

/** A mock profiler: float rows name the convs; QDQ builds are charged per conv from a table. */
function mockProfiler(floatUs: Record<string, number>, int8Us: Record<string, number>): { profiler: Profiler; calls: number[] } {
  const calls: number[] = [];
  const profiler: Profiler = async (m: Model) => {
    const quantized = m.graph.nodes.some((n) => n.opType === 'QuantizeLinear');
    calls.push(quantized ? 1 : 0);
    const rows: OpProfileRow[] = [];
    for (const n of m.graph.nodes) {
      if (n.opType !== 'Conv' || !n.name) continue;
      // a conv reading an int8 activation (DQ of a Q) and an int8 weight is fused by onnxruntime into QLinearConv
      const int8 = n.inputs[0]?.producer?.opType === 'DequantizeLinear' && n.inputs[0].producer.inputs[0]?.producer?.opType === 'QuantizeLinear' && n.inputs[1]?.producer?.opType === 'DequantizeLinear';
      rows.push(int8 ? row(`${n.name}_token_7`, 'QLinearConv', int8Us[n.name]!) : row(`${n.outputs[0]!.name}_nchwc`, 'Conv', floatUs[n.name]!));
    }
    return rows;
  };
  return { profiler, calls };
}

describe('quantize-static latency-aware (injected profiles)', () => {
  const calib = gaussianSource('x', () => [1, 4, 8, 8], 6);

  it('keeps the slower conv in float with float weights (prefer speed) and reports it', async () => {
    const m = convRelu();
    const { profiler } = mockProfiler({ conv1: 100, conv2: 100 }, { conv1: 60, conv2: 300 });
    const r = await quantizeStatic(m, calib, { latencyAware: 'on', latency: { profiler, runs: 1, feeds: 1 } });
    expect(checkModel(m)).toEqual([]);
    expect(r.latency!.floated.map((f) => f.node)).toEqual(['conv2']);
    expect(r.latency!.floated[0]!.weights).toBe('float');
    expect(r.latency!.extraBytes).toBeGreaterThan(0);
    expect(r.latency!.kept.map((k) => k.node)).toEqual(['conv1']);
    // conv2 reads a float weight; conv1 an int8 one
    expect(byName(m, 'conv2').inputs[1]!.producer?.opType).not.toBe('DequantizeLinear');
    expect(byName(m, 'conv1').inputs[1]!.producer?.opType).toBe('DequantizeLinear');
    expect(r.float.find((f) => f.node === 'conv2')!.reason).toMatch(/latency-aware: slower in int8/);
  });

  it('keeps int8 weights behind a DequantizeLinear with prefer size', async () => {
    const m = convRelu();
    const { profiler } = mockProfiler({ conv1: 100, conv2: 100 }, { conv1: 60, conv2: 300 });
    const r = await quantizeStatic(m, calib, { latencyAware: 'on', prefer: 'size', reduceRange: true, latency: { profiler, runs: 1, feeds: 1 } });
    expect(r.latency!.floated[0]!.weights).toBe('int8');
    expect(r.latency!.extraBytes).toBe(0);
    const w = byName(m, 'conv2').inputs[1]!.producer!;
    expect(w.opType).toBe('DequantizeLinear');
    // reduce-range applies to the int8 conv only; the weight-only one (float kernel) keeps [-127, 127]
    const maxAbs = (t: Tensor | undefined) => Math.max(...Array.from(t!.toNumbers(), (x) => Math.abs(Number(x))));
    expect(maxAbs(constantOf(w.inputs[0]))).toBe(127);
    expect(maxAbs(constantOf(byName(m, 'conv1').inputs[1]!.producer!.inputs[0]))).toBeLessThanOrEqual(64);
    // its output is float: no Q after it
    expect(nodesOf(m, 'QuantizeLinear').some((q) => q.inputs[0] === byName(m, 'conv2').outputs[0])).toBe(false);
  });

  it('changes nothing when every conv is faster in int8, and off never profiles', async () => {
    const a = mockProfiler({ conv1: 100, conv2: 100 }, { conv1: 60, conv2: 70 });
    const m = convRelu();
    const r = await quantizeStatic(m, calib, { latencyAware: 'on', latency: { profiler: a.profiler, runs: 1, feeds: 1 } });
    expect(r.latency!.floated).toEqual([]);
    expect(r.quantizedOps.Conv).toBe(2);
    const b = mockProfiler({}, {});
    const r2 = await quantizeStatic(convRelu(), calib, { latencyAware: 'off', latency: { profiler: b.profiler } });
    expect(b.calls).toEqual([]);
    expect(r2.latency).toBeUndefined();
  });
});

/**
 * x[1,4,6,6] whose channel 0 carries outliers (x1000) -> convA (ignores channel 0) -> Relu -> convB -> y.
 * Quantizing x per tensor spends the 255 levels on the outliers, so convA's useful input is lost.
 */
function outlierModel(): Model {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', 'float32', [1, 4, 6, 6]);
  const wa = randn(8 * 4 * 9, 21, 0.3);
  for (let o = 0; o < 8; o++) for (let k = 0; k < 9; k++) wa[o * 36 + k] = 0; // input channel 0 unused
  const [a] = b.op('Conv', [x, b.initializer('wa', Tensor.from('float32', [8, 4, 3, 3], wa))], { pads: [1, 1, 1, 1] }, { name: 'convA' });
  const [r] = b.op('Relu', [a!], {}, { name: 'relu' });
  const [y] = b.op('Conv', [r!, b.initializer('wb', Tensor.from('float32', [8, 8, 1, 1], randn(64, 22, 0.3)))], {}, { name: 'convB' });
  b.output(y!, 'y', 'float32', [1, 8, 6, 6]);
  return b.model();
}

function outlierSource(count: number, seed: number): () => AsyncIterable<Sample> {
  return async function* () {
    for (let i = 0; i < count; i++) {
      const d = randn(4 * 36, seed + i);
      for (let k = 0; k < 36; k++) d[k] = d[k]! * 1000;
      yield { id: `o#${i}`, feed: { x: { type: 'float32', dims: [1, 4, 6, 6], data: d } } };
    }
  };
}

/** Score: minus the mean absolute output error against the float model (higher is better). */
function scorer(ref: Model, samples: () => AsyncIterable<Sample>): (m: Model) => Promise<number> {
  return async (m) => {
    const a = await createSessionFromModel(ref, { intraOpNumThreads: 1 });
    const q = await createSessionFromModel(m, { intraOpNumThreads: 1 });
    let err = 0;
    let n = 0;
    for await (const s of samples()) {
      const fy = (await a.run(s.feed)).y!.data as Float32Array;
      const qy = (await q.run(s.feed)).y!.data as Float32Array;
      for (let i = 0; i < fy.length; i++) err += Math.abs(fy[i]! - qy[i]!);
      n += fy.length;
    }
    await a.dispose();
    await q.dispose();
    return -err / n;
  };
}

describe('quantize-static accuracy budget', () => {
  it('returns the outlier-fed layer to float (int8 weights kept) until the budget holds', async () => {
    const ref = outlierModel();
    const calib = outlierSource(8, 300);
    const evalSet = outlierSource(4, 900);
    const score = scorer(ref, evalSet);
    // plain minmax ranges without the default fidelity budget: the outliers of x break convA
    const plain = cloneModel(ref);
    await quantizeStatic(plain, calib, { reduceRange: true, method: 'minmax', fidelity: 0 });
    const plainDrop = -(await score(plain));
    expect(plainDrop).toBeGreaterThan(0.05);

    const m = cloneModel(ref);
    const r = await quantizeStatic(m, calib, { reduceRange: true, method: 'minmax', accuracy: { maxDrop: plainDrop / 10, evaluate: score, reference: 0 } });
    expect(checkModel(m)).toEqual([]);
    const acc = r.accuracy!;
    expect(acc.met).toBe(true);
    expect(acc.floated.map((f) => f.node)).toEqual(['convA']);
    expect(acc.drop).toBeLessThanOrEqual(plainDrop / 10);
    expect(-(await score(m))).toBeCloseTo(acc.drop, 6);
    // convA keeps int8 weights, and x is no longer quantized
    expect(byName(m, 'convA').inputs[1]!.producer!.opType).toBe('DequantizeLinear');
    expect(nodesOf(m, 'QuantizeLinear').some((q) => q.inputs[0]!.name === 'x')).toBe(false);
    expect(r.float.find((f) => f.node === 'convA')!.reason).toMatch(/accuracy budget/);
  });

  it('leaves the model as is when the budget already holds', async () => {
    const ref = outlierModel();
    const m = cloneModel(ref);
    const r = await quantizeStatic(m, outlierSource(4, 300), { accuracy: { maxDrop: 1e9, evaluate: scorer(ref, outlierSource(2, 900)), reference: 0 } });
    expect(r.accuracy!.floated).toEqual([]);
    expect(r.accuracy!.trials.length).toBe(1);
    expect(r.quantizedOps.Conv).toBe(2);
  });
});

describe('searchAccuracyBudget and rankSensitivity', () => {
  it('doubles then bisects to the smallest passing prefix', async () => {
    // the budget holds once the first 5 units are float
    const seen: number[] = [];
    const res = await searchAccuracyBudget([9, 8, 7, 6, 5, 4, 3, 2], 1, 0.1, async (f) => (seen.push(f.length), f.length >= 5 ? 0.95 : 0.5));
    expect(res.met).toBe(true);
    expect(res.floated).toEqual([9, 8, 7, 6, 5]);
    expect(seen).toEqual([0, 1, 2, 4, 8, 6, 5]);
  });

  it('reports an unmet budget with everything tried', async () => {
    const res = await searchAccuracyBudget([1, 2, 3], 1, 0.1, async () => 0.2, { maxTrials: 10 });
    expect(res.met).toBe(false);
    expect(res.floated).toEqual([1, 2, 3]);
  });

  it('ranks units by the SQNR they lose themselves', () => {
    const r = rankSensitivity(
      [
        { tensor: 'x', sqnrDb: 40 },
        { tensor: 'a', sqnrDb: 10 },
        { tensor: 'b', sqnrDb: 8 },
      ],
      [
        { index: 0, inputs: ['x'], output: 'a' },
        { index: 1, inputs: ['a'], output: 'b' },
      ],
    );
    expect(r.map((e) => e.index)).toEqual([0, 1]);
    expect(r[0]!.lossDb).toBeCloseTo(30);
  });
});
