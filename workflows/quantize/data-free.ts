/**
 * The measuring half of the quantize modes that need no data to transform a model (weight compression,
 * dynamic INT8): check the quantized model, load it in onnxruntime (weight-compressed models both as
 * written and through the expanding helper), compare outputs and latency against FP32 on the evaluation
 * data (default: generated inputs, when every input dim is known), and write the model last, only when
 * all of that succeeded. Each mode's workflow supplies the transformation and its report section.
 */
import { measurementData } from '../../data/measure.js';
import type { Model } from '../../ir/ir.js';
import { saveModel } from '../../onnx/index.js';
import { createSession as createExpandedSession } from '../../passes/quantize/compressed.js';
import { subgraphNote } from '../../passes/quantize/subgraphs.js';
import type { QuantizeModeReport } from '../../report/quantize.js';
import { measureLatency } from '../../runtime/latency.js';
import { Session } from '../../runtime/session.js';
import { evaluate, type EvaluateReport } from '../evaluate.js';
import { accuracyRows, checkedBytes, evalDataOptions, loadQuantized, QuantizeWorkflowOptions, startQuantize } from './common.js';

export interface DataFreeMode {
  mode: QuantizeModeReport['mode'];
  /** Quantizes `model` in place and returns the mode's report section. */
  apply(model: Model): Promise<Partial<QuantizeModeReport>>;
  /**
   * The model as written needs the expanding helper (passes/quantize/compressed.ts) to run at full
   * speed: latency is measured through the helper and raw, the output error on the raw model.
   */
  expanded?: boolean;
}

export async function runDataFreeMode(o: QuantizeWorkflowOptions, m: DataFreeMode): Promise<QuantizeModeReport> {
  const t0 = performance.now();
  const { metrics, model, fp32Model, fp32Bytes, threads, latencyRuns } = await startQuantize(o);
  const so = { intraOpNumThreads: threads, allowSpinning: false };
  const fp32 = await Session.create(fp32Model, so, o.model);
  let int8: Session | undefined;
  let raw: Session | undefined;
  try {
    const section = await m.apply(model);
    const bytes = checkedBytes(model, o.output);
    int8 = await loadQuantized(m.expanded ? createExpandedSession(bytes, so, `${o.output} (expanded)`) : Session.create(bytes, so, o.output), o.output);
    raw = m.expanded ? await loadQuantized(Session.create(bytes, so, o.output), o.output) : undefined;
    const given = o.eval ? { spec: o.eval, flag: '--eval', options: evalDataOptions(o) } : undefined;
    const data = measurementData(fp32.inputs, [given], o.shapes ?? {}, 'latency and output error');
    const report: QuantizeModeReport = {
      schema: 'onnxforge.quantize-mode/1',
      mode: m.mode,
      input: o.model,
      output: o.output,
      size: { fp32Bytes, int8Bytes: bytes.byteLength, ratio: bytes.byteLength / fp32Bytes },
      outputs: [],
      evalSamples: 0,
      notes: [],
      wallMs: 0,
    };
    let ev: EvaluateReport | undefined;
    if (data.ok) {
      ev = await evaluate(raw ?? int8, fp32, data.open(), { metrics });
      const feeds = await data.feeds(4);
      const lat = await measureLatency(raw ? [fp32, int8, raw] : [fp32, int8], feeds, { runs: latencyRuns, warmup: 3 });
      const [f, q, r] = lat.sessions.map((s) => s.stats.p50) as [number, number, number | undefined];
      report.latency = { fp32Ms: f, int8Ms: q, ratio: q / f, ...(r !== undefined ? { rawMs: r, rawRatio: r / f } : {}), runs: latencyRuns, threads };
      report.outputs = ev.outputs ?? [];
      report.evalSamples = ev.samples;
      report.measuredOn = data.from === 'random inputs' ? data.spec : `${data.from} ${data.spec}`;
    } else {
      report.notes.push(data.skipped);
    }
    const sub = subgraphNote(model);
    if (sub) report.notes.push(sub);
    if (ev && metrics.length) report.accuracy = accuracyRows(metrics, ev);
    Object.assign(report, section);
    await saveModel(model, o.output, o.save);
    report.wallMs = performance.now() - t0;
    return report;
  } finally {
    for (const s of [fp32, int8, raw]) await s?.dispose();
  }
}
