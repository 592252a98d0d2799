/**
 * Named pipelines. Each pass group registers or extends presets when it loads (`default` comes from
 * `groups/cleanup.ts`; the fusion group appends its exact-in-float fusions to it), and the registry
 * re-exports them. Kept in its own module so group files can call `registerPreset` while the registry
 * is still loading (no import cycle at evaluation time).
 */

export interface Preset {
  description: string;
  pipeline: string;
}

/** Named pipelines. `default` holds the lossless passes and never changes the opset. */
export const PRESETS: Record<string, Preset> = Object.create(null) as Record<string, Preset>;

export function registerPreset(name: string, description: string, pipeline: string): void {
  PRESETS[name] = { description, pipeline };
}

/** Appends passes (pipeline text) to a preset, creating it when absent. */
export function extendPreset(name: string, pipeline: string, description = name): void {
  const p = PRESETS[name];
  if (p) p.pipeline = p.pipeline ? `${p.pipeline},${pipeline}` : pipeline;
  else registerPreset(name, description, pipeline);
}
