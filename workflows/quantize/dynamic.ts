/**
 * Dynamic INT8 as a workflow (`quantize --mode dynamic`): MatMul/Gemm/Gather/LSTM weights int8,
 * activations quantized at run time; measured against FP32 (see data-free.ts).
 */
import { quantizeDynamic } from '../../passes/api.js';
import { resolveOptions } from '../../passes/pipeline.js';
import dynamicPass, { type QuantizeDynamicOptions } from '../../passes/quantize/quantize-dynamic.js';
import type { QuantizeModeReport } from '../../report/quantize.js';
import type { QuantizeWorkflowOptions } from './common.js';
import { runDataFreeMode } from './data-free.js';

export interface QuantizeDynamicWorkflowOptions extends QuantizeWorkflowOptions {
  /** quantize-dynamic pass options; the rest take the schema defaults. */
  pass?: Partial<QuantizeDynamicOptions>;
}

export function quantizeDynamicWorkflow(o: QuantizeDynamicWorkflowOptions): Promise<QuantizeModeReport> {
  return runDataFreeMode(o, {
    mode: 'dynamic',
    async apply(model) {
      const { prepare: _p, ...dynamic } = await quantizeDynamic(model, resolveOptions(dynamicPass, { ...o.pass }));
      return { dynamic };
    },
  });
}
