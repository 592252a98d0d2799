/** Passes of this area, in registry order (one file per pass beside this group). */
import type { Pass } from '../pass.js';
import quantizeStatic from '../quantize/quantize-static.js';
import quantizeWeights from '../quantize/quantize-weights.js';
import quantizeDynamic from '../quantize/quantize-dynamic.js';

export const quantizationPasses: Pass<any>[] = [quantizeStatic, quantizeWeights, quantizeDynamic];
