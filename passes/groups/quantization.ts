/** Passes of this area, in registry order (one file per pass beside this group). */
import type { Pass } from '../pass.js';

export const quantizationPasses: Pass<any>[] = [];
