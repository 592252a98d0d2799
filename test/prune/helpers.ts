/** Helpers for pruning tests: seeded weights, a minimal pass context, and onnxruntime runs. */
import { GraphBuilder } from '../../ir/builder.js';
import { Model, Value } from '../../ir/ir.js';
import { serializeModel } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import type { Explanation, PassContext } from '../../passes/pass.js';
import { bareContext } from '../../passes/bare-context.js';
import { createSession } from '../../runtime/session.js';
import type { Feed } from '../../core/host-tensor.js';
import { mulberry32 } from '../../data/generate.js';

/**
 * prune-channels options that were the defaults before the fast global setting became them: the
 * same ratio in every group, no FLOP cost, no cap, no rounding. Tests about per-group behaviour pass
 * them explicitly.
 */
export const PER_LAYER = { scope: 'layer', cost: 'none', maxRatio: 1, roundTo: 1 } as const;

/** Deterministic PRNG (mulberry32), shared with the generated-input data source. */
export const rng = mulberry32;

/** Random float32 values in [-1, 1), with every element of the listed output channels zeroed. */
export function weights(dims: number[], seed: number, zeroChannels: number[] = [], axis = 0): Float32Array {
  const r = rng(seed);
  const n = dims.reduce((a, b) => a * b, 1);
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) w[i] = r() * 2 - 1;
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const c = dims[axis]!;
  for (let o = 0; o < outer; o++) for (const z of zeroChannels) w.fill(0, (o * c + z) * inner, (o * c + z + 1) * inner);
  return w;
}

export function f32(dims: number[], data: Float32Array | number[]): Tensor {
  return Tensor.from('float32', dims, data instanceof Float32Array ? data : Float32Array.from(data));
}

/** Adds a weight either as an initializer or as a Constant node (the PaddleOCR style). */
export function weight(b: GraphBuilder, name: string, t: Tensor, asConstant = true): Value {
  return asConstant ? b.constant(name, t) : b.initializer(name, t);
}

export interface TestContext extends PassContext {
  notes: Explanation[];
}

export function testContext(pass = 'test'): TestContext {
  const notes: Explanation[] = [];
  return {
    ...bareContext(),
    explain: (e) => notes.push({ pass, ...e }),
    explaining: true,
    notes,
  };
}

export function feedFor(dims: number[], seed: number, name = 'x'): Feed {
  const r = rng(seed);
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = r() * 2 - 1;
  return { [name]: { type: 'float32', dims, data } };
}

/** Runs a model with onnxruntime (optimizations off, so the graph runs as written). */
export async function run(model: Model, feed: Feed): Promise<Record<string, { dims: number[]; data: Float32Array }>> {
  const s = await createSession(serializeModel(model), { graphOptimizationLevel: 'disabled' });
  try {
    const out = await s.run(feed);
    const res: Record<string, { dims: number[]; data: Float32Array }> = {};
    for (const [k, v] of Object.entries(out)) res[k] = { dims: v.dims.map(Number), data: v.data as Float32Array };
    return res;
  } finally {
    await s.dispose();
  }
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
