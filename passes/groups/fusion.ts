/**
 * Passes of this area, in registry order (one file per pass beside this group), and their presets:
 * the float-exact fusions join `default` (which the cleanup group registers first); `fuse` adds
 * the fusions that need a newer opset, after `upgrade-opset`.
 */
import type { Pass } from '../pass.js';
import { extendPreset, PRESETS, registerPreset } from '../presets.js';
import fuseBatchnorm from '../fusion/fuse-batchnorm.js';
import fuseConvAffine from '../fusion/fuse-conv-affine.js';
import fuseMatmulAdd from '../fusion/fuse-matmul-add.js';
import fusePad from '../fusion/fuse-pad.js';
import fuseHardswish from '../fusion/fuse-hardswish.js';
import fuseLayerNorm from '../fusion/fuse-layer-norm.js';
import fuseGelu from '../fusion/fuse-gelu.js';
import upgradeOpset from '../convert/upgrade-opset.js';
import fuseShapeIntoReshape from '../fusion/fuse-shape-into-reshape.js';
import fuseConvInputAffine from '../fusion/fuse-conv-input-affine.js';

export const fusionPasses: Pass<any>[] = [fuseBatchnorm, fuseConvAffine, fuseConvInputAffine, fuseMatmulAdd, fusePad, fuseShapeIntoReshape, fuseHardswish, fuseLayerNorm, fuseGelu, upgradeOpset];

/** Fusions that are exact in float and keep the opset. */
export const EXACT_FUSIONS = 'fuse-pad,fuse-batchnorm,fuse-conv-affine,fuse-conv-input-affine,fuse-matmul-add,fuse-shape-into-reshape';
/** Fusions that need opset 14/17/20. */
export const UPGRADE_FUSIONS = 'fuse-hardswish,fuse-layer-norm,fuse-gelu';

const cleanupDefault = PRESETS['default']?.pipeline ?? '';
extendPreset('default', EXACT_FUSIONS, 'Lossless cleanup and float-exact fusions; never changes the opset.');
registerPreset(
  'fuse',
  'Everything in default, then upgrade to opset 20 and fuse HardSwish/HardSigmoid, LayerNormalization and Gelu.',
  [cleanupDefault, EXACT_FUSIONS, 'upgrade-opset<to=20>', UPGRADE_FUSIONS].filter(Boolean).join(','),
);
