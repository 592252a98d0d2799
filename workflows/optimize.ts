/**
 * Optimization as a workflow: load the model once, check it, run the pipeline (pass text or a preset;
 * transformer fusions retargeted on request) in memory through the pass manager, optionally verifying
 * outputs after every pass on given or generated inputs, and write the model last (atomically). A pass
 * that makes outputs drift past the tolerance stops the run (exit 1) and nothing is written.
 */
import { basename } from 'node:path';
import { collectSamples } from '../data/index.js';
import { assertValid } from '../ir/checker.js';
import { loadModel, saveModel, serializeModel, type SaveOptions } from '../onnx/index.js';
import type { FusionTarget } from '../passes/fusion/transformer-target.js';
import { optimize, type VerifyOptions } from '../passes/manager.js';
import { parsePipeline, presetPipeline, retarget } from '../passes/pipeline.js';
import type { ReportDocument } from '../report/document.js';
import { modelFacts } from '../report/document.js';
import { optimizeDocument, type OptimizeResult } from '../report/optimize.js';
import { createSession } from '../runtime/session.js';

export interface OptimizeWorkflowOptions {
  model: string;
  output: string;
  save?: SaveOptions;
  /** Pipeline text; without it, `preset` (default 'default'). */
  passes?: string;
  preset?: string;
  /** Operators the transformer fusions write. */
  target?: FusionTarget;
  /** Run the model before and after each pass on `inputs` (default random:2:0) and stop on drift. */
  verify?: boolean;
  inputs?: string;
  shapes?: Record<string, number[]>;
  rtol?: number;
  atol?: number;
  explain?: boolean;
  maxIterations?: number;
  /** Also build the report document (`onnxforge.report/1`). */
  document?: boolean;
}

export async function optimizeWorkflow(o: OptimizeWorkflowOptions): Promise<OptimizeResult & { document?: ReportDocument }> {
  const text = o.passes ?? presetPipeline(o.preset ?? 'default');
  const steps = o.target ? retarget(parsePipeline(text), o.target) : parsePipeline(text);
  const model = await loadModel(o.model);
  assertValid(model, o.model);
  const sizeBefore = serializeModel(model).length;
  const factsBefore = modelFacts(model, sizeBefore, o.model);
  let verify: VerifyOptions | undefined;
  if (o.verify) {
    const s = await createSession(o.model, { graphOptimizationLevel: 'disabled' });
    const inputs = s.inputs;
    await s.dispose();
    const samples = await collectSamples(o.inputs ?? 'random:2:0', inputs, { shapes: o.shapes ?? {}, limit: 16 });
    verify = { feeds: samples.map((x) => x.feed), rtol: o.rtol ?? 1e-3, atol: o.atol ?? 1e-5 };
  }
  const report = await optimize(model, steps, {
    ...(verify ? { verify } : {}),
    explain: !!o.explain,
    ...(o.maxIterations !== undefined ? { maxIterations: o.maxIterations } : {}),
  });
  const res = await saveModel(model, o.output, o.save);
  const result: OptimizeResult = {
    report,
    input: o.model,
    pipeline: o.passes ?? `@${o.preset ?? 'default'}`,
    sizeBefore,
    sizeAfter: res.bytes + (res.dataBytes ?? 0),
    path: res.path,
    ...(res.dataPath ? { dataPath: res.dataPath } : {}),
  };
  if (!o.document) return result;
  return { ...result, document: optimizeDocument(result, factsBefore, model, `optimize ${basename(o.model)}: ${result.pipeline}`) };
}
