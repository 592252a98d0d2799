/**
 * Per-layer error of a quantized model against its float original (what `--debug-layers` prints):
 * both models get the compared tensors as extra outputs (the float tensor, and the DequantizeLinear
 * output that carries it after quantization), run on the same samples, and each pair accumulates
 * SQNR = 10 log10(sum r^2 / sum (q - r)^2) and max |q - r| without keeping any array.
 */
import type { Model } from '../../ir/ir.js';
import type { Sample } from '../../data/index.js';
import { augmentModel } from '../../calibration/collect.js';
import { OutputComparison, OutputError } from '../../runtime/metrics.js';
import type { Feed } from '../../core/host-tensor.js';
import { nodeRunner, type Runner, type SessionOptions } from '../../runtime/runner.js';

export interface LayerError extends OutputError {
  /** The tensor in the float model. */
  tensor: string;
  /** Op type of its producer in the float model ('input' for graph inputs). */
  producer: string;
}

/**
 * Compares `pairs` (float tensor name -> quantized tensor name) over `samples`, returning one entry
 * per tensor in the float model's order, worst SQNR first when `sort` is set.
 */
export async function layerErrors(
  floatModel: Model,
  quantModel: Model,
  pairs: Readonly<Record<string, string>>,
  samples: AsyncIterable<Sample>,
  options: { sessionOptions?: SessionOptions; limit?: number; runner?: Runner } = {},
): Promise<LayerError[]> {
  const floatNames = Object.keys(pairs);
  const quantNames = floatNames.map((n) => pairs[n]!);
  const so = { graphOptimizationLevel: 'all' as const, ...options.sessionOptions };
  const runner = options.runner ?? nodeRunner;
  const fs = await runner.open(augmentModel(floatModel, floatNames), so, '(float model, debug outputs)');
  const qs = await runner.open(augmentModel(quantModel, quantNames), so, '(quantized model, debug outputs)');
  const cmp = new OutputComparison();
  let n = 0;
  try {
    for await (const s of samples) {
      if (options.limit !== undefined && n >= options.limit) break;
      const fo = await fs.run(s.feed, floatNames);
      const qo = await qs.run(s.feed, quantNames);
      const cand: Feed = {};
      for (let i = 0; i < floatNames.length; i++) cand[floatNames[i]!] = qo[quantNames[i]!]!;
      cmp.add(cand, fo, s.id);
      n++;
    }
  } finally {
    await fs.dispose();
    await qs.dispose();
  }
  const producers = new Map<string, string>();
  for (const node of floatModel.graph.nodes) for (const o of node.outputs) producers.set(o.name, node.opType);
  return cmp.result().map((e) => ({ ...e, tensor: e.name, producer: producers.get(e.name) ?? 'input' }));
}
