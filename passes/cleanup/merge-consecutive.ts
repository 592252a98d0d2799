/**
 * merge-consecutive: folds a chain of two layout ops into one.
 *
 * - Transpose(Transpose(x, p1), p2) = Transpose(x, p) with p[i] = p1[p2[i]].
 * - Reshape(R(x), s) = Reshape(x, s) when R is Reshape, Flatten, Squeeze or Unsqueeze and s has no 0
 *   that would copy a dim of R's output (element order never changes under these ops).
 * - Unsqueeze(Unsqueeze(x, a1), a2) = Unsqueeze(x, a2 + a1 mapped past a2); Squeeze(Squeeze(x, s1), s2)
 *   likewise; Squeeze(Unsqueeze(x, a), a) = x and Unsqueeze(Squeeze(x, a), a) = x.
 * The second node is rewritten to read x; the first disappears when nothing else reads it. Axes are an
 * attribute before opset 13 and an input from 13 on (the rewrite writes the form of the model's opset).
 */
import { DataType } from '../../core/dtype.js';
import { Attribute, constantOf, Model, Node } from '../../ir/ir.js';
import { symbolicShape } from '../../analysis/shape-inference.js';
import { Tensor } from '../../core/tensor.js';
import { definePass, Match, matched, noMatch } from '../pass.js';
import { removeIfUnused } from '../../ir/edits.js';

function axesOf(n: Node, opset: number): number[] | undefined {
  if (opset >= 13) return n.input(1) ? constantOf(n.input(1))?.toNumbers() : undefined;
  return n.getInts('axes');
}

/** Axes made non-negative using the rank, or undefined when the rank is needed but unknown. */
function normalized(axes: number[], rank: number | undefined): number[] | undefined {
  if (axes.every((a) => a >= 0)) return axes;
  if (rank === undefined) return undefined;
  return axes.map((a) => (a < 0 ? a + rank : a));
}

/** The k-th position (0-based) not in `taken`. */
function nthFree(k: number, taken: Set<number>): number {
  let pos = -1;
  for (let seen = -1; seen < k; ) {
    pos++;
    if (!taken.has(pos)) seen++;
  }
  return pos;
}

type Rewrite =
  | { kind: 'transpose'; perm: number[] }
  | { kind: 'reshape' }
  | { kind: 'axes'; axes: number[] }
  | { kind: 'cancel' };

export function matchConsecutive(n: Node, opset: number): Match<Rewrite> {
  const x = n.input(0);
  const p = x?.producer;
  if (!p || p.opDomain !== '' || n.opDomain !== '') return noMatch('its input is not produced by a layout op');
  if (p.graph !== n.graph) return noMatch('its input comes from an outer graph');
  switch (n.opType) {
    case 'Transpose': {
      if (p.opType !== 'Transpose') return noMatch('its input is not a Transpose');
      const p1 = p.getInts('perm');
      const p2 = n.getInts('perm');
      if (!p1 || !p2 || p1.length !== p2.length) return noMatch('a permutation is implicit or the ranks differ');
      return matched({ kind: 'transpose', perm: p2.map((i) => p1[i]!) });
    }
    case 'Reshape': {
      if (!['Reshape', 'Flatten', 'Squeeze', 'Unsqueeze'].includes(p.opType)) return noMatch('its input is not a Reshape/Flatten/Squeeze/Unsqueeze');
      const s = opset >= 5 ? constantOf(n.input(1))?.toNumbers() : n.getInts('shape');
      if (!s) return noMatch('its shape is not constant');
      if (s.includes(0) && n.getInt('allowzero', 0) !== 1) return noMatch('its shape copies a dim (0) from the intermediate tensor');
      return matched({ kind: 'reshape' });
    }
    case 'Unsqueeze':
    case 'Squeeze': {
      const a2 = axesOf(n, opset);
      const a1 = p.opType === 'Squeeze' || p.opType === 'Unsqueeze' ? axesOf(p, opset) : undefined;
      if (!a2 || !a1) return noMatch(p.opType !== 'Squeeze' && p.opType !== 'Unsqueeze' ? 'its input is not a Squeeze/Unsqueeze' : 'axes are not constant');
      const inRank = symbolicShape(p.input(0))?.length;
      if (p.opType !== n.opType) {
        // Squeeze(Unsqueeze(x, a), a) or Unsqueeze(Squeeze(x, a), a): both see the same rank for their axes
        const midRank = symbolicShape(x)?.length;
        const r1 = p.opType === 'Unsqueeze' ? (inRank !== undefined ? inRank + a1.length : midRank) : inRank;
        const na1 = normalized(a1, r1);
        const na2 = normalized(a2, p.opType === 'Unsqueeze' ? r1 : r1 !== undefined ? r1 : undefined);
        if (!na1 || !na2) return noMatch('negative axes with an unknown rank');
        const same = na1.length === na2.length && [...na1].sort().every((v, i) => v === [...na2].sort()[i]);
        return same ? matched({ kind: 'cancel' }) : noMatch('the axes differ');
      }
      if (n.opType === 'Unsqueeze') {
        const r2 = inRank !== undefined ? inRank + a1.length + a2.length : undefined;
        const n1 = normalized(a1, inRank !== undefined ? inRank + a1.length : undefined);
        const n2 = normalized(a2, r2);
        if (!n1 || !n2) return noMatch('negative axes with an unknown rank');
        const taken = new Set(n2);
        return matched({ kind: 'axes', axes: [...n2, ...n1.map((i) => nthFree(i, taken))].sort((a, b) => a - b) });
      }
      const n1 = normalized(a1, inRank);
      const n2 = normalized(a2, inRank !== undefined ? inRank - a1.length : undefined);
      if (!n1 || !n2) return noMatch('negative axes with an unknown rank');
      const taken = new Set(n1);
      return matched({ kind: 'axes', axes: [...n1, ...n2.map((j) => nthFree(j, taken))].sort((a, b) => a - b) });
    }
  }
  return noMatch('not a layout op');
}

function setAxes(n: Node, axes: number[], model: Model): void {
  if ((model.opset('') ?? 1) >= 13) {
    const g = n.graph!;
    const v = g.addInitializer(Tensor.from(DataType.INT64, [axes.length], BigInt64Array.from(axes.map(BigInt))), model.names.fresh(`${n.outputs[0]!.name}_axes`));
    n.setInput(1, v);
  } else n.setAttr(Attribute.ints('axes', axes));
}

export default definePass<Record<string, never>>({
  name: 'merge-consecutive',
  description: 'Merges consecutive Transpose, Reshape, Squeeze and Unsqueeze nodes into one (or none).',
  options: {},
  run(model, _o, ctx) {
    const opset = model.opset('') ?? 1;
    let merged = 0;
    for (const g of [...model.graph.allGraphs()]) {
      for (const n of [...g.nodes]) {
        if (!n.graph || !['Transpose', 'Reshape', 'Squeeze', 'Unsqueeze'].includes(n.opType)) continue;
        const m = matchConsecutive(n, opset);
        if (!m.ok) {
          if (m.reason !== 'its input is not produced by a layout op') ctx.explain({ node: n.label, reason: m.reason });
          continue;
        }
        const first = n.input(0)!.producer!;
        const x = first.input(0);
        if (!x) continue;
        const r = m.value;
        if (r.kind === 'cancel') {
          if (!n.outputs[0]!.replaceAllUsesWith(x, { strict: true })) {
            ctx.explain({ node: n.label, reason: 'its output is a graph output whose name cannot move' });
            continue;
          }
          g.removeNode(n);
        } else {
          n.setInput(0, x);
          if (r.kind === 'transpose') n.setAttr(Attribute.ints('perm', r.perm));
          if (r.kind === 'axes') setAxes(n, r.axes, model);
        }
        removeIfUnused(first);
        merged++;
      }
    }
    return { changed: merged > 0, stats: { merged } };
  },
});
