/**
 * Small graph-editing helpers the passes share: replacing a value while keeping graph output names,
 * fresh unique names, and the size measures the pass manager records.
 */
import { Graph, Model, Node, Value } from './ir.js';
import type { Tensor } from '../core/tensor.js';

/**
 * Makes every use of `old` read `replacement`. When `old` is a graph output, the output must keep its
 * name: that is only possible when `replacement` is a node output of the same graph that is not itself
 * a graph output (it takes over the name). Returns false (and changes nothing) when the name cannot be
 * kept, so the caller leaves the node in place.
 */
export function replaceValue(old: Value, replacement: Value): boolean {
  if (old === replacement) return true;
  if (old.isGraphOutput) {
    if (!replacement.producer || replacement.graph !== old.graph || replacement.isGraphOutput) return false;
    // a value can be listed by several graphs only in malformed models; keep it simple and refuse
    if (old.outputOf.size !== 1) return false;
    const name = old.name;
    old.replaceAllUsesWith(replacement);
    if (replacement.name !== name) {
      // swap names so the output keeps its name and names stay unique
      old.name = replacement.name;
      replacement.name = name;
    }
    return true;
  }
  old.replaceAllUsesWith(replacement);
  return true;
}

/** True when a value can be replaced (see {@link replaceValue}). */
export function canReplace(old: Value, replacement: Value): boolean {
  if (!old.isGraphOutput) return true;
  return !!replacement.producer && replacement.graph === old.graph && !replacement.isGraphOutput && old.outputOf.size === 1;
}

/** Removes `node` when none of its outputs is used or a graph output. Returns whether it did. */
export function removeIfUnused(node: Node): boolean {
  if (!node.graph) return false;
  if (node.outputs.some((o) => o.uses.length > 0 || o.isGraphOutput)) return false;
  node.graph.removeNode(node);
  return true;
}

/** Unique names across a model (all graphs): `fresh('x')` gives `x`, `x_1`, ... that nothing uses yet. */
export class NameGen {
  private readonly used = new Set<string>();
  constructor(model: Model) {
    for (const g of model.graph.allGraphs()) {
      for (const v of g.inputs) this.used.add(v.name);
      for (const v of g.outputs) this.used.add(v.name);
      for (const k of g.initializers.keys()) this.used.add(k);
      for (const n of g.nodes) {
        for (const o of n.outputs) this.used.add(o.name);
        if (n.name) this.used.add(n.name);
      }
    }
  }
  fresh(base: string): string {
    let name = base;
    for (let i = 1; this.used.has(name); i++) name = `${base}_${i}`;
    this.used.add(name);
    return name;
  }
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
 * `tensor`, keeping its name: every use is moved to the new initializer value, which is returned.
 */
export function replaceWithInitializer(g: Graph, v: Value, tensor: Tensor): Value {
  const name = v.name;
  v.name = `${name}__folded`;
  const init = g.addInitializer(tensor, name);
  v.replaceAllUsesWith(init);
  return init;
}
