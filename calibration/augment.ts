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
  const g = copy.graph;
  const byName = valuesByName(g);
  const fresh = (base: string) => copy.names.fresh(base);
  const one = g.addInitializer(Tensor.from(DataType.INT64, [1], BigInt64Array.of(1n)), fresh('__onnxforge_calib_shape1'));
  const add = (op: string, inputs: Value[], name: string, attrs: Attribute[] = []): Value => {
    const out = new Value(fresh(name));
    const node = new Node(op, inputs, [out]);
    node.name = out.name;
    for (const a of attrs) node.setAttr(a);
    g.insertNode(node);
    return out;
  };
  const parts: [Value[], Value[]] = [[], []];
  for (const t of tensors) {
    const v = calibrationTarget(byName, t);
    ['ReduceMin', 'ReduceMax'].forEach((op, i) => {
      const r = add(op, [v], `${t}__calib_${op}`, [Attribute.int('keepdims', 1)]);
      parts[i]!.push(add('Reshape', [r, one], `${t}__calib_${op}_1`));
    });
  }
  EXTREME_OUTPUTS.forEach((name, i) => {
    const out = new Value(name);
    out.setTensorType(DataType.FLOAT, [tensors.length]);
    const node = new Node('Concat', parts[i]!, [out]);
    node.name = name;
    node.setAttr(Attribute.int('axis', 0));
    g.insertNode(node);
    g.addOutput(out);
  });
  return copy;
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
