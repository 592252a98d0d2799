/**
 * Small graph-editing helpers the passes share: a node output turned into an initializer under its own
 * name, removing unused nodes, and the size measures the pass manager records. Replacing a value is
 * `Value.replaceAllUsesWith` (ir.ts, the one rule for graph output names); new names come from
 * `model.names` (names.ts).
 */
import { Graph, Model, Node, Value } from './ir.js';
import type { Tensor } from '../core/tensor.js';

/** Removes `node` when none of its outputs is used or a graph output. Returns whether it did. */
export function removeIfUnused(node: Node): boolean {
  if (!node.graph) return false;
  if (node.outputs.some((o) => o.uses.length > 0 || o.isGraphOutput)) return false;
  node.graph.removeNode(node);
  return true;
}

/** Nodes in every graph of the model (subgraphs included). */
export function countNodes(model: Model): number {
  let n = 0;
  for (const _ of model.graph.allNodes()) n++;
  return n;
}

function attrTensorBytes(n: Node): number {
  let b = 0;
  for (const a of n.attributes) {
    if (a.t) b += tensorBytes(a.t);
    if (a.tensors) for (const t of a.tensors) b += tensorBytes(t);
  }
  return b;
}

function tensorBytes(t: Tensor): number {
  return t.dataType === 8 ? 0 : t.byteLength;
}

/** Bytes of tensor data (initializers and tensor attributes such as Constant values) in every graph. */
export function weightBytes(model: Model): number {
  let b = 0;
  for (const g of model.graph.allGraphs()) {
    for (const v of g.initializers.values()) {
      const t = g.initializerTensor(v);
      if (t) b += tensorBytes(t);
    }
    for (const n of g.nodes) b += attrTensorBytes(n);
  }
  return b;
}

/**
 * Turns `v` (a node output about to lose its producer) into an initializer of its graph holding
 * `tensor`, keeping its name: `v` is renamed to a fresh spare name, the initializer takes the name and
 * every use (graph output slots included) moves to it with `replaceAllUsesWith`. Returns the initializer.
 */
export function replaceWithInitializer(g: Graph, v: Value, tensor: Tensor): Value {
  const name = v.name;
  v.name = g.names.fresh(`${name}__folded`);
  const init = g.addInitializer(tensor, name);
  v.replaceAllUsesWith(init);
  return init;
}
