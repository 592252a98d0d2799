/**
 * Training on onnxruntime: one session runs the whole step (forward, backward, optimizer update), and
 * parameters and optimizer state stay `ort.Tensor`s between steps: the output tensors of step k are
 * fed unchanged as the inputs of step k+1 (no copy through JavaScript arrays). The trained model is
 * written as the original inference graph with the updated weights as its constants.
 */
import * as ort from 'onnxruntime-node';
import { DataType } from '../graph/dtype.js';
import { inputError } from '../graph/errors.js';
import { Model, Value } from '../graph/ir.js';
import { cloneModel, serializeModel } from '../graph/onnx/index.js';
import { ShapeMap } from '../graph/autodiff/context.js';
import { Tensor } from '../graph/tensor.js';
import { hostDType, onnxDataType } from './host-tensor.js';
import { firstLine } from './session.js';

/** Element type and dims of one model input. */
export interface InputSpec {
  dims: number[];
  /** ONNX type name ('float32', 'int64', ...); default: the model's declared type. */
  type?: string;
}

function ortTypeOf(v: Value): ort.Tensor.Type {
  const t = v.elemType === undefined ? undefined : hostDType(v.elemType);
  if (!t || t === 'float16' || t === 'string') throw inputError('TRAIN_INPUT_TYPE', `input ${v.name} has an element type onnxruntime training graphs do not take`, { tensor: v.name });
  return t as ort.Tensor.Type;
}

/** A zero-filled ort.Tensor. */
export function zerosTensor(type: ort.Tensor.Type, dims: readonly number[]): ort.Tensor {
  const n = dims.reduce((p, x) => p * x, 1);
  switch (type) {
    case 'float32':
      return new ort.Tensor('float32', new Float32Array(n), dims);
    case 'float64':
      return new ort.Tensor('float64', new Float64Array(n), dims);
    case 'int64':
      return new ort.Tensor('int64', new BigInt64Array(n), dims);
    case 'int32':
      return new ort.Tensor('int32', new Int32Array(n), dims);
    case 'uint8':
      return new ort.Tensor('uint8', new Uint8Array(n), dims);
    case 'bool':
      return new ort.Tensor('bool', new Uint8Array(n), dims);
    default:
      throw inputError('TRAIN_INPUT_TYPE', `cannot make a zero ${type} tensor`);
  }
}

/** ort.Tensor -> IR Tensor (shares nothing mutable: the bytes are copied once). */
export function irTensorOf(t: ort.Tensor, name: string): Tensor {
  const type = hostDType(t.type);
  if (!type || type === 'string') throw inputError('TRAIN_OUTPUT_TYPE', `tensor ${name} has type ${t.type}`, { tensor: name });
  const data = t.data as Float32Array;
  return Tensor.from(onnxDataType(type), [...t.dims], data.slice(), name);
}

/** IR Tensor (float) -> ort.Tensor of the same element type. */
export function ortTensorOf(t: Tensor): ort.Tensor {
  if (t.dataType === DataType.DOUBLE) return new ort.Tensor('float64', Float64Array.from(t.data() as Float64Array), t.dims);
  if (t.dataType === DataType.FLOAT) return new ort.Tensor('float32', Float32Array.from(t.data() as Float32Array), t.dims);
  throw inputError('TRAIN_PARAM_TYPE', `parameter ${t.name ?? '?'} is not float32 or float64`, { tensor: t.name });
}

/**
 * Static shapes and element types of every value of `model` for the given input shapes, found by
 * running it once on zeros in onnxruntime with every node output exposed as a graph output. (Exact for
 * any op onnxruntime runs; the gradient rules need static shapes.)
 */
export async function probeShapes(model: Model, inputs: Record<string, InputSpec>): Promise<ShapeMap> {
  const probe = cloneModel(model);
  const g = probe.graph;
  const shapes: ShapeMap = new Map();
  for (const [name, v] of g.initializers) {
    const t = g.initializerTensor(v);
    if (t) shapes.set(name, { dims: [...t.dims], dtype: t.dataType });
  }
  const have = new Set(g.outputs);
  for (const n of g.nodes) for (const o of n.outputs) if (o.name && !have.has(o)) {
    g.addOutput(o);
    have.add(o);
  }
  const feeds: Record<string, ort.Tensor> = {};
  for (const v of g.inputs) {
    if (g.initializers.has(v.name) && !inputs[v.name]) continue;
    const spec = inputs[v.name];
    if (!spec) throw inputError('TRAIN_MISSING_INPUT', `no shape given for model input ${v.name}`, { tensor: v.name });
    const type = (spec.type as ort.Tensor.Type | undefined) ?? ortTypeOf(v);
    feeds[v.name] = zerosTensor(type, spec.dims);
    shapes.set(v.name, { dims: [...spec.dims], dtype: onnxDataType(hostDType(type)!) });
  }
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(serializeModel(probe), { graphOptimizationLevel: 'disabled' });
  } catch (e) {
    throw inputError('TRAIN_PROBE_FAILED', `onnxruntime could not load the model to probe its shapes: ${firstLine(e)}`);
  }
  try {
    const out = await session.run(feeds);
    for (const [name, t] of Object.entries(out)) {
      const type = hostDType(t.type);
      if (type) shapes.set(name, { dims: [...t.dims], dtype: onnxDataType(type) });
      t.dispose?.();
    }
  } catch (e) {
    throw inputError('TRAIN_PROBE_FAILED', `onnxruntime could not run the model to probe its shapes: ${firstLine(e)}`);
  } finally {
    await session.release();
  }
  return shapes;
}
