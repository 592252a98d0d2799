/**
 * Weight-compressed models (`onnxforge quantize --mode weights`) at run time.
 *
 * {@link expandCompressedWeights} works on bytes with the codec alone (no onnxruntime), so other
 * runtimes (onnxruntime-web, ...) can use it: when the model carries `onnxforge.weights=int8` in its
 * metadata_props, every DequantizeLinear of the main graph whose input is a constant integer
 * initializer (with constant scale and zero point) is replaced by the float initializer it computes,
 * (q - zp) * scale — the same float32 values the DequantizeLinear would produce, so outputs match the
 * raw compressed model. A Transpose reading such a weight (the transposed MatMul layout) is folded into
 * the initializer too, so MatMul reads the same [K, N] float weight as before. Nothing else is touched; an untagged model (a static QDQ model, a plain float
 * model) is returned as the very same bytes, so its integer kernels stay.
 *
 * {@link createSession} is onnxruntime-node's session with that expansion in front.
 */
import { constantOf, Graph, Model, Value } from '../../ir/ir.js';
import { replaceWithInitializer } from '../../ir/edits.js';
import { loadModelSync, serializeModel } from '../../onnx/index.js';
import { DataType } from '../../core/dtype.js';
import { dequantizeTensor, transposeTensor } from './weights-int8.js';
import { WEIGHTS_TAG_INT8, WEIGHTS_TAG_KEY } from './quantize-weights.js';
import { ModelSource, readModelBytes, Session, SessionOptions } from '../../runtime/session.js';

const INTEGER_TYPES = new Set<number>([DataType.INT8, DataType.UINT8, DataType.INT16, DataType.UINT16, DataType.INT32]);

/** True when the model is tagged as weight-compressed. */
export function isWeightCompressed(model: Model): boolean {
  return model.metadata(WEIGHTS_TAG_KEY) === WEIGHTS_TAG_INT8;
}

/**
 * Replaces the weight DequantizeLinear nodes of a tagged model by float initializers, in place, and
 * drops the tag. Returns how many were expanded (0 for an untagged model, which is left untouched).
 */
export function expandWeightsInModel(model: Model): number {
  if (!isWeightCompressed(model)) return 0;
  const g = model.graph;
  let expanded = 0;
  for (const dq of [...g.nodes]) {
    if (dq.opType !== 'DequantizeLinear' || dq.opDomain !== '') continue;
    const xv = dq.inputs[0];
    const x = constantOf(xv);
    const s = constantOf(dq.inputs[1]);
    const sv = dq.inputs[1];
    const zv = dq.inputs[2];
    const z = zv ? constantOf(zv) : undefined;
    if (!x || !s || (zv && !z) || !INTEGER_TYPES.has(x.dataType) || s.dataType !== DataType.FLOAT) continue;
    const out = dq.outputs[0]!;
    const name = out.name;
    const f = dequantizeTensor(x, s, z, dq.getInt('axis', 1) ?? 1, name);
    const init = replaceWithInitializer(g, out, f);
    g.removeNode(dq);
    for (const v of [xv, sv, zv]) {
      if (v && v.uses.length === 0 && !v.isGraphOutput && !v.producer && g.initializers.get(v.name) === v) g.removeInitializer(v);
    }
    foldTranspose(g, init);
    expanded++;
  }
  // a cleared tag: the expanded model is a plain float model
  model.metadataProps = model.metadataProps?.filter((e) => e.key !== WEIGHTS_TAG_KEY);
  if (model.metadataProps?.length === 0) delete model.metadataProps;
  g.toposort();
  return expanded;
}

/**
 * A weight stored transposed (MatMul B: DequantizeLinear on [N, K], then Transpose) becomes the
 * transposed float initializer, named as the Transpose output, so the expanded model is the same as
 * for a weight dequantized in place. Transposing is exact.
 */
function foldTranspose(g: Graph, init: Value): void {
  if (init.uses.length !== 1 || init.isGraphOutput) return;
  const tr = init.uses[0]!.node;
  if (tr.opType !== 'Transpose' || tr.opDomain !== '' || tr.graph !== g || tr.outputs.length !== 1) return;
  const t = constantOf(init)!;
  const rank = t.dims.length;
  const perm = tr.getInts('perm')?.map(Number) ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
  const out = tr.outputs[0]!;
  const name = out.name;
  const f = transposeTensor(t, perm, name);
  const folded = replaceWithInitializer(g, out, f);
  g.removeNode(tr);
  // the Transpose was its only reader
  if (g.initializers.get(init.name) === init) g.removeInitializer(init);
}

/**
 * Expands the int8 weights of a model tagged `onnxforge.weights=int8` into float initializers, on
 * bytes (no onnxruntime needed). Untagged models come back as the same Uint8Array.
 */
export function expandCompressedWeights(bytes: Uint8Array): Uint8Array {
  if (!hasTagBytes(bytes)) return bytes;
  const model = loadModelBytes(bytes);
  if (!isWeightCompressed(model)) return bytes;
  expandWeightsInModel(model);
  return serializeModel(model);
}

/**
 * An onnxruntime session for a model file or bytes; weight-compressed models are expanded to float
 * weights in memory first (see {@link expandCompressedWeights}), everything else loads as it is.
 */
export async function createSession(source: ModelSource, options: SessionOptions = {}, name?: string): Promise<Session> {
  const bytes = await readModelBytes(source);
  const label = name ?? (typeof source === 'string' ? source : undefined);
  return Session.create(expandCompressedWeights(bytes), options, label);
}

/** Whether the tag's key occurs in the bytes at all (a cheap pre-check before decoding). */
function hasTagBytes(bytes: Uint8Array): boolean {
  const key = new TextEncoder().encode(WEIGHTS_TAG_KEY);
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return buf.indexOf(key) >= 0;
}

function loadModelBytes(bytes: Uint8Array): Model {
  return loadModelSync(bytes);
}
