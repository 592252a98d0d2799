/**
 * The one registry: every pass by its textual name, and the presets. The CLI, pipeline files,
 * presets and tests all resolve passes through here. Passes are grouped by area (each group file
 * lists its passes); this file is the single place that joins them.
 */
import type { Pass } from './pass.js';
// presets first: group files register presets while they load
export { PRESETS, registerPreset, extendPreset, type Preset } from './presets.js';
import { cleanupPasses } from './groups/cleanup.js';
import { fusionPasses } from './groups/fusion.js';
import { quantizationPasses } from './groups/quantization.js';
import { pruningPasses } from './groups/pruning.js';
import { distillationPasses } from './groups/distillation.js';
// presets that combine the groups above (registered after them)
import './groups/deploy.js';

const ALL: Pass<any>[] = [...cleanupPasses, ...fusionPasses, ...quantizationPasses, ...pruningPasses, ...distillationPasses];

export const PASSES: ReadonlyMap<string, Pass<any>> = new Map(ALL.map((p) => [p.name, p]));


export function getPass(name: string): Pass<any> | undefined {
  return PASSES.get(name);
}
