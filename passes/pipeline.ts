/**
 * Textual pipelines over the registry: `fold-constants,eliminate-dead` runs two passes; options go in
 * angle brackets, separated by `;`: `fold-constants<max-output-bytes=4096;no-lift>` (a bare key is
 * `true`, `no-key` is `false`; list options take `a|b|c`). The parser lives in pipeline-core.ts, over
 * any {@link PassCatalog}; these functions bind it to the registry's passes and presets.
 */
import type { PassCatalog } from './catalog.js';
import type { Pass } from './pass.js';
import { parsePipelineIn, presetPipelineIn, stepIn, type PipelineStep } from './pipeline-core.js';
import { getPass, PASSES, PRESETS } from './registry.js';

export { formatPipeline, resolveOptions, retarget, type PipelineStep } from './pipeline-core.js';

/** Every registered pass and preset (PRESETS as it is at each lookup: users may add presets). */
export const registryCatalog: PassCatalog = { getPass, passNames: () => [...PASSES.keys()], presets: PRESETS };

/** Builds a step in code: `step('fold-constants', { 'max-output-bytes': 4096 })` or `step(myPass)`. */
export function step(pass: string | Pass<any>, options: Record<string, unknown> = {}): PipelineStep {
  return stepIn(registryCatalog, pass, options);
}

/**
 * Parses a textual pipeline. `extra` adds passes not in the registry (custom passes in code). A preset
 * name prefixed with `@` (`@default`) expands to the preset's pipeline.
 */
export function parsePipeline(text: string, extra?: ReadonlyMap<string, Pass<any>>, depth = 0): PipelineStep[] {
  return parsePipelineIn(registryCatalog, text, extra, depth);
}

/** The pipeline text of a preset, or an error listing the presets. */
export function presetPipeline(name: string): string {
  return presetPipelineIn(registryCatalog, name);
}
