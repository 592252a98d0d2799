/**
 * The CLI's workflows on bytes, for the browser: the same pipeline text, the same passes (the
 * registry's objects, through the portable catalog), the same defaults and the same serialization, so a
 * page produces the bytes `onnxforge optimize` and `onnxforge quantize --mode weights|int4|fp16` write
 * (int4: for options that make the CLI deterministic, see {@link quantizeInt4Model}). What the
 * CLI measures with onnxruntime-node (latency, output error) is left to the caller (the page measures
 * with onnxruntime-web). Nothing here touches files or the network.
 */
import { checkError, inputError } from '../core/errors.js';
import { assertValid, checkModel } from '../ir/checker.js';
import { byteLengthOf } from '../core/dtype.js';
import type { ExternalData, ExternalDataSource, Tensor } from '../core/tensor.js';
import type { Model } from '../ir/ir.js';
import { loadModelBytes, serializeModel, type LoadWarning } from '../onnx/codec.js';
import convertPass, { convertFloat16, randomSamples, type ConvertFloat16Options, type ConvertFloat16Report } from '../passes/convert/convert-float16.js';
import { createPassContext, optimize, type OptimizeReport, type PassRecord } from '../passes/engine.js';
import type { PassContext } from '../passes/pass.js';
import type { FusionTarget } from '../passes/fusion/transformer-target.js';
import { parsePipelineIn, presetPipelineIn, resolveOptions, retarget } from '../passes/pipeline-core.js';
import { portableCatalog } from '../passes/portable.js';
import int4Pass, { quantizeInt4, quantizesPackedAttention, type QuantizeInt4Options, type QuantizeInt4Report } from '../passes/quantize/quantize-int4.js';
import weightsPass, { quantizeWeights, type QuantizeWeightsOptions, type QuantizeWeightsReport } from '../passes/quantize/quantize-weights.js';
import { firstSamples } from '../passes/quantize/sample-source.js';
import { fuseTransformerWith, type FusionStep } from '../passes/transformer-step.js';
import { constantTensors, renderSummary, summarize, type ModelSummary } from '../report/inspect.js';
import type { Runner } from '../runtime/runner-types.js';

/** A data file external tensors read from: its size and a synchronous read (a worker's FileReaderSync). */
export interface DataFile {
  readonly size: number;
  read(offset: number, length: number): Uint8Array;
}

/**
 * External data from files the user gave, by location (the page asks for them). Reads are lazy, one
 * tensor at a time; a location with no file, or a range outside its file, is an input error.
 */
export class DataFileSource implements ExternalDataSource {
  readonly baseDir = '';
  readonly files = new Map<string, DataFile>();

  read(t: Tensor, ext: ExternalData): Uint8Array {
    const f = this.files.get(ext.location);
    const label = `tensor ${t.name ?? '(unnamed)'}`;
    if (!f) throw inputError('EXTERNAL_MISSING', `${label}: its external data file ${ext.location} was not given`, { tensor: t.name });
    const length = ext.length ?? byteLengthOf(t.dataType, t.dims.reduce((a, b) => a * b, 1));
    if (ext.offset + length > f.size) throw inputError('EXTERNAL_OUT_OF_FILE', `${label}: bytes [${ext.offset}, ${ext.offset + length}) lie beyond the end of ${ext.location} (${f.size} bytes)`, { tensor: t.name, offset: ext.offset });
    return f.read(ext.offset, length);
  }
}

export interface WebLoadOptions {
  /** Label for messages (the file name). */
  name?: string;
  /** Where external tensors read from; without it (or without a file it needs) such a model is refused. */
  data?: DataFileSource;
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

/** The external data files a model's tensors name, not yet in `data` (empty: nothing missing). */
export function missingDataFiles(model: Model, data?: DataFileSource): string[] {
  return externalDataFiles(model).filter((f) => !data?.files.has(f));
}

/** The external data files a model's tensors name (empty for a single-file model). */
export function externalDataFiles(model: Model): string[] {
  const files = new Set<string>();
  for (const { tensor } of constantTensors(model)) if (tensor.dataLocation === 1) files.add(tensor.external?.location || '(no location)');
  return [...files];
}

/**
 * Loads a model from bytes (one decode; weights stay views of `bytes`, external tensors read lazily
 * from `o.data`). A model whose external data files are not all in `o.data` is refused with
 * EXTERNAL_MISSING naming them; {@link decodeWebModel} returns it instead, to ask for them.
 */
export function loadWebModel(bytes: Uint8Array, o: WebLoadOptions = {}): Model {
  const { model, missing } = decodeWebModel(bytes, o);
  if (missing.length) throw missingDataError(o.name ?? 'model.onnx', missing);
  return model;
}

/** The model and the external data files it names that `o.data` lacks (they can be added to it later). */
export function decodeWebModel(bytes: Uint8Array, o: WebLoadOptions = {}): { model: Model; missing: string[] } {
  const name = o.name ?? 'model.onnx';
  const model = loadModelBytes(bytes, { name, onWarning: o.onWarning ?? (() => {}), ...(o.data ? { source: o.data } : {}) });
  return { model, missing: missingDataFiles(model, o.data) };
}

/** EXTERNAL_MISSING naming the data files a model needs. */
export function missingDataError(name: string, missing: readonly string[]): Error {
  return inputError('EXTERNAL_MISSING', `${name} keeps its weights in external data (${missing.join(', ')}), which was not given: choose the data file too, or save the model as one file (onnxforge convert --inline-data)`, { file: name });
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
  return { bytes: checkedModelBytes(model, o.name), report };
}

/** The quantized model's bytes once the checker passed (the CLI's `checkedBytes`). */
function checkedModelBytes(model: Model, name = 'model.onnx'): Uint8Array {
  const issues = checkModel(model);
  if (issues.length) throw checkError('QUANT_INVALID_MODEL', `the quantized model fails the checker: ${issues.slice(0, 3).map((i) => `${i.code} ${i.message}`).join('; ')}`, { file: name });
  return serializeModel(model);
}

export interface WebQuantizeOptions extends WebWorkflowOptions {
  /** Run the transformer fusion preset first when it fuses something (default true, as the CLI). */
  fuseTransformer?: boolean;
  /** Progress of the pass's long phases (int4: quantizing weights; fp16: measuring ranges). */
  progress?: PassContext['progress'];
}

/** Random samples int4's measurements run on without calibration data (the CLI's, workflows/quantize/int4.ts). */
const INT4_RANDOM_SAMPLES = 4;

/**
 * `onnxforge quantize --mode int4` without calibration data on a loaded model: the transformer fusion
 * step, then the quantize-int4 pass (RTN) with its first/last-layer measurement on the CLI's seeded
 * in-domain random inputs, run through `o.runner`; the checker; the model's bytes (the fused copy's,
 * when the fusion applied). The pass's timed choices (`kernel auto`, `accuracyLevel auto` with
 * MatMulNBits) depend on the CPU: for the CLI's bytes, fix them (the page: kernel unpack) and give the
 * CLI the same flags.
 */
export async function quantizeInt4Model(model: Model, pass: Partial<QuantizeInt4Options>, o: WebQuantizeOptions): Promise<WebResult<QuantizeInt4Report & { fusion: FusionStep }>> {
  const passOptions = resolveOptions(int4Pass, { ...pass }) as QuantizeInt4Options;
  const random = randomSamples(model, INT4_RANDOM_SAMPLES, {});
  const skip = o.fuseTransformer === false ? '--no-fuse-transformer' : passOptions.format === 'qdq' ? 'format qdq writes standard operators only' : undefined;
  const engine = { catalog: portableCatalog, runner: o.runner };
  const fused = await fuseTransformerWith(model, { ...(skip ? { skip } : {}), keepWeights: true, attentionWeights: (w) => quantizesPackedAttention(passOptions, w) }, engine);
  const probe = (await firstSamples(random, INT4_RANDOM_SAMPLES)).map((s) => s.feed);
  const report = await quantizeInt4(fused.model, { calibration: [], probe }, passOptions, { ...createPassContext(engine), ...(o.progress ? { progress: o.progress } : {}) });
  return { bytes: checkedModelBytes(fused.model, o.name), report: { ...report, fusion: fused.step } };
}

/**
 * `onnxforge quantize --mode fp16` (or bf16) without calibration data on a loaded model: the
 * transformer fusion step, then convert-float16 with its activation ranges measured on its seeded
 * random inputs through `o.runner` (the page: onnxruntime-web), the checker, the model's bytes.
 */
export async function convertFloat16Model(model: Model, pass: Partial<ConvertFloat16Options>, o: WebQuantizeOptions): Promise<WebResult<ConvertFloat16Report & { fusion: FusionStep }>> {
  const engine = { catalog: portableCatalog, runner: o.runner };
  const fused = await fuseTransformerWith(model, o.fuseTransformer === false ? { skip: '--no-fuse-transformer' } : {}, engine);
  const report = await convertFloat16(fused.model, { ...resolveOptions(convertPass, { ...pass }), ...pass }, { runner: o.runner, ...(o.progress ? { progress: o.progress } : {}) });
  return { bytes: checkedModelBytes(fused.model, o.name), report: { ...report, fusion: fused.step } };
}
