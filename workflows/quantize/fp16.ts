/**
 * float16 / bfloat16 conversion as a workflow (`quantize --mode fp16 [--bf16]`): the convert-float16
 * pass with its activation ranges measured on the calibration data (else random inputs), then the
 * converted model checked, loaded in onnxruntime, compared with float32 (output error, non-finite
 * values) and timed against it (interleaved), and written last, only when all of that succeeded.
 * `runHalfMode` is shared with q4f16 (q4f16.ts), which runs the int4 step before the conversion.
 */
import { toFloat64, type Feed, type HostTensor } from '../../core/host-tensor.js';
import { measurementData } from '../../data/measure.js';
import { openDataSource, type Sample } from '../../data/index.js';
import type { Model } from '../../ir/ir.js';
import { saveModel } from '../../onnx/index.js';
import { convertFloat16, randomSamples, type ConvertFloat16Options, type ConvertFloat16Report, type MeasuredRanges } from '../../passes/convert/convert-float16.js';
import type { FusionStep } from '../../passes/transformer-step.js';
import { resolveOptions } from '../../passes/pipeline.js';
import convertPass from '../../passes/convert/convert-float16.js';
import type { Fp16Report } from '../../report/fp16.js';
import { measureLatency } from '../../runtime/latency.js';
import type { UserMetric } from '../../runtime/metrics.js';
import { nodeRunner } from '../../runtime/runner.js';
import { Session, type ValueInfo } from '../../runtime/session.js';
import { evaluate } from '../evaluate.js';
import { fuseTransformer } from './int4.js';
import { checkedBytes, evalDataOptions, loadQuantized, QuantizeWorkflowOptions, startQuantize } from './common.js';

export interface Fp16WorkflowOptions extends QuantizeWorkflowOptions {
  /** Calibration data (a data spec) the activation ranges are measured on; absent: random inputs. */
  calibration?: string;
  /** convert-float16 pass options; the rest take the schema defaults. */
  pass?: Partial<ConvertFloat16Options>;
  progress?: (label: string, total: number) => { tick(n?: number): void; done(): void };
  /** Run the transformer fusion preset first when it fuses something (default true). */
  fuseTransformer?: boolean;
}

/** Non-finite elements of a float tensor (0 for other types). */
function countNonFinite(t: HostTensor): number {
  if (t.type !== 'float32' && t.type !== 'float16' && t.type !== 'float64') return 0;
  const d = toFloat64(t);
  let n = 0;
  for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i]!)) n++;
  return n;
}

/** Non-finite output values of the candidate and of float32, summed over the samples. */
const nonFiniteMetric: UserMetric = Object.assign(
  (outputs: Parameters<UserMetric>[0], _label: unknown, ctx: Parameters<UserMetric>[2]) => ({
    values: Object.values(outputs).reduce((s, t) => s + countNonFinite(t), 0),
    fp32Values: Object.values(ctx.reference ?? {}).reduce((s, t) => s + countNonFinite(t), 0),
  }),
  {
    needsReference: true,
    reduce: (records: Record<string, number>[]) => ({ values: records.reduce((s, r) => s + r.values!, 0), fp32Values: records.reduce((s, r) => s + r.fp32Values!, 0) }),
  },
);

/** Random samples the report is measured on when no data is given. */
const RANDOM_SAMPLES = 4;

export interface HalfStep {
  mode: Fp16Report['mode'];
  /**
   * Runs before the conversion (q4f16's int4 step) with the model's declared inputs and the in-domain
   * random samples; returns its report section and, when it measured them on the way, the activation
   * ranges the conversion takes instead of measuring its own.
   */
  before?(model: Model, inputs: readonly ValueInfo[], random: () => AsyncIterable<Sample>): Promise<{ report: unknown; ranges?: MeasuredRanges }>;
}

/** The options of {@link halfTransform}: the workflow's, without what only its checks read. */
export type HalfTransformOptions = Pick<Fp16WorkflowOptions, 'calibration' | 'shapes' | 'pass' | 'progress' | 'fuseTransformer'>;

export interface HalfTransform {
  /** The converted model (the loaded model changed in place, or the fused copy). */
  model: Model;
  fusion: FusionStep;
  /** The step before the conversion's report section (q4f16: the int4 pass's report). */
  before?: unknown;
  conversion: ConvertFloat16Report;
  /** In-domain random samples described from the float32 model (masks all ones, token ids over the vocabulary). */
  random: () => AsyncIterable<Sample>;
}

/**
 * What `quantize --mode fp16/q4f16` does to the model, without the workflow's checks of the result
 * (checker, onnxruntime load, comparison with float32, latency) and without writing it: the
 * transformer preset, the step before (q4f16's int4 step), convert-float16 with its ranges. `model` is
 * the float32 model as loaded; `inputs` its inputs as onnxruntime declares them (the data readers
 * shape the calibration samples by them). bench:transformer times exactly this.
 */
export async function halfTransform(model: Model, inputs: readonly ValueInfo[], o: HalfTransformOptions, step: HalfStep): Promise<HalfTransform> {
  // in-domain random samples, described from the float32 model before it changes
  const random = randomSamples(model, RANDOM_SAMPLES, o.shapes ?? {});
  const { model: fused, step: fusion } = await fuseTransformer(model, { ...(o.fuseTransformer === false ? { skip: '--no-fuse-transformer' } : {}), keepWeights: step.mode === 'q4f16' });
  const before = step.before ? await step.before(fused, inputs, random) : undefined;
  // ranges from the step before (q4f16 with GPTQ: its moments run), else measured here on the calibration
  // data (else random inputs); with ranges given, the data is read only for tensors they do not name
  const given = before?.ranges;
  const calibration = o.calibration ? () => openDataSource(o.calibration!, inputs, { shapes: o.shapes ?? {} }) : undefined;
  const conversion = await convertFloat16(
    fused,
    { ...resolveOptions(convertPass, { ...o.pass }), ...o.pass, ...(given ? { measuredRanges: given } : {}), ...(calibration ? { calibration } : {}), ...(o.shapes ? { shapes: o.shapes } : {}) },
    { runner: nodeRunner, ...(o.progress ? { progress: o.progress } : {}) },
  );
  return { model: fused, fusion, ...(before ? { before: before.report } : {}), conversion, random };
}

export async function runHalfMode(o: Fp16WorkflowOptions, step: HalfStep): Promise<Fp16Report> {
  const t0 = performance.now();
  const start = await startQuantize(o);
  const { fp32Model, fp32Bytes, threads, latencyRuns } = start;
  const so = { intraOpNumThreads: threads, allowSpinning: false };
  const fp32 = await Session.create(fp32Model, so, o.model);
  let half: Session | undefined;
  try {
    const { model, fusion, before: int4, conversion, random } = await halfTransform(start.model, fp32.inputs, o, step);
    const bytes = checkedBytes(model, o.output);
    half = await loadQuantized(Session.create(bytes, so, o.output), o.output);
    // measured on the evaluation data, else the calibration data, else in-domain random samples (the
    // ones the ranges were measured on: masks all ones, token ids over the whole vocabulary)
    const given = o.eval ? { spec: o.eval, flag: '--eval', options: evalDataOptions(o) } : o.calibration ? { spec: o.calibration, flag: '--calibration' } : undefined;
    const data = given
      ? measurementData(fp32.inputs, [given], o.shapes ?? {}, 'latency and output error')
      : { ok: true as const, spec: `random:${RANDOM_SAMPLES}`, from: 'random inputs', open: random };
    const report: Fp16Report = {
      schema: 'onnxforge.quantize-fp16/1',
      mode: step.mode,
      input: o.model,
      output: o.output,
      size: { fp32Bytes, bytes: bytes.byteLength, ratio: bytes.byteLength / fp32Bytes },
      outputs: [],
      evalSamples: 0,
      nonFinite: { samples: 0, values: 0, fp32Values: 0 },
      ...(int4 !== undefined ? { int4 } : {}),
      fusion,
      conversion,
      notes: [],
      wallMs: 0,
    };
    if (!conversion.keepIoTypes) {
      report.notes.push('output error and latency left out: with --no-keep-io-types the model takes and gives half-precision tensors, which the float32 model\'s samples are not');
    } else if (data.ok) {
      const ev = await evaluate(half, fp32, data.open(), { metrics: [{ name: 'nonFinite', fn: nonFiniteMetric }] });
      const nf = ev.metrics.nonFinite ?? {};
      report.nonFinite = { samples: ev.samples, values: nf.values ?? 0, fp32Values: nf.fp32Values ?? 0 };
      report.outputs = ev.outputs ?? [];
      report.evalSamples = ev.samples;
      report.measuredOn = data.from === 'random inputs' ? data.spec : `${data.from} ${data.spec}`;
      const feeds: Feed[] = [];
      for await (const x of data.open()) if (feeds.length < 4) feeds.push(x.feed);
      const lat = await measureLatency([fp32, half], feeds, { runs: latencyRuns, warmup: 3 });
      const [f, h] = lat.sessions.map((s) => s.stats.p50) as [number, number];
      report.latency = { fp32Ms: f, ms: h, ratio: h / f, runs: latencyRuns, threads };
    } else {
      report.notes.push(data.skipped);
    }
    await saveModel(model, o.output, o.save);
    report.wallMs = performance.now() - t0;
    return report;
  } finally {
    for (const s of [fp32, half]) await s?.dispose();
  }
}

/** `quantize --mode fp16`: float16 (or bfloat16 with `pass.bf16`) with mixed precision. */
export function quantizeFp16Workflow(o: Fp16WorkflowOptions): Promise<Fp16Report> {
  return runHalfMode(o, { mode: 'fp16' });
}
