/**
 * The pass contract. A pass is a typed object, one per file under `passes/`, whose `name` equals its
 * file name (kebab-case). It transforms a Model in place and says whether it changed anything, with
 * statistics. Passes never read or write files: data, the runtime and logging come in the context, so
 * quantization and distillation can be passes too while I/O stays at the ends of a pipeline.
 *
 * Options are declared as a schema; the pass manager parses textual options (`name<key=value;flag>`)
 * against it, fills defaults and rejects bad values with a sentence naming the pass and option.
 */
import type { Model, Node } from '../ir/ir.js';
import type { Runner, Threads } from '../runtime/runner-types.js';

export type OptionType = 'number' | 'integer' | 'boolean' | 'string' | 'enum' | 'string[]';

export interface OptionSpec {
  type: OptionType;
  description: string;
  default?: unknown;
  /** For 'enum'. */
  values?: readonly string[];
  min?: number;
  max?: number;
  /** Minimum is exclusive (e.g. a ratio in (0, 1)). */
  exclusiveMin?: boolean;
  exclusiveMax?: boolean;
}

export type OptionsSchema = Record<string, OptionSpec>;

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
}

/** One "did not apply here, because ..." note, shown with `--explain`. */
export interface Explanation {
  pass: string;
  node?: string;
  reason: string;
}

/**
 * Sub-pipelines a pass may run on a model (quantization's preparation, distillation's clean-up). The
 * pass manager supplies them, so a pass never imports the manager or the registry (which lists it).
 */
export interface SubPipelines {
  /** Runs pipeline text (registry names, `@preset`s) on `model` in place with this context's logger. */
  run(model: Model, pipeline: string, options?: { data?: Record<string, unknown> }): Promise<void>;
  hasPreset(name: string): boolean;
  hasPass(name: string): boolean;
}

/**
 * What a pass can use besides the model. `data` is typed loosely here; `data/` provides the real types.
 * onnxruntime is reached through `runner` (runtime/runner.ts), so a pass can be tested with a fake one.
 */
export interface PassContext {
  logger: Logger;
  /** Record why a pattern did not apply (kept only when explaining). */
  explain(e: Omit<Explanation, 'pass'>): void;
  readonly explaining: boolean;
  /** Named data sources (e.g. 'calibration', 'eval'): async iterables of feeds. */
  data: Record<string, unknown>;
  /** Opens onnxruntime sessions and profiles models; the pass manager gives onnxruntime-node's. */
  runner: Runner;
  /**
   * Helper threads for independent jobs (int4 GPTQ's layers), each with onnxruntime-node: given by the
   * manager when the runner is onnxruntime-node's, so a job computes the same wherever it runs. Absent:
   * the pass runs every job itself.
   */
  threads?: Threads;
  /** Sub-pipelines (absent in a bare context: passes that need one say so). */
  pipelines?: SubPipelines;
  /** The report the last run of `pass` returned earlier in this pipeline run, if any. */
  reportOf<R>(pass: Pass<any, R>): R | undefined;
  /** Progress reporting for long passes (no-op when not a TTY). */
  progress?(label: string, total: number): { tick(n?: number): void; done(): void };
  /**
   * Analyses the passes of one pipeline run share (LLVM's analysis manager): the value `compute`
   * returned earlier in this run for `model` under `key`, else `compute`'s (kept when it says `reuse`).
   * The manager drops them all when a pass reports a change, so a pass reads one before it changes
   * the model itself. Absent outside the manager (see passes/analyses.ts).
   */
  analysis?<T>(model: Model, key: string, compute: () => { value: T; reuse: boolean }): T;
}

export interface PassResult<R = unknown> {
  changed: boolean;
  /** Pass-specific counts, e.g. { folded: 12, removedNodes: 40 }. */
  stats?: Record<string, number | string>;
  /** The pass's typed report (its type is the pass's second type parameter). */
  report?: R;
}

export interface Pass<O extends Record<string, unknown> = Record<string, unknown>, R = unknown> {
  /** Textual name, equal to the file name: 'fold-constants'. */
  readonly name: string;
  readonly description: string;
  readonly options: OptionsSchema;
  /** Minimum opset the pass needs (it refuses older models with a clear error), if any. */
  readonly minOpset?: number;
  /** False for passes that should run once rather than to a fixed point (e.g. quantization). */
  readonly idempotent?: boolean;
  run(model: Model, options: O, ctx: PassContext): PassResult<R> | Promise<PassResult<R>>;
}

/** Helper so pass files get their option types checked: `export default definePass<{...}>({...})`. */
export function definePass<O extends Record<string, unknown>, R = unknown>(p: Pass<O, R>): Pass<O, R> {
  return p;
}

/** A match result for match-then-rewrite patterns: matchers never mutate. */
export type Match<T> = { ok: true; value: T } | { ok: false; reason: string };

export const matched = <T>(value: T): Match<T> => ({ ok: true, value });
export const noMatch = (reason: string): Match<never> => ({ ok: false, reason });

/** A rewrite pattern applied by a greedy driver: `match` is pure, `rewrite` mutates. */
export interface Pattern<T> {
  readonly name: string;
  /** Op types the anchor node can have (for fast dispatch). */
  readonly anchors: readonly string[];
  match(node: Node, model: Model): Match<T>;
  rewrite(node: Node, m: T, model: Model): void;
}

/**
 * `options` with every option left undefined taken from the schema's default: the plain function
 * behind a pass applies its pass's schema, so the programmatic API, the CLI (whose flags read the same
 * schema) and pipeline files share one source of defaults. Keys outside the schema pass through.
 */
export function withSchemaDefaults<T extends object>(schema: OptionsSchema, options: T): T {
  const out = { ...options } as Record<string, unknown>;
  for (const [key, spec] of Object.entries(schema)) {
    if (out[key] === undefined && spec.default !== undefined) out[key] = Array.isArray(spec.default) ? [...(spec.default as unknown[])] : spec.default;
  }
  return out as T;
}
