/**
 * The pass manager: runs a pipeline over a model in memory until nothing changes (a fixed point, with
 * an iteration cap), timing each pass and recording node count and tensor bytes before and after it.
 * With `verify`, it runs the model with onnxruntime before the first pass and after every pass that
 * changed something, on the given inputs, and stops with a check error (exit code 1) naming the pass
 * when outputs drift past the tolerance — the caller then writes nothing. Models are read and written
 * only by the caller: `optimize()` never touches files.
 *
 * The engine itself is engine.ts (no registry, no onnxruntime); this file binds it to the registry's
 * passes and presets and, unless the options name another runner, onnxruntime-node (and with it
 * Node's helper threads, runtime/threads.ts).
 */
import type { Model } from '../ir/ir.js';
import { nodeRunner } from '../runtime/runner.js';
import { nodeThreads } from '../runtime/threads.js';
import * as engine from './engine.js';
import type { EngineOptions, OptimizeOptions, OptimizeReport } from './engine.js';
import type { Explanation, PassContext } from './pass.js';
import { registryCatalog } from './pipeline.js';
import type { PipelineStep } from './pipeline-core.js';

export { passReport, scopeIssues, summarize, compare, type VerifyOptions, type OptimizeOptions, type PassRecord, type PassSummary, type OptimizeReport } from './engine.js';

function withRegistry(options: OptimizeOptions): EngineOptions {
  const runner = options.runner ?? nodeRunner;
  // helper threads run their jobs with onnxruntime-node: only for passes that run with it too
  const threads = options.threads ?? (runner === nodeRunner ? nodeThreads() : undefined);
  return { ...options, catalog: registryCatalog, runner, ...(threads ? { threads } : {}) };
}

/**
 * The context the manager hands a pass: `options`' logger, data and runner, sub-pipelines that run
 * through this manager (sharing the reports), and the reports of passes that ran before.
 */
export function createPassContext(options: OptimizeOptions = {}, pass = '(caller)', onExplain?: (e: Explanation) => void): PassContext {
  return engine.createPassContext(withRegistry(options), pass, onExplain);
}

/** Runs `pipeline` (text or steps) on `model` in place and reports what each pass did. */
export function optimize(model: Model, pipeline: string | readonly PipelineStep[], options: OptimizeOptions = {}): Promise<OptimizeReport> {
  return engine.optimize(model, pipeline, withRegistry(options));
}

export class PassManager extends engine.PassManager {
  constructor(steps: readonly PipelineStep[], options: OptimizeOptions = {}) {
    super(steps, withRegistry(options));
  }
}
