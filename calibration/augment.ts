/**
 * The augmented models range collection runs (calibration/collect.ts, the float16 plan's ranges): a
 * copy of the model with extra graph outputs, either the tensors themselves or their min and max
 * reduced inside the runtime; and the check that a sample's float inputs are finite. Pure IR code, no
 * Node built-ins and no onnxruntime: it builds for the browser (`onnxforge/web`).
 */
import { cloneModel } from '../onnx/codec.js';
import { inputError } from '../core/errors.js';
import { Attribute, Model, Node, Value } from '../ir/ir.js';
import { DataType } from '../core/dtype.js';
import { Tensor } from '../core/tensor.js';
import type { Feed } from '../core/host-tensor.js';

/** The main graph's inputs and node outputs by name. */
function valuesByName(g: Model['graph']): Map<string, Value> {
  const byName = new Map<string, Value>();
  for (const v of g.inputs) byName.set(v.name, v);
  for (const n of g.nodes) for (const o of n.outputs) byName.set(o.name, o);
  return byName;
}

/** The value of a tensor to calibrate, or an error naming it: it must exist and be float32. */
function calibrationTarget(byName: Map<string, Value>, t: string): Value {
  const v = byName.get(t);
  if (!v) throw inputError('CALIB_UNKNOWN_TENSOR', `cannot calibrate '${t}': no node of the main graph produces it`, { tensor: t });
  if (v.elemType !== undefined && v.elemType !== DataType.FLOAT) throw inputError('CALIB_NOT_FLOAT', `cannot calibrate '${t}': it is not a float32 tensor`, { tensor: t });
  return v;
}

/** Builds the augmented model: a copy whose graph outputs are the original outputs plus `tensors`. */
export function augmentModel(model: Model, tensors: readonly string[]): Model {
  const copy = cloneModel(model);
  const g = copy.graph;
  const byName = valuesByName(g);
  const present = new Set(g.outputs.map((o) => o.name));
  for (const t of tensors) {
    if (present.has(t)) continue;
    const v = calibrationTarget(byName, t);
    if (!v.type) v.setTensorType(DataType.FLOAT);
    g.addOutput(v);
    present.add(t);
  }
  return copy;
}

/** Graph outputs of the reduced augmented model: every tensor's min, and every tensor's max, in order. */
export const EXTREME_OUTPUTS: [string, string] = ['__onnxforge_calib_min', '__onnxforge_calib_max'];

/**
 * The augmented model for min/max calibration: ReduceMin and ReduceMax (all axes, keepdims 1) of each
 * tensor, reshaped to [1] and concatenated into two [T] graph outputs, so onnxruntime returns two
 * small tensors per sample whatever the number of tensors (per-output overhead dominates otherwise).
 * Min and max propagate NaN and infinity, which the caller then rejects.
 */
export function augmentModelReduced(model: Model, tensors: readonly string[]): Model {
  const copy = cloneModel(model);
  const reduce = reducer(copy);
  const parts: [Value[], Value[]] = [[], []];
  for (const t of tensors) {
    const v = calibrationTarget(reduce.byName, t);
    parts[0].push(reduce.op('ReduceMin', v, t));
    parts[1].push(reduce.op('ReduceMax', v, t));
  }
  EXTREME_OUTPUTS.forEach((name, i) => reduce.output(name, parts[i]!));
  return copy;
}

/** Builds reductions of a model's tensors to [1] and their concatenation as a graph output. */
function reducer(model: Model): { byName: Map<string, Value>; op(op: string, v: Value, t: string): Value; output(name: string, parts: Value[]): void } {
  const g = model.graph;
  const fresh = (base: string) => model.names.fresh(base);
  const one = g.addInitializer(Tensor.from(DataType.INT64, [1], BigInt64Array.of(1n)), fresh('__onnxforge_calib_shape1'));
  const add = (op: string, inputs: Value[], name: string, attrs: Attribute[] = []): Value => {
    const out = new Value(fresh(name));
    const node = new Node(op, inputs, [out]);
    node.name = out.name;
    for (const a of attrs) node.setAttr(a);
    g.insertNode(node);
    return out;
  };
  return {
    byName: valuesByName(g),
    // no axes: all of them, at every opset
    op: (op, v, t) => add('Reshape', [add(op, [v], `${t}__calib_${op}`, [Attribute.int('keepdims', 1)]), one], `${t}__calib_${op}_1`),
    output(name, parts) {
      const out = new Value(name);
      out.setTensorType(DataType.FLOAT, [parts.length]);
      const node = new Node('Concat', parts, [out]);
      node.name = name;
      node.setAttr(Attribute.int('axis', 0));
      g.insertNode(node);
      g.addOutput(out);
    },
  };
}

/** Graph output of {@link addRangeOutput}: min, max and sum of each tensor, [3 T] (tensor k at 3k, 3k + 1, 3k + 2). */
export const RANGE_OUTPUT = '__onnxforge_ranges';

/** A copy of `model` with {@link RANGE_OUTPUT} (the float16 plan's ranges, float16/ranges.ts). */
export function augmentModelRanges(model: Model, tensors: readonly string[]): Model {
  const copy = cloneModel(model);
  addRangeOutput(copy, tensors);
  return copy;
}

/**
 * Adds {@link RANGE_OUTPUT} to `model` in place, as its last node: ReduceMin, ReduceMax and ReduceSum
 * of each tensor (for a copy that carries other extra outputs too: the int4 pass's moments model
 * measures the float16 plan's ranges in the same run). The sum is NaN exactly when the tensor holds a
 * NaN (or both infinities): onnxruntime's ReduceMin/ReduceMax do not reliably propagate NaN (which
 * element wins depends on the vectorized path: a NaN tensor of 48 elements gave min NaN, the same
 * values stacked 8 times gave min 0).
 *
 * Node order: onnxruntime orders a graph by a depth-first walk from its last leaf node, entering the
 * input with the highest node index first. The reductions are added last tensor first, so that walk
 * starts from the first tensor and each tensor is reduced right after it is computed and freed then.
 * Reduced at the end of the graph (as {@link augmentModelReduced} does), every activation was alive at
 * once: the trained LM on 8 stacked samples took ~140 MB more memory and ~205 ms for each of its first
 * two runs, against ~2 MB and ~18 ms in this order.
 */
export function addRangeOutput(model: Model, tensors: readonly string[]): void {
  const reduce = reducer(model);
  const parts: Value[][] = [];
  for (let k = tensors.length - 1; k >= 0; k--) {
    const t = tensors[k]!;
    const v = calibrationTarget(reduce.byName, t);
    parts[k] = ['ReduceMin', 'ReduceMax', 'ReduceSum'].map((op) => reduce.op(op, v, t));
  }
  reduce.output(RANGE_OUTPUT, parts.flat());
}

/**
 * Widens `ranges` (tensor -> {min, max}, every tensor present) by one run's {@link RANGE_OUTPUT} of
 * `tensors`. NaN anywhere in a tensor (its sum NaN) makes its range the widest (-Infinity, Infinity);
 * infinities are kept.
 */
export function widenRanges(ranges: Map<string, { min: number; max: number }>, tensors: readonly string[], out: Float32Array): void {
  for (let k = 0; k < tensors.length; k++) {
    const r = ranges.get(tensors[k]!)!;
    const mn = out[3 * k]!;
    const mx = out[3 * k + 1]!;
    const nan = out[3 * k + 2] !== out[3 * k + 2];
    r.min = Math.min(r.min, nan || mn !== mn ? -Infinity : mn);
    r.max = Math.max(r.max, nan || mx !== mx ? Infinity : mx);
  }
}

/** Rejects NaN and infinite values in a sample's float inputs, naming the sample and the input. */
export function checkFiniteFeed(feed: Feed, id: string): void {
  for (const [name, t] of Object.entries(feed)) {
    if (t.type !== 'float32' && t.type !== 'float64') continue;
    const d = t.data as Float32Array | Float64Array;
    for (let i = 0; i < d.length; i++) {
      if (!Number.isFinite(d[i]!)) {
        throw inputError('CALIB_NONFINITE_INPUT', `${id}: input '${name}' holds ${d[i]} at element ${i}; calibration data must be finite`, { file: id, tensor: name });
      }
    }
  }
}
