/**
 * eliminate-dead: removes nodes none of whose outputs is read (by a node, a subgraph, or as a graph
 * output) and initializers nothing reads, in every graph. Graph inputs and outputs never change.
 * Removing a node that holds subgraphs also unregisters the uses its subgraphs made of outer values.
 */
import type { Graph, Node } from '../../ir/ir.js';
import { definePass } from '../pass.js';

export default definePass<Record<string, never>>({
  name: 'eliminate-dead',
  description: 'Removes nodes whose outputs nothing reads and initializers nothing uses.',
  options: {},
  run(model) {
    let removedNodes = 0;
    let removedInitializers = 0;
    for (let again = true; again; ) {
      again = false;
      for (const g of [...model.graph.allGraphs()]) {
        if (g !== model.graph && !g.parentNode?.graph) continue; // already detached
        for (let i = g.nodes.length - 1; i >= 0; i--) {
          const n = g.nodes[i]!;
          if (n.outputs.some((o) => o.uses.length > 0 || o.isGraphOutput)) continue;
          detachSubgraphs(n);
          g.removeNode(n);
          removedNodes++;
          again = true;
        }
        for (const v of [...g.initializers.values()]) {
          if (v.uses.length === 0 && !v.isGraphOutput && !g.inputs.includes(v)) {
            g.removeInitializer(v);
            removedInitializers++;
            again = true;
          }
        }
      }
    }
    return { changed: removedNodes + removedInitializers > 0, stats: { removedNodes, removedInitializers } };
  },
});

/** Unregisters every use made inside the node's subgraphs (node inputs and subgraph outputs). */
export function detachSubgraphs(n: Node): void {
  for (const sg of n.subgraphs()) {
    const graphs: Graph[] = [...sg.allGraphs()];
    for (const g of graphs) {
      for (const m of g.nodes) m.clearInputs();
      for (const o of g.outputs) o.outputOf.delete(g);
    }
  }
}
