/**
 * Named pipelines, as one table built by a function (LLVM's PassBuilder): each preset is pipeline text
 * over the registry's pass names and other presets (`@name`). Nothing registers presets while modules
 * load; `registerPreset`/`extendPreset` exist for users who add their own at run time, explicitly.
 */

export interface Preset {
  description: string;
  pipeline: string;
}

/** The lossless cleanup passes, in order. */
export const DEFAULT_CLEANUP = 'fold-constants,eliminate-identity,merge-consecutive,eliminate-common-subexpressions,dedupe-constants,eliminate-dead';
/** Fusions that are exact in float and keep the opset. */
export const EXACT_FUSIONS = 'fuse-pad,fuse-batchnorm,fuse-conv-affine,fuse-conv-input-affine,fuse-matmul-add,fuse-shape-into-reshape';
/** Fusions that need opset 14/17/20. */
export const UPGRADE_FUSIONS = 'fuse-hardswish,fuse-layer-norm,fuse-gelu';
/** Transformer fusions (their `target` option picks com.microsoft or standard opset-23 operators). */
export const TRANSFORMER_FUSIONS = 'fuse-layer-norm,fuse-gelu,fuse-bias-gelu,fuse-rms-norm,fuse-rotary,fuse-attention';

/** The transformer preset's pipeline, its fuse-attention step replaced by `attention` ('' leaves it out). */
export function transformerPipeline(attention = 'fuse-attention'): string {
  const fusions = TRANSFORMER_FUSIONS.split(',').map((p) => (p === 'fuse-attention' ? attention : p));
  return ['@default', 'upgrade-opset<to=20>', ...fusions.filter(Boolean), 'eliminate-dead'].join(',');
}

/** The built-in presets (a fresh table on every call). */
export function builtinPresets(): Record<string, Preset> {
  return {
    default: { description: 'Lossless cleanup and float-exact fusions; never changes the opset.', pipeline: `${DEFAULT_CLEANUP},${EXACT_FUSIONS}` },
    cleanup: { description: 'Only the cleanup passes (the lossless part of default without fusions).', pipeline: DEFAULT_CLEANUP },
    fuse: {
      description: 'Everything in default, then upgrade to opset 20 and fuse HardSwish/HardSigmoid, LayerNormalization and Gelu.',
      pipeline: [DEFAULT_CLEANUP, EXACT_FUSIONS, 'upgrade-opset<to=20>', UPGRADE_FUSIONS].join(','),
    },
    transformer: {
      description: 'Everything in default, then upgrade to opset 20 and fuse attention (rotary embeddings into RotaryEmbedding first), LayerNormalization, BiasGelu/FastGelu and (Skip)RMSNorm into onnxruntime operators (optimize --target generic: standard opset-23 Attention/RMSNormalization). fuse-skip-layer-norm is left out: the CPU SkipLayerNormalization of onnxruntime 1.30 (a scalar loop with a division per element) measured 1.14-1.18x slower than Add + LayerNormalization on the test models.',
      pipeline: transformerPipeline(),
    },
    deploy: { description: 'default + fuse + static INT8 calibrated on data.calibration: the model to ship.', pipeline: '@default,@fuse,quantize-static<latencyAware=on>' },
  };
}

/**
 * The preset table every pipeline resolves through: the built-in presets plus those a user added with
 * {@link registerPreset}. (A plain object, kept for the public API's `PRESETS[name]` reads.)
 */
export const PRESETS: Record<string, Preset> = Object.assign(Object.create(null) as Record<string, Preset>, builtinPresets());

/** Adds (or replaces) a named pipeline. */
export function registerPreset(name: string, description: string, pipeline: string): void {
  PRESETS[name] = { description, pipeline };
}

/** Appends passes (pipeline text) to a preset, creating it when absent. */
export function extendPreset(name: string, pipeline: string, description = name): void {
  const p = PRESETS[name];
  if (p) p.pipeline = p.pipeline ? `${p.pipeline},${pipeline}` : pipeline;
  else registerPreset(name, description, pipeline);
}

export function hasPreset(name: string): boolean {
  return Object.prototype.hasOwnProperty.call(PRESETS, name);
}
