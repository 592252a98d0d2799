/**
 * `quantize --mode q4f16`: int4 weights (the quantize-int4 pass: MatMulNBits, GatherBlockQuantized)
 * with float16 scales and float16 activations around them — the int4 step first, then the float16
 * conversion (convert-float16), which converts each half MatMulNBits's scales (and bias) to float16
 * at conversion time. Measured and written as fp16 is (fp16.ts).
 */
import type { Feed } from '../../core/host-tensor.js';
import { collectSamples } from '../../data/index.js';
import { createPassContext } from '../../passes/manager.js';
import { resolveOptions } from '../../passes/pipeline.js';
import int4Pass, { quantizeInt4, type QuantizeInt4Options } from '../../passes/quantize/quantize-int4.js';
import type { Fp16Report } from '../../report/fp16.js';
import { runnerFor, type Backend } from '../../runtime/backend.js';
import { type Fp16WorkflowOptions, runHalfMode } from './fp16.js';

export interface Q4f16WorkflowOptions extends Fp16WorkflowOptions {
  /** quantize-int4 pass options; the rest take the schema defaults. */
  int4?: Partial<QuantizeInt4Options>;
  /** The backend whose runner the int4 step's measurements use (accuracy_level timings, first/last layers; default node). */
  target?: Backend;
}

/** Random samples the int4 step measures on when no calibration data is given. */
const PROBE_SAMPLES = 4;

export function quantizeQ4f16Workflow(o: Q4f16WorkflowOptions): Promise<Fp16Report> {
  // MatMulNBits (not unpacked float32 weights): the float16 step then halves its scales and activations
  const int4Options = resolveOptions(int4Pass, { kernel: 'nbits', ...o.int4 }) as QuantizeInt4Options;
  return runHalfMode(o, {
    mode: 'q4f16',
    async before(model, inputs, random) {
      const calibration = o.calibration ? (await collectSamples(o.calibration, inputs, { shapes: o.shapes ?? {}, limit: int4Options.calibrationSamples ?? 32 })).map((s) => s.feed) : [];
      const probe: Feed[] = [...calibration];
      if (!probe.length) for await (const s of random()) if (probe.length < PROBE_SAMPLES) probe.push(s.feed);
      const { prepare: _p, ...int4 } = await quantizeInt4(model, { calibration, probe }, int4Options, { ...createPassContext({ runner: runnerFor(o.target ?? 'node') }), ...(o.progress ? { progress: o.progress } : {}) });
      return int4;
    },
  });
}
