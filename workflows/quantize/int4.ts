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
import { cloneModel, saveModel } from '../../onnx/index.js';
import { constantOf, type Model } from '../../ir/ir.js';
import { TRANSFORMER_FUSIONS } from '../../passes/presets.js';
import { randomSamples } from '../../passes/convert/convert-float16.js';
import { createPassContext, optimize } from '../../passes/manager.js';
import type { PassContext } from '../../passes/pass.js';
import { resolveOptions } from '../../passes/pipeline.js';
import int4Pass, { quantizeInt4, type QuantizeInt4Options } from '../../passes/quantize/quantize-int4.js';
import type { FusionStep, Int4Report } from '../../report/quantize-int4.js';
import { measureLatency } from '../../runtime/latency.js';
import { Session } from '../../runtime/session.js';
import { evaluate } from '../evaluate.js';
import { checkedBytes, evalDataOptions, loadQuantized, QuantizeWorkflowOptions, startQuantize } from './common.js';

/** Operators the transformer preset fuses into (their count growing means the preset applied). */
const FUSED_OPS = new Set(['Attention', 'MultiHeadAttention', 'GroupQueryAttention', 'SkipLayerNormalization', 'SkipSimplifiedLayerNormalization', 'SimplifiedLayerNormalization', 'RMSNormalization', 'LayerNormalization', 'BiasGelu', 'FastGelu', 'Gelu', 'RotaryEmbedding']);

function fusedOps(model: Model): Map<string, number> {
  const m = new Map<string, number>();
  for (const n of model.graph.nodes) if (FUSED_OPS.has(n.opType)) m.set(n.opType, (m.get(n.opType) ?? 0) + 1);
  return m;
}

/** MatMul/Gemm nodes with a constant weight (what weight-only quantization can take). */
function constantWeightLinears(model: Model): number {
  return model.graph.nodes.filter((n) => n.opDomain === '' && (n.opType === 'MatMul' || n.opType === 'Gemm') && (constantOf(n.inputs[1]) !== undefined || constantOf(n.inputs[1]?.producer?.inputs[0]) !== undefined)).length;
}

/**
 * Runs the transformer preset (attention, LayerNorm, GELU, RMSNorm fusions) on a copy of `model` and
 * returns the copy when it fused something, else `model` unchanged (the preset upgrades the opset,
 * which a model it does not fuse gains nothing from). With `keepWeights` (int4, q4f16), when the
 * attention fusion packs Q/K/V weights into com.microsoft Attention (which MatMulNBits then cannot
 * quantize), the preset runs again without fuse-attention. `skip` (--no-fuse-transformer, or a
 * format without Microsoft operators) says why it does not run.
 */
export async function fuseTransformer(model: Model, o: { skip?: string; keepWeights?: boolean } = {}): Promise<{ model: Model; step: FusionStep }> {
  const t0 = performance.now();
  if (o.skip) return { model, step: { preset: 'transformer', applied: false, fused: {}, reason: `skipped: ${o.skip}`, ms: 0 } };
  const before = fusedOps(model);
  let copy = cloneModel(model);
  await optimize(copy, '@transformer');
  let note = '';
  if (o.keepWeights && constantWeightLinears(copy) < constantWeightLinears(model)) {
    copy = cloneModel(model);
    await optimize(copy, ['@default', 'upgrade-opset<to=20>', ...TRANSFORMER_FUSIONS.split(',').filter((p) => p !== 'fuse-attention'), 'eliminate-dead'].join(','));
    note = '; attention left unfused: com.microsoft.Attention packs the Q/K/V weights, which int4 could then not quantize';
  }
  const fused: Record<string, number> = {};
  for (const [op, n] of fusedOps(copy)) if (n > (before.get(op) ?? 0)) fused[op] = n - (before.get(op) ?? 0);
  const applied = Object.keys(fused).length > 0;
  const reason = applied ? `fused ${Object.entries(fused).map(([op, n]) => `${n} ${op}`).join(', ')}${note}` : `nothing to fuse: the model is kept as it was${note}`;
  return { model: applied ? copy : model, step: { preset: 'transformer', applied, fused, reason, ms: performance.now() - t0 } };
}

export interface Int4WorkflowOptions extends QuantizeWorkflowOptions {
  /** Run the transformer fusion preset first when it fuses something (default true). */
  fuseTransformer?: boolean;
  /** Calibration data (a data spec); absent: RTN, measurements on random inputs. */
  calibration?: string;
  /** quantize-int4 pass options; the rest take the schema defaults. */
  pass?: Partial<QuantizeInt4Options>;
  progress?: PassContext['progress'];
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
  const passOptions = resolveOptions(int4Pass, { ...o.pass }) as QuantizeInt4Options;
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
    const { model, step: fusion } = await fuseTransformer(start.model, { ...(skip ? { skip } : {}), keepWeights: true });
    const calibration = o.calibration ? (await collectSamples(o.calibration, fp32.inputs, { shapes, limit: passOptions.calibrationSamples ?? 32 })).map((s) => s.feed) : [];
    const probe = calibration.length ? calibration : await feedsOf(random(), RANDOM_SAMPLES);
    const int4 = await quantizeInt4(model, { calibration, probe }, passOptions, { ...createPassContext(), ...(o.progress ? { progress: o.progress } : {}) });
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
