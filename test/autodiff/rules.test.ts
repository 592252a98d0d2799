/**
 * Every gradient rule against central differences on small random shapes (see gradcheck.ts).
 */
import { describe, expect, it } from 'vitest';
import { DataType } from '../../core/dtype.js';
import { Tensor } from '../../core/tensor.js';
import { GraphBuilder } from '../../ir/builder.js';
import { Value } from '../../ir/ir.js';
import { CheckInput, FloatType, gradCheck, tolerance } from './gradcheck.js';

type Build = (b: GraphBuilder, v: Record<string, Value>, dtype: FloatType) => Value;

const results: Array<{ name: string; dtype: string; error: number }> = [];

function ints(b: GraphBuilder, values: number[]): Value {
  return b.constant(b.fresh('c'), Tensor.from(DataType.INT64, [values.length], BigInt64Array.from(values.map(BigInt))));
}
function scalar(b: GraphBuilder, dtype: FloatType, x: number): Value {
  return b.constant(b.fresh('s'), dtype === 'float64' ? Tensor.from(DataType.DOUBLE, [], Float64Array.of(x)) : Tensor.from(DataType.FLOAT, [], Float32Array.of(x)));
}
const one = (op: string, attrs: Record<string, number | number[] | string> = {}): Build => (b, v) => b.op(op, Object.values(v), attrs)[0]!;

interface Case {
  name: string;
  build: Build;
  inputs: Record<string, CheckInput>;
  opset?: number;
}

/** Values kept away from the kinks at 0 (and the hard-swish/sigmoid corners at +-3 / +-2.5). */
const awayFromKinks = (scale: number) => (_i: number, r: () => number) => {
  const u = r() * 2 - 1;
  return (Math.sign(u) || 1) * (0.05 + Math.abs(u)) * scale;
};

const cases: Case[] = [
  { name: 'Add broadcast', build: one('Add'), inputs: { a: { dims: [2, 3, 4] }, b: { dims: [3, 1] } } },
  { name: 'Sub broadcast', build: one('Sub'), inputs: { a: { dims: [1, 4] }, b: { dims: [3, 1] } } },
  { name: 'Mul broadcast', build: one('Mul'), inputs: { a: { dims: [2, 3, 2] }, b: { dims: [2] } } },
  { name: 'Div broadcast', build: one('Div'), inputs: { a: { dims: [2, 3] }, b: { dims: [1, 3], init: (_i, r) => 1 + r() } } },
  { name: 'Relu', build: one('Relu'), inputs: { x: { dims: [3, 4], init: awayFromKinks(1) } } },
  {
    name: 'Clip',
    build: (b, v, d) => b.op('Clip', [v.x!, scalar(b, d, -0.5), scalar(b, d, 0.4)])[0]!,
    inputs: { x: { dims: [3, 5], init: (i, r) => (i % 3 === 0 ? -0.9 : i % 3 === 1 ? 0.8 : 0.3) + 0.05 * r() } },
  },
  { name: 'Sigmoid', build: one('Sigmoid'), inputs: { x: { dims: [2, 5] } } },
  { name: 'Tanh', build: one('Tanh'), inputs: { x: { dims: [2, 5] } } },
  { name: 'HardSigmoid', build: one('HardSigmoid', { alpha: 0.3, beta: 0.6 }), inputs: { x: { dims: [4, 5], init: (i, r) => (i % 3 === 0 ? 3.5 * (r() - 0.5) : 6 * (r() - 0.5)) } } },
  { name: 'HardSwish', build: one('HardSwish'), inputs: { x: { dims: [4, 5], init: (_i, r) => 8 * (r() - 0.5) } } },
  { name: 'Gemm', build: (b, v) => b.op('Gemm', [v.a!, v.b!, v.c!], { alpha: 0.7, beta: 1.3 }, { floats: ['alpha', 'beta'] })[0]!, inputs: { a: { dims: [3, 4] }, b: { dims: [4, 2] }, c: { dims: [2] } } },
  { name: 'Gemm transA transB', build: (b, v) => b.op('Gemm', [v.a!, v.b!, v.c!], { transA: 1, transB: 1 })[0]!, inputs: { a: { dims: [4, 3] }, b: { dims: [2, 4] }, c: { dims: [3, 1] } } },
  { name: 'MatMul batched broadcast', build: one('MatMul'), inputs: { a: { dims: [2, 3, 4] }, b: { dims: [4, 2] } } },
  { name: 'Conv pads strides', build: (b, v) => b.op('Conv', [v.x!, v.w!, v.bias!], { pads: [1, 0, 1, 2], strides: [2, 1] })[0]!, inputs: { x: { dims: [2, 2, 5, 4] }, w: { dims: [3, 2, 3, 2] }, bias: { dims: [3] } } },
  { name: 'Conv dilations stride 2', build: (b, v) => b.op('Conv', [v.x!, v.w!], { dilations: [2, 1], strides: [2, 2], pads: [1, 1, 0, 1] })[0]!, inputs: { x: { dims: [1, 2, 6, 5] }, w: { dims: [2, 2, 2, 3] } } },
  { name: 'Conv grouped', build: (b, v) => b.op('Conv', [v.x!, v.w!], { group: 2, pads: [1, 1, 1, 1] })[0]!, inputs: { x: { dims: [2, 4, 3, 3] }, w: { dims: [4, 2, 3, 3] } } },
  { name: 'Conv depthwise SAME_UPPER stride 2', build: (b, v) => b.op('Conv', [v.x!, v.w!, v.bias!], { group: 3, auto_pad: 'SAME_UPPER', strides: [2, 2] })[0]!, inputs: { x: { dims: [1, 3, 5, 4] }, w: { dims: [3, 1, 3, 3] }, bias: { dims: [3] } } },
  { name: 'Conv pointwise 1x1', build: (b, v) => b.op('Conv', [v.x!, v.w!, v.bias!], {})[0]!, inputs: { x: { dims: [2, 3, 2, 3] }, w: { dims: [4, 3, 1, 1] }, bias: { dims: [4] } } },
  { name: 'Conv depthwise dilated pads', build: (b, v) => b.op('Conv', [v.x!, v.w!], { group: 2, pads: [2, 1, 0, 2], dilations: [2, 1], strides: [1, 2] })[0]!, inputs: { x: { dims: [2, 2, 5, 5] }, w: { dims: [2, 1, 2, 3] } } },
  { name: 'Conv 1-D', build: (b, v) => b.op('Conv', [v.x!, v.w!], { pads: [2, 1], strides: [2] })[0]!, inputs: { x: { dims: [2, 2, 7] }, w: { dims: [3, 2, 3] } } },
  { name: 'ConvTranspose strides pads output_padding', build: (b, v) => b.op('ConvTranspose', [v.x!, v.w!, v.bias!], { strides: [2, 2], pads: [1, 0, 0, 1], output_padding: [1, 0] })[0]!, inputs: { x: { dims: [1, 2, 3, 3] }, w: { dims: [2, 3, 3, 2] }, bias: { dims: [3] } } },
  { name: 'ConvTranspose grouped dilated', build: (b, v) => b.op('ConvTranspose', [v.x!, v.w!], { group: 2, dilations: [2, 1] })[0]!, inputs: { x: { dims: [2, 4, 2, 3] }, w: { dims: [4, 1, 2, 2] } } },
  { name: 'GlobalAveragePool', build: one('GlobalAveragePool'), inputs: { x: { dims: [2, 3, 3, 4] } } },
  { name: 'AveragePool pads exclude', build: one('AveragePool', { kernel_shape: [3, 2], strides: [2, 1], pads: [1, 0, 1, 1] }), inputs: { x: { dims: [1, 2, 5, 4] } } },
  { name: 'AveragePool pads include', build: one('AveragePool', { kernel_shape: [2, 2], strides: [2, 2], pads: [1, 1, 0, 0], count_include_pad: 1 }), inputs: { x: { dims: [2, 1, 4, 5] } } },
  { name: 'MaxPool', build: one('MaxPool', { kernel_shape: [2, 2], strides: [2, 1], pads: [0, 1, 1, 0] }), inputs: { x: { dims: [2, 2, 4, 4], init: (i) => Math.sin(i * 12.9898) * 2 } } },
  { name: 'Reshape', build: (b, v) => b.op('Reshape', [v.x!, ints(b, [3, -1])])[0]!, inputs: { x: { dims: [2, 3, 2] } } },
  { name: 'Flatten', build: one('Flatten', { axis: 2 }), inputs: { x: { dims: [2, 3, 2, 2] } } },
  { name: 'Transpose', build: one('Transpose', { perm: [2, 0, 1] }), inputs: { x: { dims: [2, 3, 4] } } },
  { name: 'Squeeze', build: (b, v) => b.op('Squeeze', [v.x!, ints(b, [1])])[0]!, inputs: { x: { dims: [3, 1, 2] } } },
  { name: 'Unsqueeze', build: (b, v) => b.op('Unsqueeze', [v.x!, ints(b, [0, 3])])[0]!, inputs: { x: { dims: [3, 2] } } },
  { name: 'Concat', build: (b, v) => b.op('Concat', [v.a!, v.b!, v.a!], { axis: 1 })[0]!, inputs: { a: { dims: [2, 2, 2] }, b: { dims: [2, 3, 2] } } },
  { name: 'Slice steps', build: (b, v) => b.op('Slice', [v.x!, ints(b, [1, -1, 0]), ints(b, [5, 0, 100]), ints(b, [0, 1, 2]), ints(b, [2, -2, 1])])[0]!, inputs: { x: { dims: [6, 5, 2] } } },
  { name: 'Slice plain', build: (b, v) => b.op('Slice', [v.x!, ints(b, [1]), ints(b, [3]), ints(b, [-1])])[0]!, inputs: { x: { dims: [2, 4] } } },
  { name: 'Softmax', build: one('Softmax', { axis: 1 }), inputs: { x: { dims: [2, 4, 2] } } },
  { name: 'LogSoftmax', build: one('LogSoftmax'), inputs: { x: { dims: [3, 5] } } },
  { name: 'ReduceMean', build: one('ReduceMean', { axes: [0, 2], keepdims: 0 }), inputs: { x: { dims: [2, 3, 4] } } },
  { name: 'ReduceMean opset 18', build: (b, v) => b.op('ReduceMean', [v.x!, ints(b, [-1])])[0]!, inputs: { x: { dims: [2, 3, 4] } }, opset: 18 },
  { name: 'ReduceSum all', build: (b, v) => b.op('ReduceSum', [v.x!], { keepdims: 0 })[0]!, inputs: { x: { dims: [2, 3] } } },
  {
    name: 'BatchNormalization',
    build: (b, v) => b.op('BatchNormalization', [v.x!, v.scale!, v.bias!, v.mean!, v.var!], { epsilon: 0.01 }, { floats: ['epsilon'] })[0]!,
    inputs: { x: { dims: [2, 3, 2, 2] }, scale: { dims: [3] }, bias: { dims: [3] }, mean: { dims: [3], wrt: false }, var: { dims: [3], wrt: false, init: (_i, r) => 0.5 + r() } },
  },
  {
    name: 'Resize nearest x2',
    build: (b, v) => b.op('Resize', [v.x!, null, b.constant(b.fresh('sc'), Tensor.from(DataType.FLOAT, [4], Float32Array.of(1, 1, 2, 2)))], { mode: 'nearest' })[0]!,
    inputs: { x: { dims: [1, 2, 2, 3] } },
  },
  {
    name: 'Resize linear sizes half_pixel',
    build: (b, v) => b.op('Resize', [v.x!, null, null, ints(b, [1, 2, 5, 3])], { mode: 'linear' })[0]!,
    inputs: { x: { dims: [1, 2, 3, 4] } },
  },
  {
    name: 'Resize linear align_corners scales',
    build: (b, v) => b.op('Resize', [v.x!, null, b.constant(b.fresh('sc'), Tensor.from(DataType.FLOAT, [4], Float32Array.of(1, 1, 1.5, 2)))], { mode: 'linear', coordinate_transformation_mode: 'align_corners' })[0]!,
    inputs: { x: { dims: [2, 1, 2, 3] } },
  },
  {
    name: 'Composite: Conv -> HardSwish -> MaxPool -> Flatten -> Gemm (shared input)',
    build: (b, v) => {
      const [c] = b.op('Conv', [v.x!, v.w!], { pads: [1, 1, 1, 1] });
      const [h] = b.op('HardSwish', [c!]);
      const [p] = b.op('MaxPool', [h!], { kernel_shape: [2, 2], strides: [2, 2] });
      const [f] = b.op('Flatten', [p!]);
      const [s] = b.op('Add', [f!, b.op('Flatten', [b.op('GlobalAveragePool', [v.x!])[0]!])[0]!]);
      return b.op('Gemm', [s!, v.fc!], {})[0]!;
    },
    inputs: { x: { dims: [2, 1, 4, 4] }, w: { dims: [1, 1, 3, 3] }, fc: { dims: [4, 3] } },
  },
];

describe('gradient rules match central differences', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const res = await gradCheck(c.build, c.inputs, { opset: c.opset ?? 17 });
      results.push({ name: c.name, dtype: res.dtype, error: res.error });
      expect(res.checked).toBeGreaterThan(0);
      expect(res.error).toBeLessThan(tolerance(res.dtype));
    });
  }
  it('summary', () => {
    for (const r of results) console.log(`gradcheck ${r.dtype} ${r.error.toExponential(2)}  ${r.name}`);
    expect(results.length).toBe(cases.length);
  });
});
