/**
 * Tensors of the IR. Data stays where the model file put it: `raw_data` is a zero-copy view of the
 * loaded bytes, typed fields (`float_data`, ...) stay typed arrays, and external data is read lazily
 * by offset and length through an {@link ExternalDataSource}. Which storage a tensor used is kept, so
 * an unchanged model writes back the same bytes. Typed access (`data()`, `toFloat32()`) views the
 * bytes without copying where alignment allows.
 */
import { inputError } from './errors.js';
import {
  bfloat16ToFloat32,
  byteLengthOf,
  DataType,
  dtypeInfo,
  dtypeName,
  float16ToFloat32,
  float8ToFloat32,
  NumericArray,
  StorageField,
  unpackSubByte,
} from './dtype.js';

export type Int64 = number | bigint;
export type Entry = { key?: string; value?: string; unknownFields?: Uint8Array[] };

/** Reads external tensor bytes. Implemented by the codec (`graph/onnx/external.ts`). */
export interface ExternalDataSource {
  /** Absolute path of the folder `location` values are relative to. */
  readonly baseDir: string;
  read(tensor: Tensor, ext: ExternalData): Uint8Array;
}

/** The `external_data` entries of a TensorProto, parsed and kept in their original order. */
export interface ExternalData {
  entries: Entry[];
  location: string;
  offset: number;
  /** Absent when the file does not say (then dims x dtype decides). */
  length?: number;
  source?: ExternalDataSource;
}

export interface Segment {
  begin?: Int64;
  end?: Int64;
  unknownFields?: Uint8Array[];
}

export class Tensor {
  name?: string;
  dataType: number;
  dims: number[];
  docString?: string;
  metadataProps?: Entry[];
  segment?: Segment;
  dataLocation?: number;
  unknownFields?: Uint8Array[];
  /** raw_data, if the proto had it. */
  raw?: Uint8Array;
  /** A typed repeated field, if the proto had one (several are possible in malformed files). */
  fields?: Partial<Record<StorageField, ArrayLike<number | bigint> | Uint8Array[]>>;
  external?: ExternalData;
  /** Field encodings that differed from the .proto declaration (kept for byte-identical output). */
  altEncoding?: string[];
  /** The proto had no data_type field at all (kept so it is not written as 0). */
  dataTypeUnset?: boolean;

  constructor(dataType: number, dims: number[], name?: string) {
    this.dataType = dataType;
    this.dims = dims;
    if (name !== undefined) this.name = name;
  }

  /** Builds a tensor from element data; the typed array is used as raw_data without copying. */
  static from(dataType: number | string, dims: readonly number[], data: NumericArray | ArrayLike<number> | string[], name?: string): Tensor {
    const info = typeof dataType === 'number' ? dtypeInfo(dataType) : dtypeInfoByName(dataType);
    if (!info) throw inputError('TENSOR_BAD_DTYPE', `unknown data type ${dataType}`, { tensor: name });
    const t = new Tensor(info.type, [...dims], name);
    if (info.type === DataType.STRING) {
      const enc = new TextEncoder();
      t.fields = { string_data: (data as string[]).map((s) => enc.encode(s)) };
      return t;
    }
    let arr: NumericArray;
    if (ArrayBuffer.isView(data)) arr = data as NumericArray;
    else if (info.view) arr = (info.view as unknown as { from(a: ArrayLike<unknown>): NumericArray }).from(data as ArrayLike<number>);
    else throw inputError('TENSOR_BAD_DATA', `cannot build ${info.name} from a plain array`, { tensor: name });
    t.raw = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
    const expected = byteLengthOf(info.type, numElements(dims));
    if (t.raw.length !== expected) {
      throw inputError('TENSOR_BAD_LENGTH', `tensor ${name ?? '(unnamed)'}: ${t.raw.length} bytes of data for ${expected} expected by dims [${dims.join(',')}] x ${info.name}`, { tensor: name });
    }
    return t;
  }

  /** Builds a tensor over raw little-endian bytes (no copy). */
  static fromBytes(dataType: number, dims: readonly number[], bytes: Uint8Array, name?: string): Tensor {
    const t = new Tensor(dataType, [...dims], name);
    t.raw = bytes;
    return t;
  }

  get dtype(): string {
    return dtypeName(this.dataType);
  }

  /** Number of elements (product of dims; 1 for a scalar). */
  get size(): number {
    return numElements(this.dims);
  }

  /** Bytes the data takes as raw_data (0 for strings). */
  get byteLength(): number {
    return byteLengthOf(this.dataType, this.size);
  }

  get isExternal(): boolean {
    return this.dataLocation === 1 && this.external !== undefined;
  }

  /** The data as raw little-endian bytes (lazy for external data; converted from typed fields). */
  bytes(): Uint8Array {
    if (this.dataLocation === 1 && this.external) {
      if (!this.external.source) throw inputError('EXTERNAL_NO_SOURCE', `tensor ${this.name ?? '(unnamed)'} has external data but the model was loaded from bytes without a base folder`, { tensor: this.name });
      return this.external.source.read(this, this.external);
    }
    if (this.raw) return this.raw;
    return fieldsToBytes(this);
  }

  /**
   * A typed view of the elements: Float32Array for float32, Uint16Array for float16/bfloat16 (bits),
   * Uint8Array for float8 and for packed sub-byte types (bytes, not elements: see `unpack()`), ...
   */
  data(): NumericArray {
    const info = dtypeInfo(this.dataType);
    if (!info || !info.view) throw inputError('TENSOR_BAD_DTYPE', `tensor ${this.name ?? '(unnamed)'} has no numeric view for ${this.dtype}`, { tensor: this.name });
    const bytes = this.bytes();
    const width = info.view.BYTES_PER_ELEMENT;
    const n = bytes.length / width;
    if (!Number.isInteger(n)) throw inputError('TENSOR_BAD_LENGTH', `tensor ${this.name ?? '(unnamed)'}: ${bytes.length} bytes is not a whole number of ${info.name} elements`, { tensor: this.name });
    if ((bytes.byteOffset % width) === 0) return new info.view(bytes.buffer, bytes.byteOffset, n);
    const copy = new Uint8Array(bytes);
    return new info.view(copy.buffer, 0, n);
  }

  /** Sub-byte types unpacked to one element per byte (sign-extended for int4/int2). */
  unpack(): Int8Array | Uint8Array {
    const info = dtypeInfo(this.dataType);
    if (!info?.packed) return this.data() as Uint8Array;
    return unpackSubByte(this.dataType, this.bytes(), this.size);
  }

  /** Every numeric type converted to float32 values (a copy, except for float32 itself). */
  toFloat32(): Float32Array {
    const t = this.dataType;
    if (t === DataType.FLOAT) return this.data() as Float32Array;
    const n = this.size;
    const out = new Float32Array(n);
    if (t === DataType.FLOAT16 || t === DataType.BFLOAT16) {
      const bits = this.data() as Uint16Array;
      const conv = t === DataType.FLOAT16 ? float16ToFloat32 : bfloat16ToFloat32;
      for (let i = 0; i < n; i++) out[i] = conv(bits[i]!);
      return out;
    }
    if (t === DataType.FLOAT4E2M1) {
      const u = this.unpack();
      for (let i = 0; i < n; i++) out[i] = float8ToFloat32(t, u[i]!);
      return out;
    }
    if (t >= DataType.FLOAT8E4M3FN && t <= DataType.FLOAT8E5M2FNUZ || t === DataType.FLOAT8E8M0) {
      const b = this.data() as Uint8Array;
      for (let i = 0; i < n; i++) out[i] = float8ToFloat32(t, b[i]!);
      return out;
    }
    const info = dtypeInfo(t);
    if (info?.packed) {
      const u = this.unpack();
      for (let i = 0; i < n; i++) out[i] = u[i]!;
      return out;
    }
    const src = this.data();
    for (let i = 0; i < n; i++) out[i] = Number(src[i]!);
    return out;
  }

  /** Integer data as plain numbers (for shapes, axes and indices). */
  toNumbers(): number[] {
    const info = dtypeInfo(this.dataType);
    if (info?.packed) return Array.from(this.unpack());
    if (this.dataType === DataType.FLOAT16 || this.dataType === DataType.BFLOAT16 || (info?.isFloat && info.bits === 8)) return Array.from(this.toFloat32());
    const src = this.data();
    const out = new Array<number>(src.length);
    for (let i = 0; i < src.length; i++) out[i] = Number(src[i]!);
    return out;
  }

  /** String tensor elements as UTF-8 strings. */
  strings(): string[] {
    const dec = new TextDecoder();
    return ((this.fields?.string_data as Uint8Array[] | undefined) ?? []).map((b) => dec.decode(b));
  }

  /** Replaces the data with raw bytes, dropping typed fields and external references. */
  setBytes(bytes: Uint8Array, dims?: number[]): void {
    this.raw = bytes;
    delete this.fields;
    delete this.external;
    delete this.dataLocation;
    if (dims) this.dims = dims;
  }

  /** A shallow copy that shares the data buffers (tensor data is treated as immutable). */
  clone(name = this.name): Tensor {
    const t = new Tensor(this.dataType, [...this.dims], name);
    Object.assign(t, this, { name, dims: [...this.dims] });
    if (name === undefined) delete t.name;
    return t;
  }
}

function dtypeInfoByName(name: string) {
  for (let t = 1; t <= 26; t++) {
    const i = dtypeInfo(t);
    if (i && (i.name === name || (name === 'float' && t === 1) || (name === 'double' && t === 11))) return i;
  }
  return undefined;
}

export function numElements(dims: readonly number[]): number {
  let n = 1;
  for (const x of dims) n *= x;
  return n;
}

/** Converts typed-field storage to raw little-endian bytes (a copy: the fields hold other widths). */
function fieldsToBytes(t: Tensor): Uint8Array {
  const info = dtypeInfo(t.dataType);
  const name = t.name ?? '(unnamed)';
  if (!info) throw inputError('TENSOR_BAD_DTYPE', `tensor ${name} has unknown data type ${t.dataType}`, { tensor: t.name });
  if (info.type === DataType.STRING) throw inputError('TENSOR_BAD_DTYPE', `tensor ${name} holds strings, not bytes`, { tensor: t.name });
  const src = t.fields?.[info.storage] as ArrayLike<number | bigint> | undefined;
  if (!src || src.length === 0) return new Uint8Array(0);
  switch (info.storage) {
    case 'float_data':
      return src instanceof Float32Array ? new Uint8Array(src.buffer, src.byteOffset, src.byteLength) : new Uint8Array(Float32Array.from(src as ArrayLike<number>).buffer);
    case 'double_data':
      return src instanceof Float64Array ? new Uint8Array(src.buffer, src.byteOffset, src.byteLength) : new Uint8Array(Float64Array.from(src as ArrayLike<number>).buffer);
    case 'int64_data': {
      const out = new BigInt64Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = BigInt(src[i]!);
      return new Uint8Array(out.buffer);
    }
    case 'uint64_data': {
      if (info.type === DataType.UINT32) {
        const out = new Uint32Array(src.length);
        for (let i = 0; i < src.length; i++) out[i] = Number(src[i]!);
        return new Uint8Array(out.buffer);
      }
      const out = new BigUint64Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = BigInt.asUintN(64, BigInt(src[i]!));
      return new Uint8Array(out.buffer);
    }
    case 'int32_data': {
      // one element (or, for sub-byte types, one packed byte) per int32
      if (info.packed || info.bits === 8) {
        const out = new Uint8Array(src.length);
        for (let i = 0; i < src.length; i++) out[i] = Number(src[i]!) & 0xff;
        return out;
      }
      if (info.bits === 16) {
        const out = new Uint16Array(src.length);
        for (let i = 0; i < src.length; i++) out[i] = Number(src[i]!) & 0xffff;
        return new Uint8Array(out.buffer);
      }
      const out = Int32Array.from(src as ArrayLike<number>);
      return new Uint8Array(out.buffer);
    }
  }
  return new Uint8Array(0);
}
