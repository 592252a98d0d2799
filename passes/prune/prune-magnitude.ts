/**
 * prune-magnitude: unstructured magnitude pruning. Zeroes the smallest |w| of the weights of the chosen
 * op types (default Conv, Gemm, MatMul), whether they are initializers or `Constant` nodes.
 *
 *   global: one threshold over all chosen weights (torch `global_unstructured` with L1Unstructured):
 *           k = round(sparsity * sum of sizes) smallest |w| are zeroed;
 *   layer:  each weight tensor zeroes round(sparsity * size) of its own smallest |w|.
 *
 * Ties at the threshold are broken deterministically (earlier weight in graph order, then lower flat
 * index, is pruned first). Biases are not pruned. New tensors are written; shared buffers are never
 * modified, and a weight also read by a node that is not pruned gets its own pruned copy.
 * The pass returns the per-layer sparsity report.
 */
import { DataType } from '../../core/dtype.js';
import { inputError } from '../../core/errors.js';
import { constantOf, Model, Node, Value } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import { definePass } from '../pass.js';
import { elementWidth, replaceConstant } from './constants.js';
import { globalL1Masks, layerL1Masks } from './magnitude.js';
import { matchesAny } from './names.js';

export interface MagnitudeLayer {
  /** Weight tensor name (before pruning). */
  weight: string;
  nodes: string[];
  op: string;
  elements: number;
  zerosBefore: number;
  zerosAfter: number;
  sparsity: number;
}

export interface MagnitudeReport {
  scope: 'global' | 'layer';
  target: number;
  layers: MagnitudeLayer[];
  elements: number;
  zeros: number;
  sparsity: number;
  /** Tensors skipped with the reason. */
  skipped: Array<{ weight: string; reason: string }>;
  /** Weight tensors this pruning set entirely to zero (their layers now output only their bias). */
  wiped?: string[];
}

const FLOATS = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16, DataType.DOUBLE]);

/** Index of the weight input of a node of these op types (the constant operand), or -1. */
export function weightInput(n: Node): number {
  if (n.opType === 'Conv' || n.opType === 'ConvTranspose' || n.opType === 'Gemm') return constantOf(n.input(1)) ? 1 : -1;
  if (n.opType === 'MatMul') return constantOf(n.input(1)) ? 1 : constantOf(n.input(0)) ? 0 : -1;
  return constantOf(n.input(1)) ? 1 : -1;
}

interface Candidate {
  value: Value;
  tensor: Tensor;
  users: Array<{ node: Node; index: number }>;
}

export function collectWeights(model: Model, ops: readonly string[], exclude: readonly string[], skipped: MagnitudeReport['skipped']): Candidate[] {
  const byValue = new Map<Value, Candidate>();
  const opSet = new Set(ops);
  for (const n of model.graph.allNodes()) {
    if (!opSet.has(n.opType) || n.opDomain !== '') continue;
    const i = weightInput(n);
    if (i < 0) continue;
    const v = n.input(i)!;
    const t = constantOf(v)!;
    if (matchesAny(exclude, [n.name, v.name, ...n.outputs.map((o) => o.name)])) {
      skipped.push({ weight: v.name, reason: `excluded (${n.label})` });
      continue;
    }
    if (!FLOATS.has(t.dataType) || elementWidth(t.dataType) === undefined) {
      skipped.push({ weight: v.name, reason: `type ${t.dtype} is not a float type` });
      continue;
    }
    const c = byValue.get(v) ?? { value: v, tensor: t, users: [] };
    c.users.push({ node: n, index: i });
    byValue.set(v, c);
  }
  return [...byValue.values()];
}

/** Zeros over all elements of the weights `prune-magnitude` would consider (e.g. to check a later pass kept them). */
export function weightSparsity(model: Model, ops: readonly string[] = ['Conv', 'Gemm', 'MatMul']): { elements: number; zeros: number; sparsity: number } {
  let elements = 0;
  let zeros = 0;
  for (const c of collectWeights(model, ops, [], [])) {
    const a = c.tensor.toFloat32();
    elements += a.length;
    zeros += countZeros(a);
  }
  return { elements, zeros, sparsity: elements ? zeros / elements : 0 };
}

function countZeros(a: Float32Array): number {
  let z = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === 0) z++;
  return z;
}

/** A copy of `t` with the masked elements set to zero (bit pattern 0 = +0.0 for float types). */
export function zeroMasked(t: Tensor, mask: Uint8Array): Tensor {
  const width = elementWidth(t.dataType)!;
  const src = t.bytes();
  const out = new Uint8Array(src.length);
  out.set(src);
  for (let i = 0; i < mask.length; i++) if (mask[i]) out.fill(0, i * width, (i + 1) * width);
  return Tensor.fromBytes(t.dataType, t.dims, out, t.name);
}

export default definePass<{ sparsity: number; scope: string; ops: string[]; exclude: string[] }, MagnitudeReport>({
  name: 'prune-magnitude',
  description: 'Zero the smallest-magnitude weights of Conv/Gemm/MatMul (global or per-layer L1 threshold)',
  idempotent: false,
  options: {
    sparsity: { type: 'number', description: 'Fraction of the chosen weights to zero, in (0, 1).', default: 0.5, min: 0, max: 1, exclusiveMin: true, exclusiveMax: true },
    scope: { type: 'enum', values: ['global', 'layer'], description: 'One threshold over all weights (global) or one per tensor (layer).', default: 'global' },
    ops: { type: 'string[]', description: 'Op types whose weights are pruned.', default: ['Conv', 'Gemm', 'MatMul'] },
    exclude: { type: 'string[]', description: 'Node, weight or output names to leave untouched (* wildcards).', default: [] },
  },
  run(model, o, ctx) {
    const sparsity = o.sparsity;
    if (!(sparsity > 0 && sparsity < 1)) throw inputError('PRUNE_BAD_SPARSITY', `prune-magnitude: sparsity must be in (0, 1), got ${sparsity}`, { option: 'sparsity' });
    const scope = o.scope as 'global' | 'layer';
    if (scope !== 'global' && scope !== 'layer') throw inputError('PRUNE_BAD_SCOPE', `prune-magnitude: scope must be global or layer, got ${String(scope)}`, { option: 'scope' });
    const skipped: MagnitudeReport['skipped'] = [];
    const cands = collectWeights(model, o.ops, o.exclude, skipped);
    for (const s of skipped) ctx.explain({ node: s.weight, reason: s.reason });
    const arrays = cands.map((c) => c.tensor.toFloat32());
    const masks = scope === 'global' ? globalL1Masks(arrays, sparsity) : layerL1Masks(arrays, sparsity);
    const layers: MagnitudeLayer[] = [];
    let changed = false;
    cands.forEach((c, j) => {
      const a = arrays[j]!;
      const m = masks[j]!;
      const zerosBefore = countZeros(a);
      let newly = 0;
      for (let i = 0; i < m.length; i++) if (m[i] && a[i] !== 0) newly++;
      if (newly > 0) {
        replaceConstant(c.value, c.users, zeroMasked(c.tensor, m));
        changed = true;
      }
      const zerosAfter = zerosBefore + newly;
      layers.push({ weight: c.value.name, nodes: c.users.map((u) => u.node.name ?? u.node.label), op: c.users[0]!.node.opType, elements: a.length, zerosBefore, zerosAfter, sparsity: a.length ? zerosAfter / a.length : 0 });
    });
    const elements = layers.reduce((x, l) => x + l.elements, 0);
    const zeros = layers.reduce((x, l) => x + l.zerosAfter, 0);
    const report: MagnitudeReport = { scope, target: sparsity, layers, elements, zeros, sparsity: elements ? zeros / elements : 0, skipped };
    // one global threshold can take a whole tensor whose weights are all small (a fixed filterbank,
    // a layer with a small scale): its op then outputs zeros, which the user should hear about
    const wiped = layers.filter((l) => l.elements > 0 && l.zerosAfter === l.elements && l.zerosBefore < l.elements);
    if (wiped.length) {
      report.wiped = wiped.map((l) => l.weight);
      ctx.logger.warn(`prune-magnitude: ${wiped.length} weight tensor${wiped.length > 1 ? 's are' : ' is'} now all zeros (${wiped.slice(0, 5).map((l) => `${l.weight} of ${l.nodes[0]}`).join(', ')}${wiped.length > 5 ? ', ...' : ''}): ${scope === 'global' ? 'the global threshold is above all their weights; use scope layer, or exclude them' : 'lower the sparsity'}`);
    }
    return { report, changed, stats: { weights: layers.length, elements, zeroed: zeros - layers.reduce((x, l) => x + l.zerosBefore, 0), sparsity: Number(report.sparsity.toFixed(4)) } };
  },
});
