/**
 * An independent check of the IR's bookkeeping, used by the IR tests on built and loaded models:
 * every node input is registered as a use of its value (and nothing else is), every node output
 * points back at its producer and slot, and every graph output knows it is one.
 */
import type { Graph, Model } from '../../ir/ir.js';

export function bookkeepingProblems(model: Model): string[] {
  const problems: string[] = [];
  const graphs: Graph[] = [...model.graph.allGraphs()];
  for (const f of model.functions) graphs.push(...f.body.allGraphs());
  const seen = new Set<unknown>();
  for (const g of graphs) {
    for (const n of g.nodes) {
      if (n.graph !== g) problems.push(`node ${n.label} is listed in ${g.name} but its graph is ${n.graph?.name}`);
      n.outputs.forEach((o, i) => {
        if (o.producer !== n || o.outputIndex !== i) problems.push(`output ${i} (${o.name}) of ${n.label} has producer ${o.producer?.label} slot ${o.outputIndex}`);
        if (o.graph !== g) problems.push(`output ${o.name} of ${n.label} has scope ${o.graph?.name}, expected ${g.name}`);
      });
      n.inputs.forEach((v, i) => {
        if (!v) return;
        seen.add(v);
        const count = v.uses.filter((u) => u.node === n && u.index === i).length;
        if (count !== 1) problems.push(`input ${i} (${v.name}) of ${n.label} is registered ${count} times among its uses`);
      });
    }
    for (const o of g.outputs) if (!o.outputOf.has(g)) problems.push(`output ${o.name} of ${g.name} does not know it is a graph output`);
  }
  for (const v of seen as Set<{ name: string; uses: Array<{ node: { inputs: ReadonlyArray<unknown>; label: string }; index: number }> }>) {
    for (const u of v.uses) if (u.node.inputs[u.index] !== v) problems.push(`value ${v.name} lists a stale use: ${u.node.label} input ${u.index}`);
  }
  return problems;
}

/** Byte equality without vitest's per-element diffing (which is slow on megabyte buffers). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}
