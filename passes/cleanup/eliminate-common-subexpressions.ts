/**
 * eliminate-common-subexpressions: two nodes of the same op, domain and attributes that read the same
 * inputs compute the same outputs; the later one is removed and its readers use the earlier one's
 * outputs. Scope is one graph at a time (subgraphs included). Nodes holding subgraphs, non-deterministic
 * ops and Constant nodes (see dedupe-constants) are left alone.
 */
import { bytesBase64 } from '../../core/bytes.js';
import { AttrType, Attribute, Node, topologicalOrder, Value } from '../../ir/ir.js';
import { NONDETERMINISTIC } from './fold-constants.js';
import { definePass } from '../pass.js';

/** Tensors in attributes above this size make the node ineligible (keys stay small). */
const MAX_ATTR_TENSOR_BYTES = 4096;

function attrKey(a: Attribute): string | undefined {
  switch (a.type) {
    case AttrType.TENSOR: {
      const t = a.t;
      if (!t || t.isExternal || t.byteLength > MAX_ATTR_TENSOR_BYTES) return undefined;
      const body = t.dataType === 8 ? JSON.stringify(t.strings()) : bytesBase64(t.bytes());
      return `${a.name}:T${t.dataType}[${t.dims}]${body}`;
    }
    case AttrType.GRAPH:
    case AttrType.GRAPHS:
    case AttrType.TENSORS:
    case AttrType.SPARSE_TENSOR:
    case AttrType.SPARSE_TENSORS:
      return undefined;
  }
  if (a.refAttrName) return undefined;
  return `${a.name}:${a.type}:${numbersJson(a) ?? JSON.stringify(a.value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}`;
}

/** JSON of a number or bigint as the replacer above writes it (a bigint as a string). */
function numberJson(v: number | bigint): string {
  return typeof v === 'bigint' ? `"${v}"` : JSON.stringify(v);
}

/**
 * The JSON text of an int(s)/float(s) attribute's value, written without JSON.stringify's replacer
 * (called on every element, it was most of the pass on a cold start); undefined for other types.
 */
function numbersJson(a: Attribute): string | undefined {
  switch (a.type) {
    case AttrType.INT:
      return numberJson(a.i ?? 0);
    case AttrType.FLOAT:
      return numberJson(a.f ?? 0);
    case AttrType.INTS:
    case AttrType.FLOATS: {
      const vs: Array<number | bigint> = (a.type === AttrType.INTS ? a.ints : a.floats) ?? [];
      const out: string[] = [];
      for (let i = 0; i < vs.length; i++) {
        const v = vs[i];
        if (typeof v !== 'number' && typeof v !== 'bigint') return undefined;
        out.push(numberJson(v));
      }
      return `[${out.join(',')}]`;
    }
  }
  return undefined;
}

function byName(x: Attribute, y: Attribute): number {
  const a = x.name ?? '';
  const b = y.name ?? '';
  return a < b ? -1 : a > b ? 1 : 0;
}

export function nodeKey(n: Node, ids: Map<Value, number>): string | undefined {
  if (n.opType === 'Constant' || NONDETERMINISTIC.has(n.opType) || n.subgraphs().length > 0 || n.outputs.length === 0) return undefined;
  const attrs: string[] = [];
  // any fixed order of the names makes equal attribute sets equal keys: code units (localeCompare's
  // first call loads a collator, 10 ms of a cold start)
  for (const a of n.attributes.length > 1 ? [...n.attributes].sort(byName) : n.attributes) {
    const k = attrKey(a);
    if (k === undefined) return undefined;
    attrs.push(k);
  }
  const ins = n.inputs.map((v) => {
    if (!v) return '-';
    let id = ids.get(v);
    if (id === undefined) {
      id = ids.size;
      ids.set(v, id);
    }
    return String(id);
  });
  return `${n.opDomain}|${n.opType}|${n.overload ?? ''}|${n.outputs.length}|${ins.join(',')}|${attrs.join(';')}`;
}

export default definePass<Record<string, never>>({
  name: 'eliminate-common-subexpressions',
  description: 'Merges nodes that compute the same op on the same inputs with the same attributes.',
  options: {},
  run(model, _o, ctx) {
    let merged = 0;
    const ids = new Map<Value, number>();
    for (const g of [...model.graph.allGraphs()]) {
      const seen = new Map<string, Node>();
      let order: Node[];
      try {
        order = topologicalOrder(g);
      } catch {
        order = [...g.nodes];
      }
      for (const n of order) {
        if (!n.graph) continue;
        const key = nodeKey(n, ids);
        if (key === undefined) continue;
        const first = seen.get(key);
        if (!first) {
          seen.set(key, n);
          continue;
        }
        if (!n.outputs.every((o, i) => o.canBeReplacedBy(first.outputs[i]!))) {
          ctx.explain({ node: n.label, reason: `it repeats ${first.label} but its output is a graph output whose name cannot move` });
          continue;
        }
        n.outputs.forEach((o, i) => o.replaceAllUsesWith(first.outputs[i]!, { strict: true }));
        g.removeNode(n);
        merged++;
      }
    }
    return { changed: merged > 0, stats: { merged } };
  },
});
