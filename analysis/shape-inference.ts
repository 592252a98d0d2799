/**
 * Shape inference over the IR: `inferShapes(model)` walks every graph (subgraphs first, then their
 * parent node) in topological order and fills `Value.type` (element type and dims) for node outputs.
 * Dims are numbers when static, strings when symbolic (copied from the input that carries them, so
 * `x:[N,3,H,W]` gives `Conv(x):[N,16,?,?]` or static values when H, W are numbers), and `undefined` when
 * unknown. Declared types of graph inputs are the source; types already present on intermediate values
 * are kept where inference knows less.
 *
 * It also tracks *shape values*: 1-D integer tensors whose elements are dims (Shape, then Gather, Slice,
 * Concat, Cast, Unsqueeze, Squeeze, arithmetic), so `Reshape(x, Concat(Shape(x)[0:1], [-1]))` gets
 * `[N, 60]`, and constant folding can turn a shape value into a constant when all its elements are static.
 *
 * Inference never throws on a model it does not understand: an op it does not know leaves its outputs
 * as they were.
 */
import { DataType } from '../core/dtype.js';
import { constantOf, Graph, Model, Node, topologicalOrder, Value } from '../ir/ir.js';

export type SymDim = number | string | undefined;

/** A shape value: the elements of a small integer tensor, symbolic where they are dims. */
export interface ShapeValue {
  scalar: boolean;
  vals: SymDim[];
}

export interface ShapeAnalysis {
  /** Known elements of a small integer tensor (constants and shape arithmetic). */
  shapeValue(v: Value | null | undefined): ShapeValue | undefined;
  /** Nodes whose op inference does not cover (for --explain). */
  readonly unknownOps: Set<string>;
  /** Every graph was walked in topological order (false when one has a cycle). */
  readonly sorted: boolean;
}

const SMALL = 64;

interface Info {
  elem?: number;
  dims?: SymDim[];
}

function infoOf(v: Value | null | undefined): Info {
  if (!v) return {};
  const c = constantOf(v);
  if (c) return { elem: c.dataType, dims: [...c.dims] };
  const t = v.type?.tensor;
  if (!t) return {};
  const info: Info = {};
  if (t.elemType !== undefined && t.elemType !== 0) info.elem = t.elemType;
  if (t.shape) info.dims = t.shape.dims.map((d) => (d.value !== undefined ? Number(d.value) : d.param !== undefined && d.param !== '' ? d.param : undefined));
  return info;
}

/** Values whose declared types are part of the file (value_info): inference does not overwrite them. */
let declared: ReadonlySet<Value> = new Set();

function setInfo(v: Value, info: Info): void {
  if (declared.has(v)) return;
  // Graph outputs (of the main graph and of subgraphs) are written to the file as declared: a shape
  // inferred for them would become part of the model (and onnxruntime checks it statically).
  if (v.outputOf.size > 0) return;
  const old = infoOf(v);
  const elem = info.elem ?? old.elem;
  let dims = info.dims;
  if (old.dims && (!dims || (dims.length === old.dims.length && dims.every((d, i) => d === undefined || d === old.dims![i])))) {
    // keep what the file said where we know nothing more
    dims = dims ? dims.map((d, i) => d ?? old.dims![i]) : old.dims;
  }
  if (elem === undefined && dims === undefined) return;
  v.setTensorType(elem ?? 0, dims);
}

/** Sets output `i` of a node (when it has one). */
function setOut(out: readonly Value[], i: number, info: Info): void {
  const o = out[i];
  if (o) setInfo(o, info);
}

/** Info with the fields that are known (set one by one: conditional spreads cost more than inference itself). */
function infoWith(elem: number | undefined, dims: SymDim[] | undefined): Info {
  const info: Info = {};
  if (elem !== undefined) info.elem = elem;
  if (dims) info.dims = dims;
  return info;
}

/** Info with `dims` and element type `elem`, by default the first input's (`x`). */
function withDims(x: Info, dims: SymDim[] | undefined, elem = x.elem): Info {
  return infoWith(elem, dims);
}

const sameDim = (a: SymDim, b: SymDim) => a !== undefined && a === b;

export function broadcastSym(shapes: Array<SymDim[] | undefined>): SymDim[] | undefined {
  if (shapes.some((s) => !s)) return undefined;
  const ss = shapes as SymDim[][];
  const rank = Math.max(0, ...ss.map((s) => s.length));
  const out: SymDim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: SymDim = 1;
    let unknown = false;
    for (const s of ss) {
      const x = s[i - (rank - s.length)];
      if (i < rank - s.length) continue;
      if (x === 1) continue;
      if (x === undefined) {
        unknown = true;
        continue;
      }
      if (d === 1) d = x;
      else if (!sameDim(d, x)) {
        if (typeof d === 'number' && typeof x === 'string') continue;
        if (typeof d === 'string' && typeof x === 'number') d = x;
        else unknown = true;
      }
    }
    out.push(unknown && d === 1 ? undefined : d);
  }
  return out;
}

function normAxis(a: number, rank: number): number {
  return a < 0 ? a + rank : a;
}

function ints(v: Value | null | undefined): number[] | undefined {
  const c = constantOf(v);
  if (!c || c.size > 4096 || c.dataType === DataType.STRING) return undefined;
  return c.toNumbers();
}

function poolDims(n: Node, x: SymDim[], kernel: number[], opType: string): SymDim[] | undefined {
  const sp = kernel.length;
  const strides = n.getInts('strides') ?? kernel.map(() => 1);
  const dil = n.getInts('dilations') ?? kernel.map(() => 1);
  const pads = n.getInts('pads') ?? new Array<number>(2 * sp).fill(0);
  const auto = n.getString('auto_pad', 'NOTSET');
  const ceil = n.getInt('ceil_mode', 0) === 1;
  const out: SymDim[] = [];
  for (let i = 0; i < sp; i++) {
    const d = x[2 + i];
    if (typeof d !== 'number') {
      out.push(undefined);
      continue;
    }
    const s = strides[i] ?? 1;
    const ek = ((kernel[i] ?? 1) - 1) * (dil[i] ?? 1) + 1;
    if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') out.push(Math.ceil(d / s));
    else if (auto === 'VALID') out.push(Math.ceil((d - ek + 1) / s));
    else {
      const num = d + (pads[i] ?? 0) + (pads[i + sp] ?? 0) - ek;
      let o = (ceil ? Math.ceil(num / s) : Math.floor(num / s)) + 1;
      if (ceil && opType !== 'Conv' && (o - 1) * s >= d + (pads[i] ?? 0)) o--;
      out.push(o);
    }
  }
  return out;
}

const SAME_SHAPE = new Set([
  'Relu', 'Clip', 'HardSigmoid', 'HardSwish', 'Sigmoid', 'Tanh', 'Sqrt', 'Neg', 'Abs', 'Exp', 'Log', 'Erf', 'Identity',
  'Softmax', 'LogSoftmax', 'Hardmax', 'LeakyRelu', 'Elu', 'Selu', 'Gelu', 'Reciprocal', 'Floor', 'Ceil', 'Round', 'Sign',
  'Cos', 'Sin', 'CumSum', 'LRN', 'Mish', 'Softplus', 'Softsign', 'InstanceNormalization', 'ThresholdedRelu', 'Celu',
  'Dropout', 'BatchNormalization', 'LayerNormalization', 'GroupNormalization', 'MeanVarianceNormalization', 'Shrink',
  'QuantizeLinear', 'DequantizeLinear', 'Tan', 'Atan', 'Asin', 'Acos', 'Sinh', 'Cosh', 'Asinh', 'Acosh', 'Atanh', 'Trilu',
]);
const BOOL_SAME = new Set(['Not', 'IsNaN', 'IsInf']);
const BROADCAST = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Mean', 'Mod', 'PRelu', 'BitShift', 'BitwiseAnd', 'BitwiseOr', 'BitwiseXor']);
const COMPARE = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Xor']);

class Inference implements ShapeAnalysis {
  readonly unknownOps = new Set<string>();
  sorted = true;
  private readonly sv = new Map<Value, ShapeValue>();

  constructor(private readonly opset: number) {}

  shapeValue(v: Value | null | undefined): ShapeValue | undefined {
    if (!v) return undefined;
    const k = this.sv.get(v);
    if (k) return k;
    const c = constantOf(v);
    if (c && c.size <= SMALL && c.dims.length <= 1 && (c.dataType === DataType.INT64 || c.dataType === DataType.INT32)) {
      return { scalar: c.dims.length === 0, vals: c.toNumbers() };
    }
    return undefined;
  }

  graph(g: Graph): void {
    let order: Node[];
    try {
      order = topologicalOrder(g);
    } catch {
      order = g.nodes;
      this.sorted = false;
    }
    for (const n of order) {
      for (const sg of n.subgraphs()) this.graph(sg);
      try {
        this.node(n);
      } catch {
        this.unknownOps.add(n.opType);
      }
    }
  }

  private setSV(v: Value, s: ShapeValue | undefined): void {
    if (s && s.vals.length <= SMALL) this.sv.set(v, s);
  }

  private node(n: Node): void {
    if (n.opDomain !== '') {
      this.unknownOps.add(`${n.opDomain}.${n.opType}`);
      return;
    }
    const x = infoOf(n.input(0));
    const out = n.outputs;
    const op = n.opType;
    if (SAME_SHAPE.has(op)) {
      setOut(out, 0, x);
      if (op === 'Dropout' && out[1]) setOut(out, 1, infoWith(DataType.BOOL, x.dims));
      if (op === 'LayerNormalization') for (let i = 1; i < out.length; i++) setOut(out, i, { elem: DataType.FLOAT });
      return;
    }
    if (BOOL_SAME.has(op)) return setOut(out, 0, infoWith(DataType.BOOL, x.dims));
    if (BROADCAST.has(op) || COMPARE.has(op) || op === 'Where') {
      const ins = n.inputs.map(infoOf);
      const dims = broadcastSym(ins.map((i) => i.dims));
      const elem = COMPARE.has(op) ? DataType.BOOL : op === 'Where' ? ins[1]?.elem : x.elem;
      setOut(out, 0, infoWith(elem, dims));
      if (!COMPARE.has(op) && op !== 'Where') this.arith(n);
      return;
    }
    switch (op) {
      case 'Constant': {
        const c = constantOf(out[0]);
        if (c) setOut(out, 0, { elem: c.dataType, dims: [...c.dims] });
        return;
      }
      case 'Cast': {
        setOut(out, 0, withDims(x, x.dims, n.getInt('to')));
        const s = this.shapeValue(n.input(0));
        const to = n.getInt('to');
        if (s && (to === DataType.INT64 || to === DataType.INT32)) this.setSV(out[0]!, s);
        return;
      }
      case 'CastLike':
        return setOut(out, 0, withDims(x, x.dims, infoOf(n.input(1)).elem));
      case 'Shape': {
        const r = x.dims?.length;
        if (r === undefined) return setOut(out, 0, { elem: DataType.INT64 });
        let s = n.getInt('start', 0);
        let e = n.getInt('end', r);
        s = Math.min(Math.max(normAxis(s, r), 0), r);
        e = Math.min(Math.max(normAxis(e, r), 0), r);
        const vals = x.dims!.slice(s, Math.max(s, e));
        setOut(out, 0, { elem: DataType.INT64, dims: [vals.length] });
        this.setSV(out[0]!, { scalar: false, vals });
        return;
      }
      case 'Size':
        return setOut(out, 0, { elem: DataType.INT64, dims: [] });
      case 'Conv':
      case 'ConvInteger':
      case 'QLinearConv': {
        const w = infoOf(n.input(op === 'QLinearConv' ? 3 : 1));
        if (!x.dims || !w.dims) return setOut(out, 0, withDims(x, undefined));
        const kernel = n.getInts('kernel_shape') ?? (w.dims.slice(2).every((d) => typeof d === 'number') ? (w.dims.slice(2) as number[]) : undefined);
        if (!kernel) return setOut(out, 0, withDims(x, undefined));
        const sp = poolDims(n, x.dims, kernel, 'Conv');
        const elem = op === 'ConvInteger' ? DataType.INT32 : op === 'QLinearConv' ? infoOf(n.input(7)).elem : x.elem;
        return setOut(out, 0, withDims(x, sp ? [x.dims[0], w.dims[0], ...sp] : undefined, elem));
      }
      case 'ConvTranspose': {
        const w = infoOf(n.input(1));
        if (!x.dims || !w.dims) return setOut(out, 0, withDims(x, undefined));
        const sp = x.dims.length - 2;
        const group = n.getInt('group', 1);
        const c = typeof w.dims[1] === 'number' ? (w.dims[1] as number) * group : undefined;
        const outShape = n.getInts('output_shape');
        const kernel = n.getInts('kernel_shape') ?? (w.dims.slice(2) as number[]);
        const strides = n.getInts('strides') ?? kernel.map(() => 1);
        const dil = n.getInts('dilations') ?? kernel.map(() => 1);
        const pads = n.getInts('pads') ?? new Array<number>(2 * sp).fill(0);
        const opad = n.getInts('output_padding') ?? kernel.map(() => 0);
        const auto = n.getString('auto_pad', 'NOTSET');
        const dims: SymDim[] = [x.dims[0], c];
        for (let i = 0; i < sp; i++) {
          const d = x.dims[2 + i];
          if (outShape) dims.push(outShape[outShape.length - sp + i]);
          else if (typeof d !== 'number' || typeof kernel[i] !== 'number') dims.push(undefined);
          else if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') dims.push(d * strides[i]!);
          else dims.push(strides[i]! * (d - 1) + opad[i]! + (kernel[i]! - 1) * dil[i]! + 1 - pads[i]! - pads[i + sp]!);
        }
        return setOut(out, 0, withDims(x, dims));
      }
      case 'MaxPool':
      case 'AveragePool':
      case 'LpPool': {
        const kernel = n.getInts('kernel_shape');
        if (!x.dims || !kernel) return setOut(out, 0, withDims(x, undefined));
        const sp = poolDims(n, x.dims, kernel, op);
        setOut(out, 0, withDims(x, sp ? [x.dims[0], x.dims[1], ...sp] : undefined));
        if (out[1]) setOut(out, 1, withDims(x, sp ? [x.dims[0], x.dims[1], ...sp] : undefined, DataType.INT64));
        return;
      }
      case 'GlobalAveragePool':
      case 'GlobalMaxPool':
      case 'GlobalLpPool':
        return setOut(out, 0, withDims(x, x.dims ? [x.dims[0], x.dims[1], ...x.dims.slice(2).map(() => 1)] : undefined));
      case 'MatMul':
      case 'MatMulInteger': {
        const b = infoOf(n.input(1));
        const elem = op === 'MatMulInteger' ? DataType.INT32 : x.elem;
        if (!x.dims || !b.dims || x.dims.length === 0 || b.dims.length === 0) return setOut(out, 0, withDims(x, undefined, elem));
        const a1 = x.dims.length === 1 ? [1, x.dims[0]] : x.dims;
        const b1 = b.dims.length === 1 ? [b.dims[0], 1] : b.dims;
        const batch = broadcastSym([a1.slice(0, -2), b1.slice(0, -2)]);
        if (!batch) return setOut(out, 0, withDims(x, undefined, elem));
        const dims = [...batch];
        if (x.dims.length > 1) dims.push(a1[a1.length - 2]);
        if (b.dims.length > 1) dims.push(b1[b1.length - 1]);
        return setOut(out, 0, withDims(x, dims, elem));
      }
      case 'Gemm': {
        const b = infoOf(n.input(1));
        if (!x.dims || !b.dims || x.dims.length !== 2 || b.dims.length !== 2) return setOut(out, 0, withDims(x, undefined));
        const m = n.getInt('transA', 0) ? x.dims[1] : x.dims[0];
        const k = n.getInt('transB', 0) ? b.dims[0] : b.dims[1];
        return setOut(out, 0, withDims(x, [m, k]));
      }
      case 'Flatten': {
        if (!x.dims) return setOut(out, 0, withDims(x, undefined));
        const r = x.dims.length;
        const axis = normAxis(n.getInt('axis', 1), r);
        const prod = (ds: SymDim[]) => (ds.every((d) => typeof d === 'number') ? ds.reduce<number>((a, d) => a * (d as number), 1) : ds.length === 1 ? ds[0] : undefined);
        return setOut(out, 0, withDims(x, [prod(x.dims.slice(0, axis)), prod(x.dims.slice(axis))]));
      }
      case 'Reshape': {
        const s = this.opset >= 5 ? this.shapeValue(n.input(1)) : { scalar: false, vals: n.getInts('shape') ?? [] };
        if (!s) {
          const si = infoOf(n.input(1));
          return setOut(out, 0, withDims(x, si.dims && typeof si.dims[0] === 'number' ? new Array<SymDim>(si.dims[0]).fill(undefined) : undefined));
        }
        const allowzero = n.getInt('allowzero', 0) === 1;
        const dims: SymDim[] = s.vals.map((d, i) => (d === 0 && !allowzero ? x.dims?.[i] : d === -1 ? -1 : d));
        const neg = dims.indexOf(-1);
        if (neg >= 0) {
          const total = x.dims && x.dims.every((d) => typeof d === 'number') ? (x.dims as number[]).reduce((a, b) => a * b, 1) : undefined;
          const rest = dims.filter((_, i) => i !== neg);
          if (total !== undefined && rest.every((d) => typeof d === 'number')) dims[neg] = total / (rest as number[]).reduce((a, b) => a * b, 1);
          else if (x.dims && rest.every((d) => d !== undefined)) {
            // symbolic: cancel dims that appear in both; if one input dim remains, it is the answer
            const left = [...x.dims];
            let ok = true;
            for (const d of rest) {
              const k = left.findIndex((y) => y === d);
              if (k >= 0) left.splice(k, 1);
              else ok = false;
            }
            dims[neg] = ok && left.length === 1 ? left[0] : ok && left.length === 0 ? 1 : undefined;
          } else dims[neg] = undefined;
        }
        return setOut(out, 0, withDims(x, dims));
      }
      case 'Transpose': {
        if (!x.dims) return setOut(out, 0, withDims(x, undefined));
        const r = x.dims.length;
        const perm = n.getInts('perm') ?? x.dims.map((_, i) => r - 1 - i);
        setOut(out, 0, withDims(x, perm.map((p) => x.dims![p])));
        return;
      }
      case 'Concat': {
        const ins = n.inputs.map(infoOf);
        const first = ins.find((i) => i.dims)?.dims;
        if (!first || ins.some((i) => !i.dims || i.dims.length !== first.length)) return setOut(out, 0, withDims(x, undefined));
        const axis = normAxis(n.getInt('axis', 0), first.length);
        const dims = first.map((d, k) => {
          if (k === axis) {
            const ds = ins.map((i) => i.dims![axis]);
            return ds.every((q) => typeof q === 'number') ? (ds as number[]).reduce((a, b) => a + b, 0) : undefined;
          }
          for (const i of ins) if (typeof i.dims![k] === 'number') return i.dims![k];
          return d;
        });
        setOut(out, 0, withDims(x, dims));
        const svs = n.inputs.map((v) => this.shapeValue(v));
        if (svs.every((s) => s && !s.scalar)) this.setSV(out[0]!, { scalar: false, vals: svs.flatMap((s) => s!.vals) });
        return;
      }
      case 'Unsqueeze':
      case 'Squeeze': {
        const axes = this.opset >= 13 ? ints(n.input(1)) : n.getInts('axes');
        if (!x.dims) return setOut(out, 0, withDims(x, undefined));
        let dims: SymDim[] | undefined;
        if (op === 'Unsqueeze') {
          if (!axes) return setOut(out, 0, withDims(x, undefined));
          const r = x.dims.length + axes.length;
          const ax = new Set(axes.map((a) => normAxis(a, r)));
          dims = [];
          let k = 0;
          for (let i = 0; i < r; i++) dims.push(ax.has(i) ? 1 : x.dims[k++]);
        } else {
          const r = x.dims.length;
          if (!axes && x.dims.some((d) => typeof d !== 'number')) return setOut(out, 0, withDims(x, undefined));
          const ax = new Set(axes ? axes.map((a) => normAxis(a, r)) : x.dims.flatMap((d, i) => (d === 1 ? [i] : [])));
          dims = x.dims.filter((_, i) => !ax.has(i));
        }
        setOut(out, 0, withDims(x, dims));
        const s = this.shapeValue(n.input(0));
        if (s && op === 'Unsqueeze' && s.scalar) this.setSV(out[0]!, { scalar: false, vals: s.vals });
        if (s && op === 'Squeeze' && !s.scalar && s.vals.length === 1 && dims.length === 0) this.setSV(out[0]!, { scalar: true, vals: s.vals });
        return;
      }
      case 'Slice': {
        let starts: number[] | undefined, ends: number[] | undefined, axes: number[] | undefined, steps: number[] | undefined;
        if (this.opset >= 10) {
          starts = ints(n.input(1));
          ends = ints(n.input(2));
          axes = n.input(3) ? ints(n.input(3)) : undefined;
          steps = n.input(4) ? ints(n.input(4)) : undefined;
          if ((n.input(3) && !axes) || (n.input(4) && !steps)) starts = undefined;
        } else {
          starts = n.getInts('starts');
          ends = n.getInts('ends');
          axes = n.getInts('axes');
        }
        if (!x.dims) return setOut(out, 0, withDims(x, undefined));
        if (!starts || !ends) return setOut(out, 0, withDims(x, x.dims.map(() => undefined)));
        const r = x.dims.length;
        axes ??= starts.map((_, i) => i);
        steps ??= starts.map(() => 1);
        const dims = [...x.dims];
        const sel: Array<[number, number, number]> = x.dims.map(() => [0, 1, -1]);
        for (let i = 0; i < axes.length; i++) {
          const a = normAxis(axes[i]!, r);
          const d = x.dims[a];
          const st = steps[i]!;
          if (typeof d === 'number') {
            const s = sliceCount(d, starts[i]!, ends[i]!, st);
            dims[a] = s.count;
            sel[a] = [s.start, st, s.count];
          } else if (starts[i] === 0 && st === 1 && ends[i]! >= 2 ** 31 - 1) dims[a] = d;
          else dims[a] = undefined;
        }
        setOut(out, 0, withDims(x, dims));
        const s = this.shapeValue(n.input(0));
        if (s && !s.scalar && r === 1) {
          const [st, sp, cnt] = sel[0]!;
          const count = cnt < 0 ? s.vals.length : cnt;
          const vals: SymDim[] = [];
          for (let k = 0; k < count; k++) vals.push(s.vals[st + k * sp]);
          this.setSV(out[0]!, { scalar: false, vals });
        }
        return;
      }
      case 'Gather': {
        const idx = infoOf(n.input(1));
        if (!x.dims || !idx.dims) return setOut(out, 0, withDims(x, undefined));
        const axis = normAxis(n.getInt('axis', 0), x.dims.length);
        setOut(out, 0, withDims(x, [...x.dims.slice(0, axis), ...idx.dims, ...x.dims.slice(axis + 1)]));
        const s = this.shapeValue(n.input(0));
        const iv = ints(n.input(1));
        if (s && !s.scalar && iv && axis === 0) {
          const vals = iv.map((k) => s.vals[k < 0 ? k + s.vals.length : k]);
          this.setSV(out[0]!, { scalar: idx.dims.length === 0, vals });
        }
        return;
      }
      case 'ConstantOfShape': {
        const t = n.getTensor('value');
        const s = this.shapeValue(n.input(0));
        const si = infoOf(n.input(0));
        const dims = s ? s.vals : si.dims && typeof si.dims[0] === 'number' ? new Array<SymDim>(si.dims[0]).fill(undefined) : undefined;
        return setOut(out, 0, withDims(x, dims, t ? t.dataType : DataType.FLOAT));
      }
      case 'Expand': {
        const s = this.shapeValue(n.input(1));
        const si = infoOf(n.input(1));
        const target = s ? s.vals : si.dims && typeof si.dims[0] === 'number' ? new Array<SymDim>(si.dims[0]).fill(undefined) : undefined;
        return setOut(out, 0, withDims(x, target && x.dims ? broadcastSym([x.dims, target]) : undefined));
      }
      case 'Tile': {
        const reps = ints(n.input(1));
        return setOut(out, 0, withDims(x, x.dims && reps ? x.dims.map((d, i) => (typeof d === 'number' ? d * reps[i]! : reps[i] === 1 ? d : undefined)) : undefined));
      }
      case 'Pad': {
        const pads = this.opset >= 11 ? ints(n.input(1)) : n.getInts('pads');
        if (!x.dims || !pads) return setOut(out, 0, withDims(x, x.dims?.map(() => undefined)));
        const axes = this.opset >= 18 && n.input(3) ? ints(n.input(3)) : undefined;
        const r = x.dims.length;
        const ax = axes ? axes.map((a) => normAxis(a, r)) : x.dims.map((_, i) => i);
        const dims = [...x.dims];
        ax.forEach((a, i) => {
          const d = dims[a];
          const add = pads[i]! + pads[i + ax.length]!;
          dims[a] = typeof d === 'number' ? d + add : add === 0 ? d : undefined;
        });
        return setOut(out, 0, withDims(x, dims));
      }
      case 'Resize':
      case 'Upsample': {
        if (!x.dims) return setOut(out, 0, withDims(x, undefined));
        const scalesIdx = op === 'Upsample' || this.opset < 11 ? 1 : 2;
        const sizes = op === 'Resize' && this.opset >= 11 && n.input(3) ? ints(n.input(3)) : undefined;
        if (sizes && sizes.length === x.dims.length) return setOut(out, 0, withDims(x, sizes));
        const sc = constantOf(n.input(scalesIdx));
        const scales = sc && sc.size === x.dims.length ? Array.from(sc.toFloat32()) : op === 'Upsample' ? n.getFloats('scales') : undefined;
        if (!scales) return setOut(out, 0, withDims(x, x.dims.map(() => undefined)));
        return setOut(out, 0, withDims(x, x.dims.map((d, i) => (typeof d === 'number' ? Math.floor(d * scales[i]!) : scales[i] === 1 ? d : undefined))));
      }
      case 'Split': {
        if (!x.dims) return;
        const axis = normAxis(n.getInt('axis', 0), x.dims.length);
        const given = this.opset >= 13 ? !!n.input(1) : n.attr('split') !== undefined;
        const split = this.opset >= 13 ? (n.input(1) ? ints(n.input(1)) : undefined) : n.getInts('split');
        const d = x.dims[axis];
        const chunk = typeof d === 'number' ? Math.ceil(d / out.length) : undefined;
        out.forEach((o, i) => {
          const dims = [...x.dims!];
          // equal chunks (the last one smaller) only when no split sizes are given at all
          const numOutputs = n.getInt('num_outputs');
          if (split) dims[axis] = split[i];
          else if (given || chunk === undefined || typeof d !== 'number') dims[axis] = undefined;
          else if (numOutputs !== undefined) dims[axis] = i < out.length - 1 ? chunk : d - chunk * (out.length - 1);
          else dims[axis] = d % out.length === 0 ? d / out.length : undefined;
          setInfo(o, withDims(x, dims));
        });
        return;
      }
      case 'ReduceMean':
      case 'ReduceSum':
      case 'ReduceMax':
      case 'ReduceMin':
      case 'ReduceProd':
      case 'ReduceL1':
      case 'ReduceL2':
      case 'ReduceLogSumExp':
      case 'ReduceSumSquare':
      case 'ArgMax':
      case 'ArgMin': {
        const isArg = op.startsWith('Arg');
        const elem = isArg ? DataType.INT64 : x.elem;
        if (!x.dims) return setOut(out, 0, withDims(x, undefined, elem));
        const r = x.dims.length;
        const since = op === 'ReduceSum' ? 13 : 18;
        let axes: number[] | undefined = isArg ? [n.getInt('axis', 0)] : this.opset >= since ? (n.input(1) ? ints(n.input(1)) : []) : (n.getInts('axes') ?? []);
        if (!axes) return setOut(out, 0, withDims(x, undefined, elem));
        if (axes.length === 0) {
          if (n.getInt('noop_with_empty_axes', 0) === 1) return setOut(out, 0, withDims(x, x.dims, elem));
          axes = x.dims.map((_, i) => i);
        }
        const ax = new Set(axes.map((a) => normAxis(a, r)));
        const keep = n.getInt('keepdims', 1) === 1;
        return setOut(out, 0, withDims(x, keep ? x.dims.map((d, i) => (ax.has(i) ? 1 : d)) : x.dims.filter((_, i) => !ax.has(i)), elem));
      }
      case 'Range': {
        const [s, l, d] = [ints(n.input(0)), ints(n.input(1)), ints(n.input(2))];
        const len = s && l && d && d[0] ? Math.max(Math.ceil((l[0]! - s[0]!) / d[0]!), 0) : undefined;
        return setOut(out, 0, withDims(x, [len]));
      }
      case 'LSTM':
      case 'GRU':
      case 'RNN': {
        const hidden = n.getInt('hidden_size');
        const dirs = n.getString('direction', 'forward') === 'bidirectional' ? 2 : 1;
        const layout = n.getInt('layout', 0);
        const [seq, batch] = x.dims ? (layout === 0 ? [x.dims[0], x.dims[1]] : [x.dims[1], x.dims[0]]) : [undefined, undefined];
        setOut(out, 0, withDims(x, layout === 0 ? [seq, dirs, batch, hidden] : [batch, seq, dirs, hidden]));
        for (let i = 1; i < out.length; i++) setOut(out, i, withDims(x, layout === 0 ? [dirs, batch, hidden] : [batch, dirs, hidden]));
        return;
      }
      case 'If': {
        const th = n.attr('then_branch')?.g;
        const el = n.attr('else_branch')?.g;
        if (!th || !el) return;
        out.forEach((o, i) => {
          const a = infoOf(th.outputs[i]);
          const b = infoOf(el.outputs[i]);
          const dims = a.dims && b.dims && a.dims.length === b.dims.length ? a.dims.map((d, k) => (d === b.dims![k] ? d : undefined)) : undefined;
          setInfo(o, { ...(a.elem !== undefined ? { elem: a.elem } : b.elem !== undefined ? { elem: b.elem } : {}), ...(dims ? { dims } : {}) });
        });
        return;
      }
    }
    this.unknownOps.add(op);
  }

  /** Shape-value arithmetic (Add/Sub/Mul/Div of dims and constants). */
  private arith(n: Node): void {
    const a = this.shapeValue(n.input(0));
    const b = this.shapeValue(n.input(1));
    if (!a || !b) return;
    const len = Math.max(a.vals.length, b.vals.length);
    if ((a.vals.length !== len && a.vals.length !== 1) || (b.vals.length !== len && b.vals.length !== 1)) return;
    const vals: SymDim[] = [];
    for (let i = 0; i < len; i++) {
      const x = a.vals[a.vals.length === 1 ? 0 : i];
      const y = b.vals[b.vals.length === 1 ? 0 : i];
      if (typeof x !== 'number' || typeof y !== 'number') {
        if (n.opType === 'Mul' && (x === 1 || y === 1)) vals.push(x === 1 ? y : x);
        else if ((n.opType === 'Add' || n.opType === 'Sub') && y === 0) vals.push(x);
        else vals.push(undefined);
        continue;
      }
      switch (n.opType) {
        case 'Add': vals.push(x + y); break;
        case 'Sub': vals.push(x - y); break;
        case 'Mul': vals.push(x * y); break;
        case 'Div': vals.push(y === 0 ? undefined : Math.trunc(x / y)); break;
        default: vals.push(undefined);
      }
    }
    this.setSV(n.output(0), { scalar: a.scalar && b.scalar, vals });
  }
}

function sliceCount(dim: number, start: number, end: number, step: number): { start: number; count: number } {
  const clampS = step > 0 ? [0, dim] : [-1, dim - 1];
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  s = Math.min(Math.max(s, clampS[0]!), clampS[1]!);
  e = Math.min(Math.max(e, clampS[0]!), clampS[1]!);
  return { start: s, count: Math.max(0, Math.ceil((e - s) / step)) };
}

/**
 * Infers element types and shapes of every node output in the model (subgraphs included) and returns
 * the analysis (shape values, ops it did not cover). Call it again after rewriting: it is cheap.
 */
export function inferShapes(model: Model): ShapeAnalysis {
  const inf = new Inference(model.opset('') ?? 1);
  const vi = new Set<Value>();
  for (const g of model.graph.allGraphs()) for (const v of g.valueInfo) vi.add(v);
  declared = vi;
  try {
    inf.graph(model.graph);
  } finally {
    declared = new Set();
  }
  return inf;
}

/** Static dims of `v` as numbers, or undefined unless every dim is a known number. */
export function staticShape(v: Value | null | undefined): number[] | undefined {
  const d = infoOf(v).dims;
  return d && d.every((x) => typeof x === 'number') ? (d as number[]) : undefined;
}

/** Dims of `v` (numbers, symbolic strings, undefined), or undefined when the rank is unknown. */
export function symbolicShape(v: Value | null | undefined): SymDim[] | undefined {
  return infoOf(v).dims;
}

/** Element type of `v` (from a constant or its type), or undefined. */
export function elemTypeOf(v: Value | null | undefined): number | undefined {
  return infoOf(v).elem;
}
