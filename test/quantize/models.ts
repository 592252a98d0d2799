/**
 * Small models and calibration sets for the quantization tests: Conv+Relu, MatMul+Add, a residual
 * Add, and a HardSwish region, with seeded random weights (Constant nodes or initializers).
 */
import { GraphBuilder } from '../../ir/builder.js';
import type { Model, Value } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import { mulberry32 } from '../../data/index.js';
import type { Sample } from '../../data/index.js';

export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    // Box-Muller
    const u = Math.max(r(), 1e-9);
    const v = r();
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

const prod = (d: number[]) => d.reduce((a, b) => a * b, 1);

function weight(b: GraphBuilder, name: string, dims: number[], seed: number, asConstant: boolean, scale?: number): Value {
  const fanIn = prod(dims.slice(1));
  const t = Tensor.from('float32', dims, randn(prod(dims), seed, scale ?? Math.sqrt(2 / fanIn)));
  return asConstant ? b.constant(name, t) : b.initializer(name, t);
}

/** x[1,4,8,8] -> Conv 3x3 (8) + bias -> Relu -> Conv 1x1 (16) + bias -> y. Weights in Constant nodes. */
export function convRelu(opset = 13): Model {
  const b = new GraphBuilder({ opset });
  const x = b.input('x', 'float32', [1, 4, 8, 8]);
  const w1 = weight(b, 'w1', [8, 4, 3, 3], 1, true);
  const b1 = b.constant('b1', Tensor.from('float32', [8], randn(8, 2, 0.1)));
  const [c1] = b.op('Conv', [x, w1, b1], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  const [r1] = b.op('Relu', [c1!], {}, { name: 'relu1' });
  const w2 = weight(b, 'w2', [16, 8, 1, 1], 3, true);
  const b2 = b.initializer('b2', Tensor.from('float32', [16], randn(16, 4, 0.1)));
  const [c2] = b.op('Conv', [r1!, w2, b2], {}, { name: 'conv2' });
  b.output(c2!, 'y', 'float32', [1, 16, 8, 8]);
  return b.model();
}

/** x[1,N,16] -> MatMul W[16,32] -> Add b[32] -> y (dynamic N). */
export function matmulAdd(opset = 13): Model {
  const b = new GraphBuilder({ opset });
  const x = b.input('x', 'float32', [1, 'N', 16]);
  const w = weight(b, 'w', [16, 32], 5, false, 0.3);
  const [m] = b.op('MatMul', [x, w], {}, { name: 'matmul' });
  const bias = b.initializer('bias', Tensor.from('float32', [32], randn(32, 6, 0.1)));
  const [y] = b.op('Add', [m!, bias], {}, { name: 'add_bias' });
  b.output(y!, 'y', 'float32', [1, 'N', 32]);
  return b.model();
}

/** x -> conv1 -> relu -> conv2; add(conv2, relu) -> conv3 -> y (a residual Add between int8 ops). */
export function residual(opset = 13): Model {
  const b = new GraphBuilder({ opset });
  const x = b.input('x', 'float32', [1, 8, 6, 6]);
  const [c1] = b.op('Conv', [x, weight(b, 'w1', [8, 8, 3, 3], 7, false)], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  const [r1] = b.op('Relu', [c1!], {}, { name: 'relu1' });
  const [c2] = b.op('Conv', [r1!, weight(b, 'w2', [8, 8, 3, 3], 8, false)], { pads: [1, 1, 1, 1] }, { name: 'conv2' });
  const [s] = b.op('Add', [c2!, r1!], {}, { name: 'residual_add' });
  const [c3] = b.op('Conv', [s!, weight(b, 'w3', [16, 8, 1, 1], 9, false)], {}, { name: 'conv3' });
  b.output(c3!, 'y', 'float32', [1, 16, 6, 6]);
  return b.model();
}

/** x -> conv1 -> HardSwish -> Mul by 0.5 -> conv2 -> y: a float region of two ops between int8 convs. */
export function hardswishRegion(opset = 14): Model {
  const b = new GraphBuilder({ opset });
  const x = b.input('x', 'float32', [1, 4, 8, 8]);
  const [c1] = b.op('Conv', [x, weight(b, 'w1', [8, 4, 3, 3], 10, true)], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  const [h] = b.op('HardSwish', [c1!], {}, { name: 'hswish' });
  const half = b.constant('half', Tensor.from('float32', [], Float32Array.of(0.5)));
  const [m] = b.op('Mul', [h!, half], {}, { name: 'scale_half' });
  const [c2] = b.op('Conv', [m!, weight(b, 'w2', [8, 8, 1, 1], 11, true)], {}, { name: 'conv2' });
  b.output(c2!, 'y', 'float32', [1, 8, 8, 8]);
  return b.model();
}

/** A calibration source of `count` seeded samples for input `name` (dims may vary per sample). */
export function gaussianSource(name: string, dims: (i: number) => number[], count: number, seed = 100, scale = 1): () => AsyncIterable<Sample> {
  return async function* () {
    for (let i = 0; i < count; i++) {
      const d = dims(i);
      yield { id: `gen#${i}`, feed: { [name]: { type: 'float32', dims: d, data: randn(prod(d), seed + i, scale) } } };
    }
  };
}
