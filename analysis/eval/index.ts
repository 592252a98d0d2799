/**
 * A small TypeScript evaluator for constant folding: runs one node on constant inputs with the kernels
 * of `ops.ts`. It answers `undefined` (never guesses) when an op, attribute or element type is not
 * covered, so callers can fall back to onnxruntime.
 */
import type { Node } from '../../ir/ir.js';
import type { Tensor } from '../../core/tensor.js';
import { KERNELS } from './ops.js';
import { EValue, fromTensor, isEvaluableType, toTensor } from './values.js';

export { KERNELS, broadcastDims, sliceAxis } from './ops.js';
export type { Kernel, EvalContext } from './ops.js';
export { fromTensor, toTensor, isEvaluableType } from './values.js';
export type { EValue } from './values.js';

/** Inputs larger than this many elements are left to onnxruntime (JS loops would be slow). */
export const MAX_EVAL_ELEMENTS = 1 << 20;

export function hasKernel(node: Node): boolean {
  return node.opDomain === '' && Object.prototype.hasOwnProperty.call(KERNELS, node.opType);
}

/**
 * Evaluates `node` on `inputs` (null for absent optional inputs). Returns one Tensor per output, or
 * undefined when the evaluator does not cover this case.
 */
export function evaluateNode(node: Node, inputs: ReadonlyArray<Tensor | null | undefined>, opset: number): Tensor[] | undefined {
  if (!hasKernel(node)) return undefined;
  const vals: Array<EValue | undefined> = [];
  for (const t of inputs) {
    if (!t) {
      vals.push(undefined);
      continue;
    }
    if (!isEvaluableType(t.dataType) || t.size > MAX_EVAL_ELEMENTS) return undefined;
    vals.push(fromTensor(t));
  }
  const out = KERNELS[node.opType]!({ node, opset }, vals);
  if (!out || out.length < node.outputs.length) return undefined;
  return out.slice(0, node.outputs.length).map((v, i) => toTensor(v, node.outputs[i]!.name));
}
