/**
 * eliminate-identity: removes nodes that return their input unchanged, rewiring their readers to the
 * input. Covered: Identity; Dropout in inference (mask unused, training_mode absent or false); Cast to
 * the type it already has; Reshape/Expand to the shape it already has; identity Transpose; Pad by zero;
 * a Slice that keeps everything; single-input Concat/Sum/Max/Min/Mean; Add/Sub of zero and Mul/Div by
 * one when the constant does not broadcast the result to a larger shape or another type (x + 0 differs
 * from x only for x = -0).
 * A graph output keeps its name: a node whose output is a graph output is removed only when its input
 * can take over that name (a node output of the same graph that is no graph output itself).
 */
import { constantOf, Node, Value } from '../../ir/ir.js';
import { elemTypeOf, symbolicShape, SymDim } from '../../analysis/shape-inference.js';
import { sharedShapes } from '../analyses.js';
import { definePass, Match, matched, noMatch } from '../pass.js';

const INT_MAX_END = 2 ** 31 - 1;

function sameDims(a: SymDim[] | undefined, b: SymDim[] | undefined): boolean {
  return !!a && !!b && a.length === b.length && a.every((d, i) => d !== undefined && d === b[i]);
}

function allEqual(v: Value | null, x: number): boolean {
  const c = constantOf(v);
  if (!c || c.size === 0 || c.size > 4096 || c.dataType === 8) return false;
  const f = c.toFloat32();
  for (let i = 0; i < f.length; i++) if (f[i] !== x) return false;
  return true;
}

/** The constant does not widen `x`: rank not larger and every dim 1 or equal to x's. */
function noBroadcast(x: Value | null, c: Value | null): boolean {
  const xd = symbolicShape(x);
  const t = constantOf(c);
  if (!xd || !t || t.dims.length > xd.length) return false;
  return t.dims.every((d, i) => d === 1 || d === xd[xd.length - t.dims.length + i]);
}

/** Which input the node passes through unchanged, or why it is not a no-op. */
export function matchNoop(n: Node, opset: number): Match<number> {
  if (n.opDomain !== '') return noMatch('not a standard op');
  const x = n.input(0);
  const out = n.outputs[0];
  if (!x || !out) return noMatch('no input or output');
  switch (n.opType) {
    case 'Identity':
      return matched(0);
    case 'Dropout': {
      if (n.outputs[1] && (n.outputs[1].uses.length > 0 || n.outputs[1].isGraphOutput)) return noMatch('its mask output is used');
      const tm = n.input(2);
      if (tm) {
        const c = constantOf(tm);
        if (!c || c.toNumbers()[0] !== 0) return noMatch('training_mode is not a constant false');
      }
      if (opset < 7 && n.getInt('is_test', 0) === 0) return noMatch('is_test is 0 (training mode)');
      return matched(0);
    }
    case 'Cast': {
      const t = elemTypeOf(x);
      return t !== undefined && t === n.getInt('to') ? matched(0) : noMatch(t === undefined ? 'the input type is unknown' : 'it changes the type');
    }
    case 'Reshape':
    case 'Expand':
      return sameDims(symbolicShape(x), symbolicShape(out)) ? matched(0) : noMatch('the output shape differs from the input shape, or is unknown');
    case 'Transpose': {
      const perm = n.getInts('perm');
      const r = symbolicShape(x)?.length;
      if (!perm) return r !== undefined && r <= 1 ? matched(0) : noMatch('it reverses the axes');
      return perm.every((p, i) => p === i) ? matched(0) : noMatch('its permutation is not the identity');
    }
    case 'Pad': {
      const pads = opset >= 11 ? constantOf(n.input(1))?.toNumbers() : n.getInts('pads');
      return pads && pads.every((p) => p === 0) ? matched(0) : noMatch('its pads are not all zero (or not constant)');
    }
    case 'Slice': {
      const dims = symbolicShape(x);
      let starts: number[] | undefined, ends: number[] | undefined, axes: number[] | undefined, steps: number[] | undefined;
      if (opset >= 10) {
        starts = constantOf(n.input(1))?.toNumbers();
        ends = constantOf(n.input(2))?.toNumbers();
        axes = n.input(3) ? constantOf(n.input(3))?.toNumbers() : undefined;
        steps = n.input(4) ? constantOf(n.input(4))?.toNumbers() : undefined;
        if ((n.input(3) && !axes) || (n.input(4) && !steps)) return noMatch('its parameters are not constant');
      } else {
        starts = n.getInts('starts');
        ends = n.getInts('ends');
        axes = n.getInts('axes');
      }
      if (!starts || !ends || !dims) return noMatch('its parameters or the input rank are unknown');
      axes ??= starts.map((_, i) => i);
      for (let i = 0; i < axes.length; i++) {
        const a = axes[i]! < 0 ? axes[i]! + dims.length : axes[i]!;
        const d = dims[a];
        const s = starts[i]!;
        const e = ends[i]!;
        if ((steps?.[i] ?? 1) !== 1) return noMatch('a step is not 1');
        const fullStart = s === 0 || (typeof d === 'number' && s <= -d);
        const fullEnd = e >= INT_MAX_END || (typeof d === 'number' && e >= d);
        if (!fullStart || !fullEnd) return noMatch('it does not keep the whole axis');
      }
      return matched(0);
    }
    case 'Concat':
    case 'Sum':
    case 'Max':
    case 'Min':
    case 'Mean':
      return n.inputs.length === 1 ? matched(0) : noMatch('it has several inputs');
    case 'Add':
    case 'Mul':
    case 'Sub':
    case 'Div': {
      const neutral = n.opType === 'Add' || n.opType === 'Sub' ? 0 : 1;
      const commutes = n.opType === 'Add' || n.opType === 'Mul';
      for (const [k, c] of commutes ? [[0, 1], [1, 0]] : [[0, 1]]) {
        const xv = n.input(k!);
        const cv = n.input(c!);
        if (allEqual(cv, neutral) && noBroadcast(xv, cv) && elemTypeOf(xv) === constantOf(cv)!.dataType) return matched(k!);
      }
      return noMatch(`no operand is a ${neutral} that leaves the other unchanged`);
    }
  }
  return noMatch('not a no-op kind');
}

export default definePass<Record<string, never>>({
  name: 'eliminate-identity',
  description: 'Removes Identity, inference Dropout and nodes that do nothing (same-type Cast, same-shape Reshape/Expand, identity Transpose, zero Pad, full Slice, x+0, x*1).',
  options: {},
  run(model, _o, ctx) {
    sharedShapes(model, ctx);
    const opset = model.opset('') ?? 1;
    let removed = 0;
    const byOp: Record<string, number> = {};
    for (const g of [...model.graph.allGraphs()]) {
      for (const n of [...g.nodes]) {
        if (!n.graph) continue;
        const m = matchNoop(n, opset);
        if (!m.ok) {
          if (m.reason !== 'not a no-op kind' && m.reason !== 'not a standard op') ctx.explain({ node: n.label, reason: m.reason });
          continue;
        }
        const src = n.input(m.value)!;
        const out = n.outputs[0]!;
        if (!out.replaceAllUsesWith(src, { strict: true })) {
          ctx.explain({ node: n.label, reason: `its output '${out.name}' is a graph output that its input cannot take over` });
          continue;
        }
        if (n.outputs.every((o) => o.uses.length === 0 && !o.isGraphOutput)) g.removeNode(n);
        removed++;
        byOp[n.opType] = (byOp[n.opType] ?? 0) + 1;
      }
    }
    return { changed: removed > 0, stats: { removed, ...byOp } };
  },
});
