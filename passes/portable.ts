/**
 * The passes that need no onnxruntime-node and no file system: cleanup, the float-exact and transformer
 * fusions, the opset upgrade, int8 weight compression, int4 weights (RTN; GPTQ and the timed kernel
 * choices run through `ctx.runner`), float16 conversion (ranges through `ctx.runner`) and magnitude
 * pruning, with the registry's
 * presets. The browser build (`onnxforge/web`) resolves pipelines through this catalog; a preset that
 * names a pass outside it (deploy's quantize-static) fails there with PIPELINE_UNKNOWN_PASS. The pass
 * objects are the registry's own (test/web/portable.test.ts checks), so a pipeline does the same here
 * as in the CLI.
 */
import type { PassCatalog } from './catalog.js';
import type { Pass } from './pass.js';
import { PRESETS } from './presets.js';
import dedupeConstants from './cleanup/dedupe-constants.js';
import eliminateCommonSubexpressions from './cleanup/eliminate-common-subexpressions.js';
import eliminateDead from './cleanup/eliminate-dead.js';
import eliminateIdentity from './cleanup/eliminate-identity.js';
import foldConstants from './cleanup/fold-constants.js';
import mergeConsecutive from './cleanup/merge-consecutive.js';
import upgradeOpset from './convert/upgrade-opset.js';
import fuseAttention from './fusion/fuse-attention.js';
import fuseBatchnorm from './fusion/fuse-batchnorm.js';
import fuseBiasGelu from './fusion/fuse-bias-gelu.js';
import fuseConvAffine from './fusion/fuse-conv-affine.js';
import fuseConvInputAffine from './fusion/fuse-conv-input-affine.js';
import fuseGelu from './fusion/fuse-gelu.js';
import fuseHardswish from './fusion/fuse-hardswish.js';
import fuseLayerNorm from './fusion/fuse-layer-norm.js';
import fuseMatmulAdd from './fusion/fuse-matmul-add.js';
import fusePad from './fusion/fuse-pad.js';
import fuseRmsNorm from './fusion/fuse-rms-norm.js';
import fuseRotary from './fusion/fuse-rotary.js';
import fuseShapeIntoReshape from './fusion/fuse-shape-into-reshape.js';
import fuseSkipLayerNorm from './fusion/fuse-skip-layer-norm.js';
import pruneMagnitude from './prune/prune-magnitude.js';
import convertFloat16 from './convert/convert-float16.js';
import quantizeInt4 from './quantize/quantize-int4.js';
import quantizeWeights from './quantize/quantize-weights.js';

/** The portable passes by name. */
export const PORTABLE_PASSES: ReadonlyMap<string, Pass<any, any>> = new Map(
  [
    foldConstants, eliminateDead, eliminateIdentity, eliminateCommonSubexpressions, dedupeConstants, mergeConsecutive,
    fuseBatchnorm, fuseConvAffine, fuseConvInputAffine, fuseMatmulAdd, fusePad, fuseShapeIntoReshape, fuseHardswish, fuseLayerNorm, fuseGelu,
    fuseAttention, fuseSkipLayerNorm, fuseBiasGelu, fuseRmsNorm, fuseRotary, upgradeOpset, quantizeWeights, quantizeInt4, convertFloat16, pruneMagnitude,
  ].map((p) => [p.name, p]),
);

/** The portable passes with the registry's presets. */
export const portableCatalog: PassCatalog = { getPass: (name) => PORTABLE_PASSES.get(name), passNames: () => [...PORTABLE_PASSES.keys()], presets: PRESETS };

/** Whether every pass `pipeline` names (presets expanded) is portable. */
export function isPortablePreset(name: string, depth = 0): boolean {
  const p = Object.prototype.hasOwnProperty.call(PRESETS, name) ? PRESETS[name] : undefined;
  if (!p || depth > 4) return false;
  return p.pipeline.split(',').every((part) => {
    const t = part.trim();
    if (t.startsWith('@')) return isPortablePreset(t.slice(1), depth + 1);
    return PORTABLE_PASSES.has(t.replace(/<.*$/s, '').trim());
  });
}
