/**
 * Activation ranges for the float16 plan: min and max of every requested float32 tensor over the
 * samples, reduced inside onnxruntime (the calibration collector's ReduceMin/ReduceMax model with
 * sums, which tell NaN reliably: three small outputs per run). Unlike calibration for int8, non-finite values are data here, not an error:
 * a tensor that reaches infinity or NaN in float32 (an attention mask times finfo.min on an
 * out-of-domain input) is recorded with an infinite range, so the plan keeps it float32. Samples on
 * which the model's own outputs are not finite are skipped (and counted): they are outside its domain.
 */
import { inputError } from '../../../core/errors.js';
import type { Model } from '../../../ir/ir.js';
import { augmentModelReduced, checkFiniteFeed, EXTREME_OUTPUTS, SUM_OUTPUT, widenRanges } from '../../../calibration/augment.js';
import type { Sample } from '../../../data/sample.js';
import type { Runner } from '../../../runtime/runner-types.js';
import type { TensorRange } from './plan.js';

export async function measureRanges(model: Model, tensors: readonly string[], source: () => AsyncIterable<Sample>, onSample: (() => void) | undefined, runner: Runner): Promise<{ ranges: Map<string, TensorRange>; samples: number; skipped: number }> {
  const ranges = new Map<string, TensorRange>(tensors.map((t) => [t, { min: Infinity, max: -Infinity }]));
  let samples = 0;
  let skipped = 0;
  if (tensors.length === 0) return { ranges, samples, skipped };
  const outputNames = new Set(model.graph.outputs.map((v) => v.name));
  const outputs = tensors.flatMap((t, k) => (outputNames.has(t) ? [k] : []));
  // no spinning threads between ops: under load they fight other processes (int4/activations.ts)
  const session = await runner.open(augmentModelReduced(model, tensors, { sums: true }), { graphOptimizationLevel: 'all', allowSpinning: false }, '(range model)');
  try {
    for await (const s of source()) {
      checkFiniteFeed(s.feed, s.id);
      const out = await session.run(s.feed, [...EXTREME_OUTPUTS, SUM_OUTPUT]);
      const mins = out[EXTREME_OUTPUTS[0]]!.data as Float32Array;
      const maxs = out[EXTREME_OUTPUTS[1]]!.data as Float32Array;
      // a sample on which the float32 model's own outputs are not finite is outside its domain
      const sums = out[SUM_OUTPUT]!.data as Float32Array;
      if (outputs.some((k) => !Number.isFinite(mins[k]!) || !Number.isFinite(maxs[k]!) || sums[k] !== sums[k])) {
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
