import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../ir/builder.js';
import { DataType } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';
import pass from '../../../passes/fusion/fuse-batchnorm.js';
import { applyAndCompare, defaults, floatFeed, opCount, randTensor } from './helpers.js';
import { testContext } from './ctx.js';

function bnParams(b: GraphBuilder, c: number, asConstants: boolean, seed = 10) {
  const mk = (name: string, t: Tensor) => (asConstants ? b.constant(name, t) : b.initializer(name, t));
  return [
    mk('gamma', randTensor([c], seed, 0.5, 1.5)),
    mk('beta', randTensor([c], seed + 1)),
    mk('mean', randTensor([c], seed + 2)),
    mk('var', randTensor([c], seed + 3, 0.1, 2)),
  ];
}

describe('fuse-batchnorm', () => {
  it('folds BN into Conv with weights in Constant nodes (PaddleOCR style), with and without bias', async () => {
    for (const withBias of [false, true]) {
      const b = new GraphBuilder({ opset: 9 });
      const x = b.input('x', 'float32', [1, 3, 8, 8]);
      const w = b.constant('w', randTensor([4, 3, 3, 3], 3));
      const ins = withBias ? [x, w, b.constant('cb', randTensor([4], 4))] : [x, w];
      const [c] = b.op('Conv', ins, { pads: [1, 1, 1, 1], kernel_shape: [3, 3] });
      const [y] = b.op('BatchNormalization', [c!, ...bnParams(b, 4, true)], { epsilon: 1e-3 }, { floats: ['epsilon'] });
      b.output(y!, 'y', 'float32', [1, 4, 8, 8]);
      const { model, result } = await applyAndCompare(pass, b.model(), floatFeed('x', [1, 3, 8, 8]));
      expect(result.stats?.fused).toBe(1);
      expect(opCount(model, 'BatchNormalization')).toBe(0);
      expect(model.graph.outputs[0]!.name).toBe('y');
    }
  });

  it('folds BN into grouped ConvTranspose', async () => {
    const b = new GraphBuilder({ opset: 11 });
    const x = b.input('x', 'float32', [1, 4, 5, 5]);
    const w = b.initializer('w', randTensor([4, 3, 2, 2], 5));
    const [c] = b.op('ConvTranspose', [x, w], { strides: [2, 2], group: 2 });
    const [y] = b.op('BatchNormalization', [c!, ...bnParams(b, 6, false)]);
    b.output(y!, 'y');
    const { model } = await applyAndCompare(pass, b.model(), floatFeed('x', [1, 4, 5, 5]));
    expect(opCount(model, 'BatchNormalization')).toBe(0);
  });

  it('folds BN into Gemm (transB, alpha, beta) and 2-D MatMul (becomes Gemm)', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2, 5]);
    const [g] = b.op('Gemm', [x, b.initializer('B', randTensor([6, 5], 6)), b.initializer('C', randTensor([6], 7))], { transB: 1, alpha: 0.5, beta: 2 }, { floats: ['alpha', 'beta'] });
    const [y] = b.op('BatchNormalization', [g!, ...bnParams(b, 6, false)]);
    b.output(y!, 'y');
    const r1 = await applyAndCompare(pass, b.model(), floatFeed('x', [2, 5]));
    expect(opCount(r1.model, 'BatchNormalization')).toBe(0);

    const b2 = new GraphBuilder({ opset: 13 });
    const x2 = b2.input('x', 'float32', [3, 5]);
    const [m] = b2.op('MatMul', [x2, b2.constant('B', randTensor([5, 6], 8))]);
    const [y2] = b2.op('BatchNormalization', [m!, ...bnParams(b2, 6, true)]);
    b2.output(y2!, 'y');
    const r2 = await applyAndCompare(pass, b2.model(), floatFeed('x', [3, 5]));
    expect(opCount(r2.model, 'Gemm')).toBe(1);
    expect(opCount(r2.model, 'MatMul')).toBe(0);
  });

  it('does not fold when BN parameters are graph inputs, the Conv output has two users, or MatMul output rank is unknown', async () => {
    // BN parameters as graph inputs
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 2, 4, 4]);
    const [c] = b.op('Conv', [x, b.initializer('w', randTensor([2, 2, 1, 1], 1))]);
    const params = ['g', 'bb', 'm', 'v'].map((n) => b.input(n, 'float32', [2]));
    const [y] = b.op('BatchNormalization', [c!, ...params]);
    b.output(y!, 'y');
    const m1 = b.model();
    const ctx = testContext('fuse-batchnorm');
    expect(pass.run(m1, defaults(pass) as { maxIterations: number }, ctx)).toMatchObject({ changed: false });
    expect(ctx.explanations.some((e) => /scale .* not a constant/.test(e.reason))).toBe(true);

    // Conv output with two users
    const b2 = new GraphBuilder({ opset: 13 });
    const x2 = b2.input('x', 'float32', [1, 2, 4, 4]);
    const [c2] = b2.op('Conv', [x2, b2.initializer('w', randTensor([2, 2, 1, 1], 1))]);
    const [y2] = b2.op('BatchNormalization', [c2!, ...bnParams(b2, 2, false)]);
    const [r2] = b2.op('Relu', [c2!]);
    b2.output(y2!, 'y');
    b2.output(r2!, 'r');
    const ctx2 = testContext('fuse-batchnorm');
    expect((pass.run(b2.model(), { maxIterations: 10 }, ctx2) as { changed: boolean }).changed).toBe(false);
    expect(ctx2.explanations[0]!.reason).toMatch(/other users/);

    // MatMul with 3-D input: BN axis 1 is not the MatMul's output channel
    const b3 = new GraphBuilder({ opset: 13 });
    const x3 = b3.input('x', 'float32', [2, 3, 5]);
    const [m3] = b3.op('MatMul', [x3, b3.initializer('B', randTensor([5, 3], 2))]);
    const [y3] = b3.op('BatchNormalization', [m3!, ...bnParams(b3, 3, false)]);
    b3.output(y3!, 'y');
    const ctx3 = testContext('fuse-batchnorm');
    expect((pass.run(b3.model(), { maxIterations: 10 }, ctx3) as { changed: boolean }).changed).toBe(false);
    expect(ctx3.explanations[0]!.reason).toMatch(/2-D/);
  });

  it('refuses float16 weights with a reason', () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float16', [1, 2, 4, 4]);
    const w = b.initializer('w', Tensor.from(DataType.FLOAT16, [2, 2, 1, 1], new Uint16Array(4)));
    const [c] = b.op('Conv', [x, w]);
    const p = ['g', 'bb', 'm', 'v'].map((n) => b.initializer(n, Tensor.from(DataType.FLOAT16, [2], new Uint16Array(2))));
    const [y] = b.op('BatchNormalization', [c!, ...p]);
    b.output(y!, 'y');
    const ctx = testContext('fuse-batchnorm');
    expect((pass.run(b.model(), { maxIterations: 10 }, ctx) as { changed: boolean }).changed).toBe(false);
    expect(ctx.explanations[0]!.reason).toMatch(/float16/);
  });
});
