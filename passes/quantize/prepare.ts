/**
 * Preparation before quantization, through the pass manager: the `default` preset (lossless cleanup
 * and float-exact fusions such as Conv+BN), then `fuse` (opset upgrade and HardSwish/LayerNorm/Gelu
 * fusions), then `upgrade-opset<to=13>` if the model is still older than opset 13 (QDQ with a
 * per-channel `axis` needs 13). Presets that are not registered are skipped and reported.
 *
 * The presets run through the context's sub-pipelines (the pass manager supplies them), so this file
 * imports neither the manager nor the registry (which lists the quantization passes).
 */
import { inputError, internalError } from '../../core/errors.js';
import type { Model } from '../../ir/ir.js';
import type { PassContext } from '../pass.js';

export interface PrepareReport {
  ran: string[];
  skipped: string[];
  opsetBefore: number;
  opsetAfter: number;
  nodesBefore: number;
  nodesAfter: number;
  ms: number;
}

/** Runs the presets (default `default,fuse`) and the opset upgrade as available. */
export async function prepareForQuantization(model: Model, ctx: PassContext | undefined, opts: { presets?: string; minOpset?: number } = {}): Promise<PrepareReport> {
  const t0 = performance.now();
  const pipelines = ctx?.pipelines;
  if (!ctx || !pipelines) throw internalError('PASS_NO_PIPELINES', 'quantization prepares the model with the default/fuse presets: call it through the pass manager (a pipeline), with a context from createPassContext() (passes/api.ts does), or with prepare: false');
  const opsetBefore = model.opset('') ?? 1;
  const nodesBefore = model.graph.nodes.length;
  const report: PrepareReport = { ran: [], skipped: [], opsetBefore, opsetAfter: opsetBefore, nodesBefore, nodesAfter: nodesBefore, ms: 0 };
  const minOpset = opts.minOpset ?? 13;
  const wanted = (opts.presets ?? 'default,fuse').split(',').map((p) => p.trim()).filter(Boolean);
  const present = wanted.filter((p) => pipelines.hasPreset(p));
  report.skipped.push(...wanted.filter((p) => !present.includes(p)).map((p) => `preset ${p}`));
  const steps = present.map((p) => `@${p}`);
  if (steps.length) {
    await pipelines.run(model, steps.join(','), { data: ctx.data });
    report.ran.push(...present);
  }
  if ((model.opset('') ?? 1) < minOpset) {
    if (!pipelines.hasPass('upgrade-opset')) {
      throw inputError('QUANT_OPSET_TOO_OLD', `the model uses opset ${model.opset('')}; QDQ quantization needs opset ${minOpset} and the upgrade-opset pass is not available`);
    }
    await pipelines.run(model, `upgrade-opset<to=${minOpset}>`);
    report.ran.push(`upgrade-opset<to=${minOpset}>`);
  }
  report.opsetAfter = model.opset('') ?? 1;
  if (report.opsetAfter < minOpset) throw inputError('QUANT_OPSET_TOO_OLD', `preparation left the model at opset ${report.opsetAfter}; QDQ needs ${minOpset}`);
  report.nodesAfter = model.graph.nodes.length;
  report.ms = performance.now() - t0;
  return report;
}
