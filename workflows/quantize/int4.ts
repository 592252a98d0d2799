/**
 * Weight-only int4 as a workflow (`quantize --mode int4`): the quantize-int4 pass on the calibration
 * data (GPTQ by default when it is given, RTN otherwise; its measurements of first/last-layer
 * sensitivity and accuracy_level run on the calibration data, else on in-domain random inputs), then
 * the model checked, loaded in onnxruntime, compared with float32 (output error) and timed against it
 * (interleaved), and written last, only when all of that succeeded.
 */
import type { Feed } from '../../core/host-tensor.js';
import { collectSamples, type Sample } from '../../data/index.js';
import { measurementData } from '../../data/measure.js';
import { saveModel } from '../../onnx/index.js';
import type { Model } from '../../ir/ir.js';
import { fuseTransformerWith, type AttentionWeights, type FusionStep } from '../../passes/transformer-step.js';
import { randomSamples } from '../../passes/convert/convert-float16.js';
import { createPassContext } from '../../passes/manager.js';
import type { PassContext } from '../../passes/pass.js';
import { registryCatalog, resolveOptions } from '../../passes/pipeline.js';
import int4Pass, { quantizeInt4, quantizesPackedAttention, type QuantizeInt4Options } from '../../passes/quantize/quantize-int4.js';
import type { Int4Report } from '../../report/quantize-int4.js';
import { nodeRunner } from '../../runtime/runner.js';
import { runnerFor, type Backend } from '../../runtime/backend.js';
import { measureLatency } from '../../runtime/latency.js';
import { Session } from '../../runtime/session.js';
import { evaluate } from '../evaluate.js';
import { checkedBytes, evalDataOptions, loadQuantized, QuantizeWorkflowOptions, startQuantize } from './common.js';

/**
 * The transformer fusion step (passes/transformer-step.ts) with the registry's passes and
 * onnxruntime-node: the preset on a copy, kept when it fused something.
 */
export function fuseTransformer(model: Model, o: { skip?: string; keepWeights?: boolean; attentionWeights?: AttentionWeights } = {}): Promise<{ model: Model; step: FusionStep }> {
  return fuseTransformerWith(model, o, { catalog: registryCatalog, runner: nodeRunner });
}

export interface Int4WorkflowOptions extends QuantizeWorkflowOptions {
  /** Run the transformer fusion preset first when it fuses something (default true). */
  fuseTransformer?: boolean;
  /** Calibration data (a data spec); absent: RTN, measurements on random inputs. */
  calibration?: string;
  /** quantize-int4 pass options; the rest take the schema defaults. */
  pass?: Partial<QuantizeInt4Options>;
  progress?: PassContext['progress'];
  /**
   * The backend whose runner the pass's measurements use (first/last layers, kernel and accuracy_level
   * timings; default node). The report's own latency and output error stay onnxruntime-node's.
   */
  target?: Backend;
}

/** Random samples the measurements use when no data is given. */
const RANDOM_SAMPLES = 4;

async function feedsOf(samples: AsyncIterable<Sample>, n: number): Promise<Feed[]> {
  const out: Feed[] = [];
  for await (const s of samples) {
    out.push(s.feed);
    if (out.length >= n) break;
  }
  return out;
}

export async function quantizeInt4Workflow(o: Int4WorkflowOptions): Promise<Int4Report> {
  const t0 = performance.now();
  // kernel auto follows the kernel table measured with onnxruntime-node's kernels (int4/kernels.ts);
  // for the WASM backend, whose kernels differ, it times them there instead
  const pass = { ...o.pass };
  if (o.target === 'wasm' && (pass.kernel ?? 'auto') === 'auto') pass.kernel = 'measure';
  const passOptions = resolveOptions(int4Pass, pass) as QuantizeInt4Options;
  const start = await startQuantize(o);
  const { fp32Model, fp32Bytes, threads, latencyRuns } = start;
  const so = { intraOpNumThreads: threads, allowSpinning: false };
  const fp32 = await Session.create(fp32Model, so, o.model);
  let q: Session | undefined;
  try {
    const shapes = o.shapes ?? {};
    // in-domain random samples (token ids within the vocabulary), described before the model changes
    const random = randomSamples(start.model, RANDOM_SAMPLES, shapes);
    const skip = o.fuseTransformer === false ? '--no-fuse-transformer' : passOptions.format === 'qdq' ? 'format qdq writes standard operators only (the preset writes com.microsoft ones)' : undefined;
    // a fused Attention is kept where int4 takes its packed weight (kernel auto below hidden 768, or measure): the fp32 model's attention
    const { model, step: fusion } = await fuseTransformer(start.model, { ...(skip ? { skip } : {}), keepWeights: true, attentionWeights: (w) => quantizesPackedAttention(passOptions, w) });
    const calibration = o.calibration ? (await collectSamples(o.calibration, fp32.inputs, { shapes, limit: passOptions.calibrationSamples ?? 32 })).map((s) => s.feed) : [];
    const probe = calibration.length ? calibration : await feedsOf(random(), RANDOM_SAMPLES);
    const int4 = await quantizeInt4(model, { calibration, probe }, passOptions, { ...createPassContext({ runner: runnerFor(o.target ?? 'node') }), ...(o.progress ? { progress: o.progress } : {}) });
    const bytes = checkedBytes(model, o.output);
    q = await loadQuantized(Session.create(bytes, so, o.output), o.output);
    const given = o.eval ? { spec: o.eval, flag: '--eval', options: evalDataOptions(o) } : o.calibration ? { spec: o.calibration, flag: '--calibration' } : undefined;
    const data = given ? measurementData(fp32.inputs, [given], shapes, 'latency and output error') : { ok: true as const, spec: `random:${RANDOM_SAMPLES}`, from: 'random inputs', open: random };
    const report: Int4Report = {
      schema: 'onnxforge.quantize-int4/1',
      mode: 'int4',
      input: o.model,
      output: o.output,
      size: { fp32Bytes, bytes: bytes.byteLength, ratio: bytes.byteLength / fp32Bytes },
      outputs: [],
      evalSamples: 0,
      calibration: o.calibration ? `${o.calibration} (${calibration.length} samples)` : 'none (RTN; measurements on random inputs)',
      int4,
      fusion,
      notes: [],
      wallMs: 0,
    };
    if (data.ok) {
      const ev = await evaluate(q, fp32, data.open());
      report.outputs = ev.outputs ?? [];
      report.evalSamples = ev.samples;
      report.measuredOn = data.from === 'random inputs' ? data.spec : `${data.from} ${data.spec}`;
      const feeds = await feedsOf(data.open(), 4);
      const lat = await measureLatency([fp32, q], feeds, { runs: latencyRuns, warmup: 3 });
      const [f, h] = lat.sessions.map((s) => s.stats.p50) as [number, number];
      report.latency = { fp32Ms: f, ms: h, ratio: h / f, runs: latencyRuns, threads };
    } else report.notes.push(data.skipped);
    await saveModel(model, o.output, o.save);
    report.wallMs = performance.now() - t0;
    return report;
  } finally {
    for (const s of [fp32, q]) await s?.dispose();
  }
}
