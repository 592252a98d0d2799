/**
 * FLOP and parameter counts per node, from static shapes (graph/shape-inference.ts on a copy of the
 * model whose inputs are given concrete dims). Conventions (a multiply-add counts as 2 FLOPs):
 *
 * - Conv: 2 * out_elements * (C_in / group) * prod(kernel), plus out_elements for a bias;
 * - ConvTranspose: 2 * in_elements * (C_out / group) * prod(kernel), plus out_elements for a bias;
 * - Gemm / MatMul: 2 * batch * M * N * K (Gemm adds M * N for C);
 * - MaxPool / AveragePool / LpPool: out_elements * prod(kernel); global pools: in_elements;
 * - BatchNormalization / InstanceNormalization: 2 * elements; Softmax / LogSoftmax: 3 * elements;
 * - other elementwise ops (activations, Add, Mul, Clip, Resize, ...): out_elements;
 * - shape and data-movement ops (Reshape, Shape, Concat, Slice, Transpose, Cast, ...): 0.
 *
 * Parameters are the elements of constant float inputs of each node (weights, biases, BN statistics).
 */
import { DataType } from '../core/dtype.js';
import { internalError } from '../core/errors.js';
import { constantOf, Model, Node, Value } from '../ir/ir.js';
import { cloneModel } from '../onnx/index.js';
import { inferShapes, staticShape } from './shape-inference.js';

export interface NodeFlops {
  node: string;
  op: string;
  flops: number;
  params: number;
  /** Output shape of the first output, when known. */
  shape?: number[];
}

export interface FlopReport {
  nodes: NodeFlops[];
  totalFlops: number;
  totalParams: number;
  /** Nodes whose FLOPs could not be counted (unknown shapes). */
  unknown: string[];
}

const ZERO_COST = new Set([
  'Constant', 'Reshape', 'Shape', 'Concat', 'Slice', 'Gather', 'Transpose', 'Cast', 'Squeeze', 'Unsqueeze', 'Flatten', 'Identity',
  'Dropout', 'Split', 'Expand', 'Tile', 'Pad', 'ConstantOfShape', 'Range', 'Size',
]);

const FLOAT_TYPES = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16, DataType.DOUBLE]);

function prod(d: readonly number[]): number {
  return d.reduce((a, b) => a * b, 1);
}

/** FLOPs of one node given static shapes (undefined when a needed shape is unknown). */
export function nodeFlops(n: Node): number | undefined {
  if (ZERO_COST.has(n.opType)) return 0;
  const inp = staticShape(n.input(0));
  // when inference leaves an output without static dims (an op it does not know, a declared graph
  // output of a subgraph), elementwise outputs take their largest input's shape and Gemm/MatMul
  // outputs follow from their operands
  const largest = n.inputs.map((v) => staticShape(v)).filter((d): d is number[] => !!d).sort((a, b) => prod(b) - prod(a))[0];
  const w2 = n.input(1) ? staticShape(n.input(1)) : undefined;
  const product = (n.opType === 'MatMul' || n.opType === 'Gemm') && inp && w2 && w2.length === 2 && inp.length >= 2
    ? [...inp.slice(0, -1), n.getInt('transB', 0) ? w2[0]! : w2[1]!]
    : undefined;
  const out = (n.outputs[0] ? staticShape(n.outputs[0]) : undefined) ?? product ?? largest;
  const w = n.input(1) ? staticShape(n.input(1)) : undefined;
  switch (n.opType) {
    case 'Conv': {
      if (!out || !w) return undefined;
      // weight dims are [C_out, C_in / group, k...]: dims[1] is already per group
      return 2 * prod(out) * w[1]! * prod(w.slice(2)) + (n.input(2) ? prod(out) : 0);
    }
    case 'ConvTranspose': {
      if (!inp || !w || !out) return undefined;
      const k = prod(w.slice(2));
      return 2 * prod(inp) * w[1]! * k + (n.input(2) ? prod(out) : 0);
    }
    case 'Gemm': {
      if (!inp || !out) return undefined;
      const K = n.getInt('transA', 0) ? inp[0]! : inp[inp.length - 1]!;
      return 2 * prod(out) * K + (n.input(2) ? prod(out) : 0);
    }
    case 'MatMul': {
      if (!inp || !out) return undefined;
      return 2 * prod(out) * inp[inp.length - 1]!;
    }
    case 'MaxPool':
    case 'AveragePool':
    case 'LpPool': {
      const k = n.getInts('kernel_shape');
      if (!out || !k) return undefined;
      return prod(out) * prod(k);
    }
    case 'GlobalAveragePool':
    case 'GlobalMaxPool':
    case 'GlobalLpPool':
    case 'ReduceMean':
    case 'ReduceSum':
    case 'ReduceMax':
      return inp ? prod(inp) : undefined;
    case 'BatchNormalization':
    case 'InstanceNormalization':
    case 'LayerNormalization':
      return out ? 2 * prod(out) : undefined;
    case 'Softmax':
    case 'LogSoftmax':
      return out ? 3 * prod(out) : undefined;
  }
  return out ? prod(out) : undefined;
}

function nodeParams(n: Node): number {
  let p = 0;
  for (const v of n.inputs) {
    const t = constantOf(v);
    if (t && FLOAT_TYPES.has(t.dataType)) p += t.size;
  }
  return p;
}

/**
 * Counts FLOPs and parameters. `inputShapes` fixes symbolic input dims (by input name); unnamed
 * symbolic dims default to 1. The model is not modified (inference runs on a copy).
 */
export function countFlops(model: Model, inputShapes: Record<string, number[]> = {}): FlopReport {
  const nodes: NodeFlops[] = [];
  const unknown: string[] = [];
  let totalFlops = 0;
  let totalParams = 0;
  for (const [, n] of inferredNodes(model, inputShapes, () => 1)) {
    if (n.opType === 'Constant') continue;
    const f = nodeFlops(n);
    const p = nodeParams(n);
    const name = n.name ?? n.label;
    if (f === undefined) unknown.push(name);
    const shape = n.outputs[0] ? staticShape(n.outputs[0] as Value) : undefined;
    nodes.push({ node: name, op: n.opType, flops: f ?? 0, params: p, ...(shape ? { shape } : {}) });
    totalFlops += f ?? 0;
    totalParams += p;
  }
  return { nodes, totalFlops, totalParams, unknown };
}

/**
 * FLOPs of each node of `model` itself (not a copy), keyed by node, for passes that weigh layers by
 * cost. Symbolic input dims take `symbolic(axis)` (by default 1 for the batch axis and 256 for any
 * other, so spatial sizes keep their ratios across strides); nodes whose FLOPs are unknown are absent.
 */
export function flopsByNode(model: Model, inputShapes: Record<string, number[]> = {}, symbolic: (axis: number) => number = (axis) => (axis === 0 ? 1 : 256)): Map<Node, number> {
  const out = new Map<Node, number>();
  for (const [orig, n] of inferredNodes(model, inputShapes, symbolic)) {
    const f = n.opType === 'Constant' ? undefined : nodeFlops(n);
    if (f !== undefined) out.set(orig, f);
  }
  return out;
}

/** Pairs of (node of `model`, the same node in a shape-inferred copy with concrete input dims). */
function inferredNodes(model: Model, inputShapes: Record<string, number[]>, symbolic: (axis: number) => number): Array<[Node, Node]> {
  const m = cloneModel(model);
  for (const v of m.graph.inputs) {
    if (m.graph.initializers.get(v.name) === v) continue;
    const given = inputShapes[v.name];
    const shape = v.shape;
    const elem = v.elemType ?? DataType.FLOAT;
    if (given) v.setTensorType(elem, given);
    else if (shape) v.setTensorType(elem, shape.map((d, i) => (typeof d === 'number' ? d : symbolic(i))));
  }
  // drop declared shapes (stale after pruning, symbolic on outputs) so inference recomputes them
  for (const g of m.graph.allGraphs()) for (const n of g.nodes) for (const o of n.outputs) delete o.type;
  m.graph.valueInfo = [];
  // inference leaves graph outputs as declared; on this throwaway copy they stop being outputs so
  // the nodes producing them get inferred shapes too (a last Conv must not borrow its input's shape)
  for (const v of m.graph.outputs) v.outputOf.delete(m.graph);
  m.graph.outputs.length = 0;
  inferShapes(m);
  const a = [...model.graph.allNodes()];
  const b = [...m.graph.allNodes()];
  if (a.length !== b.length || a.some((n, i) => n.opType !== b[i]!.opType)) throw internalError('FLOPS_CLONE_MISMATCH', 'the copied model lists its nodes in another order');
  return b.map((n, i) => [a[i]!, n]);
}

/** FLOPs and parameters by op type (for compact reports). */
export function flopsByOp(r: FlopReport): Array<{ op: string; nodes: number; flops: number; params: number }> {
  const by = new Map<string, { op: string; nodes: number; flops: number; params: number }>();
  for (const n of r.nodes) {
    const e = by.get(n.op) ?? { op: n.op, nodes: 0, flops: 0, params: 0 };
    e.nodes++;
    e.flops += n.flops;
    e.params += n.params;
    by.set(n.op, e);
  }
  return [...by.values()].sort((a, b) => b.flops - a.flops);
}
