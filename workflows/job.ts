/**
 * Runs a whole job described by a pipeline file: load the model once, run the passes (with the
 * calibration data in the pass context), verify, measure size, latency (original and result timed
 * interleaved) and accuracy, check the budgets, and only then write the model and the reports.
 * A failed budget is a check failure (exit 1) and nothing but the reports is written.
 */
import * as fs from 'node:fs';
import { checkError, inputError } from '../core/errors.js';
import { assertValid } from '../ir/checker.js';
import { loadModel, saveModel, serializeModel } from '../onnx/index.js';
import { openDataSource, collectSamples, parseDataSpec } from '../data/index.js';
import { measurementData } from '../data/measure.js';
import type { Feed } from '../core/host-tensor.js';
import type { DataSourceOptions, Sample } from '../data/index.js';
import { evaluate } from './evaluate.js';
import { measureLatency } from '../runtime/latency.js';
import { loadMetric } from '../runtime/metrics.js';
import { Session } from '../runtime/session.js';
import { backendInfo, describeBackend, openSession, runnerFor, type BackendSession } from '../runtime/backend.js';
import { BudgetEntry, modelFacts, newReport, ReportDocument } from '../report/document.js';
import { writeReport } from '../report/files.js';
import { optimize, OptimizeReport, passReport } from '../passes/manager.js';
import quantizeStaticPass from '../passes/quantize/quantize-static.js';
import type { DataSpecEntry, PipelineFile } from '../passes/pipeline-file.js';
import type { Logger } from '../passes/pass.js';

export interface JobResult {
  report: ReportDocument;
  passed: boolean;
  wrote?: string;
}

function sourceOptions(e: DataSpecEntry, shapes: Record<string, number[]>): DataSourceOptions {
  const o: DataSourceOptions = { shapes };
  if (e.preprocess) o.preprocess = e.preprocess;
  if (e.limit) o.limit = e.limit;
  return o;
}

async function metricOf(session: BackendSession, pf: PipelineFile): Promise<number | undefined> {
  if (!pf.metric || !pf.data.eval) return undefined;
  const metric = await loadMetric(pf.metric);
  const rep = await evaluate(session, undefined, openDataSource(parseDataSpec(pf.data.eval.inputs), session.inputs, sourceOptions(pf.data.eval, pf.shapes)), { metrics: [metric] });
  const rec = rep.metrics[metric.name] ?? {};
  const key = metric.name in rec ? metric.name : 'accuracy' in rec ? 'accuracy' : Object.keys(rec)[0];
  return key === undefined ? undefined : rec[key];
}

/** Runs the job; writes the model only when every budget holds. */
export async function runJob(pf: PipelineFile, options: { logger?: Logger; onPass?: (pass: string) => void } = {}): Promise<JobResult> {
  const inputBytes = fs.statSync(pf.model).size;
  const model = await loadModel(pf.model);
  assertValid(model, pf.model);
  const originalBytes = serializeModel(model);
  const doc = newReport('run', `${pf.model.split('/').pop()}: ${pf.pipelineText}`);
  doc.input = modelFacts(model, inputBytes, pf.model);

  const shapes = pf.shapes;
  // the model's declared inputs, read by one onnxruntime session at most, only when data needs them
  let declared: ReturnType<typeof inputsOf> | undefined;
  const modelInputs = () => (declared ??= inputsOf(originalBytes));
  const data: Record<string, unknown> = {};
  if (pf.data.calibration) {
    const cal = pf.data.calibration;
    const inputs = await modelInputs();
    data.calibration = (): AsyncIterable<Sample> => openDataSource(parseDataSpec(cal.inputs), inputs, sourceOptions(cal, shapes));
  }
  let verify: { feeds: Feed[]; rtol?: number; atol?: number } | undefined;
  if (pf.data.verify) {
    const inputs = await modelInputs();
    const samples = await collectSamples(parseDataSpec(pf.data.verify.inputs), inputs, sourceOptions(pf.data.verify, shapes));
    verify = { feeds: samples.map((s) => s.feed) };
    if (pf.data.verify.rtol !== undefined) verify.rtol = pf.data.verify.rtol;
    if (pf.data.verify.atol !== undefined) verify.atol = pf.data.verify.atol;
  }
  // what latency runs on, decided before the work: a latency budget without data is bad input
  const feedSpec = pf.data.eval ?? pf.data.calibration;
  const given = feedSpec ? { spec: feedSpec.inputs, options: sourceOptions(feedSpec, shapes), flag: pf.data.eval ? 'data.eval' : 'data.calibration' } : undefined;
  const latencyData = pf.latency.skip ? undefined : measurementData(await modelInputs(), [given], shapes, 'latency', { count: 1, data: 'data.eval or data.calibration', shape: (name, dims) => `shapes: { ${name}: [${dims}] }` });
  if (latencyData && !latencyData.ok) {
    if (pf.budgets.maxLatencyRatio !== undefined) throw inputError('PIPELINE_NO_LATENCY_DATA', `${pf.model}: budgets.max-latency-ratio needs latency; ${latencyData.skipped}`, { file: pf.model });
    doc.notes = [latencyData.skipped];
  }
  const opt: OptimizeReport = await optimize(model, pf.steps, {
    data,
    ...(pf.target === 'wasm' ? { runner: runnerFor('wasm') } : {}),
    ...(verify ? { verify } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.onPass ? { onPass: (r) => options.onPass!(r.pass) } : {}),
  });
  doc.passes = opt.records.map((r) => ({ pass: r.pass, ms: r.ms, changed: r.changed, nodesBefore: r.nodesBefore, nodesAfter: r.nodesAfter, bytesBefore: r.bytesBefore, bytesAfter: r.bytesAfter, stats: r.stats }));
  assertValid(model, `${pf.output} (after the pipeline)`);
  const outBytes = serializeModel(model);
  doc.output = modelFacts(model, outBytes.length, pf.output);
  doc.details = { pipeline: opt.pipeline, converged: opt.converged, iterations: opt.iterations, explanations: opt.explanations };
  const quant = passReport(opt, quantizeStaticPass);
  if (quant?.float?.length) doc.layers = quant.float.map((f) => ({ name: f.node, op: f.op, precision: 'float', reason: f.reason }));
  if (quant?.quantizedOps) {
    const ops = Object.entries(quant.quantizedOps).map(([op, n]) => `${n} ${op}`).join(', ');
    doc.notes = [...(doc.notes ?? []), `In int8: ${ops || 'nothing'}; kept in float: ${quant.float?.length ?? 0} quantizable nodes (listed under layers).`];
  }
  if (pf.target === 'wasm') doc.notes = [...(doc.notes ?? []), `Target ${describeBackend(backendInfo('wasm'))}: the passes profiled and the job measured latency and accuracy there.`];

  // latency: original and result, interleaved in one process
  const budgets: BudgetEntry[] = [];
  if (latencyData?.ok) {
    // on the target: WASM runs on its own thread count (1 by default), not latency.threads
    const so = pf.target === 'wasm' ? { allowSpinning: false } : { intraOpNumThreads: pf.latency.threads, allowSpinning: false };
    const a = await openSession(pf.target, originalBytes, so, 'original');
    const b = await openSession(pf.target, outBytes, so, 'optimized');
    try {
      const feeds = await latencyData.feeds(4);
      const lat = await measureLatency([a, b], feeds, { runs: pf.latency.runs, warmup: pf.latency.warmup });
      doc.latency = lat.sessions.map((s) => ({ model: s.name, samplesMs: s.samples, p50: s.stats.p50, p90: s.stats.p90, mean: s.stats.mean, min: s.stats.min }));
      const [fa, fb] = doc.latency;
      if (pf.budgets.maxLatencyRatio !== undefined) {
        const r = fb!.p50 / fa!.p50;
        budgets.push({ metric: 'latency ratio (p50)', budget: `<= ${pf.budgets.maxLatencyRatio}`, value: r.toFixed(3), verdict: r <= pf.budgets.maxLatencyRatio ? 'pass' : 'fail' });
      }
      if (pf.metric && pf.data.eval) {
        const before = await metricOf(a, pf);
        const after = await metricOf(b, pf);
        if (after !== undefined) {
          doc.accuracy = [{ metric: metricLabel(pf.metric), value: after, ...(before !== undefined ? { reference: before } : {}) }];
          if (pf.budgets.minAccuracy !== undefined) budgets.push({ metric: 'accuracy', budget: `>= ${pf.budgets.minAccuracy}`, value: after.toFixed(4), verdict: after >= pf.budgets.minAccuracy ? 'pass' : 'fail' });
          if (pf.budgets.maxAccuracyDrop !== undefined && before !== undefined) {
            const drop = before - after;
            budgets.push({ metric: 'accuracy drop', budget: `<= ${pf.budgets.maxAccuracyDrop}`, value: drop.toFixed(4), verdict: drop <= pf.budgets.maxAccuracyDrop + 1e-12 ? 'pass' : 'fail' });
          }
        }
      }
    } finally {
      await a.dispose();
      await b.dispose();
    }
  }
  if (pf.budgets.maxSizeRatio !== undefined) {
    const r = outBytes.length / inputBytes;
    budgets.push({ metric: 'size ratio', budget: `<= ${pf.budgets.maxSizeRatio}`, value: r.toFixed(3), verdict: r <= pf.budgets.maxSizeRatio ? 'pass' : 'fail' });
  }
  if (budgets.length) doc.budgets = budgets;
  const passed = budgets.every((b) => b.verdict !== 'fail');
  const result: JobResult = { report: doc, passed };
  if (passed) {
    const saveOpts: import('../onnx/index.js').SaveOptions = {};
    if (pf.write.externalData !== undefined && pf.write.externalData !== false) saveOpts.externalData = pf.write.externalData;
    if (pf.write.threshold !== undefined) saveOpts.threshold = pf.write.threshold;
    if (pf.write.inlineData) saveOpts.inlineData = true;
    const res = await saveModel(model, pf.output, saveOpts);
    if (doc.output) doc.output.bytes = res.bytes + (res.dataBytes ?? 0);
    result.wrote = res.path;
  } else {
    doc.notes = [...(doc.notes ?? []), `A budget failed: ${budgets.filter((b) => b.verdict === 'fail').map((b) => `${b.metric} ${b.value} (budget ${b.budget})`).join('; ')}. The model was not written.`];
  }
  for (const r of pf.reports) await writeReport(doc, r);
  return result;
}

/** `path/to/metrics.js#cls` -> `cls`; `path/to/accuracy.js` -> `accuracy`. */
function metricLabel(spec: string): string {
  const hash = spec.lastIndexOf('#');
  if (hash > 0) return spec.slice(hash + 1);
  return (spec.split(/[\\/]/).pop() ?? spec).replace(/\.[cm]?[jt]s$/, '');
}

async function inputsOf(bytes: Uint8Array) {
  const s = await Session.create(bytes, { graphOptimizationLevel: 'disabled' }, 'model');
  try {
    return s.inputs;
  } finally {
    await s.dispose();
  }
}

/** Throws the check failure for a job whose budgets failed (after reports were written). */
export function assertJobPassed(r: JobResult, file: string): void {
  if (r.passed) return;
  const failed = (r.report.budgets ?? []).filter((b) => b.verdict === 'fail').map((b) => `${b.metric} ${b.value} (budget ${b.budget})`);
  throw checkError('PIPELINE_BUDGET', `${file}: ${failed.join('; ')}; the model was not written`, { file });
}
