/**
 * Plain host tensors: an element type name (as onnxruntime spells it), dims, and one typed array (or
 * strings). This is the currency between data sources, sessions and metrics; it does not depend on
 * onnxruntime, so data readers can be used (and tested) without loading the runtime.
 */
import { float16ToFloat32 as float16BitsToFloat32, float32ToFloat16 as float32ToFloat16Bits } from './dtype.js';
import { DataType, dtypeOf, NumericArray } from './dtype.js';
import { inputError } from './errors.js';

/** Element types onnxruntime-node accepts for tensors (a subset of ONNX's). */
export type HostDType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'int64'
  | 'uint64'
  | 'bool'
  | 'string';

export type HostData = NumericArray | string[];

export interface HostTensor {
  type: HostDType;
  dims: number[];
  /** float16 is stored as its bit patterns in a Uint16Array; bool as 0/1 in a Uint8Array. */
  data: HostData;
}

/** A model input or output set keyed by value name. */
export type Feed = Record<string, HostTensor>;

interface HostDTypeInfo {
  onnx: DataType;
  bytes: number;
  ctor: { new (n: number): Exclude<HostData, string[]>; new (b: ArrayBufferLike, o: number, n: number): Exclude<HostData, string[]> } | null;
}

const INFO: Record<HostDType, HostDTypeInfo> = {
  float32: { onnx: DataType.FLOAT, bytes: 4, ctor: Float32Array },
  float64: { onnx: DataType.DOUBLE, bytes: 8, ctor: Float64Array },
  float16: { onnx: DataType.FLOAT16, bytes: 2, ctor: Uint16Array },
  int8: { onnx: DataType.INT8, bytes: 1, ctor: Int8Array },
  uint8: { onnx: DataType.UINT8, bytes: 1, ctor: Uint8Array },
  int16: { onnx: DataType.INT16, bytes: 2, ctor: Int16Array },
  uint16: { onnx: DataType.UINT16, bytes: 2, ctor: Uint16Array },
  int32: { onnx: DataType.INT32, bytes: 4, ctor: Int32Array },
  uint32: { onnx: DataType.UINT32, bytes: 4, ctor: Uint32Array },
  int64: { onnx: DataType.INT64, bytes: 8, ctor: BigInt64Array },
  uint64: { onnx: DataType.UINT64, bytes: 8, ctor: BigUint64Array },
  bool: { onnx: DataType.BOOL, bytes: 1, ctor: Uint8Array },
  string: { onnx: DataType.STRING, bytes: 0, ctor: null },
};

const BY_ONNX = new Map<number, HostDType>(Object.entries(INFO).map(([k, v]) => [v.onnx, k as HostDType]));

const ALIASES: Record<string, HostDType> = { float: 'float32', double: 'float64', half: 'float16', long: 'int64', int: 'int32' };

export function isHostDType(name: string): name is HostDType {
  return Object.prototype.hasOwnProperty.call(INFO, name);
}

/** Maps an ONNX type name ('float32', 'float', 'double', ...) or TensorProto.DataType number to a host type. */
export function hostDType(t: string | number): HostDType | undefined {
  if (typeof t === 'number') return BY_ONNX.get(t);
  if (isHostDType(t)) return t;
  if (Object.prototype.hasOwnProperty.call(ALIASES, t)) return ALIASES[t];
  const info = dtypeOf(t);
  return info ? BY_ONNX.get(info.type) : undefined;
}

/** TensorProto.DataType number for a host type. */
export function onnxDataType(t: HostDType): number {
  return INFO[t].onnx;
}

export function bytesPerElement(t: HostDType): number {
  return INFO[t].bytes;
}

/** Product of dims; throws on negative or non-integer dims, or a product past 2^31 elements. */
export function elementCount(dims: readonly number[], what = 'tensor'): number {
  let n = 1;
  for (const d of dims) {
    if (!Number.isInteger(d) || d < 0) throw inputError('TENSOR_BAD_DIMS', `${what}: invalid dimension ${d} in [${dims.join(',')}]`, { tensor: what });
    n *= d;
  }
  if (n > 2 ** 31) throw inputError('TENSOR_TOO_LARGE', `${what}: [${dims.join(',')}] has ${n} elements (limit 2^31)`, { tensor: what });
  return n;
}

/** A zero-filled tensor. */
export function zeros(type: HostDType, dims: readonly number[]): HostTensor {
  const n = elementCount(dims);
  const ctor = INFO[type].ctor;
  return { type, dims: [...dims], data: ctor ? new ctor(n) : new Array<string>(n).fill('') };
}

/** Views little-endian bytes as a host tensor (copies only when the offset is misaligned). */
export function fromBytes(type: HostDType, dims: readonly number[], bytes: Uint8Array, what = 'tensor'): HostTensor {
  const ctor = INFO[type].ctor;
  if (!ctor) throw inputError('TENSOR_BAD_DTYPE', `${what}: string tensors have no byte representation`, { tensor: what });
  const n = elementCount(dims, what);
  const need = n * INFO[type].bytes;
  if (bytes.length !== need) {
    throw inputError('TENSOR_BAD_LENGTH', `${what}: ${bytes.length} bytes of data, but dims [${dims.join(',')}] x ${type} need ${need}`, { tensor: what });
  }
  const aligned = bytes.byteOffset % INFO[type].bytes === 0 ? bytes : new Uint8Array(bytes);
  return { type, dims: [...dims], data: new ctor(aligned.buffer, aligned.byteOffset, n) };
}

/** Builds a host tensor from a JSON-style array of numbers (or strings / booleans). */
export function fromValues(type: HostDType, dims: readonly number[], values: ArrayLike<unknown>, what = 'tensor'): HostTensor {
  const n = elementCount(dims, what);
  if (values.length !== n) throw inputError('TENSOR_BAD_LENGTH', `${what}: ${values.length} values, but dims [${dims.join(',')}] need ${n}`, { tensor: what });
  if (type === 'string') return { type, dims: [...dims], data: Array.from(values, (v) => String(v)) };
  const out = zeros(type, dims);
  const data = out.data as Exclude<HostData, string[]>;
  const big = type === 'int64' || type === 'uint64';
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (big) {
      if (typeof v !== 'number' && typeof v !== 'bigint' && typeof v !== 'string') throw badValue(what, i, v);
      try {
        (data as BigInt64Array)[i] = BigInt(typeof v === 'number' ? Math.trunc(v) : v);
      } catch {
        throw badValue(what, i, v);
      }
    } else if (type === 'float16') {
      if (typeof v !== 'number') throw badValue(what, i, v);
      (data as Uint16Array)[i] = float32ToFloat16Bits(v);
    } else {
      const num = typeof v === 'boolean' ? Number(v) : v;
      if (typeof num !== 'number') throw badValue(what, i, v);
      (data as Float32Array)[i] = num;
    }
  }
  return out;
}

function badValue(what: string, i: number, v: unknown) {
  return inputError('TENSOR_BAD_VALUE', `${what}: element ${i} is ${JSON.stringify(v)}, not a number`, { tensor: what });
}

/** Element values as float64 numbers (float16 decoded, int64 converted). */
export function toFloat64(t: HostTensor): Float64Array {
  const n = t.data.length;
  const out = new Float64Array(n);
  if (t.type === 'string') throw inputError('TENSOR_BAD_DTYPE', 'string tensors have no numeric values');
  if (t.type === 'float16') {
    const bits = t.data as Uint16Array;
    for (let i = 0; i < n; i++) out[i] = float16BitsToFloat32(bits[i]!);
    return out;
  }
  const src = t.data as ArrayLike<number | bigint>;
  if (typeof src[0] === 'bigint') for (let i = 0; i < n; i++) out[i] = Number(src[i]!);
  else out.set(src as ArrayLike<number>);
  return out;
}

/** float16 bits <-> float32, shared with the graph layer's dtype tables (round to nearest even). */
export { float16ToFloat32 as float16BitsToFloat32, float32ToFloat16 as float32ToFloat16Bits } from './dtype.js';

/** Dims as text: `[1,3,48,320]`. */
export function formatDims(dims: readonly (number | string)[]): string {
  return `[${dims.join(',')}]`;
}
