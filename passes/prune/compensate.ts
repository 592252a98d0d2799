/**
 * Bias compensation for removed channels, from calibration data. A consumer reads input channel c
 * through W[:, c]; when c is removed, its mean contribution is lost. With m_c the mean of input
 * channel c over the calibration samples and all positions, the consumer's bias gains
 *
 *   Conv:        b'[o] = b[o] + sum_{c removed} m_c * sum_k W[o, c, k]
 *   Gemm/MatMul: b'[u] = b[u] + sum_{f removed} m_f * W[f, u]      (per input feature f)
 *
 * so the expected output is kept (exact when the removed channel is constant, up to zero padding at
 * borders). Only the mean is recovered, not the channel's variation.
 */
import { DataType } from '../../core/dtype.js';
import { Model, Node, Value } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import type { Sample } from '../../data/index.js';
import { augmentModel } from '../../calibration/collect.js';
import type { Runner } from '../../runtime/runner.js';
import { constantInput, setConstantInput } from './constants.js';

/** A consumer whose input channels along `axis` of weight input 1 shrink to `kept`. */
export interface ConsumerCut {
  node: Node;
  input: Value;
  /** Original weight (before slicing). */
  weight: Tensor;
  /** Axis of the weight that runs over input channels/features. */
  axis: number;
  kept: number[];
  /** Output units of the consumer that pruning keeps (its own output channels may shrink too). */
  outKept: number[];
}

/** Per-channel means of `values` (channel axis 1 for rank >= 3 tensors, the last axis for 2-D). */
export async function channelMeans(model: Model, values: readonly Value[], samples: AsyncIterable<Sample>, limit: number, runner: Runner): Promise<Map<Value, Float64Array>> {
  const names = [...new Set(values.map((v) => v.name))];
  const aug = augmentModel(model, names);
  const s = await runner.open(aug, { graphOptimizationLevel: 'disabled' }, '(pruning calibration)');
  const sums = new Map<string, Float64Array>();
  const counts = new Map<string, number>();
  try {
    let n = 0;
    for await (const sample of samples) {
      if (n++ >= limit) break;
      const out = await s.run(sample.feed, names);
      for (const name of names) {
        const t = out[name];
        if (!t || t.type !== 'float32') continue;
        const d = t.data as Float32Array;
        const dims = t.dims.map(Number);
        const axis = dims.length >= 3 ? 1 : dims.length - 1;
        const c = dims[axis]!;
        const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
        const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
        const acc = sums.get(name) ?? new Float64Array(c);
        for (let o = 0; o < outer; o++) for (let k = 0; k < c; k++) {
          let sum = 0;
          const base = (o * c + k) * inner;
          for (let i = 0; i < inner; i++) sum += d[base + i]!;
          acc[k]! += sum;
        }
        sums.set(name, acc);
        counts.set(name, (counts.get(name) ?? 0) + outer * inner);
      }
    }
  } finally {
    await s.dispose();
  }
  const res = new Map<Value, Float64Array>();
  for (const v of values) {
    const acc = sums.get(v.name);
    const n = counts.get(v.name);
    if (acc && n) res.set(v, acc.map((x) => x / n));
  }
  return res;
}

/**
 * Adds each cut's lost mean contribution to its consumer's bias; runs after the rewrite (the bias then
 * has the consumer's kept output units). Returns how many consumers changed.
 */
export function compensate(cuts: readonly ConsumerCut[], means: Map<Value, Float64Array>, model: Model): number {
  let changed = 0;
  for (const cut of cuts) {
    const m = means.get(cut.input);
    if (!m) continue;
    const w = cut.weight.toFloat32();
    const dims = cut.weight.dims;
    const keep = new Set(cut.kept);
    const isConv = cut.node.opType === 'Conv' || cut.node.opType === 'ConvTranspose';
    const units = isConv ? (cut.node.opType === 'Conv' ? dims[0]! : dims[1]!) : dims[1 - cut.axis]!;
    const nIn = dims[cut.axis]!;
    if (m.length !== nIn) continue;
    const delta = new Float64Array(units);
    const k = dims.slice(2).reduce((a, b) => a * b, 1);
    for (let c = 0; c < nIn; c++) {
      if (keep.has(c) || m[c] === 0) continue;
      for (let u = 0; u < units; u++) {
        let s = 0;
        if (cut.node.opType === 'Conv') for (let j = 0; j < k; j++) s += w[(u * nIn + c) * k + j]!;
        else if (cut.node.opType === 'ConvTranspose') for (let j = 0; j < k; j++) s += w[(c * units + u) * k + j]!;
        else s = cut.axis === 0 ? w[c * units + u]! : w[u * nIn + c]!;
        delta[u]! += s * m[c]!;
      }
    }
    if (cut.node.opType === 'Gemm') {
      if (cut.node.getFloat('beta', 1) !== 1) continue;
      const alpha = cut.node.getFloat('alpha', 1);
      for (let u = 0; u < units; u++) delta[u]! *= alpha;
    }
    if (!delta.some((x) => x !== 0)) continue;
    const biasIndex = 2;
    if (cut.node.opType === 'MatMul') continue; // no bias input to carry it
    const old = cut.node.input(biasIndex) ? constantInput(cut.node, biasIndex) : undefined;
    if (cut.node.input(biasIndex) && !old) continue;
    const outs = cut.outKept;
    if (old && (old.dataType !== DataType.FLOAT || old.size !== outs.length)) continue;
    const b = new Float32Array(outs.length);
    const ob = old?.toFloat32();
    outs.forEach((u, j) => (b[j] = (ob ? ob[j]! : 0) + delta[u]!));
    const t = Tensor.from(DataType.FLOAT, [outs.length], b);
    if (old) setConstantInput(cut.node, biasIndex, t, 'compensated');
    else {
      const v = cut.node.graph!.addInitializer(t, model.names.fresh(`${cut.node.name ?? 'node'}_bias`));
      cut.node.setInput(biasIndex, v);
    }
    changed++;
  }
  return changed;
}
