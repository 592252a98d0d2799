/** fuse-hardswish, fuse-layer-norm and fuse-gelu: ORT numerics, negative cases, opset guard. */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../ir/builder.js';
import { DataType } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';
import hardswish from '../../../passes/fusion/fuse-hardswish.js';
import layerNorm from '../../../passes/fusion/fuse-layer-norm.js';
import gelu from '../../../passes/fusion/fuse-gelu.js';
import type { Value } from '../../../ir/ir.js';
import { applyAndCompare, defaults, floatFeed, opCount, randTensor } from './helpers.js';
import { testContext } from './ctx.js';

const s = (v: number) => Tensor.from(DataType.FLOAT, [], Float32Array.of(v));

describe('fuse-hardswish', () => {
  it('fuses the PaddleOCR x*Clip(x+3,0,6)/6 (Clip with attributes at opset 9 upgraded form: inputs) and Clip/6 alone', async () => {
    const b = new GraphBuilder({ opset: 14 });
    const x = b.input('x', 'float32', [2, 8]);
    const [a] = b.op('Add', [x, b.constant('three', s(3))]);
    const [c] = b.op('Clip', [a!, b.constant('lo', s(0)), b.constant('hi', s(6))]);
    const [m] = b.op('Mul', [x, c!]);
    const [d] = b.op('Div', [m!, b.constant('six', s(6))]);
    // HardSigmoid shape used by an SE block: y * (Clip(z+3)/6)
    const [a2] = b.op('Add', [b.constant('three2', s(3)), d!]);
    const [c2] = b.op('Clip', [a2!, b.constant('lo2', s(0)), b.constant('hi2', s(6))]);
    const [h] = b.op('Div', [c2!, b.constant('six2', s(6))]);
    const [y] = b.op('Mul', [x, h!]);
    b.output(y!, 'y');
    const { model, result } = await applyAndCompare(hardswish, b.model(), floatFeed('x', [2, 8], 3, -6, 6));
    expect(result.stats).toMatchObject({ hardswish: 1, hardsigmoid: 1 });
    expect(opCount(model, 'Clip')).toBe(0);
  });

  it('fuses x * HardSigmoid(x; 1/6, 0.5) into HardSwish but not HardSigmoid(x; 0.2, 0.5)', async () => {
    const b = new GraphBuilder({ opset: 14 });
    const x = b.input('x', 'float32', [4, 4]);
    const [h] = b.op('HardSigmoid', [x], { alpha: 1 / 6, beta: 0.5 });
    const [y] = b.op('Mul', [h!, x]);
    const [h2] = b.op('HardSigmoid', [y!], { alpha: 0.2, beta: 0.5 });
    const [z] = b.op('Mul', [y!, h2!]);
    b.output(z!, 'z');
    const { model, ctx } = await applyAndCompare(hardswish, b.model(), floatFeed('x', [4, 4], 3, -6, 6));
    expect(opCount(model, 'HardSwish')).toBe(1);
    expect(opCount(model, 'HardSigmoid')).toBe(1);
    expect(ctx.explanations.some((e) => /alpha\/beta/.test(e.reason))).toBe(true);
  });

  it('refuses Clip(x+3, 0, 5), a shared intermediate, and models below opset 14', () => {
    const b = new GraphBuilder({ opset: 14 });
    const x = b.input('x', 'float32', [4]);
    const [a] = b.op('Add', [x, b.constant('three', s(3))]);
    const [c] = b.op('Clip', [a!, b.constant('lo', s(0)), b.constant('hi', s(5))]);
    const [m] = b.op('Mul', [x, c!]);
    const [d] = b.op('Div', [m!, b.constant('six', s(6))]);
    b.output(d!, 'y');
    const ctx = testContext('fuse-hardswish');
    expect(hardswish.run(b.model(), defaults(hardswish) as { maxIterations: number }, ctx)).toMatchObject({ changed: false });
    expect(ctx.explanations.some((e) => /bounds are 0, 5/.test(e.reason))).toBe(true);

    const b2 = new GraphBuilder({ opset: 14 });
    const x2 = b2.input('x', 'float32', [4]);
    const [a2] = b2.op('Add', [x2, b2.constant('three', s(3))]);
    const [c2] = b2.op('Clip', [a2!, b2.constant('lo', s(0)), b2.constant('hi', s(6))]);
    const [m2] = b2.op('Mul', [x2, c2!]);
    const [d2] = b2.op('Div', [m2!, b2.constant('six', s(6))]);
    b2.output(d2!, 'y');
    b2.output(m2!, 'm');
    expect(hardswish.run(b2.model(), { maxIterations: 10 }, testContext())).toMatchObject({ changed: false });

    const b3 = new GraphBuilder({ opset: 13 });
    const x3 = b3.input('x', 'float32', [4]);
    const [h3] = b3.op('HardSigmoid', [x3], { alpha: 1 / 6, beta: 0.5 });
    b3.output(b3.op('Mul', [x3, h3!])[0]!, 'y');
    const ctx3 = testContext();
    expect(hardswish.run(b3.model(), { maxIterations: 10 }, ctx3)).toMatchObject({ changed: false });
    expect(ctx3.explanations[0]!.reason).toMatch(/needs opset 14/);
  });
});

function decomposedLayerNorm(b: GraphBuilder, x: Value, c: number, opts: { affine: boolean; axesInput: boolean }) {
  const axesAttr = opts.axesInput ? {} : { axes: [-1] };
  const axesIn = opts.axesInput ? [b.constant(b.fresh('axes'), Tensor.from(DataType.INT64, [1], BigInt64Array.of(-1n)))] : [];
  const [m] = b.op('ReduceMean', [x, ...axesIn], axesAttr);
  const [d] = b.op('Sub', [x, m!]);
  const [p] = b.op('Pow', [d!, b.constant(b.fresh('two'), s(2))]);
  const [v] = b.op('ReduceMean', [p!, ...axesIn], axesAttr);
  const [e] = b.op('Add', [v!, b.constant(b.fresh('eps'), s(1e-5))]);
  const [r] = b.op('Sqrt', [e!]);
  let [y] = b.op('Div', [d!, r!]);
  if (opts.affine) {
    [y] = b.op('Mul', [y!, b.constant(b.fresh('gamma'), randTensor([c], 3, 0.5, 1.5))]);
    [y] = b.op('Add', [y!, b.constant(b.fresh('beta'), randTensor([c], 4))]);
  }
  return y!;
}

describe('fuse-layer-norm', () => {
  it('fuses the SVTR (PP-OCRv4 rec) layer norm with gamma/beta, opset 17 attributes and opset 18 axes inputs', async () => {
    for (const opset of [17, 18]) {
      const b = new GraphBuilder({ opset });
      const x = b.input('x', 'float32', [2, 5, 12]);
      const y = decomposedLayerNorm(b, x, 12, { affine: true, axesInput: opset >= 18 });
      b.output(y, 'y');
      const { model } = await applyAndCompare(layerNorm, b.model(), floatFeed('x', [2, 5, 12]));
      expect(model.graph.nodes.filter((n) => n.opType !== 'Constant').map((n) => n.opType)).toEqual(['LayerNormalization']);
    }
  });

  it('fuses without gamma/beta when the normalized size is declared, and not across a non-trailing axis', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', [3, 7]);
    b.output(decomposedLayerNorm(b, x, 7, { affine: false, axesInput: false }), 'y');
    const { model } = await applyAndCompare(layerNorm, b.model(), floatFeed('x', [3, 7]));
    expect(opCount(model, 'LayerNormalization')).toBe(1);

    const b2 = new GraphBuilder({ opset: 17 });
    const x2 = b2.input('x', 'float32', [3, 7, 2]);
    const [m] = b2.op('ReduceMean', [x2], { axes: [1] });
    const [d] = b2.op('Sub', [x2, m!]);
    const [p] = b2.op('Pow', [d!, b2.constant('two', s(2))]);
    const [v] = b2.op('ReduceMean', [p!], { axes: [1] });
    const [e] = b2.op('Add', [v!, b2.constant('eps', s(1e-5))]);
    const [r] = b2.op('Sqrt', [e!]);
    b2.output(b2.op('Div', [d!, r!])[0]!, 'y');
    const ctx = testContext();
    expect(layerNorm.run(b2.model(), { maxIterations: 10 }, ctx)).toMatchObject({ changed: false });
    expect(ctx.explanations.some((x) => /not the trailing axes/.test(x.reason))).toBe(true);
  });
});

describe('fuse-gelu', () => {
  it('fuses the erf form (two nestings) and the tanh form', async () => {
    const b = new GraphBuilder({ opset: 20 });
    const x = b.input('x', 'float32', [4, 6]);
    // 0.5 * x * (1 + erf(x / sqrt2)) written as (x * 0.5) * (1 + erf(x / 1.4142))
    const [dv] = b.op('Div', [x, b.constant('sqrt2', s(Math.SQRT2))]);
    const [er] = b.op('Erf', [dv!]);
    const [one] = b.op('Add', [er!, b.constant('one', s(1))]);
    const [half] = b.op('Mul', [x, b.constant('half', s(0.5))]);
    const [g1] = b.op('Mul', [half!, one!]);
    // tanh form on g1: 0.5 * g1 * (1 + tanh(0.79788 * (g1 + 0.044715 * g1^3)))
    const [cube] = b.op('Pow', [g1!, b.constant('three', s(3))]);
    const [k] = b.op('Mul', [b.constant('c', s(0.044715)), cube!]);
    const [inner] = b.op('Add', [g1!, k!]);
    const [sc] = b.op('Mul', [inner!, b.constant('s2pi', s(Math.sqrt(2 / Math.PI)))]);
    const [th] = b.op('Tanh', [sc!]);
    const [one2] = b.op('Add', [b.constant('one2', s(1)), th!]);
    const [t1] = b.op('Mul', [one2!, b.constant('half2', s(0.5))]);
    const [g2] = b.op('Mul', [g1!, t1!]);
    b.output(g2!, 'y');
    const { model } = await applyAndCompare(gelu, b.model(), floatFeed('x', [4, 6]));
    const ops = model.graph.nodes.filter((n) => n.opType !== 'Constant');
    expect(ops.map((n) => n.opType)).toEqual(['Gelu', 'Gelu']);
    expect(ops[1]!.getString('approximate')).toBe('tanh');
  });

  it('does not fuse x * (1 + erf(x)) * 0.5 (missing 1/sqrt2) or erf of another tensor', () => {
    const b = new GraphBuilder({ opset: 20 });
    const x = b.input('x', 'float32', [4]);
    const z = b.input('z', 'float32', [4]);
    for (const [arg, name] of [[x, 'y1'], [z, 'y2']] as const) {
      const [dv] = b.op('Mul', [arg, b.constant(b.fresh('k'), s(name === 'y1' ? 1 : Math.SQRT1_2))]);
      const [er] = b.op('Erf', [dv!]);
      const [one] = b.op('Add', [er!, b.constant(b.fresh('one'), s(1))]);
      const [m] = b.op('Mul', [x, one!]);
      b.output(b.op('Mul', [m!, b.constant(b.fresh('half'), s(0.5))])[0]!, name);
    }
    expect(gelu.run(b.model(), { maxIterations: 10 }, testContext())).toMatchObject({ changed: false });
  });
});
