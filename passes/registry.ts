/**
 * The one registry: every pass by its textual name, in one table. The CLI, pipeline files, presets and
 * tests all resolve passes through here. To add a pass: one file under the folder of its area, then one
 * import and one entry below.
 */
import type { Pass } from './pass.js';
import foldConstants from './cleanup/fold-constants.js';
import eliminateDead from './cleanup/eliminate-dead.js';
import eliminateIdentity from './cleanup/eliminate-identity.js';
import eliminateCommonSubexpressions from './cleanup/eliminate-common-subexpressions.js';
import dedupeConstants from './cleanup/dedupe-constants.js';
import mergeConsecutive from './cleanup/merge-consecutive.js';
import fuseBatchnorm from './fusion/fuse-batchnorm.js';
import fuseConvAffine from './fusion/fuse-conv-affine.js';
import fuseConvInputAffine from './fusion/fuse-conv-input-affine.js';
import fuseMatmulAdd from './fusion/fuse-matmul-add.js';
import fusePad from './fusion/fuse-pad.js';
import fuseShapeIntoReshape from './fusion/fuse-shape-into-reshape.js';
import fuseHardswish from './fusion/fuse-hardswish.js';
import fuseLayerNorm from './fusion/fuse-layer-norm.js';
import fuseGelu from './fusion/fuse-gelu.js';
import fuseAttention from './fusion/fuse-attention.js';
import fuseSkipLayerNorm from './fusion/fuse-skip-layer-norm.js';
import fuseBiasGelu from './fusion/fuse-bias-gelu.js';
import fuseRmsNorm from './fusion/fuse-rms-norm.js';
import fuseRotary from './fusion/fuse-rotary.js';
import upgradeOpset from './convert/upgrade-opset.js';
import convertFloat16 from './convert/convert-float16.js';
import quantizeStatic from './quantize/quantize-static.js';
import quantizeWeights from './quantize/quantize-weights.js';
import quantizeDynamic from './quantize/quantize-dynamic.js';
import quantizeInt4 from './quantize/quantize-int4.js';
import pruneMagnitude from './prune/prune-magnitude.js';
import pruneChannels from './prune/prune-channels.js';
import distill from './distill/distill.js';

export { PRESETS, registerPreset, extendPreset, hasPreset, type Preset } from './presets.js';

const ALL: Pass<any, any>[] = [
  // cleanup
  foldConstants, eliminateDead, eliminateIdentity, eliminateCommonSubexpressions, dedupeConstants, mergeConsecutive,
  // fusion and conversion
  fuseBatchnorm, fuseConvAffine, fuseConvInputAffine, fuseMatmulAdd, fusePad, fuseShapeIntoReshape, fuseHardswish, fuseLayerNorm, fuseGelu, upgradeOpset,
  fuseAttention, fuseSkipLayerNorm, fuseBiasGelu, fuseRmsNorm, fuseRotary, convertFloat16,
  // quantization
  quantizeStatic, quantizeWeights, quantizeDynamic, quantizeInt4,
  // pruning and distillation
  pruneMagnitude, pruneChannels, distill,
];

export const PASSES: ReadonlyMap<string, Pass<any, any>> = new Map(ALL.map((p) => [p.name, p]));

export function getPass(name: string): Pass<any, any> | undefined {
  return PASSES.get(name);
}
