/**
 * `quantize --mode q4f16`: int4 weights (the quantize-int4 pass: MatMulNBits, GatherBlockQuantized)
 * with float16 scales and float16 activations around them — the int4 step first, then the float16
 * conversion (convert-float16), which converts each half MatMulNBits's scales (and bias) to float16
 * at conversion time. Measured and written as fp16 is (fp16.ts).
 *
 * Activation ranges (those the conversion's plan can use: none with target cpu on the trained LM, where
 * every float op stays float32 for its kernel): with GPTQ (calibration data), the int4 step's moments
 * run measures them on the float32 model (after the pass's own preparation, before any weight is quantized) on its moment
 * samples (8 of the 32 calibration samples by default), so there is no range pass of its own and the
 * calibration data is read once. MatMulNBits and GatherBlockQuantized keep the output names of the
 * MatMul/Gather they replace, so their ranges are the float32 layers' (the int4 weights move them by
 * the layer's output error, well inside the plan's 4x headroom). Without a moments run (RTN, or a
 * sample whose float outputs are not finite) the conversion measures its ranges itself, as fp16 does.
 */
import type { Feed } from '../../core/host-tensor.js';
import { collectSamples } from '../../data/index.js';
import type { Model } from '../../ir/ir.js';
import { rangeTensorsFor, type MeasuredRanges } from '../../passes/convert/convert-float16.js';
import { inferTypes } from '../../passes/convert/float16/plan.js';
import { createPassContext } from '../../passes/manager.js';
import { resolveOptions } from '../../passes/pipeline.js';
import int4Pass, { quantizeInt4, type Int4Data, type QuantizeInt4Options } from '../../passes/quantize/quantize-int4.js';
import type { Fp16Report } from '../../report/fp16.js';
import { runnerFor, type Backend } from '../../runtime/backend.js';
import { type Fp16WorkflowOptions, type HalfStep, type HalfTransformOptions, halfTransform, runHalfMode } from './fp16.js';

export interface Q4f16WorkflowOptions extends Fp16WorkflowOptions {
  /** quantize-int4 pass options; the rest take the schema defaults. */
  int4?: Partial<QuantizeInt4Options>;
  /** The backend whose runner the int4 step's measurements use (accuracy_level timings, first/last layers; default node). */
  target?: Backend;
}

/** Random samples the int4 step measures on when no calibration data is given. */
const PROBE_SAMPLES = 4;

/** Where the ranges from the int4 step were measured, for the conversion's report. */
const MOMENTS_RUN = "the float32 model (prepared, before its weights were quantized), in the int4 step's GPTQ moments run";

/** The int4 step of q4f16, handing the conversion the ranges its moments run measured. */
function int4Step(o: Pick<Q4f16WorkflowOptions, 'calibration' | 'shapes' | 'int4' | 'target' | 'progress' | 'pass'>): HalfStep {
  // MatMulNBits (not unpacked float32 weights): the float16 step then halves its scales and activations
  const int4Options = resolveOptions(int4Pass, { kernel: 'nbits', ...o.int4 }) as QuantizeInt4Options;
  return {
    mode: 'q4f16',
    async before(model, inputs, random) {
      const samples = o.calibration ? await collectSamples(o.calibration, inputs, { shapes: o.shapes ?? {}, limit: int4Options.calibrationSamples ?? 32 }) : [];
      const calibration = samples.map((s) => s.feed);
      const probe: Feed[] = [...calibration];
      if (!probe.length) for await (const s of random()) if (probe.length < PROBE_SAMPLES) probe.push(s.feed);
      let ranges: MeasuredRanges | undefined;
      const data: Int4Data = { calibration, probe, ranges: { get tensors() { return floatActivations(model, o.pass); }, onRanges: (r, n) => (ranges = { ranges: r, source: 'calibration', samples: n, on: MOMENTS_RUN }) } };
      const { prepare: _p, ...report } = await quantizeInt4(model, data, int4Options, { ...createPassContext({ runner: runnerFor(o.target ?? 'node') }), ...(o.progress ? { progress: o.progress } : {}) });
      return { report, ...(ranges ? { ranges } : {}) };
    },
  };
}

/**
 * The range tensors the conversion's plan can use (rangeTensorsFor), of `model` as it is when the int4
 * step reads them (after the pass's preparation: a getter, so names the preset changed are those of the
 * model measured). The conversion fills what its own plan of the int4 model needs beyond them.
 */
function floatActivations(model: Model, pass: HalfTransformOptions['pass']): string[] {
  inferTypes(model);
  return rangeTensorsFor(model, pass);
}

/**
 * What `quantize --mode q4f16` does to the model without the workflow's checks and without writing
 * it (bench:transformer and cost.ts time this): see {@link halfTransform}.
 */
export function q4f16Transform(model: Model, inputs: Parameters<typeof halfTransform>[1], o: HalfTransformOptions & Pick<Q4f16WorkflowOptions, 'int4' | 'target'>): ReturnType<typeof halfTransform> {
  return halfTransform(model, inputs, o, int4Step(o));
}

export function quantizeQ4f16Workflow(o: Q4f16WorkflowOptions): Promise<Fp16Report> {
  return runHalfMode(o, int4Step(o));
}
