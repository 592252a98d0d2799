/**
 * Int8 weights shared by the weight-compression and dynamic quantizers, and their inverse.
 *
 * - Which inputs are weights, and the channel axis of each (one scale per output channel):
 *   Conv W [M, C/g, k...] axis 0; ConvTranspose W [C, M/g, k...] axis 1 (axis 0 when grouped);
 *   MatMul B [..., K, N] axis rank-1 (A constant: axis rank-2); Gemm B axis transB ? 0 : 1
 *   (A: transA ? 1 : 0); Gather data (axis 0) axis 0 (one scale per row); LSTM/GRU/RNN W and R
 *   [D, G*H, I] axis 1.
 * - Symmetric int8 per channel (zero point 0, {@link quantizeWeight} from scales.ts): w = s_c q,
 *   q in [-127, 127]. Per tensor when per-channel scales would weigh more than the saving (fewer than
 *   2 elements per channel).
 * - The inverse, {@link dequantizeTensor}: w = (q - zp) s along `axis`, exactly what ONNX
 *   DequantizeLinear computes in float32.
 */
import { DataType } from '../../core/dtype.js';
import { inputError } from '../../core/errors.js';
import { Attribute, Graph, Node, Value } from '../../ir/ir.js';
import type { NameAuthority } from '../../ir/names.js';
import { Tensor } from '../../core/tensor.js';
import { quantizeWeight } from './scales.js';

/** Channel axis of input `index` of `node` when it is a weight slot, null when it is not a weight. */
export function weightAxis(node: Node, index: number, rank: number): number | null {
  if (node.opDomain !== '') return null;
  switch (node.opType) {
    case 'Conv':
      return index === 1 && rank >= 3 ? 0 : null;
    case 'ConvTranspose':
      return index === 1 && rank >= 3 ? ((node.getInt('group', 1) ?? 1) === 1 ? 1 : 0) : null;
    case 'MatMul':
      if (rank < 2) return null;
      return index === 1 ? rank - 1 : index === 0 ? rank - 2 : null;
    case 'Gemm':
      if (rank !== 2) return null;
      if (index === 1) return (node.getInt('transB', 0) ?? 0) === 1 ? 0 : 1;
      if (index === 0) return (node.getInt('transA', 0) ?? 0) === 1 ? 1 : 0;
      return null;
    case 'Gather': {
      const axis = node.getInt('axis', 0) ?? 0;
      return index === 0 && rank >= 2 && (axis === 0 || axis === -rank) ? 0 : null;
    }
    case 'LSTM':
    case 'GRU':
    case 'RNN':
      return (index === 1 || index === 2) && rank === 3 ? 1 : null;
  }
  return null;
}

export interface Int8Weight {
  q: Tensor;
  scale: Tensor;
  axis: number | undefined;
  scales: Float32Array;
}

/** Symmetric int8 of a float tensor per channel along `axis` (per tensor when not worth it). */
export function quantizeInt8(t: Tensor, axis: number | undefined, qmax: 127 | 64 = 127): Int8Weight {
  const dims = t.dims;
  let ax = axis;
  if (ax !== undefined && (dims[ax] === undefined || t.size < 2 * dims[ax]!)) ax = undefined;
  if (ax !== undefined && dims[ax] === 1) ax = undefined;
  const w = quantizeWeight(t.toFloat32(), dims, ax, qmax === 64);
  const q = Tensor.from(DataType.INT8, dims, w.data);
  const scale = ax === undefined ? Tensor.from(DataType.FLOAT, [], Float32Array.of(w.scales[0]!)) : Tensor.from(DataType.FLOAT, [w.scales.length], w.scales);
  return { q, scale, axis: ax, scales: w.scales };
}

/** Where a weight quantizer's new names come from: the model's name authority (`g.names`, ir/names.ts). */
export type NameSource = Pick<NameAuthority, 'fresh'>;

/**
 * The legacy view of the name authority, kept only while quantize-int4.ts still constructs it
 * (`addWeightDq(g, g.names, ...)` there lets it go); new code passes `g.names`.
 * @deprecated use `g.names` (`numbered` for `next`, `fresh` for `take`).
 */
export class FreshNames implements NameSource {
  private readonly names: NameAuthority;
  constructor(g: Graph) {
    this.names = g.names;
  }
  /** A short id with `prefix` (`w0`, `w1`, ...), never used before in the model. */
  next(prefix: string): string {
    return this.names.numbered(prefix);
  }
  /** `name`, or `name_1`, ... when it is taken. */
  take(name: string): string {
    return this.names.fresh(name);
  }
  fresh(name: string): string {
    return this.names.fresh(name);
  }
}

/**
 * Adds `q` and `scale` as initializers and a DequantizeLinear reading them (inserted at the top of
 * the graph). Returns the float output value.
 */
export function addWeightDq(g: Graph, names: NameSource, w: Int8Weight, stem: string): { out: Value; node: Node } {
  const qv = g.addInitializer(w.q, names.fresh(`${stem}_q`));
  const sv = g.addInitializer(w.scale, names.fresh(`${stem}_s`));
  const out = new Value(names.fresh(stem));
  out.setTensorType(DataType.FLOAT, w.q.dims);
  // zero point omitted: symmetric int8 has zero point 0, and the int8 type comes from the data
  const dq = new Node('DequantizeLinear', [qv, sv], [out]);
  if (w.axis !== undefined) dq.setAttr(Attribute.int('axis', w.axis));
  g.insertNode(dq, 0);
  return { out, node: dq };
}

/**
 * Like {@link addWeightDq} for the B weight [K, N] of MatMul, stored transposed: the int8 tensor is
 * [N, K] (its per-column scales on axis 0), dequantized, then `Transpose(perm [1, 0])` gives the
 * [K, N] float weight named `stem`. onnxruntime (1.30, CPU) fuses DequantizeLinear -> MatMul on a
 * constant 8-bit weight into com.microsoft MatMulNBits, whose results differ from the float MatMul
 * by up to ~3e-2 on PaddleOCR rec; with the Transpose in between it runs the DequantizeLinear and a
 * float FusedMatMul (transB) instead, which matches the float model (and is faster). `w` must be a
 * 2-D weight quantized per tensor or per column (axis 1).
 */
export function addTransposedMatMulWeightDq(g: Graph, names: NameSource, w: Int8Weight, stem: string): { out: Value; node: Node; transpose: Node } {
  if (w.q.dims.length !== 2 || (w.axis !== undefined && w.axis !== 1)) {
    throw inputError('WEIGHTS_BAD_LAYOUT', `a transposed MatMul weight must be 2-D and quantized per tensor or along axis 1 (tensor '${stem}' has dims [${w.q.dims.join(', ')}], axis ${w.axis})`, { tensor: stem });
  }
  const [k, n] = w.q.dims as [number, number];
  const qt = transposeTensor(w.q, [1, 0]);
  const qv = g.addInitializer(qt, names.fresh(`${stem}_q`));
  const sv = g.addInitializer(w.scale, names.fresh(`${stem}_s`));
  const mid = new Value(names.fresh(`${stem}_nk`));
  mid.setTensorType(DataType.FLOAT, [n, k]);
  const dq = new Node('DequantizeLinear', [qv, sv], [mid]);
  if (w.axis !== undefined) dq.setAttr(Attribute.int('axis', 0));
  const out = new Value(names.fresh(stem));
  out.setTensorType(DataType.FLOAT, [k, n]);
  const tr = new Node('Transpose', [mid], [out]);
  tr.setAttr(Attribute.ints('perm', [1, 0]));
  g.insertNode(tr, 0);
  g.insertNode(dq, 0);
  return { out, node: dq, transpose: tr };
}

/** ONNX Transpose of a constant (any numeric dtype whose `.data()` is a typed array), exact. */
export function transposeTensor(t: Tensor, perm: readonly number[], name?: string): Tensor {
  const dims = t.dims;
  const rank = dims.length;
  if (perm.length !== rank || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
    throw inputError('WEIGHTS_BAD_PERM', `Transpose of tensor '${t.name ?? name ?? '?'}': perm [${perm.join(', ')}] does not fit rank ${rank}`, { tensor: t.name ?? name ?? '' });
  }
  const src = t.data() as unknown as { length: number; [i: number]: number | bigint; constructor: new (n: number) => unknown };
  const out = new src.constructor(src.length) as { [i: number]: number | bigint };
  const outDims = perm.map((p) => dims[p]!);
  const inStrides = new Array<number>(rank).fill(1);
  for (let d = rank - 2; d >= 0; d--) inStrides[d] = inStrides[d + 1]! * dims[d + 1]!;
  const stride = perm.map((p) => inStrides[p]!);
  const idx = new Array<number>(rank).fill(0);
  let from = 0;
  for (let i = 0; i < src.length; i++) {
    out[i] = src[from]!;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      from += stride[d]!;
      if (idx[d]! < outDims[d]!) break;
      from -= stride[d]! * outDims[d]!;
      idx[d] = 0;
    }
  }
  return Tensor.from(t.dataType, outDims, out as never, name);
}

/** ONNX DequantizeLinear on constants: (q - zp) * scale, per tensor or along `axis`. */
export function dequantizeTensor(q: Tensor, scale: Tensor, zeroPoint: Tensor | undefined, axis: number, name?: string): Tensor {
  const dt = q.dataType;
  if (dt !== DataType.INT8 && dt !== DataType.UINT8 && dt !== DataType.INT32 && dt !== DataType.INT16 && dt !== DataType.UINT16) {
    throw inputError('WEIGHTS_BAD_DTYPE', `DequantizeLinear of tensor '${q.name ?? name ?? '?'}' has data type ${q.dtype}; only 8/16/32-bit integers are expanded`, { tensor: q.name ?? name ?? '' });
  }
  const dims = q.dims;
  const x = q.data() as Int8Array | Uint8Array | Int32Array | Int16Array | Uint16Array;
  const s = scale.toFloat32();
  const z = zeroPoint ? (zeroPoint.data() as ArrayLike<number>) : undefined;
  const n = x.length;
  const out = new Float32Array(n);
  if (s.length === 1) {
    const s0 = s[0]!;
    const z0 = z ? Number(z[0]) : 0;
    for (let i = 0; i < n; i++) out[i] = (x[i]! - z0) * s0;
  } else {
    const ax = axis < 0 ? axis + dims.length : axis;
    const ch = dims[ax]!;
    if (ch !== s.length) throw inputError('WEIGHTS_BAD_SCALE', `DequantizeLinear of tensor '${q.name ?? name ?? '?'}': ${s.length} scales for ${ch} channels on axis ${ax}`, { tensor: q.name ?? name ?? '' });
    let inner = 1;
    for (let d = ax + 1; d < dims.length; d++) inner *= dims[d]!;
    for (let i = 0; i < n; i++) {
      const c = Math.floor(i / inner) % ch;
      out[i] = (x[i]! - (z ? Number(z[c]) : 0)) * s[c]!;
    }
  }
  return Tensor.from(DataType.FLOAT, dims, out, name);
}
