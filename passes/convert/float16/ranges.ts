/**
 * Activation ranges for the float16 plan: min and max of every requested float32 tensor over the
 * samples, reduced inside onnxruntime (calibration/augment.ts augmentModelRanges: min, max and sum
 * of each tensor, the sum telling NaN reliably; one small output per run). Unlike calibration for
 * int8, non-finite values are data here, not an error:
 * a tensor that reaches infinity or NaN in float32 (an attention mask times finfo.min on an
 * out-of-domain input) is recorded with an infinite range, so the plan keeps it float32. Samples on
 * which the model's own outputs are not finite are skipped (and counted): they are outside its domain.
 */
import { inputError } from '../../../core/errors.js';
import type { Model } from '../../../ir/ir.js';
import { augmentModelRanges, checkFiniteFeed, RANGE_OUTPUT, widenRanges } from '../../../calibration/augment.js';
import type { Sample } from '../../../data/sample.js';
import type { Runner } from '../../../runtime/runner-types.js';
import type { TensorRange } from './plan.js';
import { evaluateNode, hasKernel } from '../../../analysis/eval/index.js';
import { constantOf, type Value } from '../../../ir/ir.js';
import type { Tensor } from '../../../core/tensor.js';

export async function measureRanges(model: Model, tensors: readonly string[], source: () => AsyncIterable<Sample>, onSample: (() => void) | undefined, runner: Runner): Promise<{ ranges: Map<string, TensorRange>; samples: number; skipped: number }> {
  const ranges = new Map<string, TensorRange>(tensors.map((t) => [t, { min: Infinity, max: -Infinity }]));
  let samples = 0;
  let skipped = 0;
  if (tensors.length === 0) return { ranges, samples, skipped };
  const outputNames = new Set(model.graph.outputs.map((v) => v.name));
  const outputs = tensors.flatMap((t, k) => (outputNames.has(t) ? [k] : []));
  // no spinning threads between ops: under load they fight other processes (int4/activations.ts)
  const session = await runner.open(augmentModelRanges(model, tensors), { graphOptimizationLevel: 'all', allowSpinning: false }, '(range model)');
  try {
    for await (const s of source()) {
      checkFiniteFeed(s.feed, s.id);
      const out = (await session.run(s.feed, [RANGE_OUTPUT]))[RANGE_OUTPUT]!.data as Float32Array;
      // a sample on which the float32 model's own outputs are not finite is outside its domain
      if (outputs.some((k) => !Number.isFinite(out[3 * k]!) || !Number.isFinite(out[3 * k + 1]!) || out[3 * k + 2] !== out[3 * k + 2])) {
        skipped++;
        continue;
      }
      // NaN anywhere in the tensor: the widest range
      widenRanges(ranges, tensors, out);
      samples++;
      onSample?.();
    }
  } finally {
    await session.dispose().catch(() => undefined);
  }
  if (samples === 0 && skipped > 0) throw inputError('FP16_RANGE_NONFINITE', `the float32 model gives non-finite outputs on all ${skipped} samples the ranges were to be measured on; give in-domain samples with --calibration SPEC`);
  if (samples === 0) throw inputError('FP16_EMPTY_CALIBRATION', 'the calibration set is empty: the data source gave no samples');
  return { ranges, samples, skipped };
}

/**
 * Exact ranges of the tensors among `names` that are computed from constants only, by the TypeScript
 * evaluator (e.g. the int4 step's losslessly compacted constants, rebuilt from uint8 codes by
 * Cast/Mul/Add, which onnxruntime folds at load): ranges measured before such a rewrite do not name
 * them. Tensors that read data, or an op the evaluator lacks, are left out.
 */
export function constantRanges(model: Model, names: readonly string[]): Map<string, TensorRange> {
  const g = model.graph;
  const opset = model.opset('') ?? 1;
  const byName = new Map<string, Value>();
  for (const n of g.nodes) for (const o of n.outputs) byName.set(o.name, o);
  const memo = new Map<Value, Tensor | null>();
  const valueOf = (v: Value): Tensor | null => {
    const c = constantOf(v);
    if (c) return c;
    if (memo.has(v)) return memo.get(v)!;
    memo.set(v, null);
    const p = v.producer;
    if (!p || p.graph !== g || p.opDomain !== '' || !hasKernel(p)) return null;
    const ins: Array<Tensor | null> = [];
    for (const x of p.inputs) {
      const t = x ? valueOf(x) : null;
      if (x && !t) return null;
      ins.push(t);
    }
    const outs = evaluateNode(p, ins, opset);
    if (!outs) return null;
    p.outputs.forEach((o, i) => memo.set(o, outs[i] ?? null));
    return memo.get(v)!;
  };
  const out = new Map<string, TensorRange>();
  for (const name of names) {
    const v = byName.get(name);
    const t = v ? valueOf(v) : null;
    if (!t) continue;
    const d = t.toFloat32();
    const r = { min: Infinity, max: -Infinity };
    for (let i = 0; i < d.length; i++) {
      const x = d[i]!;
      r.min = Math.min(r.min, x !== x ? -Infinity : x);
      r.max = Math.max(r.max, x !== x ? Infinity : x);
    }
    out.set(name, r);
  }
  return out;
}
