/**
 * Where Q/DQ pairs go (QDQ format, for onnxruntime's CPU EP on AVX2; see the notes on what fuses).
 *
 * Rule: a set of nodes runs in int8; a tensor gets one QuantizeLinear -> DequantizeLinear pair exactly
 * when it is a data input or an output of an int8 node. So every float region (HardSwish, LayerNorm,
 * Softmax, anything without an int8 kernel) is entered and left through one boundary, two float ops
 * never have a Q/DQ pair between them, and two int8 ops share one pair (which onnxruntime fuses away).
 *
 * Which nodes are int8:
 * - compute: Conv, MatMul and Gemm with a constant float weight (and MatMul of two activations when
 *   asked); the unit absorbs a following Relu, or Clip with min 0, when it is the output's only reader
 *   (the Q after it then has zero point 0 and makes the activation redundant, which is exact);
 * - data movement (Reshape, Transpose, Squeeze, Unsqueeze, Flatten, MaxPool, Slice, Resize, Gather,
 *   Split, ...) whose data input is int8: outputs inherit the input's scale and zero point;
 * - Add, Mul, Concat whose activation inputs are all int8, and AveragePool, GlobalAveragePool,
 *   Sigmoid, LeakyRelu with an int8 input, but only when some int8 node reads their output (otherwise
 *   they would add a boundary and noise for nothing).
 * Excluded nodes (by name or op type, or outside `onlyOps`) stay float and are listed with a reason.
 */
import { DataType } from '../../core/dtype.js';
import { constantOf, Graph, Model, Node, topologicalOrder, Value } from '../../ir/ir.js';

/** Ops that only move or select data: int8 in, int8 out with the same parameters. */
export const MOVE_OPS = new Set(['Reshape', 'Transpose', 'Squeeze', 'Unsqueeze', 'Flatten', 'MaxPool', 'Slice', 'Resize', 'Gather', 'GatherElements', 'Expand', 'Tile', 'Split', 'Identity']);
/** Ops with int8 kernels that need their own output range, all inputs int8. */
export const BINARY_OPS = new Set(['Add', 'Mul', 'Concat']);
export const UNARY_OPS = new Set(['AveragePool', 'GlobalAveragePool', 'Sigmoid', 'LeakyRelu']);
export const COMPUTE_OPS = new Set(['Conv', 'MatMul', 'Gemm']);

export interface PlacementOptions {
  excludeNodes?: readonly string[];
  excludeOps?: readonly string[];
  /** When set, only these op types run in int8 (data movement follows its neighbours regardless). */
  onlyOps?: readonly string[];
  /** Quantize MatMul of two activations (attention scores): off by default (accuracy). */
  activationMatMul?: boolean;
  /** Per-channel weights (default true). */
  perChannel?: boolean;
  /** Nodes forced to float by the caller after calibration (e.g. a zero-range tensor), with reasons. */
  forceFloat?: ReadonlyMap<Node, string>;
  /** Compute nodes whose weights are quantized but whose activations stay float (weight-only). */
  weightOnly?: ReadonlySet<Node>;
}

export interface ComputeUnit {
  node: Node;
  /** Index of the weight input (constant), or -1 for activation x activation MatMul. */
  weightIndex: number;
  /** Per-channel axis of the weight, or undefined for per-tensor. */
  axis: number | undefined;
  /** Index of a constant bias input that becomes int32 (Conv input 2, Gemm input 2). */
  biasIndex: number;
  /** Activation input indices. */
  activationInputs: number[];
  /** The folded Relu/Clip, if any. */
  activation?: Node;
  /** Output value of the unit (after the folded activation). */
  output: Value;
  /** Weight-only: the weight is int8 behind a DequantizeLinear, activations float. */
  weightOnly: boolean;
}

export interface QdqTensor {
  value: Value;
  /** Calibrated, or inherits the parameters of another tensor (data movement). */
  inheritFrom?: Value;
}

export interface Placement {
  units: ComputeUnit[];
  /** Every node that runs in int8 (compute, folded activations, movement, binary, unary). */
  int8: Set<Node>;
  /** Tensors that get a Q -> DQ pair, in graph order. */
  tensors: QdqTensor[];
  /** Nodes of quantizable kinds left in float, with the reason. */
  float: Array<{ node: Node; reason: string }>;
}

const isFloatConst = (v: Value | null | undefined): boolean => {
  const t = constantOf(v);
  return t !== undefined && t.dataType === DataType.FLOAT;
};

/** The data inputs of a node that carry activations (constants and non-float shapes excluded). */
export function dataInputs(n: Node): number[] {
  const op = n.opType;
  if (MOVE_OPS.has(op) || UNARY_OPS.has(op)) return n.inputs[0] && !isConstLike(n.inputs[0]) ? [0] : [];
  const out: number[] = [];
  n.inputs.forEach((v, i) => {
    if (v && !isConstLike(v)) out.push(i);
  });
  return out;
}

function isConstLike(v: Value): boolean {
  return constantOf(v) !== undefined;
}

function nodeLabel(n: Node): string {
  return n.name ?? n.label;
}

/** Checks whether a compute node can be quantized; returns the unit or a reason. */
function computeUnit(n: Node, o: PlacementOptions): ComputeUnit | string {
  const perChannel = o.perChannel ?? true;
  const out = n.outputs[0];
  if (!out) return 'has no output';
  if (n.opType === 'Conv') {
    const w = constantOf(n.inputs[1]);
    if (!w || w.dataType !== DataType.FLOAT) return 'its weight is not a constant float tensor';
    if (w.dims.length < 3) return 'its weight has rank < 3';
    const b = n.inputs[2];
    if (b && !isFloatConst(b)) return 'its bias is not a constant float tensor';
    return { node: n, weightIndex: 1, axis: perChannel ? 0 : undefined, biasIndex: b ? 2 : -1, activationInputs: [0], output: out, weightOnly: false };
  }
  if (n.opType === 'MatMul') {
    const bConst = constantOf(n.inputs[1]);
    if (bConst) {
      if (bConst.dataType !== DataType.FLOAT) return 'its weight is not float';
      if (bConst.dims.length < 2) return 'its weight has rank < 2';
      if (isConstLike(n.inputs[0]!)) return 'both inputs are constant';
      const axis = perChannel && bConst.dims.length === 2 ? 1 : undefined;
      return { node: n, weightIndex: 1, axis, biasIndex: -1, activationInputs: [0], output: out, weightOnly: false };
    }
    if (isConstLike(n.inputs[0]!)) return 'its constant input is the left operand';
    if (!o.activationMatMul) return 'activation x activation MatMul (attention) stays float by default';
    return { node: n, weightIndex: -1, axis: undefined, biasIndex: -1, activationInputs: [0, 1], output: out, weightOnly: false };
  }
  if (n.opType === 'Gemm') {
    const w = constantOf(n.inputs[1]);
    if (!w || w.dataType !== DataType.FLOAT || w.dims.length !== 2) return 'its weight is not a constant 2-D float tensor';
    if (n.getInt('transA', 0) !== 0) return 'transA is set';
    if (n.getFloat('alpha', 1) !== 1) return 'alpha is not 1';
    const c = n.inputs[2];
    const cT = constantOf(c);
    const biasOk = c && cT && cT.dataType === DataType.FLOAT && n.getFloat('beta', 1) === 1 && cT.size === w.dims[n.getInt('transB', 0) ? 0 : 1];
    if (c && !biasOk) return 'its C input is not a constant [N] bias with beta 1';
    const axis = perChannel ? (n.getInt('transB', 0) ? 0 : 1) : undefined;
    return { node: n, weightIndex: 1, axis, biasIndex: c ? 2 : -1, activationInputs: [0], output: out, weightOnly: false };
  }
  return 'not a compute op';
}

/** A Relu, or a Clip with constant min 0, that can be folded into the Q after a compute node. */
function foldableActivation(n: Node): boolean {
  if (n.opType === 'Relu') return true;
  if (n.opType !== 'Clip') return false;
  const lo = n.inputs[1] ? constantOf(n.inputs[1]) : undefined;
  const loAttr = n.getFloat('min');
  const min = lo ? lo.toFloat32()[0] : loAttr;
  if (n.inputs[2] && !constantOf(n.inputs[2])) return false;
  return min === 0;
}

export function placeQdq(model: Model, o: PlacementOptions = {}): Placement {
  const g: Graph = model.graph;
  const order = topologicalOrder(g);
  const excludedNames = new Set(o.excludeNodes ?? []);
  const excludedOps = new Set(o.excludeOps ?? []);
  const only = o.onlyOps ? new Set(o.onlyOps) : undefined;
  const float: Array<{ node: Node; reason: string }> = [];
  const excluded = (n: Node, movement: boolean): string | undefined => {
    const forced = o.forceFloat?.get(n);
    if (forced) return forced;
    if (n.name !== undefined && excludedNames.has(n.name)) return 'excluded by name (--exclude-nodes)';
    if (excludedOps.has(n.opType)) return `excluded op type ${n.opType} (--exclude-ops)`;
    if (!movement && only && !only.has(n.opType)) return `op type ${n.opType} is not in --only-ops`;
    return undefined;
  };

  // 1. compute units
  const units: ComputeUnit[] = [];
  const unitOf = new Map<Node, ComputeUnit>();
  const absorbed = new Set<Node>();
  for (const n of order) {
    if (n.opDomain !== '' || !COMPUTE_OPS.has(n.opType)) continue;
    const why = excluded(n, false);
    const u = computeUnit(n, o);
    if (typeof u === 'string') {
      float.push({ node: n, reason: u });
      continue;
    }
    if (why) {
      // a weight-only unit keeps the int8 weights (size) while the activations stay float
      if (o.weightOnly?.has(n) && u.weightIndex >= 0) {
        u.weightOnly = true;
        units.push(u);
      }
      float.push({ node: n, reason: why });
      continue;
    }
    if (o.weightOnly?.has(n) && u.weightIndex >= 0) {
      u.weightOnly = true;
      units.push(u);
      float.push({ node: n, reason: 'weight-only: int8 weights, float activations' });
      continue;
    }
    const out = n.outputs[0]!;
    const readers = out.consumers();
    if (readers.length === 1 && out.uses.length === 1 && !out.isGraphOutput && foldableActivation(readers[0]!) && !excluded(readers[0]!, true)) {
      u.activation = readers[0]!;
      u.output = readers[0]!.outputs[0]!;
      absorbed.add(readers[0]!);
    }
    units.push(u);
    unitOf.set(n, u);
  }

  // 2. forward: which values are int8 (outputs of int8 nodes), tentatively including movement/binary/unary
  const int8 = new Set<Node>();
  const int8Values = new Set<Value>();
  for (const u of units) {
    if (u.weightOnly) continue;
    int8.add(u.node);
    if (u.activation) int8.add(u.activation);
    int8Values.add(u.output);
  }
  const tentative = new Set<Node>();
  for (const n of order) {
    if (int8.has(n) || absorbed.has(n) || n.opDomain !== '') continue;
    const op = n.opType;
    const movement = MOVE_OPS.has(op);
    if (!movement && !BINARY_OPS.has(op) && !UNARY_OPS.has(op)) continue;
    const ins = dataInputs(n);
    if (ins.length === 0) continue;
    if (!ins.every((i) => int8Values.has(n.inputs[i]!))) continue;
    if (op === 'Add' || op === 'Mul') {
      // both operands must be activations (a constant operand would need its own quantization)
      if (ins.length !== 2) continue;
    }
    if (n.outputs.some((v) => v.elemType !== undefined && v.elemType !== DataType.FLOAT)) continue;
    const why = excluded(n, movement);
    if (why) {
      float.push({ node: n, reason: why });
      continue;
    }
    tentative.add(n);
    for (const v of n.outputs) int8Values.add(v);
  }

  // 3. backward: keep a tentative node only if an int8 node reads one of its outputs
  const reversed = [...order].reverse();
  const kept = new Set<Node>();
  const readsInt8 = (v: Value): boolean => v.uses.some((use) => (int8.has(use.node) || kept.has(use.node)) && isDataUse(use.node, use.index));
  for (const n of reversed) {
    if (!tentative.has(n)) continue;
    if (n.outputs.some(readsInt8)) kept.add(n);
  }
  for (const n of kept) int8.add(n);

  // 4. tensors: data inputs and unit outputs of int8 nodes
  const tensors: QdqTensor[] = [];
  const seen = new Set<Value>();
  const add = (v: Value, inheritFrom?: Value) => {
    if (seen.has(v)) return;
    seen.add(v);
    tensors.push(inheritFrom ? { value: v, inheritFrom } : { value: v });
  };
  for (const n of order) {
    if (!int8.has(n) || absorbed.has(n)) continue;
    const u = unitOf.get(n);
    const ins = u ? u.activationInputs : dataInputs(n);
    for (const i of ins) {
      const v = n.inputs[i];
      if (v) add(v, movementSource(v, int8));
    }
    if (u) add(u.output);
    else if (MOVE_OPS.has(n.opType)) for (const v of n.outputs) add(v, n.inputs[0]!);
    else for (const v of n.outputs) add(v);
  }
  // resolve inheritance chains to a calibrated root
  const rootOf = new Map<Value, QdqTensor>(tensors.map((t) => [t.value, t]));
  for (const t of tensors) {
    let src = t.inheritFrom;
    const guard = new Set<Value>();
    while (src && rootOf.get(src)?.inheritFrom && !guard.has(src)) {
      guard.add(src);
      src = rootOf.get(src)!.inheritFrom;
    }
    if (src) t.inheritFrom = src;
  }
  return { units, int8, tensors, float };
}

/** When `v` is produced by an int8 movement node, the input it inherits from. */
function movementSource(v: Value, int8: Set<Node>): Value | undefined {
  const p = v.producer;
  if (p && int8.has(p) && MOVE_OPS.has(p.opType)) return p.inputs[0] ?? undefined;
  return undefined;
}

function isDataUse(n: Node, index: number): boolean {
  if (COMPUTE_OPS.has(n.opType)) return n.opType === 'MatMul' ? index <= 1 : index === 0;
  return dataInputs(n).includes(index);
}

export { nodeLabel };
