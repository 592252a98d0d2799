/**
 * Evaluator values: a tensor as an element type, dims and one Float64Array of element values (strings
 * are not evaluated). Computing in float64 and rounding once on the way out gives the correctly rounded
 * float32 result for + - * / and sqrt, the same as onnxruntime. int64 values outside +-2^53 lose
 * precision in float64; they are clamped to the int64 range when written back (INT64_MAX as a Slice end
 * stays INT64_MAX).
 */
import { DataType, dtypeInfo, encodeHalf, roundToBfloat16, roundToFloat16 } from '../../core/dtype.js';
import { numElements, Tensor } from '../../core/tensor.js';

export interface EValue {
  dtype: number;
  dims: number[];
  data: Float64Array;
}

/** Element types the evaluator computes with. */
export function isEvaluableType(t: number): boolean {
  switch (t) {
    case DataType.FLOAT:
    case DataType.DOUBLE:
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
    case DataType.INT8:
    case DataType.UINT8:
    case DataType.INT16:
    case DataType.UINT16:
    case DataType.INT32:
    case DataType.UINT32:
    case DataType.INT64:
    case DataType.UINT64:
    case DataType.BOOL:
      return true;
  }
  return false;
}

export function isFloatType(t: number): boolean {
  return !!dtypeInfo(t)?.isFloat;
}

export function fromTensor(t: Tensor): EValue {
  const n = t.size;
  const out = new Float64Array(n);
  if (t.dataType === DataType.FLOAT16 || t.dataType === DataType.BFLOAT16) out.set(t.toFloat32());
  else {
    const src = t.data();
    if (src instanceof BigInt64Array || src instanceof BigUint64Array) for (let i = 0; i < n; i++) out[i] = Number(src[i]!);
    else out.set(src as ArrayLike<number>);
  }
  return { dtype: t.dataType, dims: [...t.dims], data: out };
}

const I64_MAX = 2n ** 63n - 1n;
const I64_MIN = -(2n ** 63n);

function toBigInt(x: number, unsigned: boolean): bigint {
  if (Number.isNaN(x)) return 0n;
  if (unsigned) {
    if (x <= 0) return 0n;
    if (x >= 2 ** 64) return 2n ** 64n - 1n;
    return BigInt(Math.trunc(x));
  }
  if (x >= 2 ** 63) return I64_MAX;
  if (x <= -(2 ** 63)) return I64_MIN;
  return BigInt(Math.trunc(x));
}

/** Writes values back into a Tensor of the value's element type (rounding/truncating as a cast would). */
export function toTensor(v: EValue, name?: string): Tensor {
  const n = v.data.length;
  const d = v.data;
  switch (v.dtype) {
    case DataType.FLOAT:
      return Tensor.from(v.dtype, v.dims, Float32Array.from(d), name);
    case DataType.DOUBLE:
      return Tensor.from(v.dtype, v.dims, Float64Array.from(d), name);
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
      return Tensor.from(v.dtype, v.dims, encodeHalf(v.dtype, d), name);
    case DataType.INT64: {
      const a = new BigInt64Array(n);
      for (let i = 0; i < n; i++) a[i] = toBigInt(d[i]!, false);
      return Tensor.from(v.dtype, v.dims, a, name);
    }
    case DataType.UINT64: {
      const a = new BigUint64Array(n);
      for (let i = 0; i < n; i++) a[i] = toBigInt(d[i]!, true);
      return Tensor.from(v.dtype, v.dims, a, name);
    }
    case DataType.BOOL: {
      const a = new Uint8Array(n);
      for (let i = 0; i < n; i++) a[i] = d[i] !== 0 ? 1 : 0;
      return Tensor.from(v.dtype, v.dims, a, name);
    }
  }
  const info = dtypeInfo(v.dtype);
  if (!info?.view) throw new Error(`evaluator: cannot write element type ${v.dtype}`);
  const a = new info.view(n);
  // typed integer arrays wrap modulo 2^bits, which is what a C cast does for in-range truncation
  for (let i = 0; i < n; i++) (a as Int32Array)[i] = Math.trunc(d[i]!) || 0;
  return Tensor.from(v.dtype, v.dims, a, name);
}

/** Rounds values to what the element type can hold (after arithmetic). */
export function normalize(v: EValue): EValue {
  const d = v.data;
  const info = dtypeInfo(v.dtype);
  if (!info) return v;
  if (v.dtype === DataType.FLOAT) for (let i = 0; i < d.length; i++) d[i] = Math.fround(d[i]!);
  else if (v.dtype === DataType.FLOAT16) {
    for (let i = 0; i < d.length; i++) d[i] = roundToFloat16(d[i]!);
  } else if (v.dtype === DataType.BFLOAT16) {
    for (let i = 0; i < d.length; i++) d[i] = roundToBfloat16(d[i]!);
  } else if (v.dtype === DataType.BOOL) {
    for (let i = 0; i < d.length; i++) d[i] = d[i] !== 0 ? 1 : 0;
  } else if (info.isInteger && info.bits <= 32) {
    const bits = info.bits;
    for (let i = 0; i < d.length; i++) {
      let x = Math.trunc(d[i]!) || 0;
      const m = 2 ** bits;
      x = ((x % m) + m) % m;
      if (info.signed && x >= m / 2) x -= m;
      d[i] = x;
    }
  } else if (info.isInteger) for (let i = 0; i < d.length; i++) d[i] = Math.trunc(d[i]!) || 0;
  return v;
}

export function make(dtype: number, dims: number[], data?: Float64Array): EValue {
  return { dtype, dims, data: data ?? new Float64Array(numElements(dims)) };
}

export function strides(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length);
  let acc = 1;
  for (let i = dims.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= dims[i]!;
  }
  return s;
}
