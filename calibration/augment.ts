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
 * With `{ sums: true }`, a third output: every tensor's sum, NaN exactly when the tensor holds a NaN
 * (or both infinities). onnxruntime's ReduceMin/ReduceMax do not reliably propagate NaN (which
 * element wins depends on the vectorized path: a NaN tensor of 48 elements gave min NaN, the same
 * values stacked 8 times gave min 0); a sum always does.
 */
export const SUM_OUTPUT = '__onnxforge_calib_sum';

/**
 * The augmented model for min/max calibration: ReduceMin and ReduceMax (all axes, keepdims 1) of each
 * tensor, reshaped to [1] and concatenated into two [T] graph outputs, so onnxruntime returns two
 * small tensors per sample whatever the number of tensors (per-output overhead dominates otherwise).
 * Min and max propagate NaN and infinity, which the caller then rejects.
 */
export function augmentModelReduced(model: Model, tensors: readonly string[], o: { sums?: boolean } = {}): Model {
  const copy = cloneModel(model);
  addExtremeOutputs(copy, tensors, o);
  return copy;
}

/**
 * Adds {@link EXTREME_OUTPUTS} (min and max of each of `tensors`, as {@link augmentModelReduced}
 * builds them), and {@link SUM_OUTPUT} with `sums`, to `model` in place: for a copy that carries other
 * extra outputs too (the int4 pass's moments model measures the float16 plan's ranges in the same run).
 */
export function addExtremeOutputs(model: Model, tensors: readonly string[], o: { sums?: boolean } = {}): void {
  const g = model.graph;
  const byName = valuesByName(g);
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
  const ops = o.sums ? ['ReduceMin', 'ReduceMax', 'ReduceSum'] : ['ReduceMin', 'ReduceMax'];
  const parts: Value[][] = ops.map(() => []);
  for (const t of tensors) {
    const v = calibrationTarget(byName, t);
    ops.forEach((op, i) => {
      // no axes: all of them, at every opset
      const r = add(op, [v], `${t}__calib_${op}`, [Attribute.int('keepdims', 1)]);
      parts[i]!.push(add('Reshape', [r, one], `${t}__calib_${op}_1`));
    });
  }
  (o.sums ? [...EXTREME_OUTPUTS, SUM_OUTPUT] : EXTREME_OUTPUTS).forEach((name, i) => {
    const out = new Value(name);
    out.setTensorType(DataType.FLOAT, [tensors.length]);
    const node = new Node('Concat', parts[i]!, [out]);
    node.name = name;
    node.setAttr(Attribute.int('axis', 0));
    g.insertNode(node);
    g.addOutput(out);
  });
}

/**
 * Widens `ranges` (tensor -> {min, max}, every tensor present) by one run's outputs of a model
 * augmented with `{ sums: true }`: `[mins, maxs, sums]`, element k for `tensors[k]`. NaN anywhere in
 * a tensor (its sum NaN) makes its range the widest (-Infinity, Infinity); infinities are kept.
 */
export function widenRanges(ranges: Map<string, { min: number; max: number }>, tensors: readonly string[], out: Feed): void {
  const [mins, maxs, sums] = [...EXTREME_OUTPUTS, SUM_OUTPUT].map((name) => out[name]!.data as Float32Array) as [Float32Array, Float32Array, Float32Array];
  for (let k = 0; k < tensors.length; k++) {
    const r = ranges.get(tensors[k]!)!;
    const nan = sums[k] !== sums[k];
    const mn = mins[k]!;
    const mx = maxs[k]!;
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
