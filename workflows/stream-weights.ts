/**
 * `quantize --mode weights` and `--mode fp16` for models larger than memory (see stream.ts): the
 * graph is rewritten with derived tensors and the streaming writer computes each one when it reaches
 * it, from the source weight read then (memory: one weight and its result at a time).
 *
 * - weights: every float32 initializer read in a weight slot ({@link weightAxis}) becomes int8 behind
 *   DequantizeLinear, symmetric per output channel, by the quantize-weights pass's own quantizer and
 *   emission (`quantizeInt8`, `addWeightDq`); the model is tagged `onnxforge.weights=int8` like the
 *   pass does. Streaming writes MatMul weights in the direct layout (DequantizeLinear axis 1 into the
 *   MatMul, the pass's `transposeMatMul: false`): the transposed layout transposes the int8 tensor
 *   while emitting. The expanded float model is the same either way.
 * - fp16: every float32 initializer of at least `minElements` values is stored as float16 and Cast to
 *   float32 where it is read: the fp16 mode's `cpu` target (float16 weights, float32 compute, which
 *   onnxruntime folds at load). The measured mixed precision of the fp16 mode (activation ranges in
 *   onnxruntime) does not apply to weights-only storage.
 *
 * Left out, and said in the report: onnxruntime measurements, the default preset run first (the
 * graph is rewritten as it is), dynamic mode (not streamed).
 */
import { DataType, encodeHalf } from '../core/dtype.js';
import { inputError } from '../core/errors.js';
import { derivedTensor, sharedParts } from '../core/derived.js';
import type { Tensor } from '../core/tensor.js';
import { Attribute, constantOf, Model, Node, Value } from '../ir/ir.js';
import { loadModel } from '../onnx/index.js';
import { inputFilesOf, readTensorRange } from '../onnx/stream.js';
import { WEIGHTS_TAG_INT8, WEIGHTS_TAG_KEY } from '../passes/quantize/quantize-weights.js';
import { addWeightDq, quantizeInt8, weightAxis } from '../passes/quantize/weights-int8.js';
import type { StreamWeightsReport } from '../report/stream.js';
import { weightBytes, writeStreamed, type StreamOptions } from './stream.js';

export interface StreamWeightsOptions extends StreamOptions {
  model: string;
  output: string;
  mode: 'weights' | 'fp16';
  /** Smallest tensor (elements) converted (default: 256 for weights, 1024 for fp16). */
  minElements?: number;
  /** weights: one scale per output channel (default true). */
  perChannel?: boolean;
}

/** The axis quantizeInt8 ends up using for dims (it falls back to per tensor by dims alone). */
function int8Axis(dims: readonly number[], size: number, axis: number | undefined): number | undefined {
  if (axis === undefined || dims[axis] === undefined || size < 2 * dims[axis]! || dims[axis] === 1) return undefined;
  return axis;
}

/** The weight-slot axis all uses of `v` agree on (undefined: they disagree, per tensor), or null when no use is a weight slot. */
function slotAxis(model: Model, v: Value, rank: number): number | null | undefined {
  let axis: number | null | undefined = null;
  for (const u of v.uses) {
    if (u.node.graph !== model.graph) continue;
    const a = weightAxis(u.node, u.index, rank);
    if (a === null) continue;
    axis = axis === null ? a : axis === a ? a : undefined;
  }
  return axis;
}

/** float32 -> float16 of a tensor read in slices. */
function toHalf(t: Tensor): Uint8Array {
  const out = new Uint16Array(t.size);
  const per = 4 << 20;
  for (let i = 0; i < t.size; i += per) {
    const n = Math.min(per, t.size - i);
    const raw = readTensorRange(t, i * 4, n * 4, new Uint8Array(n * 4));
    out.set(encodeHalf(DataType.FLOAT16, new Float32Array(raw.buffer, raw.byteOffset, n)), i);
  }
  return new Uint8Array(out.buffer);
}

/** Rewrites the main graph's float32 weights; returns [converted, kept float, float bytes, new bytes]. */
function rewrite(model: Model, o: StreamWeightsOptions): { converted: number; kept: number; floatBytes: number; bytes: number } {
  const g = model.graph;
  const names = g.names;
  const minElements = o.minElements ?? (o.mode === 'weights' ? 256 : 1024);
  const r = { converted: 0, kept: 0, floatBytes: 0, bytes: 0 };
  for (const v of [...g.initializers.values()]) {
    const t = constantOf(v);
    if (!t || g.inputs.includes(v) || t.dataType !== DataType.FLOAT || v.isGraphOutput || v.uses.length === 0) continue;
    if (t.size < minElements) {
      r.kept++;
      continue;
    }
    let out: Value;
    if (o.mode === 'weights') {
      const slot = slotAxis(model, v, t.dims.length);
      if (slot === null) {
        r.kept++;
        continue;
      }
      const axis = int8Axis(t.dims, t.size, o.perChannel === false ? undefined : slot);
      const part = sharedParts(() => {
        const w = quantizeInt8(t, axis);
        return { q: w.q.bytes(), scale: w.scale.bytes() };
      });
      const q = derivedTensor(DataType.INT8, t.dims, () => part('q'));
      const scale = derivedTensor(DataType.FLOAT, axis === undefined ? [] : [t.dims[axis]!], () => part('scale'));
      out = addWeightDq(g, names, { q, scale, axis, scales: new Float32Array(0) }, names.numbered('w')).out;
      r.bytes += q.byteLength + scale.byteLength;
    } else {
      const half = g.addInitializer(derivedTensor(DataType.FLOAT16, t.dims, () => toHalf(t)), names.fresh(`${v.name}_fp16`));
      out = new Value(names.fresh(`${v.name}_f32`));
      out.setTensorType(DataType.FLOAT, t.dims);
      const cast = new Node('Cast', [half], [out]);
      cast.name = names.fresh(`${v.name}_Cast`);
      cast.setAttr(Attribute.int('to', DataType.FLOAT));
      g.insertNode(cast, 0);
      r.bytes += t.size * 2;
    }
    v.replaceAllUsesWith(out);
    g.removeInitializer(v);
    r.converted++;
    r.floatBytes += t.byteLength;
  }
  return r;
}

/** Streams `quantize --mode weights|fp16` (see the file header). */
export async function streamWeightsWorkflow(o: StreamWeightsOptions): Promise<StreamWeightsReport> {
  const t0 = performance.now();
  const model = await loadModel(o.model);
  for (const n of model.graph.allNodes()) {
    if (n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear' || n.opType === 'DynamicQuantizeLinear' || n.opType.startsWith('QLinear') || n.opType === 'MatMulNBits') {
      throw inputError('WEIGHTS_ALREADY_QUANTIZED', `the model is already quantized (node ${n.label} is ${n.opType}); convert the float model`, { node: n.name ?? n.label });
    }
  }
  if (o.mode === 'weights' && (model.opset('') ?? 1) < 13) throw inputError('QUANT_OPSET_TOO_OLD', `weight compression needs opset 13 (DequantizeLinear axis); the model has opset ${model.opset('')}`);
  const input = { bytes: weightBytes(model), files: inputFilesOf(model) };
  const r = rewrite(model, o);
  if (r.converted === 0) throw inputError('USAGE_BAD_VALUE', `no float32 weight of at least ${o.minElements ?? (o.mode === 'weights' ? 256 : 1024)} values to convert`);
  if (o.mode === 'weights') model.setMetadata(WEIGHTS_TAG_KEY, WEIGHTS_TAG_INT8);
  model.graph.toposort();
  const notes = ['streamed tensor by tensor: the model was not run in onnxruntime, so no output error or latency against float32 is measured; the default preset was not run first'];
  if (o.mode === 'weights') notes.push('MatMul weights in the direct layout (DequantizeLinear axis 1 into the MatMul; the non-streamed mode stores them transposed)');
  else notes.push('fp16 as float16 weight storage with float32 compute (the cpu target); activation ranges are not measured');
  const fingerprint = JSON.stringify({ mode: `${o.mode}-stream`, minElements: o.minElements ?? null, perChannel: o.perChannel ?? true });
  const write = writeStreamed(model, o.output, o, fingerprint, t0, notes, input);
  return { schema: 'onnxforge.quantize-stream/1', mode: o.mode, input: o.model, output: o.output, converted: r.converted, keptFloat: r.kept, floatBytes: r.floatBytes, bytes: r.bytes, write };
}
