/** fuse-conv-affine, fuse-matmul-add and fuse-pad: structure, ORT numerics, and cases that must not change. */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../ir/builder.js';
import { DataType } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';
import affine from '../../../passes/fusion/fuse-conv-affine.js';
import matmulAdd from '../../../passes/fusion/fuse-matmul-add.js';
import pad from '../../../passes/fusion/fuse-pad.js';
import inputAffine from '../../../passes/fusion/fuse-conv-input-affine.js';
import type { Pass } from '../../../passes/pass.js';
import type { Model } from '../../../ir/ir.js';
import { applyAndCompare, defaults, floatFeed, opCount, randTensor } from './helpers.js';
import { testContext } from './ctx.js';

const scalar = (v: number, dims: number[] = []) => Tensor.from(DataType.FLOAT, dims, new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(v));

function runUnchanged(pass: Pass<any>, model: Model): string[] {
  const ctx = testContext(pass.name);
  const r = pass.run(model, defaults(pass), ctx) as { changed: boolean };
  expect(r.changed).toBe(false);
  return ctx.explanations.map((e) => e.reason);
}

describe('fuse-conv-affine', () => {
  it('folds LCNetV3-style Mul(scalar) then Add(scalar) after a Conv held in Constant nodes', async () => {
    const b = new GraphBuilder({ opset: 9 });
    const x = b.input('x', 'float32', [1, 3, 6, 6]);
    const [c] = b.op('Conv', [x, b.constant('w', randTensor([4, 3, 3, 3], 2)), b.constant('bias', randTensor([4], 3))], { pads: [1, 1, 1, 1] });
    const [m] = b.op('Mul', [b.constant('s', scalar(1.38, [1])), c!]);
    const [a] = b.op('Add', [m!, b.constant('t', scalar(0.58, [1]))]);
    const [r] = b.op('Relu', [a!]);
    b.output(r!, 'y');
    const { model, result } = await applyAndCompare(affine, b.model(), floatFeed('x', [1, 3, 6, 6]));
    expect(result.stats?.fused).toBe(2);
    expect(opCount(model, 'Mul') + opCount(model, 'Add')).toBe(0);
  });

  it('folds per-channel Div and reversed Sub into a grouped Conv without bias', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 4, 5, 5]);
    const [c] = b.op('Conv', [x, b.initializer('w', randTensor([4, 2, 3, 3], 2))], { group: 2 });
    const [d] = b.op('Div', [c!, b.initializer('s', randTensor([1, 4, 1, 1], 4, 0.5, 2))]);
    const [s] = b.op('Sub', [b.initializer('t', randTensor([4, 1, 1], 5)), d!]);
    b.output(s!, 'y');
    const { model } = await applyAndCompare(affine, b.model(), floatFeed('x', [1, 4, 5, 5]));
    expect(model.graph.nodes.map((n) => n.opType)).toEqual(['Conv']);
  });

  it('does not fold a spatially varying constant, a Conv output with two users, or a non-constant operand', () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 2, 4, 4]);
    const [c] = b.op('Conv', [x, b.initializer('w', randTensor([2, 2, 1, 1], 2))]);
    const [m] = b.op('Mul', [c!, b.initializer('s', randTensor([2, 4, 4], 3))]);
    b.output(m!, 'y');
    expect(runUnchanged(affine, b.model())[0]).toMatch(/varies along axis/);

    const b2 = new GraphBuilder({ opset: 13 });
    const x2 = b2.input('x', 'float32', [1, 2, 4, 4]);
    const [c2] = b2.op('Conv', [x2, b2.initializer('w', randTensor([2, 2, 1, 1], 2))]);
    const [m2] = b2.op('Mul', [c2!, b2.initializer('s', scalar(2))]);
    b2.output(m2!, 'y');
    b2.output(c2!, 'c');
    expect(runUnchanged(affine, b2.model())[0]).toMatch(/other users or is a graph output/);

    const b3 = new GraphBuilder({ opset: 13 });
    const x3 = b3.input('x', 'float32', [1, 2, 4, 4]);
    const s3 = b3.input('s', 'float32', [1]);
    const [c3] = b3.op('Conv', [x3, b3.initializer('w', randTensor([2, 2, 1, 1], 2))]);
    const [m3] = b3.op('Mul', [c3!, s3]);
    b3.output(m3!, 'y');
    expect(runUnchanged(affine, b3.model())[0]).toMatch(/not a constant/);
  });
});

describe('fuse-matmul-add', () => {
  it('turns MatMul + Add with a 2-D A (from a Reshape) into Gemm', async () => {
    const b = new GraphBuilder({ opset: 9 });
    const x = b.input('x', 'float32', [2, 8, 1, 1]);
    const [r] = b.op('Reshape', [x, b.constant('shape', Tensor.from(DataType.INT64, [2], BigInt64Array.of(0n, -1n)))]);
    const [m] = b.op('MatMul', [r!, b.constant('B', randTensor([8, 3], 1))]);
    const [a] = b.op('Add', [m!, b.constant('C', randTensor([3], 2))]);
    const [s] = b.op('Softmax', [a!], { axis: 1 });
    b.output(s!, 'y');
    const { model } = await applyAndCompare(matmulAdd, b.model(), floatFeed('x', [2, 8, 1, 1]));
    expect(opCount(model, 'Gemm')).toBe(1);
    expect(opCount(model, 'MatMul')).toBe(0);
  });

  it('leaves 3-D A, a bias that would widen the output, and a non-constant B alone', () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2, 4, 8]);
    const [m] = b.op('MatMul', [x, b.initializer('B', randTensor([8, 3], 1))]);
    const [a] = b.op('Add', [m!, b.initializer('C', randTensor([3], 2))]);
    b.output(a!, 'y');
    expect(runUnchanged(matmulAdd, b.model())[0]).toMatch(/rank 3/);

    const b2 = new GraphBuilder({ opset: 13 });
    const x2 = b2.input('x', 'float32', [2, 8]);
    const [m2] = b2.op('MatMul', [x2, b2.initializer('B', randTensor([8, 3], 1))]);
    const [a2] = b2.op('Add', [m2!, b2.initializer('C', randTensor([5, 2, 3], 2))]);
    b2.output(a2!, 'y');
    expect(runUnchanged(matmulAdd, b2.model())[0]).toMatch(/rank 3/);

    const b3 = new GraphBuilder({ opset: 13 });
    const x3 = b3.input('x', 'float32', [2, 8]);
    const w3 = b3.input('w', 'float32', [8, 3]);
    const [m3] = b3.op('MatMul', [x3, w3]);
    const [a3] = b3.op('Add', [m3!, b3.initializer('C', randTensor([3], 2))]);
    b3.output(a3!, 'y');
    expect(runUnchanged(matmulAdd, b3.model())[0]).toMatch(/B is not a constant/);
  });
});

describe('fuse-pad', () => {
  it('folds zero Pad (opset 11 inputs) into Conv and into AveragePool (count_include_pad becomes 1)', async () => {
    const b = new GraphBuilder({ opset: 11 });
    const x = b.input('x', 'float32', [1, 2, 6, 6]);
    const pads = b.initializer('pads', Tensor.from(DataType.INT64, [8], BigInt64Array.of(0n, 0n, 1n, 2n, 0n, 0n, 2n, 1n)));
    const [p] = b.op('Pad', [x, pads]);
    const [c] = b.op('Conv', [p!, b.initializer('w', randTensor([3, 2, 3, 3], 1))], { pads: [1, 0, 0, 1] });
    const [p2] = b.op('Pad', [c!, pads]);
    const [ap] = b.op('AveragePool', [p2!], { kernel_shape: [3, 3], count_include_pad: 0 });
    b.output(ap!, 'y');
    const { model, result } = await applyAndCompare(pad, b.model(), floatFeed('x', [1, 2, 6, 6]));
    expect(result.stats?.fused).toBe(2);
    expect(opCount(model, 'Pad')).toBe(0);
    expect(model.graph.nodes.find((n) => n.opType === 'Conv')!.getInts('pads')).toEqual([2, 2, 2, 2]);
  });

  it('folds a -inf Pad (opset 9 attributes) into MaxPool', async () => {
    const b = new GraphBuilder({ opset: 9 });
    const x = b.input('x', 'float32', [1, 2, 5, 5]);
    const [p] = b.op('Pad', [x], { pads: [0, 0, 1, 1, 0, 0, 1, 1], value: -Infinity }, { floats: ['value'] });
    const [mp] = b.op('MaxPool', [p!], { kernel_shape: [3, 3] });
    b.output(mp!, 'y');
    const { model } = await applyAndCompare(pad, b.model(), floatFeed('x', [1, 2, 5, 5]));
    expect(opCount(model, 'Pad')).toBe(0);
  });

  it('leaves a non-zero value, a channel pad, a reflect pad, and a zero Pad before MaxPool alone', () => {
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ pads: [0, 0, 1, 1, 0, 0, 1, 1], value: 1.5 }, 'Conv', /value is 1.5/],
      [{ pads: [0, 1, 1, 1, 0, 0, 1, 1] }, 'Conv', /batch or channel/],
      [{ pads: [0, 0, 1, 1, 0, 0, 1, 1], mode: 'reflect' }, 'Conv', /mode is reflect/],
      [{ pads: [0, 0, 1, 1, 0, 0, 1, 1] }, 'MaxPool', /-inf/],
    ];
    for (const [attrs, op, why] of cases) {
      const b = new GraphBuilder({ opset: 9 });
      const x = b.input('x', 'float32', [1, 2, 5, 5]);
      const [p] = b.op('Pad', [x], attrs as Record<string, number[]>, { floats: ['value'] });
      const ins = op === 'Conv' ? [p!, b.initializer('w', randTensor([2, op === 'Conv' && (attrs.pads as number[])[1] ? 3 : 2, 1, 1], 1))] : [p!];
      const [y] = b.op(op, ins, op === 'MaxPool' ? { kernel_shape: [2, 2] } : {});
      b.output(y!, 'y');
      expect(runUnchanged(pad, b.model())[0]).toMatch(why);
    }
  });
});

describe('fuse-conv-input-affine', () => {
  it('folds x*s+c (LCNetV3 learnable affine) into a following grouped pointwise Conv, and x*s into a padded depthwise Conv', async () => {
    const b = new GraphBuilder({ opset: 9 });
    const x = b.input('x', 'float32', [1, 4, 5, 5]);
    const [m] = b.op('Mul', [b.constant('s', scalar(0.73, [1])), x]);
    const [a] = b.op('Add', [m!, b.constant('c', randTensor([1, 4, 1, 1], 9))]);
    const [c] = b.op('Conv', [a!, b.constant('w', randTensor([6, 2, 1, 1], 2)), b.constant('bias', randTensor([6], 3))], { group: 2 });
    const [m2] = b.op('Mul', [c!, b.initializer('s2', randTensor([6, 1, 1], 4, 0.5, 1.5))]);
    const [d] = b.op('Conv', [m2!, b.initializer('w2', randTensor([6, 1, 3, 3], 5))], { group: 6, pads: [1, 1, 1, 1] });
    b.output(d!, 'y');
    const { model, result } = await applyAndCompare(inputAffine, b.model(), floatFeed('x', [1, 4, 5, 5]));
    expect(result.stats?.fused).toBe(3);
    expect(model.graph.nodes.filter((n) => n.opType !== 'Constant').map((n) => n.opType)).toEqual(['Conv', 'Conv']);
  });

  it('does not fold an Add into a padded Conv or a spatially varying scale', () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 2, 4, 4]);
    const [a] = b.op('Add', [x, b.initializer('c', scalar(0.5))]);
    b.output(b.op('Conv', [a!, b.initializer('w', randTensor([2, 2, 3, 3], 2))], { pads: [1, 1, 1, 1] })[0]!, 'y');
    expect(runUnchanged(inputAffine, b.model())[0]).toMatch(/pads its input/);

    const b2 = new GraphBuilder({ opset: 13 });
    const x2 = b2.input('x', 'float32', [1, 2, 4, 4]);
    const [m2] = b2.op('Mul', [x2, b2.initializer('s', randTensor([1, 1, 4, 4], 3))]);
    b2.output(b2.op('Conv', [m2!, b2.initializer('w', randTensor([2, 2, 1, 1], 2))])[0]!, 'y');
    expect(runUnchanged(inputAffine, b2.model())[0]).toMatch(/varies along axis/);
  });
});
