/**
 * A fixed reference workload: a small convolutional network with deterministic weights that the CI
 * gate times in the same process, interleaved with the model under test. Storing a model's latency
 * as a ratio to this workload makes baselines portable between machines of different speed: both
 * numbers scale together, and the ratio stays put.
 *
 * The network must never change: a baseline's ratio is only comparable to ratios measured against the
 * same workload, so it carries a version (`REFERENCE_WORKLOAD_VERSION`) that baselines record.
 */
import { GraphBuilder } from '../ir/builder.js';
import { Tensor } from '../core/tensor.js';
import { serializeModel } from '../onnx/index.js';
import { mulberry32 } from '../data/generate.js';
import type { Feed } from '../core/host-tensor.js';

export const REFERENCE_WORKLOAD_VERSION = 'conv3x3-32ch-56px/1';

/** Weights in [-0.5, 0.5) from the shared deterministic generator. */
function seeded(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() - 0.5;
}

function weights(rand: () => number, dims: number[], scale: number): Float32Array {
  const n = dims.reduce((a, b) => a * b, 1);
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = rand() * scale;
  return w;
}

let cached: Uint8Array | undefined;

/** The reference model's bytes (built once per process). */
export function referenceWorkloadModel(): Uint8Array {
  if (cached) return cached;
  const rand = seeded(20261123);
  const b = new GraphBuilder({ opset: 17, name: 'onnxforge_reference_workload' });
  const x = b.input('x', 'float32', [1, 32, 56, 56]);
  let h = x;
  for (let i = 0; i < 3; i++) {
    const w = b.initializer(`w${i}`, Tensor.from('float32', [32, 32, 3, 3], weights(rand, [32, 32, 3, 3], 0.2)));
    const bias = b.initializer(`b${i}`, Tensor.from('float32', [32], weights(rand, [32], 0.1)));
    [h] = b.op('Conv', [h, w, bias], { pads: [1, 1, 1, 1], kernel_shape: [3, 3] });
    [h] = b.op('Relu', [h!]);
  }
  const [pooled] = b.op('GlobalAveragePool', [h!]);
  const [flat] = b.op('Flatten', [pooled!], { axis: 1 });
  const fc = b.initializer('fc', Tensor.from('float32', [32, 256], weights(rand, [32, 256], 0.2)));
  const [y] = b.op('MatMul', [flat!, fc]);
  b.output(y!, 'y', 'float32', [1, 256]);
  cached = serializeModel(b.model());
  return cached;
}

/** The reference model's input (fixed). */
export function referenceWorkloadFeed(): Feed {
  const rand = seeded(7);
  return { x: { type: 'float32', dims: [1, 32, 56, 56], data: weights(rand, [1, 32, 56, 56], 2) } };
}
