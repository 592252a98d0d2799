/**
 * Where pipelines find passes and presets by name. The registry is one catalog (pipeline.ts's
 * `registryCatalog`); the browser build has another, of the passes that need no onnxruntime-node
 * (passes/portable.ts). The parser (pipeline-core.ts) and the pass engine (engine.ts) take one, so
 * neither imports the registry.
 */
import type { Pass } from './pass.js';
import type { Preset } from './presets.js';

export interface PassCatalog {
  getPass(name: string): Pass<any, any> | undefined;
  /** Every pass name, for "did you mean" and the list in errors. */
  passNames(): string[];
  /** Presets by name (read at each lookup). */
  readonly presets: Readonly<Record<string, Preset>>;
}
