/**
 * Data movement.
 *
 * Reshape, Flatten, Squeeze, Unsqueeze: gX = Reshape(g, shape of X).
 * Transpose(perm): gX = Transpose(g, inverse(perm)).
 * Concat(axis): gX_i = Slice(g, offset_i, offset_i + size_i, axis).
 * Slice: g is written back into zeros at the sliced positions. Per axis with normalized start st,
 *   step s and count n: a negative step is undone by reversing g (Slice with step -1), a step |s| > 1
 *   by interleaving |s|-1 zeros after each element (Unsqueeze, Pad, Reshape, Slice), and the
 *   remaining offsets by Pad with zeros.
 * Gather(data, indices, axis): the cotangent rows are added back at their indices with one
 *   ScatterND(zeros, indices[..., None], g, reduction = add) (repeated indices accumulate; negative
 *   indices are wrapped first). For axis a > 0, g's index axes are moved to the front and the result
 *   is transposed back. Embedding tables are the common case (axis 0, no transposes); onnxruntime
 *   runs the scatter as one pass over the updates, cheaper than a one-hot MatMul.
 */
import { DataType } from '../../../core/dtype.js';
import { constantOf, Value } from '../../../ir/ir.js';
import { Tensor } from '../../../core/tensor.js';
import { GradContext, normAxis } from '../context.js';
import { RuleTable } from '../rule.js';

function reshapeLike(c: GradContext): Array<Value | null> {
  return [c.reshape(c.gy(), c.dims(c.node.input(0)))];
}

function transpose(c: GradContext): Array<Value | null> {
  const rank = c.dims(c.node.input(0)).length;
  const perm = c.node.getInts('perm') ?? [...Array(rank).keys()].reverse();
  const inv = new Array<number>(rank);
  perm.forEach((p, i) => (inv[p] = i));
  return [c.emit.op('Transpose', [c.gy()], { perm: inv })];
}

function concat(c: GradContext): Array<Value | null> {
  const n = c.node;
  const rank = c.dims(n.output(0)).length;
  const axis = normAxis(n.getInt('axis', 0), rank);
  const e = c.emit;
  let offset = 0;
  return n.inputs.map((v, i) => {
    const size = v ? c.dims(v)[axis]! : 0;
    const start = offset;
    offset += size;
    if (!v || !c.need(i)) return null;
    return e.op('Slice', [c.gy(), e.int64s([start], 'starts'), e.int64s([start + size], 'ends'), e.int64s([axis], 'axes')]);
  });
}

interface AxisSlice {
  axis: number;
  start: number;
  step: number;
  count: number;
}

/** ONNX Slice semantics for one axis: clamps start/end and counts the selected elements. */
function normalizeSlice(dim: number, start: number, end: number, step: number): { start: number; count: number } {
  let st = start < 0 ? start + dim : start;
  let en = end < 0 ? end + dim : end;
  if (step > 0) {
    st = Math.min(Math.max(st, 0), dim);
    en = Math.min(Math.max(en, 0), dim);
  } else {
    st = Math.min(Math.max(st, 0), dim - 1);
    en = Math.min(Math.max(en, -1), dim - 1);
  }
  const count = Math.max(0, Math.ceil((en - st) / step));
  return { start: st, count };
}

function slice(c: GradContext): Array<Value | null> {
  const n = c.node;
  const e = c.emit;
  const xd = c.dims(n.input(0));
  const rank = xd.length;
  const ints = (i: number): number[] | undefined => {
    const v = n.input(i);
    if (!v) return undefined;
    const t = constantOf(v);
    if (!t) c.unsupported(`Slice input ${i} (${v.name}) must be a constant for a gradient`);
    return t.toNumbers().map(Number);
  };
  const starts = ints(1)!;
  const ends = ints(2)!;
  const axes = (ints(3) ?? starts.map((_, i) => i)).map((a) => normAxis(a, rank));
  const steps = ints(4) ?? starts.map(() => 1);
  const parts: AxisSlice[] = axes.map((axis, i) => {
    const step = steps[i]!;
    const { start, count } = normalizeSlice(xd[axis]!, starts[i]!, ends[i]!, step);
    return { axis, start, step, count };
  });
  let g = c.gy();
  const cur = [...c.dims(n.output(0))];
  const padsBegin = Array<number>(rank).fill(0);
  const padsEnd = Array<number>(rank).fill(0);
  for (const p of parts) {
    if (p.count === 0) c.unsupported('a Slice selecting nothing has no useful gradient');
    let low = p.start;
    let step = p.step;
    if (step < 0) {
      g = e.op('Slice', [g, e.int64s([-1], 'starts'), e.int64s([-(2 ** 62)], 'ends'), e.int64s([p.axis], 'axes'), e.int64s([-1], 'steps')]);
      low = p.start + (p.count - 1) * step;
      step = -step;
    }
    if (step > 1) {
      // [.., n, ..] -> [.., n, 1, ..] -> pad to [.., n, step, ..] -> [.., n*step, ..] -> first (n-1)*step+1
      const withUnit = [...cur.slice(0, p.axis + 1), 1, ...cur.slice(p.axis + 1)];
      const u = c.reshape(g, withUnit);
      const pads = Array<number>(2 * (rank + 1)).fill(0);
      pads[rank + 1 + p.axis + 1] = step - 1;
      const padded = e.op('Pad', [u, e.int64s(pads, 'pads')]);
      const merged = [...cur];
      merged[p.axis] = p.count * step;
      const flat = c.reshape(padded, merged);
      const len = (p.count - 1) * step + 1;
      g = e.op('Slice', [flat, e.int64s([0], 'starts'), e.int64s([len], 'ends'), e.int64s([p.axis], 'axes')]);
      cur[p.axis] = len;
    }
    padsBegin[p.axis] = low;
    padsEnd[p.axis] = xd[p.axis]! - low - cur[p.axis]!;
  }
  if (padsBegin.some((x) => x !== 0) || padsEnd.some((x) => x !== 0)) g = e.op('Pad', [g, e.int64s([...padsBegin, ...padsEnd], 'pads')]);
  return [g];
}

function gather(c: GradContext): Array<Value | null> {
  const n = c.node;
  const e = c.emit;
  const dd = c.dims(n.input(0));
  const id = c.dims(n.input(1));
  const axis = normAxis(n.getInt('axis', 0), dd.length);
  const r = id.length;
  let idx = n.input(1)!;
  if (c.dtype(idx) !== DataType.INT64) idx = e.op('Cast', [idx], { to: DataType.INT64 });
  const int64 = (x: number) => e.constant(Tensor.from(DataType.INT64, [], BigInt64Array.of(BigInt(x))), 'idx');
  const negative = e.op('Less', [idx, int64(0)]);
  idx = e.op('Where', [negative, e.op('Add', [idx, int64(dd[axis]!)]), idx]);
  const indices = e.op('Unsqueeze', [idx, e.int64s([-1], 'axes')]);
  // g is [data[:axis], indices, data[axis+1:]]; move the index axes first
  const gRank = dd.length - 1 + r;
  const front = [...Array(r).keys()].map((i) => axis + i);
  const perm = [...front, ...[...Array(axis).keys()], ...[...Array(gRank - axis - r).keys()].map((i) => axis + r + i)];
  const g = axis === 0 ? c.gy() : e.op('Transpose', [c.gy()], { perm });
  const zeros = c.zeros([dd[axis]!, ...dd.slice(0, axis), ...dd.slice(axis + 1)], n.input(0));
  const scattered = e.op('ScatterND', [zeros, indices, g], { reduction: 'add' });
  if (axis === 0) return [scattered, null];
  const back = [...[...Array(axis).keys()].map((i) => i + 1), 0, ...[...Array(dd.length - axis - 1).keys()].map((i) => axis + 1 + i)];
  return [e.op('Transpose', [scattered], { perm: back }), null];
}

export const shapeRules: RuleTable = {
  Gather: { differentiable: [0], backward: gather },
  Reshape: { differentiable: [0], backward: reshapeLike },
  Flatten: { differentiable: [0], backward: reshapeLike },
  Squeeze: { differentiable: [0], backward: reshapeLike },
  Unsqueeze: { differentiable: [0], backward: reshapeLike },
  Transpose: { differentiable: [0], backward: transpose },
  Concat: { differentiable: 'all', backward: concat },
  Slice: { differentiable: [0], backward: slice },
};
