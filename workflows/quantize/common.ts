/**
 * What every quantize mode's workflow shares: the options that describe the FP32 model, where the
 * result goes and which data measures it; the input checks and the FP32 model loaded once; the gate a
 * quantized model passes before anything is written (the checker, then onnxruntime loading it); and
 * the task-accuracy rows of a report.
 */
import { checkError, inputError } from '../../core/errors.js';
import type { DataSourceOptions } from '../../data/index.js';
import type { Model } from '../../ir/ir.js';
import { checkModel } from '../../ir/checker.js';
import { loadModel, serializeModel, type SaveOptions } from '../../onnx/index.js';
import type { QuantizeAccuracy } from '../../report/quantize.js';
import { loadMetric, type UserMetric } from '../../runtime/metrics.js';
import type { Session } from '../../runtime/session.js';
import type { EvaluateReport } from '../evaluate.js';

/** Options of every quantize workflow (the mode's own options are added by its workflow). */
export interface QuantizeWorkflowOptions {
  /** The FP32 .onnx file (never modified). */
  model: string;
  /** Where the quantized model is written, last and only when every check passed. */
  output: string;
  save?: SaveOptions;
  /** Symbolic dims for generated data: input name or dim name -> dims. */
  shapes?: Record<string, number[]>;
  /** Evaluation data for the report (a data spec). */
  eval?: string;
  /** Image preprocessing for .png data; `evalPreprocess` overrides it for `eval`. */
  preprocess?: string;
  evalPreprocess?: string;
  /** Task metric modules (`path[#export]`) evaluated on `eval`. */
  metrics?: string[];
  /** Evaluate on at most this many samples. */
  limit?: number;
  /** Intra-op threads for latency and evaluation (default 1). */
  threads?: number;
  /** Timed runs per model, interleaved (default 20). */
  latencyRuns?: number;
}

export interface QuantizeStart {
  metrics: { name: string; fn: UserMetric }[];
  /** The FP32 model, quantized in place by the mode. */
  model: Model;
  /** The FP32 model as loaded, serialized once (sessions and the size column use it). */
  fp32Model: Uint8Array;
  fp32Bytes: number;
  threads: number;
  latencyRuns: number;
}

/** The checks, metrics and FP32 model every quantize mode starts from. */
export async function startQuantize(o: QuantizeWorkflowOptions): Promise<QuantizeStart> {
  const threads = o.threads ?? 1;
  const latencyRuns = o.latencyRuns ?? 20;
  if (!Number.isInteger(threads) || threads < 0) throw inputError('USAGE_BAD_VALUE', `--threads must be a non-negative integer, got ${threads}`);
  if (!Number.isInteger(latencyRuns) || latencyRuns < 1) throw inputError('USAGE_BAD_VALUE', `--latency-runs must be a positive integer, got ${latencyRuns}`);
  if (o.metrics?.length && !o.eval) throw inputError('USAGE_MISSING', '--metric needs --eval SPEC (labelled evaluation data)');
  const metrics = await Promise.all((o.metrics ?? []).map((m) => loadMetric(m)));
  const model = await loadModel(o.model);
  const fp32Model = serializeModel(model);
  return { metrics, model, fp32Model, fp32Bytes: fp32Model.byteLength, threads, latencyRuns };
}

/** The data options of the evaluation set: its preprocessing (default: the calibration's) and sample limit. */
export function evalDataOptions(o: QuantizeWorkflowOptions): DataSourceOptions {
  const prep = o.evalPreprocess ?? o.preprocess;
  return { ...(prep ? { preprocess: prep } : {}), ...(o.limit !== undefined ? { limit: o.limit } : {}) };
}

/** The quantized model's bytes, after the checker passed (nothing is written otherwise). */
export function checkedBytes(model: Model, output: string): Uint8Array {
  const issues = checkModel(model);
  if (issues.length) throw checkError('QUANT_INVALID_MODEL', `the quantized model fails the checker (nothing written): ${issues.slice(0, 3).map((i) => `${i.code} ${i.message}`).join('; ')}`, { file: output });
  return serializeModel(model);
}

/** A session on the quantized model; onnxruntime refusing it is a failed check (nothing written). */
export function loadQuantized<S = Session>(session: Promise<S>, output: string): Promise<S> {
  return session.catch((e: Error) => {
    throw checkError('QUANT_LOAD_FAILED', `onnxruntime cannot load the quantized model (nothing written): ${e.message}`, { file: output });
  });
}

/** Each user metric on the quantized model beside FP32. */
export function accuracyRows(metrics: readonly { name: string }[], ev: EvaluateReport): QuantizeAccuracy[] {
  return metrics.map((m) => ({ metric: m.name, fp32: ev.referenceMetrics?.[m.name] ?? {}, int8: ev.metrics[m.name] ?? {} }));
}
