/**
 * The CLI's workflows on bytes, for the browser: the same pipeline text, the same passes (the
 * registry's objects, through the portable catalog), the same defaults and the same serialization, so a
 * page produces the bytes `onnxforge optimize` and `onnxforge quantize --mode weights` write. What the
 * CLI measures with onnxruntime-node (latency, output error) is left to the caller (the page measures
 * with onnxruntime-web). Nothing here touches files or the network.
 */
import { checkError, inputError } from '../core/errors.js';
import { assertValid, checkModel } from '../ir/checker.js';
import type { Model } from '../ir/ir.js';
import { loadModelBytes, serializeModel, type LoadWarning } from '../onnx/codec.js';
import { createPassContext, optimize, type OptimizeReport, type PassRecord } from '../passes/engine.js';
import type { FusionTarget } from '../passes/fusion/transformer-target.js';
import { parsePipelineIn, presetPipelineIn, resolveOptions, retarget } from '../passes/pipeline-core.js';
import { portableCatalog } from '../passes/portable.js';
import weightsPass, { quantizeWeights, type QuantizeWeightsOptions, type QuantizeWeightsReport } from '../passes/quantize/quantize-weights.js';
import { constantTensors, renderSummary, summarize, type ModelSummary } from '../report/inspect.js';
import type { Runner } from '../runtime/runner-types.js';

export interface WebLoadOptions {
  /** Label for messages (the file name). */
  name?: string;
  /** Told about each exporter quirk the loader repaired (the CLI prints these on stderr). */
  onWarning?: (w: LoadWarning) => void;
}

export interface WebWorkflowOptions extends WebLoadOptions {
  /**
   * How passes reach onnxruntime (fold-constants evaluates the ops its own evaluator lacks with it, as
   * the CLI does with onnxruntime-node): in a page, `ortWebRunner(ort)`. Required: without a runtime
   * such constants would stay unfolded and the bytes would differ from the CLI's.
   */
  runner: Runner;
  /** Called after each pass of the main pipeline (progress). */
  onPass?: (r: PassRecord) => void;
}

/** The external data files a model's tensors name (empty for a single-file model). */
export function externalDataFiles(model: Model): string[] {
  const files = new Set<string>();
  for (const { tensor } of constantTensors(model)) if (tensor.dataLocation === 1) files.add(tensor.external?.location || '(no location)');
  return [...files];
}

/**
 * Loads a model from bytes (one decode; weights stay views of `bytes`). A model whose weights live in
 * external data files is refused with EXTERNAL_MISSING naming them: only its .onnx was given.
 */
export function loadWebModel(bytes: Uint8Array, o: WebLoadOptions = {}): Model {
  const name = o.name ?? 'model.onnx';
  const model = loadModelBytes(bytes, { name, onWarning: o.onWarning ?? (() => {}) });
  const external = externalDataFiles(model);
  if (external.length) {
    throw inputError('EXTERNAL_MISSING', `${name} keeps its weights in external data (${external.join(', ')}), which was not given: save it as one file (onnxforge convert --inline-data) or open it with the CLI`, { file: name });
  }
  return model;
}

/** `onnxforge inspect`'s summary of a loaded model, and its text form. */
export function inspectModel(model: Model, name: string, fileBytes: number): { summary: ModelSummary; text: string } {
  const summary = summarize(model, name, fileBytes);
  return { summary, text: renderSummary(summary) };
}

export interface WebOptimizeOptions {
  /** Pipeline text; without it, `preset` (default 'default'). */
  passes?: string;
  preset?: string;
  target?: FusionTarget;
  maxIterations?: number;
}

export interface WebResult<R> {
  bytes: Uint8Array;
  report: R;
}

/** `onnxforge optimize` on a loaded model (changed in place): the same pipeline, then the model's bytes. */
export async function optimizeModel(model: Model, opts: WebOptimizeOptions, o: WebWorkflowOptions): Promise<WebResult<OptimizeReport>> {
  const text = opts.passes ?? presetPipelineIn(portableCatalog, opts.preset ?? 'default');
  const parsed = parsePipelineIn(portableCatalog, text);
  const steps = opts.target ? retarget(parsed, opts.target) : parsed;
  assertValid(model, o.name);
  const report = await optimize(model, steps, {
    catalog: portableCatalog,
    runner: o.runner,
    explain: false,
    ...(opts.maxIterations !== undefined ? { maxIterations: opts.maxIterations } : {}),
    ...(o.onPass ? { onPass: o.onPass } : {}),
  });
  return { bytes: serializeModel(model), report };
}

/**
 * `onnxforge quantize --mode weights` on a loaded model (changed in place): the `default` preset and
 * the opset upgrade, int8 weights behind DequantizeLinear, the checker; then the model's bytes.
 */
export async function quantizeWeightsModel(model: Model, pass: Partial<QuantizeWeightsOptions>, o: WebWorkflowOptions): Promise<WebResult<QuantizeWeightsReport>> {
  const ctx = createPassContext({ catalog: portableCatalog, runner: o.runner });
  const report = await quantizeWeights(model, resolveOptions(weightsPass, { ...pass }) as QuantizeWeightsOptions, ctx);
  const issues = checkModel(model);
  if (issues.length) throw checkError('QUANT_INVALID_MODEL', `the quantized model fails the checker: ${issues.slice(0, 3).map((i) => `${i.code} ${i.message}`).join('; ')}`, { file: o.name ?? 'model.onnx' });
  return { bytes: serializeModel(model), report };
}
