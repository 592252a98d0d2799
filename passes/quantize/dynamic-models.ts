/**
 * Small float models where dynamic INT8 is expected to win (used by the benchmark and the tests):
 * a batch-1 MLP of MatMul + Add + Relu layers and a single LSTM layer, with seeded random weights
 * (uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)], as common initializers do).
 */
import { DataType } from '../../core/dtype.js';
import type { Model } from '../../ir/ir.js';
import { GraphBuilder } from '../../ir/builder.js';
import { Tensor } from '../../core/tensor.js';

/** Deterministic uniform numbers in [-a, a] (xorshift32). */
export function seededUniform(n: number, a: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * a;
  }
  return out;
}

/** x [batch, dims[0]] -> MatMul/Add/Relu per layer (no Relu after the last) -> y [batch, dims.at(-1)]. */
export function buildMlp(dims: readonly number[], batch: number | string = 1, seed = 7): Model {
  const b = new GraphBuilder({ opset: 13 });
  let x = b.input('x', 'float32', [batch, dims[0]!]);
  for (let i = 0; i + 1 < dims.length; i++) {
    const [k, n] = [dims[i]!, dims[i + 1]!];
    const w = b.initializer(`fc${i}.w`, Tensor.from(DataType.FLOAT, [k, n], seededUniform(k * n, 1 / Math.sqrt(k), seed + i)));
    const bias = b.initializer(`fc${i}.b`, Tensor.from(DataType.FLOAT, [n], seededUniform(n, 1 / Math.sqrt(k), seed + 100 + i)));
    [x] = b.op('MatMul', [x, w]) as [typeof x];
    [x] = b.op('Add', [x, bias]) as [typeof x];
    if (i + 2 < dims.length) [x] = b.op('Relu', [x]) as [typeof x];
  }
  b.output(x, 'y');
  return b.model();
}

/** X [steps, batch, input] -> LSTM(hidden) -> Y [steps, 1, batch, hidden]. */
export function buildLstm(input: number, hidden: number, steps: number | string, batch = 1, seed = 11): Model {
  const b = new GraphBuilder({ opset: 14 });
  const x = b.input('x', 'float32', [steps, batch, input]);
  const a = 1 / Math.sqrt(hidden);
  const W = b.initializer('W', Tensor.from(DataType.FLOAT, [1, 4 * hidden, input], seededUniform(4 * hidden * input, a, seed)));
  const R = b.initializer('R', Tensor.from(DataType.FLOAT, [1, 4 * hidden, hidden], seededUniform(4 * hidden * hidden, a, seed + 1)));
  const B = b.initializer('B', Tensor.from(DataType.FLOAT, [1, 8 * hidden], seededUniform(8 * hidden, a, seed + 2)));
  const [y] = b.op('LSTM', [x, W, R, B], { hidden_size: hidden });
  b.output(y!, 'y');
  return b.model();
}
