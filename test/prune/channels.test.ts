/**
 * prune-channels on built models, one per dependency rule. The strong check: the pruned channels'
 * producing weights (and the biases / BN shifts that could make them non-zero) are exactly zero, so
 * removing them must leave the outputs unchanged; onnxruntime runs both models and the outputs and
 * their shapes must agree.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { constantOf, Model, Node } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import { cloneModel } from '../../onnx/index.js';
import { checkModel } from '../../ir/checker.js';
import { getPass } from '../../passes/registry.js';
import pruneChannelsPass, { pruneChannels } from '../../passes/prune/prune-channels.js';
import { OnnxForgeError } from '../../core/errors.js';
import { f32, feedFor, maxAbsDiff, PER_LAYER, run, testContext, weight, weights } from './helpers.js';

function node(m: Model, name: string): Node {
  const n = m.graph.nodes.find((x) => x.name === name);
  if (!n) throw new Error(`no node ${name}`);
  return n;
}
const dims = (m: Model, name: string, i: number) => constantOf(node(m, name).input(i))!.dims;

async function expectSameOutputs(before: Model, after: Model, inputDims: number[]): Promise<void> {
  const feed = feedFor(inputDims, 7);
  const a = await run(before, feed);
  const b = await run(after, feed);
  for (const k of Object.keys(a)) {
    expect(b[k]!.dims).toEqual(a[k]!.dims);
    expect(maxAbsDiff(a[k]!.data, b[k]!.data)).toBeLessThan(1e-5);
  }
  expect(checkModel(after)).toEqual([]);
}

async function prune(m: Model, options: Record<string, unknown>) {
  const before = cloneModel(m);
  const ctx = testContext('prune-channels');
  const res = await pruneChannelsPass.run(m, { ratio: 0.25, criterion: 'l1', scope: 'layer', exclude: [], layers: [], minChannels: 1, roundTo: 1, compensate: true, calibrationSamples: 16, cost: 'none', maxRatio: 1, ...options }, ctx);
  return { before, res, ctx };
}

describe('prune-channels dependency rules', () => {
  it('Conv -> BatchNormalization -> Relu -> Conv: producer output, BN parameters and consumer input channels', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 3, 8, 8]);
    const zero = [2, 5];
    const bias = weights([8], 2);
    for (const z of zero) bias[z] = 0;
    const mean = weights([8], 3);
    const beta = weights([8], 4);
    for (const z of zero) (mean[z] = 0), (beta[z] = 0);
    const [c1] = b.op('Conv', [x, weight(b, 'w1', f32([8, 3, 3, 3], weights([8, 3, 3, 3], 1, zero))), weight(b, 'b1', f32([8], bias), false)], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
    const var_ = Float32Array.from(weights([8], 5), (v) => Math.abs(v) + 0.5);
    const [bn] = b.op('BatchNormalization', [c1!, weight(b, 'g', f32([8], weights([8], 6))), weight(b, 'beta', f32([8], beta)), weight(b, 'mean', f32([8], mean)), weight(b, 'var', f32([8], var_))], {}, { name: 'bn' });
    const [r] = b.op('Relu', [bn!]);
    const [y] = b.op('Conv', [r!, weight(b, 'w2', f32([4, 8, 1, 1], weights([4, 8, 1, 1], 7)))], {}, { name: 'conv2' });
    b.output(y!, 'y', 'float32', [1, 4, 8, 8]);
    const m = b.model();
    const { before, res, ctx } = await prune(m, {});
    expect(res.changed).toBe(true);
    expect(dims(m, 'conv1', 1)).toEqual([6, 3, 3, 3]);
    expect(dims(m, 'conv1', 2)).toEqual([6]);
    for (let i = 1; i <= 4; i++) expect(dims(m, 'bn', i)).toEqual([6]);
    expect(dims(m, 'conv2', 1)).toEqual([4, 6, 1, 1]);
    // the remaining channels are the non-zero ones, in order
    const w1 = constantOf(node(m, 'conv1').input(1))!.toFloat32();
    const orig = constantOf(node(before, 'conv1').input(1))!.toFloat32();
    expect(w1.slice(0, 27)).toEqual(orig.slice(0, 27));
    expect(w1.slice(2 * 27, 3 * 27)).toEqual(orig.slice(3 * 27, 4 * 27));
    // conv2's output is a graph output: kept whole, with a reason
    expect(ctx.notes.some((e) => e.reason.includes('graph output y'))).toBe(true);
    await expectSameOutputs(before, m, [1, 3, 8, 8]);
  });

  it('depthwise chain: depthwise weights, bias and group follow the producer', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 3, 8, 8]);
    const zero = [1, 6];
    const [c1] = b.op('Conv', [x, weight(b, 'w1', f32([8, 3, 1, 1], weights([8, 3, 1, 1], 11, zero)))], {}, { name: 'conv1' });
    const dwb = weights([8], 12);
    for (const z of zero) dwb[z] = 0;
    const [dw] = b.op('Conv', [c1!, weight(b, 'wd', f32([8, 1, 3, 3], weights([8, 1, 3, 3], 13))), weight(b, 'bd', f32([8], dwb))], { group: 8, pads: [1, 1, 1, 1] }, { name: 'dw' });
    const [dw2] = b.op('Conv', [dw!, weight(b, 'wd2', f32([8, 1, 3, 3], weights([8, 1, 3, 3], 14)))], { group: 8, pads: [1, 1, 1, 1], strides: [2, 2] }, { name: 'dw2' });
    const [r] = b.op('Relu', [dw2!]);
    const [y] = b.op('Conv', [r!, weight(b, 'w2', f32([4, 8, 1, 1], weights([4, 8, 1, 1], 15)))], {}, { name: 'conv2' });
    b.output(y!, 'y', 'float32', [1, 4, 4, 4]);
    const m = b.model();
    const { before } = await prune(m, {});
    expect(dims(m, 'dw', 1)).toEqual([6, 1, 3, 3]);
    expect(dims(m, 'dw', 2)).toEqual([6]);
    expect(node(m, 'dw').getInt('group')).toBe(6);
    expect(node(m, 'dw2').getInt('group')).toBe(6);
    expect(dims(m, 'conv2', 1)).toEqual([4, 6, 1, 1]);
    await expectSameOutputs(before, m, [1, 3, 8, 8]);
  });

  it('residual Add: both branches are one group, pruned jointly', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 3, 6, 6]);
    const zero = [0, 3];
    const [a] = b.op('Conv', [x, weight(b, 'wa', f32([8, 3, 3, 3], weights([8, 3, 3, 3], 21, zero)))], { pads: [1, 1, 1, 1] }, { name: 'convA' });
    const [ra] = b.op('Relu', [a!]);
    const [bb] = b.op('Conv', [ra!, weight(b, 'wb', f32([8, 8, 1, 1], weights([8, 8, 1, 1], 22, zero)))], {}, { name: 'convB' });
    const [s] = b.op('Add', [a!, bb!], {}, { name: 'add' });
    const [y] = b.op('Conv', [s!, weight(b, 'wc', f32([4, 8, 1, 1], weights([4, 8, 1, 1], 23)))], {}, { name: 'convC' });
    b.output(y!, 'y', 'float32', [1, 4, 6, 6]);
    const m = b.model();
    const { before, res } = await prune(m, {});
    const report = res.report!;
    const joint = report.groups.find((g) => g.nodes.includes('convA'))!;
    expect(joint.nodes).toEqual(['convA', 'convB']);
    expect(joint.after).toBe(6);
    expect(dims(m, 'convA', 1)).toEqual([6, 3, 3, 3]);
    expect(dims(m, 'convB', 1)).toEqual([6, 6, 1, 1]);
    expect(dims(m, 'convC', 1)).toEqual([4, 6, 1, 1]);
    await expectSameOutputs(before, m, [1, 3, 6, 6]);
  });

  it('Concat: the consumer drops input channels at the right offsets', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 3, 5, 5]);
    const [p] = b.op('Conv', [x, weight(b, 'w1', f32([4, 3, 1, 1], weights([4, 3, 1, 1], 31, [1])))], {}, { name: 'conv1' });
    const [q] = b.op('Conv', [x, weight(b, 'w2', f32([8, 3, 1, 1], weights([8, 3, 1, 1], 32, [3, 6])), false)], {}, { name: 'conv2' });
    const [c] = b.op('Concat', [p!, q!], { axis: 1 });
    const wc = weights([3, 12, 1, 1], 33);
    const [y] = b.op('Conv', [c!, weight(b, 'w3', f32([3, 12, 1, 1], wc))], {}, { name: 'conv3' });
    b.output(y!, 'y', 'float32', [1, 3, 5, 5]);
    const m = b.model();
    const { before } = await prune(m, {});
    expect(dims(m, 'conv3', 1)).toEqual([3, 9, 1, 1]);
    const kept = [0, 2, 3, 4, 5, 6, 8, 9, 11];
    const w3 = constantOf(node(m, 'conv3').input(1))!.toFloat32();
    for (let o = 0; o < 3; o++) for (let j = 0; j < kept.length; j++) expect(w3[o * 9 + j]).toBe(wc[o * 12 + kept[j]!]);
    await expectSameOutputs(before, m, [1, 3, 5, 5]);
  });

  it('SE block: the excitation Conv joins the block it scales; per-channel Mul constants are sliced', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 3, 6, 6]);
    const zero = [2, 7];
    const [c1] = b.op('Conv', [x, weight(b, 'w1', f32([8, 3, 3, 3], weights([8, 3, 3, 3], 41, zero)))], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
    const [sc] = b.op('Mul', [c1!, weight(b, 'scale', f32([1, 8, 1, 1], Float32Array.from(weights([8], 42), (v) => v + 2)))], {}, { name: 'mul_scale' });
    const [r] = b.op('Relu', [sc!]);
    const [g] = b.op('GlobalAveragePool', [r!]);
    const [s1] = b.op('Conv', [g!, weight(b, 'ws1', f32([2, 8, 1, 1], weights([2, 8, 1, 1], 43))), weight(b, 'bs1', f32([2], weights([2], 44)))], {}, { name: 'se1' });
    const [sr] = b.op('Relu', [s1!]);
    const bs2 = weights([8], 46);
    for (const z of zero) bs2[z] = 0;
    const [s2] = b.op('Conv', [sr!, weight(b, 'ws2', f32([8, 2, 1, 1], weights([8, 2, 1, 1], 45, zero))), weight(b, 'bs2', f32([8], bs2))], {}, { name: 'se2' });
    const [hs] = b.op('HardSigmoid', [s2!], { alpha: 0.2, beta: 0.5 }, { floats: ['alpha', 'beta'] });
    const [mul] = b.op('Mul', [r!, hs!], {}, { name: 'se_mul' });
    const [y] = b.op('Conv', [mul!, weight(b, 'w2', f32([4, 8, 1, 1], weights([4, 8, 1, 1], 47)))], {}, { name: 'conv2' });
    b.output(y!, 'y', 'float32', [1, 4, 6, 6]);
    const m = b.model();
    const { before, res } = await prune(m, {});
    const report = res.report!;
    expect(report.groups.find((gr) => gr.nodes.includes('conv1'))!.nodes).toEqual(['conv1', 'se2']);
    expect(dims(m, 'mul_scale', 1)).toEqual([1, 6, 1, 1]);
    expect(dims(m, 'se1', 1)).toEqual([2, 6, 1, 1]);
    expect(dims(m, 'se2', 1)).toEqual([6, 2, 1, 1]);
    expect(dims(m, 'se2', 2)).toEqual([6]);
    await expectSameOutputs(before, m, [1, 3, 6, 6]);
  });

  it('Flatten -> Gemm: each pruned channel removes its H*W features', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 3, 4, 4]);
    const [c] = b.op('Conv', [x, weight(b, 'w', f32([4, 3, 3, 3], weights([4, 3, 3, 3], 51, [2])))], { pads: [1, 1, 1, 1] }, { name: 'conv' });
    const [r] = b.op('Relu', [c!]);
    const [f] = b.op('Flatten', [r!], { axis: 1 });
    const [y] = b.op('Gemm', [f!, weight(b, 'wg', f32([5, 64], weights([5, 64], 52))), weight(b, 'bg', f32([5], weights([5], 53)))], { transB: 1 }, { name: 'gemm' });
    b.output(y!, 'y', 'float32', [1, 5]);
    const m = b.model();
    const { before } = await prune(m, {});
    expect(dims(m, 'conv', 1)).toEqual([3, 3, 3, 3]);
    expect(dims(m, 'gemm', 1)).toEqual([5, 48]);
    await expectSameOutputs(before, m, [1, 3, 4, 4]);
  });

  it('Reshape(x, Concat(Shape(x)[0:1], [C*H*W])) -> MatMul (the PaddleOCR pattern): the target constant is rewritten', async () => {
    const b = new GraphBuilder({ opset: 11 });
    const x = b.input('x', 'float32', [1, 3, 2, 2]);
    const [c] = b.op('Conv', [x, weight(b, 'w', f32([4, 3, 1, 1], weights([4, 3, 1, 1], 61, [0])))], {}, { name: 'conv' });
    const [sh] = b.op('Shape', [c!]);
    const [sl] = b.op('Slice', [sh!, b.constant('s0', Tensor.from('int64', [1], BigInt64Array.of(0n))), b.constant('s1', Tensor.from('int64', [1], BigInt64Array.of(1n)))]);
    const [fc] = b.op('Cast', [b.constant('feat', Tensor.from('int32', [1], Int32Array.of(16)))], { to: 7 });
    const [target] = b.op('Concat', [sl!, fc!], { axis: 0 });
    const [flat] = b.op('Reshape', [c!, target!]);
    const [y] = b.op('MatMul', [flat!, weight(b, 'wm', f32([16, 2], weights([16, 2], 62)))], {}, { name: 'fc' });
    b.output(y!, 'y', 'float32', [1, 2]);
    const m = b.model();
    const { before } = await prune(m, {});
    expect(dims(m, 'fc', 1)).toEqual([12, 2]);
    await expectSameOutputs(before, m, [1, 3, 2, 2]);
  });
});

describe('prune-channels: what it must not do', () => {
  it('keeps channels whose Reshape target comes from a graph input, and says why', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 3, 2, 2]);
    const shape = b.input('shape', 'int64', [2]);
    const [c] = b.op('Conv', [x, weight(b, 'w', f32([4, 3, 1, 1], weights([4, 3, 1, 1], 71)))], {}, { name: 'conv' });
    const [flat] = b.op('Reshape', [c!, shape]);
    const [y] = b.op('MatMul', [flat!, weight(b, 'wm', f32([16, 2], weights([16, 2], 72)))], {}, { name: 'fc' });
    b.output(y!, 'y', 'float32', [1, 2]);
    const m = b.model();
    const { res, ctx } = await prune(m, {});
    expect(res.changed).toBe(false);
    expect(dims(m, 'conv', 1)).toEqual([4, 3, 1, 1]);
    expect(ctx.notes.some((e) => e.node === 'conv' && e.reason.includes('dynamic target shape'))).toBe(true);
  });

  it('skips a layer that would lose every channel, with its reason', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 3, 4, 4]);
    const [c] = b.op('Conv', [x, weight(b, 'w', f32([1, 3, 1, 1], weights([1, 3, 1, 1], 81)))], {}, { name: 'narrow' });
    const [y] = b.op('Conv', [c!, weight(b, 'w2', f32([2, 1, 1, 1], weights([2, 1, 1, 1], 82)))], {}, { name: 'out' });
    b.output(y!, 'y', 'float32', [1, 2, 4, 4]);
    const m = b.model();
    const { res, ctx } = await prune(m, { ratio: 0.6 });
    expect(res.changed).toBe(false);
    expect(ctx.notes.some((e) => e.node === 'narrow' && e.reason.includes('kept whole'))).toBe(true);
    await expectSameOutputs(cloneModel(m), m, [1, 3, 4, 4]);
  });

  it('rejects ratios outside (0, 1) with a stable code', () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 3, 4, 4]);
    const [c] = b.op('Conv', [x, weight(b, 'w', f32([2, 3, 1, 1], weights([2, 3, 1, 1], 91)))]);
    b.output(c!, 'y');
    const m = b.model();
    for (const ratio of [0, 1, -0.2, 1.5, Number.NaN]) {
      let err: unknown;
      try {
        pruneChannels(m, { ratio });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(OnnxForgeError);
      expect((err as OnnxForgeError).code).toBe('PRUNE_BAD_RATIO');
    }
    expect(() => pruneChannels(m, { ratio: 0.3, layers: ['conv=1.2'] })).toThrow(/must be in \[0, 1\)/);
    expect(() => pruneChannels(m, { ratio: 0.3, layers: ['conv=-0.1'] })).toThrow(/must be in \[0, 1\)/);
  });

  it('is registered and leaves graph input and output shapes alone on a grouped conv it cannot prune', async () => {
    expect(getPass('prune-channels')).toBe(pruneChannelsPass);
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 4, 4, 4]);
    const [c] = b.op('Conv', [x, weight(b, 'w', f32([8, 4, 1, 1], weights([8, 4, 1, 1], 101)))], {}, { name: 'conv' });
    const [g] = b.op('Conv', [c!, weight(b, 'wg', f32([8, 4, 3, 3], weights([8, 4, 3, 3], 102)))], { group: 2, pads: [1, 1, 1, 1] }, { name: 'grouped' });
    const [y] = b.op('Conv', [g!, weight(b, 'w3', f32([2, 8, 1, 1], weights([2, 8, 1, 1], 103)))], {}, { name: 'conv3' });
    b.output(y!, 'y', 'float32', [1, 2, 4, 4]);
    const m = b.model();
    const { before, ctx } = await prune(m, { ratio: 0.5 });
    expect(dims(m, 'conv', 1)).toEqual([8, 4, 1, 1]);
    expect(ctx.notes.some((e) => e.node === 'conv' && e.reason.includes('grouped convolution'))).toBe(true);
    // a grouped conv's outputs stay too: ONNX needs the same number of channels in every group
    expect(dims(m, 'grouped', 1)).toEqual([8, 4, 3, 3]);
    expect(dims(m, 'conv3', 1)).toEqual([2, 8, 1, 1]);
    const feed = feedFor([1, 4, 4, 4], 3);
    const out = await run(m, feed);
    expect(out.y!.dims).toEqual((await run(before, feed)).y!.dims);
  });
});

describe('prune-channels bias compensation', () => {
  function constantChannelModel(): Model {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 3, 6, 6]);
    const zero = [2, 5];
    const [c1] = b.op('Conv', [x, weight(b, 'w1', f32([8, 3, 3, 3], weights([8, 3, 3, 3], 111, zero)))], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
    // the zeroed channels still carry BN's shift: a constant the next layer sees
    const beta = Float32Array.from(weights([8], 112), (v) => v + 1.5);
    const var_ = Float32Array.from(weights([8], 113), (v) => Math.abs(v) + 0.5);
    const [bn] = b.op('BatchNormalization', [c1!, weight(b, 'g', f32([8], weights([8], 114))), weight(b, 'beta', f32([8], beta)), weight(b, 'mean', f32([8], new Float32Array(8))), weight(b, 'var', f32([8], var_))], {}, { name: 'bn' });
    const [r] = b.op('Relu', [bn!]);
    // conv2's own outputs 0 and 7 are exactly zero, so they are pruned too (exactly)
    const b2 = weights([8], 116);
    b2[0] = 0;
    b2[7] = 0;
    const [c2] = b.op('Conv', [r!, weight(b, 'w2', f32([8, 8, 1, 1], weights([8, 8, 1, 1], 115, [0, 7]))), weight(b, 'b2', f32([8], b2))], {}, { name: 'conv2' });
    const [y] = b.op('Conv', [c2!, weight(b, 'w3', f32([4, 8, 1, 1], weights([4, 8, 1, 1], 117)))], {}, { name: 'conv3' });
    b.output(y!, 'y', 'float32', [1, 4, 6, 6]);
    return b.model();
  }

  it('adds a removed constant channel to the next layer\'s bias, keeping outputs exact', async () => {
    const m = constantChannelModel();
    const before = cloneModel(m);
    const ctx = testContext('prune-channels');
    ctx.data.calibration = () =>
      (async function* () {
        for (let i = 0; i < 3; i++) yield { id: String(i), feed: feedFor([1, 3, 6, 6], 200 + i) };
      })();
    const res = await pruneChannelsPass.run(m, { ratio: 0.25, criterion: 'l1', scope: 'layer', exclude: [], layers: [], minChannels: 1, roundTo: 1, compensate: true, calibrationSamples: 16, cost: 'none', maxRatio: 1 }, ctx);
    expect(res.stats?.compensated).toBe(1);
    expect(dims(m, 'conv2', 1)).toEqual([6, 6, 1, 1]);
    expect(dims(m, 'conv2', 2)).toEqual([6]);
    expect(dims(m, 'conv3', 1)).toEqual([4, 6, 1, 1]);
    await expectSameOutputs(before, m, [1, 3, 6, 6]);

    // without calibration data the constant is lost: outputs differ
    const plain = constantChannelModel();
    pruneChannels(plain, { ratio: 0.25, ...PER_LAYER });
    const feed = feedFor([1, 3, 6, 6], 7);
    expect(maxAbsDiff((await run(before, feed)).y!.data, (await run(plain, feed)).y!.data)).toBeGreaterThan(1e-3);
  });
});
