/**
 * Gradient rules a transformer language model needs (Gather, LayerNormalization, Erf, Sqrt,
 * Reciprocal, Pow, Where, batched MatMul, the linear-layer MatMul fast path) and one attention block
 * written the way the TorchScript exporter writes it, each against central differences.
 */
import { describe, expect, it } from 'vitest';
import { DataType } from '../../core/dtype.js';
import { Tensor } from '../../core/tensor.js';
import { GraphBuilder } from '../../ir/builder.js';
import { Value } from '../../ir/ir.js';
import { CheckInput, FloatType, gradCheck, tolerance } from './gradcheck.js';

type Build = (b: GraphBuilder, v: Record<string, Value>, dtype: FloatType) => Value;

function ints(b: GraphBuilder, values: number[], dims = [values.length]): Value {
  return b.constant(b.fresh('c'), Tensor.from(DataType.INT64, dims, BigInt64Array.from(values.map(BigInt))));
}
function floats(b: GraphBuilder, dtype: FloatType, dims: number[], values: number[]): Value {
  return b.constant(b.fresh('f'), dtype === 'float64' ? Tensor.from(DataType.DOUBLE, dims, Float64Array.from(values)) : Tensor.from(DataType.FLOAT, dims, Float32Array.from(values)));
}
const op = (b: GraphBuilder, type: string, inputs: Array<Value | null>, attrs: Record<string, number | number[] | string> = {}, fl?: string[]) => b.op(type, inputs, attrs, fl ? { floats: fl } : {})[0]!;

/** A pre-LN attention block + GELU(Erf) MLP, heads split by Reshape/Transpose, causal mask by Add. */
const attentionBlock: Build = (b, v, d) => {
  const [T, H, D] = [3, 2, 2];
  const hd = H * D;
  const x = op(b, 'LayerNormalization', [v.x!, v.ln_g!, v.ln_b!], { axis: -1, epsilon: 1e-5 }, ['epsilon']);
  const lin = (h: Value, w: Value, bias: Value) => op(b, 'Add', [op(b, 'MatMul', [h, w]), bias]);
  const split = (h: Value, perm: number[]) => op(b, 'Transpose', [op(b, 'Reshape', [h, ints(b, [0, T, H, D])])], { perm });
  const q = split(lin(x, v.wq!, v.bq!), [0, 2, 1, 3]);
  const kT = split(lin(x, v.wk!, v.bq!), [0, 2, 3, 1]);
  const val = split(lin(x, v.wv!, v.bq!), [0, 2, 1, 3]);
  const mask = floats(b, d, [1, 1, T, T], [0, -1e4, -1e4, 0, 0, -1e4, 0, 0, 0]);
  const scores = op(b, 'Add', [op(b, 'Div', [op(b, 'MatMul', [q, kT]), floats(b, d, [], [Math.sqrt(D)])]), mask]);
  const ctx = op(b, 'MatMul', [op(b, 'Softmax', [scores], { axis: -1 }), val]);
  const merged = op(b, 'Reshape', [op(b, 'Transpose', [ctx], { perm: [0, 2, 1, 3] }), ints(b, [0, T, hd])]);
  const h = op(b, 'Add', [v.x!, lin(merged, v.wo!, v.bq!)]);
  const u = lin(h, v.w1!, v.b1!);
  const gelu = op(b, 'Mul', [op(b, 'Mul', [u, op(b, 'Add', [op(b, 'Erf', [op(b, 'Div', [u, floats(b, d, [], [Math.SQRT2])])]), floats(b, d, [], [1])])]), floats(b, d, [], [0.5])]);
  return op(b, 'Add', [h, op(b, 'MatMul', [gelu, v.w2!])]);
};

interface Case {
  name: string;
  build: Build;
  inputs: Record<string, CheckInput>;
}

const positive = (_i: number, r: () => number) => 0.3 + r();

const cases: Case[] = [
  { name: 'Gather axis 0 (embedding, repeated and negative ids)', build: (b, v) => op(b, 'Gather', [v.w!, ints(b, [1, 3, 1, -1, 0, 3], [2, 3])], { axis: 0 }), inputs: { w: { dims: [5, 3] } } },
  { name: 'Gather axis 1', build: (b, v) => op(b, 'Gather', [v.w!, ints(b, [2, 0, 2], [3])], { axis: 1 }), inputs: { w: { dims: [2, 4, 3] } } },
  { name: 'Gather scalar index', build: (b, v) => op(b, 'Gather', [v.w!, ints(b, [1], [])], { axis: 0 }), inputs: { w: { dims: [3, 4] } } },
  { name: 'LayerNormalization axis -1', build: (b, v) => op(b, 'LayerNormalization', [v.x!, v.g!, v.b!], { axis: -1, epsilon: 1e-3 }, ['epsilon']), inputs: { x: { dims: [2, 3, 5] }, g: { dims: [5] }, b: { dims: [5] } } },
  { name: 'LayerNormalization axis 1, no bias', build: (b, v) => op(b, 'LayerNormalization', [v.x!, v.g!], { axis: 1 }), inputs: { x: { dims: [2, 3, 2] }, g: { dims: [3, 2] } } },
  { name: 'Erf', build: (b, v) => op(b, 'Erf', [v.x!]), inputs: { x: { dims: [3, 4] } } },
  { name: 'Sqrt', build: (b, v) => op(b, 'Sqrt', [v.x!]), inputs: { x: { dims: [2, 3], init: positive } } },
  { name: 'Reciprocal', build: (b, v) => op(b, 'Reciprocal', [v.x!]), inputs: { x: { dims: [2, 3], init: positive } } },
  { name: 'Pow constant exponent', build: (b, v, d) => op(b, 'Pow', [v.x!, floats(b, d, [], [3])]), inputs: { x: { dims: [2, 4] } } },
  { name: 'Pow base and exponent', build: (b, v) => op(b, 'Pow', [v.x!, v.p!]), inputs: { x: { dims: [2, 3], init: positive }, p: { dims: [3] } } },
  { name: 'Where broadcast', build: (b, v) => op(b, 'Where', [b.constant(b.fresh('m'), Tensor.from(DataType.BOOL, [3, 1], Uint8Array.of(1, 0, 1))), v.a!, v.b!]), inputs: { a: { dims: [3, 4] }, b: { dims: [4] } } },
  { name: 'MatMul 4-D batched (attention scores)', build: (b, v) => op(b, 'MatMul', [v.q!, v.k!]), inputs: { q: { dims: [2, 2, 3, 2] }, k: { dims: [2, 2, 2, 3] } } },
  { name: 'MatMul 3-D x 2-D (linear layer)', build: (b, v) => op(b, 'MatMul', [v.x!, v.w!]), inputs: { x: { dims: [2, 3, 4] }, w: { dims: [4, 5] } } },
  {
    name: 'attention block (LayerNorm, heads, causal Add mask, Softmax, GELU Erf)',
    build: attentionBlock,
    inputs: {
      x: { dims: [2, 3, 4] },
      ln_g: { dims: [4] },
      ln_b: { dims: [4] },
      wq: { dims: [4, 4] },
      wk: { dims: [4, 4] },
      wv: { dims: [4, 4] },
      bq: { dims: [4] },
      wo: { dims: [4, 4] },
      w1: { dims: [4, 6] },
      b1: { dims: [6] },
      w2: { dims: [6, 4] },
    },
  },
];

describe('transformer gradient rules match central differences', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const res = await gradCheck(c.build, c.inputs, { opset: 17 });
      expect(res.checked).toBeGreaterThan(0);
      expect(res.error).toBeLessThan(tolerance(res.dtype));
    });
  }
});
