/**
 * Static INT8 quantization as a workflow: calibrate and quantize (the `quantize-static` pass's
 * function), optionally emit QOperator form, check the model and load it in onnxruntime, then measure
 * it against FP32 on the evaluation data (default: the calibration data): size, latency (interleaved),
 * output error, task metrics and, with `debugLayers`, the per-layer SQNR. The model is written last.
 * An accuracy budget (`maxAccuracyDrop`) returns the most sensitive layers to float until the first
 * metric's score is within the drop.
 */
import { checkError, inputError } from '../../core/errors.js';
import type { Feed } from '../../core/host-tensor.js';
import { openDataSource, type Sample } from '../../data/index.js';
import type { Model } from '../../ir/ir.js';
import { cloneModel, saveModel } from '../../onnx/index.js';
import { quantizeStatic } from '../../passes/api.js';
import { createPassContext } from '../../passes/manager.js';
import type { PassContext } from '../../passes/pass.js';
import { resolveOptions } from '../../passes/pipeline.js';
import { layerErrors } from '../../passes/quantize/debug.js';
import { toQOperator } from '../../passes/quantize/qop.js';
import staticPass, { QuantizeStaticPassOptions, QuantizeStaticReport, runnerProfiler, staticOptionsFromPass, writeDecisions } from '../../passes/quantize/quantize-static.js';
import { subgraphNote } from '../../passes/quantize/subgraphs.js';
import type { QuantizeCommandReport } from '../../report/quantize.js';
import { createSessionFromModel } from '../../runtime/from-model.js';
import { measureLatency } from '../../runtime/latency.js';
import type { UserMetric } from '../../runtime/metrics.js';
import { type SessionOptions } from '../../runtime/session.js';
import { backendInfo, type Backend, type BackendSession, openSession, wasmRunner } from '../../runtime/backend.js';
import { slowIntegerKernels } from '../../runtime/backend-kernels.js';
import { evaluate } from '../evaluate.js';
import { accuracyRows, checkedBytes, evalDataOptions, loadQuantized, QuantizeWorkflowOptions, startQuantize } from './common.js';

export interface QuantizeStaticWorkflowOptions extends QuantizeWorkflowOptions {
  /** Calibration data (a data spec). */
  calibration: string;
  /** quantize-static pass options (pipeline-file names); the rest take the schema defaults. */
  pass?: Partial<QuantizeStaticPassOptions>;
  /** QDQ (default) or QOperator emission. */
  format?: 'qdq' | 'qop';
  /** Accuracy budget: FP32 score - INT8 score of the first metric on `eval` at most this. */
  maxAccuracyDrop?: number;
  /** Metric field the budget applies to (default the first; `key:min` for lower-is-better fields). */
  budgetKey?: string;
  /** How the budget ranks layers (default 'output'). */
  budgetRank?: 'output' | 'sqnr';
  /** Per-layer SQNR of float vs quantized activations in the report. */
  debugLayers?: boolean;
  /** Progress of calibration and the recipe's searches. */
  progress?: PassContext['progress'];
  /**
   * The backend the model is for (default 'node'). 'wasm': latency-aware decisions profile in
   * onnxruntime-web's WASM backend (1 thread), the written model is checked to load, to use only
   * integer kernels WASM runs fast (runtime/backend-kernels.ts) and to match FP32 on WASM, and the
   * report's latency is WASM's. Calibration runs in onnxruntime-node (same float math, faster).
   */
  target?: Backend;
}

export async function quantizeStaticWorkflow(o: QuantizeStaticWorkflowOptions): Promise<QuantizeCommandReport> {
  const t0 = performance.now();
  if (!o.calibration) throw inputError('USAGE_MISSING', '--mode static needs --calibration SPEC');
  if (o.maxAccuracyDrop !== undefined && (!o.eval || !o.metrics?.length)) throw inputError('USAGE_MISSING', '--max-accuracy-drop needs --eval SPEC and --metric MODULE (the score the budget applies to)');
  const { metrics, model, fp32Model, fp32Bytes, threads, latencyRuns } = await startQuantize(o);
  const shapes = o.shapes ?? {};
  const so = { intraOpNumThreads: threads, allowSpinning: false };
  const target = o.target ?? 'node';
  // the target's sessions: WASM runs on its own thread count (1 by default), not --threads
  const tso: SessionOptions = target === 'wasm' ? { allowSpinning: false } : so;
  const createSession = (m: Uint8Array, opts: SessionOptions, name: string) => openSession(target, m, opts === so ? tso : opts, name);
  const fp32 = await createSession(fp32Model, so, o.model);
  const inputs = fp32.inputs;
  const calib = () => openDataSource(o.calibration, inputs, { shapes, ...(o.preprocess ? { preprocess: o.preprocess } : {}) });
  const evalSrc = () => openDataSource(o.eval ?? o.calibration, inputs, { shapes, ...evalDataOptions(o) });

  const opts = staticOptionsFromPass(resolveOptions(staticPass, { ...o.pass }) as QuantizeStaticPassOptions);
  if (target === 'wasm') opts.latency = { ...opts.latency, profiler: runnerProfiler(wasmRunner) };
  let prepared: Model | undefined;
  if (o.debugLayers) opts.onPrepared = (m) => (prepared = cloneModel(m));
  if (o.maxAccuracyDrop !== undefined) {
    opts.accuracy = { maxDrop: o.maxAccuracyDrop, evaluate: budgetScorer(metrics[0]!, o.budgetKey, fp32, evalSrc, so), rank: o.budgetRank ?? 'output' };
  }
  const q = await quantizeStatic(model, calib, opts, { ...createPassContext(), ...(o.progress ? { progress: o.progress } : {}) });
  if (o.format === 'qop') toQOperator(model);

  const bytes = checkedBytes(model, o.output);
  const slow = target === 'node' ? [] : slowIntegerKernels(model, target);
  if (slow.length) throw checkError('QUANT_SLOW_KERNEL', `--target ${target}: ${slow.length} node(s) would run without a fast kernel (nothing written): ${slow.slice(0, 3).map((k) => `${k.node} (${k.op}: ${k.reason})`).join('; ')}`, { file: o.output });
  const int8 = await loadQuantized(createSession(bytes, so, o.output), o.output);
  try {
    const ev = await evaluate(int8, fp32, evalSrc(), { metrics });
    const report: QuantizeCommandReport = {
      schema: 'onnxforge.quantize/1',
      input: o.model,
      output: o.output,
      mode: 'static',
      size: { fp32Bytes, int8Bytes: bytes.byteLength, ratio: bytes.byteLength / fp32Bytes },
      latency: { ...(await latency(fp32, int8, evalSrc, latencyRuns, threads)), ...(target !== 'node' ? { backend: backendInfo(target) } : {}) },
      outputs: ev.outputs ?? [],
      evalSamples: ev.samples,
      quantization: stripLarge(q),
      notes: [],
      wallMs: 0,
    };
    const sub = subgraphNote(model);
    if (sub) report.notes.push(sub);
    if (metrics.length) report.accuracy = accuracyRows(metrics, ev);
    if (o.debugLayers && prepared) {
      const floatNames = Object.keys(q.dequantized);
      report.layers = await layerErrors(prepared, model, q.dequantized, evalSrc(), { sessionOptions: so, limit: o.limit ?? 16 });
      report.layers.sort((x, y) => x.sqnrDb - y.sqnrDb);
      if (report.layers.length !== floatNames.length) throw checkError('QUANT_DEBUG_MISMATCH', 'per-layer comparison lost tensors');
    }
    await saveModel(model, o.output, o.save);
    // --update-decisions: the new decisions file is written after the model (both or, on failure, neither)
    if (opts.updateDecisions && typeof opts.decisions === 'string' && q.latency?.document) writeDecisions(opts.decisions, q.latency.document);
    report.wallMs = performance.now() - t0;
    return report;
  } finally {
    await fp32.dispose();
    await int8.dispose();
  }
}

/** The score the accuracy budget applies to: one field of the first metric, higher is better (negated for key:min). */
function budgetScorer(metric: { name: string; fn: UserMetric }, key: string | undefined, fp32: BackendSession, src: () => AsyncIterable<Sample>, so: SessionOptions): (m: Model) => Promise<number> {
  const [field, dir] = (key ?? '').split(':');
  if (dir !== undefined && dir !== 'min' && dir !== 'max') throw inputError('USAGE_BAD_VALUE', `--budget-key ${key}: the direction must be min or max`);
  return async (m) => {
    const s = await createSessionFromModel(m, so, '(budget candidate)');
    try {
      const ev = await evaluate(s, fp32, src(), { metrics: [metric] });
      const r = ev.metrics[metric.name] ?? {};
      const k = field || Object.keys(r)[0];
      if (!k || !(k in r)) throw inputError('USAGE_BAD_VALUE', `--budget-key: metric ${metric.name} has no field '${k ?? ''}' (fields: ${Object.keys(r).join(', ')})`);
      return dir === 'min' ? -r[k]! : r[k]!;
    } finally {
      await s.dispose();
    }
  };
}

function stripLarge(q: QuantizeStaticReport): Omit<QuantizeStaticReport, 'ranges' | 'dequantized'> {
  const { ranges: _r, dequantized: _d, ...rest } = q;
  // the decisions document repeats the per-layer decisions already in the report (it is what --update-decisions writes)
  if (rest.latency) {
    const { document: _doc, ...latency } = rest.latency;
    return { ...rest, latency };
  }
  return rest;
}

async function latency(fp32: BackendSession, int8: BackendSession, src: () => AsyncIterable<{ feed: Feed }>, runs: number, threads: number): Promise<QuantizeCommandReport['latency']> {
  const feeds: Feed[] = [];
  for await (const s of src()) {
    feeds.push(s.feed);
    if (feeds.length >= 4) break;
  }
  const r = await measureLatency([fp32, int8], feeds, { runs, warmup: 3 });
  const f = r.sessions[0]!.stats.p50;
  const i = r.sessions[1]!.stats.p50;
  return { fp32Ms: f, int8Ms: i, ratio: i / f, runs, threads };
}
