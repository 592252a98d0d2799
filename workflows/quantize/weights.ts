/**
 * Int8 weight compression as a workflow (`quantize --mode weights`): int8 weights behind
 * DequantizeLinear, float activations, the model tagged so the expanding helper restores float
 * weights at load time; measured raw and through the helper (see data-free.ts).
 */
import { quantizeWeights } from '../../passes/api.js';
import { resolveOptions } from '../../passes/pipeline.js';
import weightsPass, { type QuantizeWeightsOptions } from '../../passes/quantize/quantize-weights.js';
import type { QuantizeModeReport } from '../../report/quantize.js';
import type { QuantizeWorkflowOptions } from './common.js';
import { runDataFreeMode } from './data-free.js';

export interface QuantizeWeightsWorkflowOptions extends QuantizeWorkflowOptions {
  /** quantize-weights pass options; the rest take the schema defaults. */
  pass?: Partial<QuantizeWeightsOptions>;
}

export function quantizeWeightsWorkflow(o: QuantizeWeightsWorkflowOptions): Promise<QuantizeModeReport> {
  return runDataFreeMode(o, {
    mode: 'weights',
    expanded: true,
    async apply(model) {
      const { prepare: _p, ...weights } = await quantizeWeights(model, resolveOptions(weightsPass, { ...o.pass }));
      return { weights };
    },
  });
}
