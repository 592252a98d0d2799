/**
 * The transformer fusion step the int4, fp16 and q4f16 modes run before they quantize: the
 * `transformer` preset (attention, LayerNorm, GELU, RMSNorm fusions) on a copy, kept only when it fused
 * something. Pure: the pass catalog and the runner come from the caller (the CLI: the registry and
 * onnxruntime-node, workflows/quantize/int4.ts; the page: the portable catalog and onnxruntime-web), so
 * the page writes the CLI's bytes.
 */
import type { Model } from '../ir/ir.js';
import { constantOf } from '../ir/ir.js';
import { cloneModel } from '../onnx/codec.js';
import { optimize, type EngineOptions } from './engine.js';
import { transformerPipeline } from './presets.js';

/** What the transformer fusion step did (reports of the int4, fp16 and q4f16 modes). */
export interface FusionStep {
  preset: 'transformer';
  /** True when the fused model was kept (the preset fused at least one operator). */
  applied: boolean;
  /** Fused operators added, by type. */
  fused: Record<string, number>;
  reason: string;
  ms: number;
}

/** Operators the transformer preset fuses into (their count growing means the preset applied). */
const FUSED_OPS = new Set(['Attention', 'MultiHeadAttention', 'GroupQueryAttention', 'SkipLayerNormalization', 'SkipSimplifiedLayerNormalization', 'SimplifiedLayerNormalization', 'RMSNormalization', 'LayerNormalization', 'BiasGelu', 'FastGelu', 'Gelu', 'RotaryEmbedding']);

function fusedOps(model: Model): Map<string, number> {
  const m = new Map<string, number>();
  for (const n of model.graph.nodes) if (FUSED_OPS.has(n.opType)) m.set(n.opType, (m.get(n.opType) ?? 0) + 1);
  return m;
}

/** Which packed Q/K/V weights ([K, N] of com.microsoft Attention) the quantizer takes: all, none, or by shape. */
export type AttentionWeights = boolean | ((weight: { K: number; N: number }) => boolean);

/**
 * Constant weight values weight-only quantization can take: MatMul/Gemm weights (also behind a
 * Transpose), and the packed Q/K/V weights of com.microsoft Attention that `attention` accepts (int4 unpacked).
 */
function quantizableWeightValues(model: Model, attention: AttentionWeights): number {
  let n = 0;
  for (const node of model.graph.nodes) {
    const linear = node.opDomain === '' && (node.opType === 'MatMul' || node.opType === 'Gemm');
    const w = constantOf(node.inputs[1]) ?? (linear ? constantOf(node.inputs[1]?.producer?.inputs[0]) : undefined);
    if (!w) continue;
    if (!linear) {
      if (node.opDomain !== 'com.microsoft' || node.opType !== 'Attention' || w.dims.length !== 2) continue;
      if (!(typeof attention === 'function' ? attention({ K: w.dims[0]!, N: w.dims[1]! }) : attention)) continue;
    }
    n += w.size;
  }
  return n;
}

/**
 * Runs the transformer preset on a copy of `model` and returns the copy when it fused something, else
 * `model` unchanged (the preset upgrades the opset, which a model it does not fuse gains nothing from).
 * With `keepWeights` (int4, q4f16), when the fusions leave fewer weight values the quantizer can take
 * (the attention fusion packs Q/K/V weights into com.microsoft Attention, which MatMulNBits cannot
 * quantize), the preset runs again without fuse-attention; `attentionWeights` says which of Attention's
 * packed weights the quantizer takes too (int4: quantize-int4's quantizesPackedAttention, by shape),
 * so a fused Attention is kept and the quantized model runs the fp32 model's attention. When it takes
 * none (q4f16), attention fuses unpacked (fuse-attention<pack=false>: MultiHeadAttention, the
 * projections left as MatMuls) in the one run of the preset.
 * `skip` (--no-fuse-transformer, or a format without Microsoft operators) says why it does not run.
 */
export async function fuseTransformerWith(model: Model, o: { skip?: string; keepWeights?: boolean; attentionWeights?: AttentionWeights }, engine: Pick<EngineOptions, 'catalog' | 'runner'>): Promise<{ model: Model; step: FusionStep }> {
  const t0 = performance.now();
  if (o.skip) return { model, step: { preset: 'transformer', applied: false, fused: {}, reason: `skipped: ${o.skip}`, ms: 0 } };
  const before = fusedOps(model);
  const attention = o.attentionWeights ?? false;
  const withoutAttention = transformerPipeline('');
  const unpacked = transformerPipeline('fuse-attention<pack=false>');
  const refused = '; attention left unfused so that int4 runs the Q/K/V weights as MatMuls of their own (com.microsoft.Attention packs them into one float weight)';
  let copy: Model;
  let note = '';
  if (o.keepWeights && attention === false) {
    // no packed Attention weight is taken (q4f16): attention fuses as MultiHeadAttention on the Q/K/V
    // projections, which stay MatMuls the quantizer takes (one run of the preset, not a second
    // without fuse-attention)
    copy = cloneModel(model);
    await optimize(copy, unpacked, engine);
    if (quantizableWeightValues(copy, false) < quantizableWeightValues(model, false)) {
      copy = cloneModel(model);
      await optimize(copy, withoutAttention, engine);
      note = refused;
    } else if ((fusedOps(copy).get('MultiHeadAttention') ?? 0) > (before.get('MultiHeadAttention') ?? 0)) note = '; attention as com.microsoft.MultiHeadAttention, its Q/K/V projections left as MatMuls the quantizer takes (com.microsoft.Attention would pack them into one float weight)';
  } else {
    copy = cloneModel(model);
    await optimize(copy, '@transformer', engine);
    if (o.keepWeights && quantizableWeightValues(copy, attention) < quantizableWeightValues(model, attention)) {
      copy = cloneModel(model);
      await optimize(copy, withoutAttention, engine);
      note = refused;
    }
  }
  const fused: Record<string, number> = {};
  for (const [op, n] of fusedOps(copy)) if (n > (before.get(op) ?? 0)) fused[op] = n - (before.get(op) ?? 0);
  const applied = Object.keys(fused).length > 0;
  const reason = applied ? `fused ${Object.entries(fused).map(([op, n]) => `${n} ${op}`).join(', ')}${note}` : `nothing to fuse: the model is kept as it was${note}`;
  return { model: applied ? copy : model, step: { preset: 'transformer', applied, fused, reason, ms: performance.now() - t0 } };
}
