/** Passes of this area, in registry order (one file per pass beside this group). */
import type { Pass } from '../pass.js';
import pruneMagnitude from '../prune/prune-magnitude.js';
import pruneChannels from '../prune/prune-channels.js';

export const pruningPasses: Pass<any>[] = [pruneMagnitude, pruneChannels];
