import { checkModel } from '../../../ir/checker.js';
import type { Model } from '../../../ir/ir.js';
import { cloneModel } from '../../../onnx/index.js';
import { optimize, OptimizeReport } from '../../../passes/manager.js';
import { step } from '../../../passes/pipeline.js';
import '../../../passes/registry.js';
import type { Feed } from '../../../core/host-tensor.js';
import { createSessionFromModel } from '../../../runtime/from-model.js';

export async function runPass(model: Model, name: string, options: Record<string, unknown> = {}): Promise<OptimizeReport> {
  return optimize(model, [step(name, options)], { maxIterations: 1 });
}

export function ops(model: Model): string[] {
  return [...model.graph.allNodes()].map((n) => n.opType);
}

export async function outputsOf(model: Model, feed: Feed): Promise<Feed> {
  const s = await createSessionFromModel(model, { graphOptimizationLevel: 'disabled', logSeverityLevel: 3 });
  try {
    return await s.run(feed);
  } finally {
    await s.dispose();
  }
}

/** Runs the pass on a copy and returns outputs before/after plus the transformed model. */
export async function beforeAfter(model: Model, name: string, feed: Feed, options: Record<string, unknown> = {}) {
  const before = await outputsOf(model, feed);
  const copy = cloneModel(model);
  const report = await runPass(copy, name, options);
  const issues = checkModel(copy);
  const after = await outputsOf(copy, feed);
  return { before, after, model: copy, report, issues };
}

export function maxAbsDiff(a: Feed, b: Feed): number {
  let m = 0;
  for (const k of Object.keys(b)) {
    const x = a[k]!.data as ArrayLike<number>;
    const y = b[k]!.data as ArrayLike<number>;
    if (x.length !== y.length) return Infinity;
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(Number(x[i]) - Number(y[i])));
  }
  return m;
}

export function f32(dims: number[], seed = 1): { type: 'float32'; dims: number[]; data: Float32Array } {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    data[i] = (s / 2147483648) * 2 - 1;
  }
  return { type: 'float32', dims, data };
}
