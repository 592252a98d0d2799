/** Passes of this area, in registry order (one file per pass beside this group). */
import type { Pass } from '../pass.js';
import { registerPreset } from '../presets.js';
import foldConstants from '../cleanup/fold-constants.js';
import eliminateDead from '../cleanup/eliminate-dead.js';
import eliminateIdentity from '../cleanup/eliminate-identity.js';
import eliminateCommonSubexpressions from '../cleanup/eliminate-common-subexpressions.js';
import dedupeConstants from '../cleanup/dedupe-constants.js';
import mergeConsecutive from '../cleanup/merge-consecutive.js';

export const cleanupPasses: Pass<any>[] = [foldConstants, eliminateDead, eliminateIdentity, eliminateCommonSubexpressions, dedupeConstants, mergeConsecutive];

/**
 * The lossless cleanup pipeline. Other groups append to `default` with `extendPreset` (the fusion group
 * adds its exact-in-float fusions); `default` never changes the opset.
 */
export const DEFAULT_CLEANUP = 'fold-constants,eliminate-identity,merge-consecutive,eliminate-common-subexpressions,dedupe-constants,eliminate-dead';

registerPreset('default', 'Lossless cleanup: constant folding, no-op and dead-code elimination, CSE, constant dedupe, merged layout ops.', DEFAULT_CLEANUP);
registerPreset('cleanup', 'Only the cleanup passes (the lossless part of default without fusions).', DEFAULT_CLEANUP);
