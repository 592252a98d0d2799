/** Passes of this area, in registry order (one file per pass beside this group). */
import type { Pass } from '../pass.js';
import distill from '../distill/distill.js';

export const distillationPasses: Pass<any>[] = [distill];
