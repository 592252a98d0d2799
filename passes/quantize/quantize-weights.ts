/**
 * quantize-weights: weight compression. Every float32 constant (initializer or `Constant` node) that
 * some node reads in a weight slot (see {@link weightAxis}: Conv, ConvTranspose, MatMul, Gemm,
 * Gather tables, LSTM/GRU/RNN) becomes an int8 initializer behind a DequantizeLinear, symmetric per
 * channel along the op's output-channel axis: w_c = s_c q, q = clamp(round(w / s_c), -127, 127),
 * s_c = max|w_c| / 127. Activations stay float. The model is tagged in metadata_props with
 * `onnxforge.weights=int8`, so `createSession`/`expandCompressedWeights` (runtime/compressed.ts) can
 * turn the weights back into float initializers in memory — any other runtime still runs the model
 * as it is (a valid ONNX at opset >= 13). 2-D MatMul B weights are stored transposed ([N, K] int8,
 * DequantizeLinear axis 0, then Transpose) so that onnxruntime run raw keeps a float MatMul instead of
 * fusing into the 8-bit MatMulNBits (see `addTransposedMatMulWeightDq`).
 *
 * Preparation first (passes/quant/prepare.ts): the `default` preset (lifts Constant weights to
 * initializers, folds BatchNormalization into Conv), then the opset upgrade to 13 (DequantizeLinear
 * needs 13 for `axis`). Biases and small tensors (fewer than `minElements`) stay float: they weigh
 * little and int8 would cost accuracy for nothing.
 */
import { inputError } from '../../core/errors.js';
import { constantOf, Model, Node, Value } from '../../ir/ir.js';
import { DataType } from '../../core/dtype.js';
import { definePass, PassContext, withSchemaDefaults } from '../pass.js';
import { prepareForQuantization, PrepareReport } from './prepare.js';
import { addTransposedMatMulWeightDq, addWeightDq, quantizeInt8, weightAxis } from './weights-int8.js';

export const WEIGHTS_TAG_KEY = 'onnxforge.weights';
export const WEIGHTS_TAG_INT8 = 'int8';

export interface QuantizeWeightsOptions {
  /** Run the `default` preset and the opset upgrade first (default true). */
  prepare?: boolean;
  /** Presets run first (default 'default'). */
  presets?: string;
  /** Smallest tensor (elements) that is compressed (default 256). */
  minElements?: number;
  /** One scale per output channel (default true). */
  perChannel?: boolean;
  /** Op types whose weights are compressed (default: all weight slots known to {@link weightAxis}). */
  ops?: string[];
  /**
   * 2-D MatMul B weights are stored transposed, [N, K] int8 -> DequantizeLinear(axis 0) ->
   * Transpose(perm [1, 0]) (default true), so that onnxruntime run raw does not fuse them into the
   * 8-bit com.microsoft MatMulNBits, whose outputs differ from the float MatMul (see
   * {@link addTransposedMatMulWeightDq}). false: DequantizeLinear(axis 1) straight into the MatMul.
   * The expanded float model is the same either way.
   */
  transposeMatMul?: boolean;
}

export interface QuantizeWeightsReport {
  prepare?: PrepareReport;
  /** Compressed tensors. */
  weights: number;
  perChannel: number;
  /** Float bytes of the compressed tensors, and their int8 + scale bytes. */
  floatBytes: number;
  int8Bytes: number;
  /** Float constants left as they are (biases, small tensors, non-weight inputs), and their bytes. */
  keptFloat: number;
  keptFloatBytes: number;
  /** Compressed tensors by consuming op type. */
  byOp: Record<string, number>;
  /** MatMul weights stored transposed ([N, K] int8 + Transpose). */
  transposedMatMul: number;
}

/** Compresses the weights of `model` in place and tags it. */
export async function quantizeWeights(model: Model, options: QuantizeWeightsOptions = {}, ctx?: PassContext): Promise<QuantizeWeightsReport> {
  options = withSchemaDefaults(pass.options, options);
  const minElements = options.minElements!;
  if (!(Number.isInteger(minElements) && minElements >= 1)) throw inputError('USAGE_BAD_VALUE', `minElements must be a positive integer, got ${minElements}`);
  const g = model.graph;
  for (const n of g.allNodes()) {
    if (n.opType === 'QuantizeLinear' || n.opType === 'DynamicQuantizeLinear' || n.opType.startsWith('QLinear')) {
      throw inputError('WEIGHTS_ALREADY_QUANTIZED', `the model is already quantized (node ${n.label} is ${n.opType}); compress the float model instead`, { node: n.name ?? n.label });
    }
  }
  let prepare: PrepareReport | undefined;
  if (options.prepare) prepare = await prepareForQuantization(model, ctx, { presets: options.presets ?? 'default', minOpset: 13 });
  if ((model.opset('') ?? 1) < 13) throw inputError('QUANT_OPSET_TOO_OLD', `weight compression needs opset 13 (DequantizeLinear axis); the model has opset ${model.opset('')}`);
  const ops = options.ops ? new Set(options.ops) : undefined;
  const report: QuantizeWeightsReport = { weights: 0, perChannel: 0, floatBytes: 0, int8Bytes: 0, keptFloat: 0, keptFloatBytes: 0, byOp: {}, transposedMatMul: 0 };
  if (prepare) report.prepare = prepare;
  const names = g.names;

  // every float constant of the main graph, once
  const candidates: Value[] = [];
  for (const v of g.initializers.values()) if (!g.inputs.includes(v)) candidates.push(v);
  for (const n of g.nodes) if (n.opType === 'Constant' && n.opDomain === '' && n.outputs.length === 1) candidates.push(n.outputs[0]!);
  for (const v of candidates) {
    const t = constantOf(v);
    if (!t || t.dataType !== DataType.FLOAT || v.isGraphOutput || v.uses.length === 0) continue;
    let axis: number | null | undefined = null;
    let consumer: Node | undefined;
    for (const u of v.uses) {
      if (u.node.graph !== g) continue;
      if (ops && !ops.has(u.node.opType)) continue;
      const a = weightAxis(u.node, u.index, t.dims.length);
      if (a === null) continue;
      // consumers that disagree on the channel axis share one per-tensor scale
      axis = axis === null ? a : axis === a ? a : undefined;
      consumer ??= u.node;
    }
    if (axis === null || t.size < minElements) {
      report.keptFloat++;
      report.keptFloatBytes += t.byteLength;
      continue;
    }
    const w = quantizeInt8(t, options.perChannel === false ? undefined : axis);
    // every use is B of a MatMul (2-D, per column or per tensor): the transposed layout
    const transposed =
      (options.transposeMatMul ?? true) &&
      t.dims.length === 2 &&
      (w.axis === undefined || w.axis === 1) &&
      v.uses.every((u) => u.node.graph === g && u.node.opType === 'MatMul' && u.node.opDomain === '' && u.index === 1);
    const { out } = transposed ? addTransposedMatMulWeightDq(g, names, w, names.numbered('w')) : addWeightDq(g, names, w, names.numbered('w'));
    if (transposed) report.transposedMatMul++;
    v.replaceAllUsesWith(out);
    if (v.producer) g.removeNode(v.producer);
    else g.removeInitializer(v);
    report.weights++;
    if (w.axis !== undefined) report.perChannel++;
    report.floatBytes += t.byteLength;
    report.int8Bytes += w.q.byteLength + w.scale.byteLength;
    report.byOp[consumer!.opType] = (report.byOp[consumer!.opType] ?? 0) + 1;
  }
  g.toposort();
  if (report.weights > 0) model.setMetadata(WEIGHTS_TAG_KEY, WEIGHTS_TAG_INT8);
  return report;
}


const pass = definePass<{ minElements: number; perChannel: boolean; prepare: boolean; transposeMatMul: boolean }, QuantizeWeightsReport>({
  name: 'quantize-weights',
  description: 'Weight compression: int8 weights (symmetric, per channel) behind DequantizeLinear, float activations; tags the model onnxforge.weights=int8.',
  idempotent: false,
  options: {
    minElements: { type: 'integer', default: 256, min: 1, description: 'Smallest weight tensor (elements) that is compressed.' },
    perChannel: { type: 'boolean', default: true, description: 'One scale per output channel.' },
    prepare: { type: 'boolean', default: true, description: 'Run the default preset and upgrade to opset 13 first.' },
    transposeMatMul: { type: 'boolean', default: true, description: 'Store 2-D MatMul weights transposed ([N, K] int8, DequantizeLinear axis 0, then Transpose), so that onnxruntime run raw does not fuse them into the 8-bit MatMulNBits, whose outputs differ from the float MatMul; false: DequantizeLinear axis 1 straight into the MatMul.' },
  },
  async run(model, o, ctx) {
    const r = await quantizeWeights(model, { minElements: o.minElements, perChannel: o.perChannel, prepare: o.prepare, transposeMatMul: o.transposeMatMul }, ctx);
    return { report: r, changed: r.weights > 0, stats: { weights: r.weights, perChannel: r.perChannel, floatBytes: r.floatBytes, int8Bytes: r.int8Bytes, keptFloat: r.keptFloat } };
  },
});

export default pass;
