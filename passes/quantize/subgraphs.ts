/**
 * Layers the quantizers do not reach yet: nodes with a constant weight slot inside If/Loop/Scan
 * subgraphs (Silero VAD keeps every Conv and LSTM in the branches of an If per sample rate). The
 * quantize passes work on the main graph; this count lets their reports say what stayed float there
 * and why, instead of an unexplained "0 weights".
 */
import { constantOf, Model } from '../../ir/ir.js';
import { weightAxis } from './weights-int8.js';

const WEIGHT_OPS = new Set(['Conv', 'ConvTranspose', 'MatMul', 'Gemm', 'LSTM', 'GRU', 'Gather']);

/** Nodes inside subgraphs that read a constant float tensor in a slot a quantizer would take. */
export function subgraphWeightLayers(model: Model): { count: number; byOp: Record<string, number> } {
  const byOp: Record<string, number> = {};
  let count = 0;
  for (const n of model.graph.allNodes()) {
    if (n.graph === model.graph || n.opDomain !== '' || !WEIGHT_OPS.has(n.opType)) continue;
    const hasWeight = n.inputs.some((v, i) => {
      const t = v ? constantOf(v) : undefined;
      if (!t) return false;
      if (n.opType === 'LSTM' || n.opType === 'GRU') return i === 1 || i === 2;
      if (n.opType === 'Gather') return i === 0;
      return weightAxis(n, i, t.dims.length) !== null;
    });
    if (!hasWeight) continue;
    count++;
    byOp[n.opType] = (byOp[n.opType] ?? 0) + 1;
  }
  return { count, byOp };
}

/** One sentence for a report, or undefined when no such layer exists. */
export function subgraphNote(model: Model): string | undefined {
  const { count, byOp } = subgraphWeightLayers(model);
  if (count === 0) return undefined;
  const ops = Object.entries(byOp).map(([op, k]) => `${k} ${op}`).join(', ');
  return `${count} weight layers inside If/Loop/Scan subgraphs (${ops}) stay float: quantization works on the main graph only for now`;
}
