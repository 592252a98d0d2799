/**
 * The plain functions behind the quantization and distillation passes, for callers outside a pipeline
 * (the public API, workflows, tests). Each is the pass's algorithm with a context from the pass
 * manager when none is given, so the preparation presets and clean-up pipelines they run resolve
 * through the registry without the pass files importing it (this file sits above the registry).
 */
import type { Model } from '../ir/ir.js';
import { createPassContext } from './manager.js';
import type { PassContext } from './pass.js';
import * as staticQ from './quantize/quantize-static.js';
import * as weightsQ from './quantize/quantize-weights.js';
import * as dynamicQ from './quantize/quantize-dynamic.js';
import * as distillP from './distill/distill.js';

/** Static INT8 (QDQ) calibrated on `calibration`; see passes/quantize/quantize-static.ts. */
export function quantizeStatic(
  model: Model,
  calibration: Parameters<typeof staticQ.quantizeStatic>[1],
  options: staticQ.QuantizeStaticOptions = {},
  ctx: PassContext = createPassContext(),
): Promise<staticQ.QuantizeStaticReport> {
  return staticQ.quantizeStatic(model, calibration, options, ctx);
}

/** Int8 weight compression; see passes/quantize/quantize-weights.ts. */
export function quantizeWeights(model: Model, options: weightsQ.QuantizeWeightsOptions = {}, ctx: PassContext = createPassContext()): Promise<weightsQ.QuantizeWeightsReport> {
  return weightsQ.quantizeWeights(model, options, ctx);
}

/** Dynamic INT8; see passes/quantize/quantize-dynamic.ts. */
export function quantizeDynamic(model: Model, options: dynamicQ.QuantizeDynamicOptions = {}, ctx: PassContext = createPassContext()): Promise<dynamicQ.QuantizeDynamicReport> {
  return dynamicQ.quantizeDynamic(model, options, ctx);
}

/** Knowledge distillation of `student` from `teacher`; see passes/distill/distill.ts. */
export function distillModel(
  student: Model,
  teacher: Model,
  data: Parameters<typeof distillP.distillModel>[2],
  options: distillP.DistillModelOptions = {},
  ctx: Pick<PassContext, 'pipelines'> = createPassContext(),
): Promise<distillP.DistillModelReport> {
  return distillP.distillModel(student, teacher, data, options, ctx);
}
