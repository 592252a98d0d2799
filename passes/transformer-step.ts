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
import { TRANSFORMER_FUSIONS } from './presets.js';

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

/** MatMul/Gemm nodes with a constant weight (what weight-only quantization can take). */
function constantWeightLinears(model: Model): number {
  return model.graph.nodes.filter((n) => n.opDomain === '' && (n.opType === 'MatMul' || n.opType === 'Gemm') && (constantOf(n.inputs[1]) !== undefined || constantOf(n.inputs[1]?.producer?.inputs[0]) !== undefined)).length;
}

/**
 * Runs the transformer preset on a copy of `model` and returns the copy when it fused something, else
 * `model` unchanged (the preset upgrades the opset, which a model it does not fuse gains nothing from).
 * With `keepWeights` (int4, q4f16), when the attention fusion packs Q/K/V weights into com.microsoft
 * Attention (which MatMulNBits then cannot quantize), the preset runs again without fuse-attention.
 * `skip` (--no-fuse-transformer, or a format without Microsoft operators) says why it does not run.
 */
export async function fuseTransformerWith(model: Model, o: { skip?: string; keepWeights?: boolean }, engine: Pick<EngineOptions, 'catalog' | 'runner'>): Promise<{ model: Model; step: FusionStep }> {
  const t0 = performance.now();
  if (o.skip) return { model, step: { preset: 'transformer', applied: false, fused: {}, reason: `skipped: ${o.skip}`, ms: 0 } };
  const before = fusedOps(model);
  let copy = cloneModel(model);
  await optimize(copy, '@transformer', engine);
  let note = '';
  if (o.keepWeights && constantWeightLinears(copy) < constantWeightLinears(model)) {
    copy = cloneModel(model);
    await optimize(copy, ['@default', 'upgrade-opset<to=20>', ...TRANSFORMER_FUSIONS.split(',').filter((p) => p !== 'fuse-attention'), 'eliminate-dead'].join(','), engine);
    note = '; attention left unfused: com.microsoft.Attention packs the Q/K/V weights, which int4 could then not quantize';
  }
  const fused: Record<string, number> = {};
  for (const [op, n] of fusedOps(copy)) if (n > (before.get(op) ?? 0)) fused[op] = n - (before.get(op) ?? 0);
  const applied = Object.keys(fused).length > 0;
  const reason = applied ? `fused ${Object.entries(fused).map(([op, n]) => `${n} ${op}`).join(', ')}${note}` : `nothing to fuse: the model is kept as it was${note}`;
  return { model: applied ? copy : model, step: { preset: 'transformer', applied, fused, reason, ms: performance.now() - t0 } };
}
