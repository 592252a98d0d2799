/**
 * TypeScript kernels for the shape and small arithmetic ops constant folding meets most: shape
 * arithmetic (Shape, Gather, Concat, Reshape, Unsqueeze/Squeeze, Slice, Range, ConstantOfShape, Expand,
 * Transpose, Tile, Flatten), casts, elementwise math with broadcasting, comparisons and logic, Where and
 * small reductions. Each kernel follows the ONNX operator definition for the opset it is called with
 * (e.g. Squeeze/Unsqueeze `axes` is an attribute before opset 13 and an input from 13; Slice moved its
 * parameters to inputs at opset 10). A kernel returns `undefined` when it does not handle a case (an
 * attribute it does not know, a string tensor); the caller then falls back to onnxruntime.
 */
import { DataType } from '../../core/dtype.js';
import type { Node } from '../../ir/ir.js';
import { numElements } from '../../core/tensor.js';
import { EValue, fromTensor, isFloatType, make, normalize, strides } from './values.js';

export interface EvalContext {
  node: Node;
  opset: number;
}

export type Kernel = (c: EvalContext, ins: ReadonlyArray<EValue | undefined>) => EValue[] | undefined;

const ints = (v: EValue | undefined): number[] | undefined => (v ? Array.from(v.data) : undefined);

function normAxis(a: number, rank: number): number | undefined {
  const x = a < 0 ? a + rank : a;
  return x >= 0 && x < Math.max(rank, 1) ? x : undefined;
}

/** Broadcast output dims of several inputs (numpy rules), or undefined when incompatible. */
export function broadcastDims(shapes: ReadonlyArray<readonly number[]>): number[] | undefined {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i;
      const d = s[i]!;
      if (out[o] === 1) out[o] = d;
      else if (d !== 1 && d !== out[o]) return undefined;
    }
  }
  return out;
}

/** For each output element, the flat index into an input of dims `dims` broadcast to `out`. */
function broadcastIndex(dims: readonly number[], out: readonly number[]): Int32Array {
  const n = numElements(out);
  const idx = new Int32Array(n);
  const rank = out.length;
  const inStr = strides(dims);
  const eff = new Array<number>(rank).fill(0);
  for (let i = 0; i < dims.length; i++) eff[rank - dims.length + i] = dims[i] === 1 ? 0 : inStr[i]!;
  const counter = new Array<number>(rank).fill(0);
  let cur = 0;
  for (let k = 0; k < n; k++) {
    idx[k] = cur;
    for (let a = rank - 1; a >= 0; a--) {
      counter[a]!++;
      cur += eff[a]!;
      if (counter[a]! < out[a]!) break;
      cur -= eff[a]! * counter[a]!;
      counter[a] = 0;
    }
  }
  return idx;
}

function elementwise(ins: ReadonlyArray<EValue | undefined>, outType: number, f: (...xs: number[]) => number): EValue[] | undefined {
  const vs = ins.filter((x): x is EValue => !!x);
  if (vs.length !== ins.length || vs.length === 0) return undefined;
  const dims = broadcastDims(vs.map((v) => v.dims));
  if (!dims) return undefined;
  const out = make(outType, dims);
  const n = out.data.length;
  if (vs.length === 1) {
    const a = vs[0]!.data;
    for (let i = 0; i < n; i++) out.data[i] = f(a[i]!);
  } else if (vs.length === 2) {
    const ia = broadcastIndex(vs[0]!.dims, dims);
    const ib = broadcastIndex(vs[1]!.dims, dims);
    const a = vs[0]!.data;
    const b = vs[1]!.data;
    for (let i = 0; i < n; i++) out.data[i] = f(a[ia[i]!]!, b[ib[i]!]!);
  } else {
    const idx = vs.map((v) => broadcastIndex(v.dims, dims));
    const xs = new Array<number>(vs.length);
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < vs.length; k++) xs[k] = vs[k]!.data[idx[k]![i]!]!;
      out.data[i] = f(...xs);
    }
  }
  return [normalize(out)];
}

const unary = (f: (x: number) => number, floatOnly = false): Kernel => (_c, ins) => {
  const x = ins[0];
  if (!x || (floatOnly && !isFloatType(x.dtype))) return undefined;
  return elementwise([x], x.dtype, f);
};

const binary = (f: (a: number, b: number, isFloat: boolean) => number): Kernel => (_c, ins) => {
  const [a, b] = ins;
  if (!a || !b) return undefined;
  const fl = isFloatType(a.dtype);
  return elementwise([a, b], a.dtype, (x, y) => f(x, y, fl));
};

const compare = (f: (a: number, b: number) => boolean): Kernel => (_c, ins) => elementwise(ins.slice(0, 2), DataType.BOOL, (a, b) => (f(a, b) ? 1 : 0));

const variadic = (f: (a: number, b: number) => number): Kernel => (_c, ins) => {
  const vs = ins.filter((x): x is EValue => !!x);
  if (vs.length === 0) return undefined;
  let acc = vs[0]!;
  for (let i = 1; i < vs.length; i++) {
    const r = elementwise([acc, vs[i]!], acc.dtype, f);
    if (!r) return undefined;
    acc = r[0]!;
  }
  return [vs.length === 1 ? { ...acc, data: Float64Array.from(acc.data) } : acc];
};

/** Axes from the attribute (old opsets) or the input `inputIndex` (newer), undefined when absent. */
function axesOf(c: EvalContext, ins: ReadonlyArray<EValue | undefined>, inputIndex: number, inputSince: number): number[] | undefined {
  if (c.opset >= inputSince) return ints(ins[inputIndex]);
  return c.node.getInts('axes');
}

function transpose(x: EValue, perm: number[]): EValue {
  const rank = x.dims.length;
  const outDims = perm.map((p) => x.dims[p]!);
  const out = make(x.dtype, outDims);
  const inStr = strides(x.dims);
  const permStr = perm.map((p) => inStr[p]!);
  const n = out.data.length;
  const counter = new Array<number>(rank).fill(0);
  let src = 0;
  for (let k = 0; k < n; k++) {
    out.data[k] = x.data[src]!;
    for (let a = rank - 1; a >= 0; a--) {
      counter[a]!++;
      src += permStr[a]!;
      if (counter[a]! < outDims[a]!) break;
      src -= permStr[a]! * counter[a]!;
      counter[a] = 0;
    }
  }
  return out;
}

function reshapeDims(inDims: readonly number[], shape: number[], allowzero: boolean): number[] | undefined {
  const total = numElements(inDims);
  const out = shape.map((d, i) => (d === 0 && !allowzero ? inDims[i] : d));
  if (out.some((d) => d === undefined)) return undefined;
  const neg = out.filter((d) => d === -1).length;
  if (neg > 1) return undefined;
  if (neg === 1) {
    const known = numElements(out.filter((d) => d !== -1) as number[]);
    if (known === 0 || total % known !== 0) return undefined;
    return out.map((d) => (d === -1 ? total / known : d!));
  }
  return numElements(out as number[]) === total ? (out as number[]) : undefined;
}

/** Normalized Slice parameters for one axis: start, step and count. */
export function sliceAxis(dim: number, start: number, end: number, step: number): { start: number; count: number } {
  if (step > 0) {
    let s = start < 0 ? start + dim : start;
    let e = end < 0 ? end + dim : end;
    s = Math.min(Math.max(s, 0), dim);
    e = Math.min(Math.max(e, 0), dim);
    return { start: s, count: Math.max(0, Math.ceil((e - s) / step)) };
  }
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  s = Math.min(Math.max(s, -1), dim - 1);
  e = Math.min(Math.max(e, -1), dim - 1);
  return { start: s, count: Math.max(0, Math.ceil((e - s) / step)) };
}

function reduce(init: number, f: (acc: number, x: number) => number, fin?: (acc: number, n: number) => number, axesInputSince = 18): Kernel {
  return (c, ins) => {
    const x = ins[0];
    if (!x) return undefined;
    const keep = c.node.getInt('keepdims', 1) === 1;
    const noop = c.node.getInt('noop_with_empty_axes', 0) === 1;
    let axes = axesOf(c, ins, 1, axesInputSince);
    const rank = x.dims.length;
    if (!axes || axes.length === 0) {
      if (noop) return [{ ...x, data: Float64Array.from(x.data) }];
      axes = x.dims.map((_, i) => i);
    }
    const norm = axes.map((a) => normAxis(a, rank));
    if (norm.some((a) => a === undefined)) return undefined;
    const red = new Set(norm as number[]);
    const outDimsKeep = x.dims.map((d, i) => (red.has(i) ? 1 : d));
    const out = make(x.dtype, keep ? outDimsKeep : x.dims.filter((_, i) => !red.has(i)));
    out.data.fill(init);
    const counts = new Float64Array(out.data.length);
    const outStr = strides(outDimsKeep);
    const n = x.data.length;
    const counter = new Array<number>(rank).fill(0);
    for (let k = 0; k < n; k++) {
      let o = 0;
      for (let a = 0; a < rank; a++) if (!red.has(a)) o += counter[a]! * outStr[a]!;
      out.data[o] = f(out.data[o]!, x.data[k]!);
      counts[o]!++;
      for (let a = rank - 1; a >= 0; a--) {
        counter[a]!++;
        if (counter[a]! < x.dims[a]!) break;
        counter[a] = 0;
      }
    }
    if (fin) for (let i = 0; i < out.data.length; i++) out.data[i] = fin(out.data[i]!, counts[i]!);
    return [normalize(out)];
  };
}

const intDiv = (a: number, b: number) => (b === 0 ? 0 : Math.trunc(a / b));

export const KERNELS: Record<string, Kernel> = {
  Identity: (_c, [x]) => (x ? [x] : undefined),
  Shape: (c, [x]) => {
    if (!x) return undefined;
    const r = x.dims.length;
    let s = c.node.getInt('start', 0);
    let e = c.node.getInt('end', r);
    s = Math.min(Math.max(s < 0 ? s + r : s, 0), r);
    e = Math.min(Math.max(e < 0 ? e + r : e, 0), r);
    const d = x.dims.slice(s, Math.max(s, e));
    return [make(DataType.INT64, [d.length], Float64Array.from(d))];
  },
  Size: (_c, [x]) => (x ? [make(DataType.INT64, [], Float64Array.of(x.data.length))] : undefined),
  Cast: (c, [x]) => {
    const to = c.node.getInt('to');
    if (!x || to === undefined || to === DataType.STRING) return undefined;
    const out = make(to, [...x.dims], Float64Array.from(x.data));
    if (to === DataType.BOOL) return [normalize(out)];
    if (!isFloatType(to)) for (let i = 0; i < out.data.length; i++) out.data[i] = Number.isFinite(out.data[i]!) ? Math.trunc(out.data[i]!) : 0;
    return [normalize(out)];
  },
  Add: binary((a, b) => a + b),
  Sub: binary((a, b) => a - b),
  Mul: binary((a, b) => a * b),
  Div: binary((a, b, fl) => (fl ? a / b : intDiv(a, b))),
  Pow: (_c, [a, b]) => (a && b ? elementwise([a, b], a.dtype, (x, y) => Math.pow(x, y)) : undefined),
  Mod: (c, [a, b]) => {
    if (!a || !b) return undefined;
    const fmod = c.node.getInt('fmod', 0) === 1;
    if (isFloatType(a.dtype) && !fmod) return undefined;
    return elementwise([a, b], a.dtype, (x, y) => {
      if (fmod) return x % y;
      if (y === 0) return 0;
      const r = x % y;
      return r !== 0 && (r < 0) !== (y < 0) ? r + y : r;
    });
  },
  Neg: unary((x) => -x),
  Abs: unary(Math.abs),
  Sqrt: unary(Math.sqrt, true),
  Exp: unary(Math.exp, true),
  Log: unary(Math.log, true),
  Reciprocal: unary((x) => 1 / x, true),
  Floor: unary(Math.floor, true),
  Ceil: unary(Math.ceil, true),
  Round: unary((x) => {
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : r;
  }, true),
  Sign: unary(Math.sign),
  Relu: unary((x) => (x > 0 ? x : 0)),
  Sigmoid: unary((x) => 1 / (1 + Math.exp(-x)), true),
  Tanh: unary(Math.tanh, true),
  Not: (_c, [x]) => (x ? elementwise([x], DataType.BOOL, (a) => (a ? 0 : 1)) : undefined),
  Min: variadic(Math.min),
  Max: variadic(Math.max),
  Sum: variadic((a, b) => a + b),
  Equal: compare((a, b) => a === b),
  Less: compare((a, b) => a < b),
  Greater: compare((a, b) => a > b),
  LessOrEqual: compare((a, b) => a <= b),
  GreaterOrEqual: compare((a, b) => a >= b),
  And: (_c, [a, b]) => elementwise([a, b], DataType.BOOL, (x, y) => (x && y ? 1 : 0)),
  Or: (_c, [a, b]) => elementwise([a, b], DataType.BOOL, (x, y) => (x || y ? 1 : 0)),
  Xor: (_c, [a, b]) => elementwise([a, b], DataType.BOOL, (x, y) => ((x !== 0) !== (y !== 0) ? 1 : 0)),
  Where: (_c, [c, x, y]) => (c && x && y ? elementwise([c, x, y], x.dtype, (k, a, b) => (k ? a : b)) : undefined),
  Clip: (c, ins) => {
    const x = ins[0];
    if (!x) return undefined;
    const lo = c.opset >= 11 ? (ins[1] ? ins[1].data[0]! : -Infinity) : c.node.getFloat('min', -Infinity);
    const hi = c.opset >= 11 ? (ins[2] ? ins[2].data[0]! : Infinity) : c.node.getFloat('max', Infinity);
    return elementwise([x], x.dtype, (a) => Math.min(Math.max(a, lo), hi));
  },
  Gather: (c, [x, idx]) => {
    if (!x || !idx) return undefined;
    const rank = x.dims.length;
    const axis = normAxis(c.node.getInt('axis', 0), rank);
    if (axis === undefined || rank === 0) return undefined;
    const dim = x.dims[axis]!;
    const outer = numElements(x.dims.slice(0, axis));
    const inner = numElements(x.dims.slice(axis + 1));
    const outDims = [...x.dims.slice(0, axis), ...idx.dims, ...x.dims.slice(axis + 1)];
    const out = make(x.dtype, outDims);
    const ni = idx.data.length;
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < ni; j++) {
        let k = idx.data[j]!;
        if (k < 0) k += dim;
        if (k < 0 || k >= dim) return undefined;
        const src = (o * dim + k) * inner;
        out.data.set(x.data.subarray(src, src + inner), (o * ni + j) * inner);
      }
    }
    return [out];
  },
  Concat: (c, ins) => {
    const vs = ins.filter((x): x is EValue => !!x);
    if (vs.length === 0 || vs.length !== ins.length) return undefined;
    const rank = vs[0]!.dims.length;
    const axis = normAxis(c.node.getInt('axis', 0), rank);
    if (axis === undefined) return undefined;
    for (const v of vs) if (v.dims.length !== rank || v.dims.some((d, i) => i !== axis && d !== vs[0]!.dims[i])) return undefined;
    const outDims = [...vs[0]!.dims];
    outDims[axis] = vs.reduce((s, v) => s + v.dims[axis]!, 0);
    const out = make(vs[0]!.dtype, outDims);
    const outer = numElements(outDims.slice(0, axis));
    const innerOut = numElements(outDims.slice(axis));
    let off = 0;
    for (const v of vs) {
      const inner = numElements(v.dims.slice(axis));
      for (let o = 0; o < outer; o++) out.data.set(v.data.subarray(o * inner, (o + 1) * inner), o * innerOut + off);
      off += inner;
    }
    return [out];
  },
  Reshape: (c, [x, s]) => {
    if (!x) return undefined;
    const shape = c.opset >= 5 ? ints(s) : c.node.getInts('shape');
    if (!shape) return undefined;
    const dims = reshapeDims(x.dims, shape, c.node.getInt('allowzero', 0) === 1);
    return dims ? [{ ...x, dims }] : undefined;
  },
  Flatten: (c, [x]) => {
    if (!x) return undefined;
    const r = x.dims.length;
    let axis = c.node.getInt('axis', 1);
    if (axis < 0) axis += r;
    if (axis < 0 || axis > r) return undefined;
    return [{ ...x, dims: [numElements(x.dims.slice(0, axis)), numElements(x.dims.slice(axis))] }];
  },
  Unsqueeze: (c, ins) => {
    const x = ins[0];
    const axes = axesOf(c, ins, 1, 13);
    if (!x || !axes) return undefined;
    const r = x.dims.length + axes.length;
    const norm = new Set(axes.map((a) => (a < 0 ? a + r : a)));
    if (norm.size !== axes.length || [...norm].some((a) => a < 0 || a >= r)) return undefined;
    const dims: number[] = [];
    let k = 0;
    for (let i = 0; i < r; i++) dims.push(norm.has(i) ? 1 : x.dims[k++]!);
    return [{ ...x, dims }];
  },
  Squeeze: (c, ins) => {
    const x = ins[0];
    if (!x) return undefined;
    const axes = axesOf(c, ins, 1, 13);
    const r = x.dims.length;
    const drop = axes ? new Set(axes.map((a) => (a < 0 ? a + r : a))) : new Set(x.dims.flatMap((d, i) => (d === 1 ? [i] : [])));
    for (const a of drop) if (x.dims[a] !== 1) return undefined;
    return [{ ...x, dims: x.dims.filter((_, i) => !drop.has(i)) }];
  },
  Transpose: (c, [x]) => {
    if (!x) return undefined;
    const r = x.dims.length;
    const perm = c.node.getInts('perm') ?? x.dims.map((_, i) => r - 1 - i);
    if (perm.length !== r) return undefined;
    return [transpose(x, perm)];
  },
  Slice: (c, ins) => {
    const x = ins[0];
    if (!x) return undefined;
    const r = x.dims.length;
    let starts: number[] | undefined, ends: number[] | undefined, axes: number[] | undefined, steps: number[] | undefined;
    if (c.opset >= 10) {
      starts = ints(ins[1]);
      ends = ints(ins[2]);
      axes = ints(ins[3]);
      steps = ints(ins[4]);
    } else {
      starts = c.node.getInts('starts');
      ends = c.node.getInts('ends');
      axes = c.node.getInts('axes');
    }
    if (!starts || !ends || starts.length !== ends.length) return undefined;
    axes ??= starts.map((_, i) => i);
    steps ??= starts.map(() => 1);
    const st = x.dims.map(() => 0);
    const sp = x.dims.map(() => 1);
    const cnt = [...x.dims];
    for (let i = 0; i < axes.length; i++) {
      const a = normAxis(axes[i]!, r);
      if (a === undefined || steps[i] === 0) return undefined;
      const s = sliceAxis(x.dims[a]!, starts[i]!, ends[i]!, steps[i]!);
      st[a] = s.start;
      sp[a] = steps[i]!;
      cnt[a] = s.count;
    }
    const out = make(x.dtype, cnt);
    const inStr = strides(x.dims);
    const n = out.data.length;
    const counter = new Array<number>(r).fill(0);
    for (let k = 0; k < n; k++) {
      let src = 0;
      for (let a = 0; a < r; a++) src += (st[a]! + counter[a]! * sp[a]!) * inStr[a]!;
      out.data[k] = x.data[src]!;
      for (let a = r - 1; a >= 0; a--) {
        counter[a]!++;
        if (counter[a]! < cnt[a]!) break;
        counter[a] = 0;
      }
    }
    return [out];
  },
  Range: (_c, [s, l, d]) => {
    if (!s || !l || !d) return undefined;
    const start = s.data[0]!;
    const delta = d.data[0]!;
    const n = Math.max(Math.ceil((l.data[0]! - start) / delta), 0);
    if (!Number.isFinite(n)) return undefined;
    const out = make(s.dtype, [n]);
    for (let i = 0; i < n; i++) out.data[i] = start + i * delta;
    return [normalize(out)];
  },
  ConstantOfShape: (c, [s]) => {
    if (!s) return undefined;
    const t = c.node.getTensor('value');
    const fill = t ? fromTensor(t) : make(DataType.FLOAT, [1], Float64Array.of(0));
    const dims = Array.from(s.data);
    if (dims.some((d) => d < 0 || !Number.isInteger(d))) return undefined;
    const out = make(fill.dtype, dims);
    out.data.fill(fill.data[0] ?? 0);
    return [out];
  },
  Expand: (_c, [x, s]) => {
    if (!x || !s) return undefined;
    const dims = broadcastDims([x.dims, Array.from(s.data)]);
    if (!dims) return undefined;
    const idx = broadcastIndex(x.dims, dims);
    const out = make(x.dtype, dims);
    for (let i = 0; i < idx.length; i++) out.data[i] = x.data[idx[i]!]!;
    return [out];
  },
  Tile: (_c, [x, rep]) => {
    if (!x || !rep || rep.data.length !== x.dims.length) return undefined;
    const reps = Array.from(rep.data);
    const dims = x.dims.map((d, i) => d * reps[i]!);
    const out = make(x.dtype, dims);
    const inStr = strides(x.dims);
    const r = dims.length;
    const counter = new Array<number>(r).fill(0);
    for (let k = 0; k < out.data.length; k++) {
      let src = 0;
      for (let a = 0; a < r; a++) src += (counter[a]! % x.dims[a]!) * inStr[a]!;
      out.data[k] = x.data[src]!;
      for (let a = r - 1; a >= 0; a--) {
        counter[a]!++;
        if (counter[a]! < dims[a]!) break;
        counter[a] = 0;
      }
    }
    return [out];
  },
  ReduceSum: reduce(0, (a, x) => a + x, undefined, 13),
  ReduceMean: reduce(0, (a, x) => a + x, (a, n) => a / n),
  ReduceMax: reduce(-Infinity, Math.max),
  ReduceMin: reduce(Infinity, Math.min),
  ReduceProd: reduce(1, (a, x) => a * x),
};
