/**
 * ONNX element types (TensorProto.DataType, ONNX 1.22): sizes, storage fields, typed-array views and
 * conversions for the types JavaScript has no native array for (float16, bfloat16, the float8 family
 * including FLOAT8E8M0, float4e2m1, and the packed int4/uint4/int2/uint2).
 */

export enum DataType {
  UNDEFINED = 0,
  FLOAT = 1,
  UINT8 = 2,
  INT8 = 3,
  UINT16 = 4,
  INT16 = 5,
  INT32 = 6,
  INT64 = 7,
  STRING = 8,
  BOOL = 9,
  FLOAT16 = 10,
  DOUBLE = 11,
  UINT32 = 12,
  UINT64 = 13,
  COMPLEX64 = 14,
  COMPLEX128 = 15,
  BFLOAT16 = 16,
  FLOAT8E4M3FN = 17,
  FLOAT8E4M3FNUZ = 18,
  FLOAT8E5M2 = 19,
  FLOAT8E5M2FNUZ = 20,
  UINT4 = 21,
  INT4 = 22,
  FLOAT4E2M1 = 23,
  FLOAT8E8M0 = 24,
  UINT2 = 25,
  INT2 = 26,
}

/** Which repeated TensorProto field holds the data when it is not in raw_data. */
export type StorageField = 'float_data' | 'int32_data' | 'int64_data' | 'double_data' | 'uint64_data' | 'string_data';

export type NumericArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

type ArrayCtor = { new (buffer: ArrayBufferLike, byteOffset: number, length: number): NumericArray; new (length: number): NumericArray; BYTES_PER_ELEMENT: number };

export interface DTypeInfo {
  readonly type: DataType;
  /** Short name as onnxruntime spells it: 'float32', 'int8', 'float16', ... */
  readonly name: string;
  /** Bits per element (4 for int4, 2 for int2, 64 for complex64 counts both parts). */
  readonly bits: number;
  readonly storage: StorageField;
  /** Typed array that views the raw little-endian bytes (packed types view bytes, not elements). */
  readonly view: ArrayCtor | null;
  /** Elements per byte for sub-byte types (2 or 4), else 0. */
  readonly packed: number;
  readonly isFloat: boolean;
  readonly isInteger: boolean;
  readonly signed: boolean;
}

const d = (
  type: DataType,
  name: string,
  bits: number,
  storage: StorageField,
  view: ArrayCtor | null,
  isFloat: boolean,
  isInteger: boolean,
  signed: boolean,
): DTypeInfo => ({ type, name, bits, storage, view, packed: bits < 8 ? 8 / bits : 0, isFloat, isInteger, signed });

const TABLE: DTypeInfo[] = [
  d(DataType.FLOAT, 'float32', 32, 'float_data', Float32Array, true, false, true),
  d(DataType.UINT8, 'uint8', 8, 'int32_data', Uint8Array, false, true, false),
  d(DataType.INT8, 'int8', 8, 'int32_data', Int8Array, false, true, true),
  d(DataType.UINT16, 'uint16', 16, 'int32_data', Uint16Array, false, true, false),
  d(DataType.INT16, 'int16', 16, 'int32_data', Int16Array, false, true, true),
  d(DataType.INT32, 'int32', 32, 'int32_data', Int32Array, false, true, true),
  d(DataType.INT64, 'int64', 64, 'int64_data', BigInt64Array, false, true, true),
  d(DataType.STRING, 'string', 0, 'string_data', null, false, false, false),
  d(DataType.BOOL, 'bool', 8, 'int32_data', Uint8Array, false, false, false),
  d(DataType.FLOAT16, 'float16', 16, 'int32_data', Uint16Array, true, false, true),
  d(DataType.DOUBLE, 'float64', 64, 'double_data', Float64Array, true, false, true),
  d(DataType.UINT32, 'uint32', 32, 'uint64_data', Uint32Array, false, true, false),
  d(DataType.UINT64, 'uint64', 64, 'uint64_data', BigUint64Array, false, true, false),
  d(DataType.COMPLEX64, 'complex64', 64, 'float_data', Float32Array, true, false, true),
  d(DataType.COMPLEX128, 'complex128', 128, 'double_data', Float64Array, true, false, true),
  d(DataType.BFLOAT16, 'bfloat16', 16, 'int32_data', Uint16Array, true, false, true),
  d(DataType.FLOAT8E4M3FN, 'float8e4m3fn', 8, 'int32_data', Uint8Array, true, false, true),
  d(DataType.FLOAT8E4M3FNUZ, 'float8e4m3fnuz', 8, 'int32_data', Uint8Array, true, false, true),
  d(DataType.FLOAT8E5M2, 'float8e5m2', 8, 'int32_data', Uint8Array, true, false, true),
  d(DataType.FLOAT8E5M2FNUZ, 'float8e5m2fnuz', 8, 'int32_data', Uint8Array, true, false, true),
  d(DataType.UINT4, 'uint4', 4, 'int32_data', Uint8Array, false, true, false),
  d(DataType.INT4, 'int4', 4, 'int32_data', Uint8Array, false, true, true),
  d(DataType.FLOAT4E2M1, 'float4e2m1', 4, 'int32_data', Uint8Array, true, false, true),
  d(DataType.FLOAT8E8M0, 'float8e8m0', 8, 'int32_data', Uint8Array, true, false, false),
  d(DataType.UINT2, 'uint2', 2, 'int32_data', Uint8Array, false, true, false),
  d(DataType.INT2, 'int2', 2, 'int32_data', Uint8Array, false, true, true),
];

const BY_TYPE = new Map<number, DTypeInfo>(TABLE.map((t) => [t.type, t]));
const BY_NAME = new Map<string, DTypeInfo>(TABLE.map((t) => [t.name, t]));
BY_NAME.set('float', BY_TYPE.get(DataType.FLOAT)!);
BY_NAME.set('double', BY_TYPE.get(DataType.DOUBLE)!);

export function dtypeInfo(type: number): DTypeInfo | undefined {
  return BY_TYPE.get(type);
}

/** The info for a type name ('float32', 'int8', ...) or number. */
export function dtypeOf(t: number | string): DTypeInfo | undefined {
  return typeof t === 'number' ? BY_TYPE.get(t) : BY_NAME.get(t);
}

export function dtypeName(type: number): string {
  return BY_TYPE.get(type)?.name ?? `unknown(${type})`;
}

export function allDTypes(): readonly DTypeInfo[] {
  return TABLE;
}

/** Bytes that `count` elements take in raw_data (sub-byte types round up to whole bytes). */
export function byteLengthOf(type: number, count: number): number {
  const info = BY_TYPE.get(type);
  if (!info || info.type === DataType.STRING) return 0;
  return info.packed ? Math.ceil(count / info.packed) : (count * info.bits) / 8;
}

// ---------------------------------------------------------------------------------------------
// float16 and bfloat16: the one codec of the code base. Every float16/bfloat16 encode or decode in
// onnxforge goes through these functions; test/graph/float16.test.ts holds them bit for bit to
// onnxruntime's Cast on every float32 rounding boundary (each value, the midpoints to its neighbours
// and one float32 ulp either side of each).

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The value of float16 bits (exact: every float16 is a float32; NaN for every NaN pattern). */
export function float16ToFloat32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * float16 bits of a number, as a Cast from float32 gives them: the number is taken as a float32 (what
 * a float32 tensor holds), then rounded to the nearest float16, ties to even. Values below half the
 * smallest subnormal (2^-25) become a signed zero, subnormals are kept, values from 65520 (half-way to
 * the next power of two after 65504) become infinity, and NaN stays a (quiet) NaN.
 */
export function float32ToFloat16(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15; // the float16 exponent field, before rounding
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // subnormal result: shift the full significand right so the float16 ulp is 2^-24
    if (e < -10) return sign;
    return sign | roundShift(mant | 0x800000, 14 - e);
  }
  // a carry out of the mantissa steps into the exponent by plain addition (and from 0x7bff to infinity)
  return sign | ((e << 10) + roundShift(mant, 13));
}

/** `x >> shift` rounded to nearest, ties to even (`shift` between 1 and 24). */
function roundShift(x: number, shift: number): number {
  const half = 1 << (shift - 1);
  const r = x >>> shift;
  const rem = x & ((1 << shift) - 1);
  return rem > half || (rem === half && r & 1) ? r + 1 : r;
}

/** The value of bfloat16 bits (the upper half of a float32). */
export function bfloat16ToFloat32(b: number): number {
  u32[0] = b << 16;
  return f32[0]!;
}

/**
 * bfloat16 bits of a number taken as a float32: rounded to nearest, ties to even (overflow goes to
 * infinity, subnormals stay subnormal); NaN stays a (quiet) NaN.
 */
export function float32ToBfloat16(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The float16 value nearest to `v` (what a float16 tensor holds after a Cast). */
export function roundToFloat16(v: number): number {
  return float16ToFloat32(float32ToFloat16(v));
}

/** The bfloat16 value nearest to `v`. */
export function roundToBfloat16(v: number): number {
  return bfloat16ToFloat32(float32ToBfloat16(v));
}

/** Encodes numbers as float16 or bfloat16 bits (`type` is DataType.FLOAT16 or BFLOAT16). */
export function encodeHalf(type: DataType.FLOAT16 | DataType.BFLOAT16, values: ArrayLike<number>): Uint16Array {
  const enc = type === DataType.FLOAT16 ? float32ToFloat16 : float32ToBfloat16;
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = enc(values[i]!);
  return out;
}

/** Decodes one 8-bit float of the given ONNX float8 type (or float8e8m0 / float4e2m1 nibble). */
export function float8ToFloat32(type: number, b: number): number {
  switch (type) {
    case DataType.FLOAT8E4M3FN: {
      const s = b & 0x80 ? -1 : 1;
      const e = (b >> 3) & 0xf;
      const m = b & 7;
      if (e === 15 && m === 7) return NaN;
      if (e === 0) return s * m * 2 ** -9;
      return s * (1 + m / 8) * 2 ** (e - 7);
    }
    case DataType.FLOAT8E4M3FNUZ: {
      if (b === 0x80) return NaN;
      const s = b & 0x80 ? -1 : 1;
      const e = (b >> 3) & 0xf;
      const m = b & 7;
      if (e === 0) return s * m * 2 ** -10;
      return s * (1 + m / 8) * 2 ** (e - 8);
    }
    case DataType.FLOAT8E5M2: {
      const s = b & 0x80 ? -1 : 1;
      const e = (b >> 2) & 0x1f;
      const m = b & 3;
      if (e === 31) return m ? NaN : s * Infinity;
      if (e === 0) return s * m * 2 ** -16;
      return s * (1 + m / 4) * 2 ** (e - 15);
    }
    case DataType.FLOAT8E5M2FNUZ: {
      if (b === 0x80) return NaN;
      const s = b & 0x80 ? -1 : 1;
      const e = (b >> 2) & 0x1f;
      const m = b & 3;
      if (e === 0) return s * m * 2 ** -17;
      return s * (1 + m / 4) * 2 ** (e - 16);
    }
    case DataType.FLOAT8E8M0:
      return b === 0xff ? NaN : 2 ** (b - 127);
    case DataType.FLOAT4E2M1: {
      const s = b & 0x8 ? -1 : 1;
      const e = (b >> 1) & 3;
      const m = b & 1;
      if (e === 0) return s * m * 0.5;
      return s * (1 + m / 2) * 2 ** (e - 1);
    }
  }
  throw new Error(`not a small float type: ${type}`);
}

/**
 * Unpacks sub-byte elements (int4/uint4/float4e2m1: two per byte, int2/uint2: four per byte; first
 * element in the least significant bits) into one byte per element, sign-extended for int4/int2.
 */
export function unpackSubByte(type: number, bytes: Uint8Array, count: number): Int8Array | Uint8Array {
  const info = BY_TYPE.get(type)!;
  const per = info.packed;
  const bits = info.bits;
  const mask = (1 << bits) - 1;
  const signedInt = type === DataType.INT4 || type === DataType.INT2;
  const out = signedInt ? new Int8Array(count) : new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const byte = bytes[(i / per) | 0]!;
    let v = (byte >> ((i % per) * bits)) & mask;
    if (signedInt && v & (1 << (bits - 1))) v -= 1 << bits;
    out[i] = v;
  }
  return out;
}

/** Packs one-value-per-byte elements into the sub-byte layout of `type`. */
export function packSubByte(type: number, values: ArrayLike<number>): Uint8Array {
  const info = BY_TYPE.get(type)!;
  const per = info.packed;
  const bits = info.bits;
  const mask = (1 << bits) - 1;
  const out = new Uint8Array(Math.ceil(values.length / per));
  for (let i = 0; i < values.length; i++) out[(i / per) | 0]! |= (values[i]! & mask) << ((i % per) * bits);
  return out;
}
