/** Shared helpers for the quantization tests: running float vs quantized models and reading the QDQ graph. */
import type { Sample } from '../../data/index.js';
import { DataType } from '../../core/dtype.js';
import { constantOf, Model, Node, Value } from '../../ir/ir.js';
import { createSessionFromModel } from '../../runtime/from-model.js';
import { OutputComparison, OutputError } from '../../runtime/metrics.js';
import type { PassContext } from '../../passes/pass.js';
import { createPassContext } from '../../passes/manager.js';

/** Output error of `quant` against `ref` over the samples (all outputs). */
export async function outputError(ref: Model, quant: Model, samples: AsyncIterable<Sample>): Promise<OutputError[]> {
  const a = await createSessionFromModel(ref, { intraOpNumThreads: 1 });
  const b = await createSessionFromModel(quant, { intraOpNumThreads: 1 });
  const cmp = new OutputComparison();
  for await (const s of samples) cmp.add(await b.run(s.feed), await a.run(s.feed), s.id);
  await a.dispose();
  await b.dispose();
  return cmp.result();
}

export const nodesOf = (m: Model, op: string): Node[] => m.graph.nodes.filter((n) => n.opType === op);

export const byName = (m: Model, name: string): Node => {
  const n = m.graph.nodes.find((x) => x.name === name);
  if (!n) throw new Error(`no node ${name}`);
  return n;
};

/** The Q node reading `v`, if any. */
export const quantizerOf = (v: Value): Node | undefined => v.consumers().find((n) => n.opType === 'QuantizeLinear');

/** The float tensor a DequantizeLinear output stands for (DQ <- Q <- v). */
export function dqSource(v: Value | null): Value | undefined {
  const dq = v?.producer;
  if (!dq || dq.opType !== 'DequantizeLinear') return undefined;
  const q = dq.inputs[0]?.producer;
  return q?.opType === 'QuantizeLinear' ? (q.inputs[0] ?? undefined) : undefined;
}

export const floatConstants = (m: Model): Node[] =>
  m.graph.nodes.filter((n) => n.opType === 'Constant' && constantOf(n.outputs[0])?.dataType === DataType.FLOAT && (constantOf(n.outputs[0])?.size ?? 0) > 1);

export function testContext(data: Record<string, unknown> = {}): PassContext {
  const warnings: string[] = [];
  return createPassContext({ logger: { info() {}, warn: (m) => warnings.push(m), debug() {} }, data });
}
