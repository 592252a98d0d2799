/**
 * Symbolic evaluation of small shape computations (the tensors fed to `Reshape`): each element is a
 * constant, "dimension k of value X", or unknown. Covers what exporters emit for flattening:
 * `Concat(Cast(Slice(Shape(x), 0, 1)), [-1])`, `Gather(Shape(x), 0)`, `Unsqueeze`, plain constants.
 */
import { constantOf, Node, Value } from '../ir/ir.js';

/** Where a constant element was read: input `input` of `node`, element `index` of that constant. */
export interface ConstSource {
  node: Node;
  input: number;
  index: number;
}

export type ShapeElem = { kind: 'const'; value: number; source?: ConstSource } | { kind: 'dim'; of: Value; index: number } | { kind: 'unknown' };

const UNKNOWN: ShapeElem = { kind: 'unknown' };

/**
 * Elements of the 1-D integer tensor `v`, or undefined when even its length is unknown.
 * `rankOf` gives the rank of a value when the caller knows it (needed for `Shape`).
 */
export function shapeElements(v: Value | null, rankOf: (v: Value) => number | undefined, reader?: { node: Node; input: number }, depth = 0): ShapeElem[] | undefined {
  if (!v || depth > 16) return undefined;
  const c = constantOf(v);
  if (c) {
    if (c.dims.length > 1) return undefined;
    try {
      return c.toNumbers().map((value, index): ShapeElem => (reader ? { kind: 'const', value, source: { ...reader, index } } : { kind: 'const', value }));
    } catch {
      return undefined;
    }
  }
  const n = v.producer;
  if (!n || n.opDomain !== '') return undefined;
  const rec = (x: Value | null) => shapeElements(x, rankOf, { node: n, input: n.inputs.indexOf(x) }, depth + 1);
  switch (n.opType) {
    case 'Cast':
    case 'Identity':
      return rec(n.input(0));
    case 'Shape': {
      const x = n.input(0);
      if (!x) return undefined;
      const r = rankOf(x);
      if (r === undefined) return undefined;
      let start = n.getInt('start', 0);
      let end = n.getInt('end', r);
      if (start < 0) start += r;
      if (end < 0) end += r;
      start = Math.max(0, Math.min(r, start));
      end = Math.max(start, Math.min(r, end));
      const out: ShapeElem[] = [];
      for (let i = start; i < end; i++) out.push({ kind: 'dim', of: x, index: i });
      return out;
    }
    case 'Concat': {
      const out: ShapeElem[] = [];
      for (const x of n.inputs) {
        const e = rec(x);
        if (!e) return undefined;
        out.push(...e);
      }
      return out;
    }
    case 'Slice':
      return sliceElements(n, rec);
    case 'Gather': {
      if (n.getInt('axis', 0) !== 0) return undefined;
      const data = rec(n.input(0));
      const idx = constantOf(n.input(1));
      if (!data || !idx || idx.dims.length > 1) return undefined;
      return idx.toNumbers().map((k) => data[k < 0 ? k + data.length : k] ?? UNKNOWN);
    }
    case 'Unsqueeze':
    case 'Squeeze':
    case 'Reshape': {
      // reshaping a scalar or a 1-element vector into a 1-element vector keeps its element
      const e = rec(n.input(0));
      return e && e.length === 1 ? e : undefined;
    }
  }
  return undefined;
}

function sliceElements(n: Node, rec: (x: Value | null) => ShapeElem[] | undefined): ShapeElem[] | undefined {
  const data = rec(n.input(0));
  if (!data) return undefined;
  let starts: number[] | undefined;
  let ends: number[] | undefined;
  let axes: number[] | undefined;
  let steps: number[] | undefined;
  if (n.inputs.length > 1) {
    const num = (i: number) => {
      const t = constantOf(n.input(i));
      return t ? t.toNumbers() : undefined;
    };
    starts = num(1);
    ends = num(2);
    axes = n.input(3) ? num(3) : [0];
    steps = n.input(4) ? num(4) : [1];
  } else {
    starts = n.getInts('starts');
    ends = n.getInts('ends');
    axes = n.getInts('axes') ?? [0];
    steps = [1];
  }
  if (!starts || !ends || !axes || !steps || starts.length !== 1 || ends.length !== 1 || axes.length !== 1 || steps[0] !== 1) return undefined;
  if (axes[0] !== 0 && axes[0] !== -1) return undefined;
  const len = data.length;
  const clamp = (x: number) => Math.max(0, Math.min(len, x < 0 ? x + len : x));
  return data.slice(clamp(starts[0]!), clamp(ends[0]!));
}
