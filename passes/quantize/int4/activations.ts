/**
 * Second moments of layer inputs on calibration data: for each named float tensor X whose last axis
 * has K elements, H = sum over every row x (all leading axes flattened) of x x^T, a K x K matrix in
 * float64. GPTQ uses H as the Hessian of a layer's squared output error; tr(D H D^T) is the squared
 * output error of a weight change D on the same data.
 */
import { inputError } from '../../../core/errors.js';
import type { Feed } from '../../../core/host-tensor.js';
import { augmentModel } from '../../../calibration/collect.js';
import type { Model } from '../../../ir/ir.js';
import type { Runner } from '../../../runtime/runner.js';

export interface InputMoments {
  K: number;
  /** [K, K], symmetric. */
  hessian: Float64Array;
  rows: number;
}

function accumulate(h: Float64Array, K: number, x: Float32Array): number {
  const rows = x.length / K;
  for (let r = 0; r < rows; r++) {
    const base = r * K;
    for (let i = 0; i < K; i++) {
      const xi = x[base + i]!;
      if (xi === 0) continue;
      const hi = i * K;
      for (let j = i; j < K; j++) h[hi + j]! += xi * x[base + j]!;
    }
  }
  return rows;
}

/** H for each tensor in `tensors` (name -> K) over `feeds`, running the model once per feed. */
export async function collectInputMoments(model: Model, tensors: ReadonlyMap<string, number>, feeds: readonly Feed[], runner: Runner, tick?: () => void): Promise<Map<string, InputMoments>> {
  const out = new Map<string, InputMoments>();
  for (const [name, K] of tensors) out.set(name, { K, hessian: new Float64Array(K * K), rows: 0 });
  if (tensors.size === 0 || feeds.length === 0) return out;
  const session = await runner.open(augmentModel(model, [...tensors.keys()]), { graphOptimizationLevel: 'disabled' }, '(model with layer inputs exposed)');
  try {
    for (const feed of feeds) {
      const res = await session.run(feed, [...tensors.keys()]);
      for (const [name, m] of out) {
        const t = res[name];
        if (!t || !(t.data instanceof Float32Array)) throw inputError('INT4_CALIB_NOT_FLOAT', `layer input '${name}' is not a float32 tensor on the calibration data`, { tensor: name });
        if (t.dims[t.dims.length - 1] !== m.K) throw inputError('INT4_CALIB_SHAPE', `layer input '${name}' has last dim ${t.dims[t.dims.length - 1]} on the calibration data, the weight expects ${m.K}`, { tensor: name });
        m.rows += accumulate(m.hessian, m.K, t.data);
      }
      tick?.();
    }
  } finally {
    await session.dispose();
  }
  for (const m of out.values()) {
    const K = m.K;
    for (let i = 0; i < K; i++) for (let j = i + 1; j < K; j++) m.hessian[j * K + i] = m.hessian[i * K + j]!;
  }
  return out;
}
