/**
 * Test helpers for fusions: random tensors, ORT runs of IR models, and the numeric comparison of an
 * unfused model against its fused version (relative tolerance on the largest output magnitude).
 */
import { expect } from 'vitest';
import { DataType } from '../../../core/dtype.js';
import { Model } from '../../../ir/ir.js';
import { Tensor } from '../../../core/tensor.js';
import { cloneModel } from '../../../onnx/index.js';
import { checkModel } from '../../../ir/checker.js';
import type { Feed, HostTensor } from '../../../core/host-tensor.js';
import { createSessionFromModel } from '../../../runtime/from-model.js';
import type { Pass } from '../../../passes/pass.js';
import { testContext } from './ctx.js';

/** Deterministic pseudo-random floats in [lo, hi). */
export function rand(n: number, seed = 1, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = lo + ((s >>> 8) / 16777216) * (hi - lo);
  }
  return out;
}

export function randTensor(dims: number[], seed = 1, lo = -1, hi = 1): Tensor {
  return Tensor.from(DataType.FLOAT, dims, rand(dims.reduce((a, b) => a * b, 1), seed, lo, hi));
}

export function floatFeed(name: string, dims: number[], seed = 7, lo = -3, hi = 3): Feed {
  const t: HostTensor = { type: 'float32', dims, data: rand(dims.reduce((a, b) => a * b, 1), seed, lo, hi) };
  return { [name]: t };
}

export async function runModel(model: Model, feed: Feed): Promise<Feed> {
  const s = await createSessionFromModel(model, { graphOptimizationLevel: 'disabled', logSeverityLevel: 3 });
  try {
    return await s.run(feed);
  } finally {
    await s.dispose();
  }
}

/** Max |a-b| / max(1, max|a|) over all outputs. */
export function relativeError(a: Feed, b: Feed): number {
  let worst = 0;
  for (const [k, ta] of Object.entries(a)) {
    const tb = b[k];
    expect(tb, `output ${k} present`).toBeDefined();
    expect(tb!.dims).toEqual(ta.dims);
    const x = ta.data as Float32Array;
    const y = tb!.data as Float32Array;
    let scale = 1;
    for (let i = 0; i < x.length; i++) scale = Math.max(scale, Math.abs(x[i]!));
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!) / scale);
  }
  return worst;
}

export function opCount(model: Model, op: string): number {
  let n = 0;
  for (const node of model.graph.allNodes()) if (node.opType === op) n++;
  return n;
}

/**
 * Runs `pass` on a copy of `model`, checks the result with the checker, compares outputs with ORT
 * against the original on `feed` (relative tolerance `tol`) and returns the transformed model.
 */
export async function applyAndCompare(pass: Pass<any>, model: Model, feed: Feed, options: Record<string, unknown> = {}, tol = 1e-5) {
  const before = await runModel(model, feed);
  const fused = cloneModel(model);
  const ctx = testContext(pass.name);
  const opts = { ...defaults(pass), ...options };
  const result = await pass.run(fused, opts, ctx);
  const issues = checkModel(fused);
  expect(issues).toEqual([]);
  const after = await runModel(fused, feed);
  expect(relativeError(before, after)).toBeLessThan(tol);
  return { model: fused, result, ctx };
}

export function defaults(pass: Pass<any>): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, spec] of Object.entries(pass.options)) if (spec.default !== undefined) o[k] = spec.default;
  return o;
}
