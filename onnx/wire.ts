/**
 * A schema-driven protobuf wire codec for ONNX, written for untrusted input and large weights.
 *
 * Decoding turns bytes into plain objects keyed by the .proto field names (see `proto-types.ts`):
 * - `bytes` fields are zero-copy `subarray` views of the input buffer (raw_data is never copied);
 * - packed numeric fields become typed arrays (never per-element JS objects);
 * - int64 values are `number` when they fit in 53 bits and `bigint` otherwise (lossless);
 * - fields missing from the schema are kept byte for byte in `$unknown` and written back last;
 * - every length is checked against the bytes that remain before anything is allocated, nesting is
 *   bounded by `maxDepth` (no stack overflow), and every error carries the byte offset.
 *
 * Encoding writes fields in field-number order (what the reference C++/Python serializers do), so an
 * unchanged model re-encodes to the same bytes. It produces a list of chunks so that large `bytes`
 * fields are written to disk straight from their original buffers without being copied.
 */
import { inputError, InputErrorCode, OnnxForgeError } from '../core/errors.js';
import { FieldSpec, MessageSpec, SCHEMA } from './schema.js';

export type Int64 = number | bigint;
export type ProtoObject = Record<string, unknown> & { $unknown?: Uint8Array[]; $alt?: string[] };

export interface DecodeOptions {
  /** Maximum nesting of messages (each subgraph costs 3: Node -> Attribute -> Graph). */
  maxDepth?: number;
}

/** Default message nesting limit. A subgraph costs three levels, so this allows 40 nested subgraphs. */
export const DEFAULT_MAX_DEPTH = 128;

const WT_VARINT = 0;
const WT_I64 = 1;
const WT_LEN = 2;
const WT_SGROUP = 3;
const WT_EGROUP = 4;
const WT_I32 = 5;

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const utf8Decoder = new TextDecoder('utf-8');
const utf8Encoder = new TextEncoder();

function wireTypeFor(f: FieldSpec): number {
  switch (f.kind) {
    case 'float':
      return WT_I32;
    case 'double':
      return WT_I64;
    case 'string':
    case 'bytes':
    case 'message':
      return WT_LEN;
    default:
      return WT_VARINT;
  }
}

class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array, readonly maxDepth: number) {}

  fail(code: InputErrorCode, what: string, at = this.pos): never {
    throw inputError(code, `${what} at byte offset ${at}`, { offset: at });
  }

  /** Reads a varint as [low 32 bits, high 32 bits] without precision loss. */
  varint64(): [number, number] {
    const buf = this.buf;
    let lo = 0;
    let hi = 0;
    let shift = 0;
    const start = this.pos;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= buf.length) this.fail('ONNX_TRUNCATED', 'truncated varint', start);
      const b = buf[this.pos++]!;
      if (i < 4) lo |= (b & 0x7f) << shift;
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x70) >> 4;
      } else hi |= (b & 0x7f) << (shift - 32);
      shift += 7;
      if ((b & 0x80) === 0) return [lo >>> 0, hi >>> 0];
    }
    this.fail('ONNX_BAD_VARINT', 'varint longer than 10 bytes', start);
  }

  uint32(): number {
    const buf = this.buf;
    // Fast path: one-byte varints are by far the most common (tags, small lengths).
    if (this.pos < buf.length && buf[this.pos]! < 0x80) return buf[this.pos++]!;
    const [lo, hi] = this.varint64();
    if (hi !== 0) return lo + hi * 4294967296; // caller validates ranges (lengths, tags)
    return lo;
  }

  int32(): number {
    return this.varint64()[0] | 0;
  }

  int64(): Int64 {
    const [lo, hi] = this.varint64();
    if (hi < 0x200000) return hi * 4294967296 + lo; // < 2^53
    if (hi & 0x80000000) {
      // negative: magnitude = 2^64 - value
      const nlo = (~lo + 1) >>> 0;
      const nhi = (~hi + (nlo === 0 ? 1 : 0)) >>> 0;
      if (nhi < 0x200000) return -(nhi * 4294967296 + nlo);
    }
    return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
  }

  uint64(): Int64 {
    const [lo, hi] = this.varint64();
    if (hi < 0x200000) return hi * 4294967296 + lo;
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  length(): number {
    const at = this.pos;
    const n = this.uint32();
    if (n > this.buf.length - this.pos) {
      this.fail('ONNX_TRUNCATED', `length prefix ${n} exceeds the ${this.buf.length - this.pos} bytes that remain`, at);
    }
    return n;
  }

  skip(wireType: number, depth: number, fieldNo: number): void {
    const at = this.pos;
    switch (wireType) {
      case WT_VARINT:
        this.varint64();
        return;
      case WT_I64:
        if (this.pos + 8 > this.buf.length) this.fail('ONNX_TRUNCATED', 'truncated fixed64', at);
        this.pos += 8;
        return;
      case WT_I32:
        if (this.pos + 4 > this.buf.length) this.fail('ONNX_TRUNCATED', 'truncated fixed32', at);
        this.pos += 4;
        return;
      case WT_LEN: {
        // read the length first: `this.pos += this.length()` would add it to the position before the prefix
        const n = this.length();
        this.pos += n;
        return;
      }
      case WT_SGROUP: {
        if (depth >= this.maxDepth) this.fail('ONNX_TOO_DEEP', `groups nested deeper than ${this.maxDepth}`, at);
        for (;;) {
          if (this.pos >= this.buf.length) this.fail('ONNX_TRUNCATED', 'unterminated group', at);
          const tag = this.uint32();
          const wt = tag & 7;
          if (wt === WT_EGROUP) {
            if (tag >>> 3 !== fieldNo) this.fail('ONNX_BAD_WIRE', 'mismatched end-group tag', at);
            return;
          }
          this.skip(wt, depth + 1, tag >>> 3);
        }
      }
      default:
        this.fail('ONNX_BAD_WIRE', `invalid wire type ${wireType}`, at);
    }
  }
}

/** Collects the values of one repeated numeric field while a message is decoded. */
type Parts = Array<ArrayLike<number | bigint> | number | bigint>;

function typedFor(kind: string, n: number): Float32Array | Float64Array | Int32Array | BigInt64Array | BigUint64Array {
  switch (kind) {
    case 'float':
      return new Float32Array(n);
    case 'double':
      return new Float64Array(n);
    case 'int32':
    case 'enum':
      return new Int32Array(n);
    case 'int64':
      return new BigInt64Array(n);
    case 'uint64':
      return new BigUint64Array(n);
  }
  throw new Error(`no typed array for ${kind}`);
}

function readPacked(r: Reader, f: FieldSpec, len: number): ArrayLike<number | bigint> {
  const end = r.pos + len;
  const buf = r.buf;
  if (f.kind === 'float' || f.kind === 'double') {
    const width = f.kind === 'float' ? 4 : 8;
    if (len % width !== 0) r.fail('ONNX_BAD_PACKED', `packed ${f.name} length ${len} is not a multiple of ${width}`);
    const n = len / width;
    const abs = buf.byteOffset + r.pos;
    let out: Float32Array | Float64Array;
    if (LITTLE_ENDIAN && abs % width === 0) {
      out = f.kind === 'float' ? new Float32Array(buf.buffer, abs, n) : new Float64Array(buf.buffer, abs, n);
    } else {
      const copy = new Uint8Array(buf.subarray(r.pos, end)); // a real copy (Buffer.slice would share memory)
      out = f.kind === 'float' ? new Float32Array(copy.buffer, 0, n) : new Float64Array(copy.buffer, 0, n);
    }
    r.pos = end;
    return out;
  }
  // varints: count them first so the typed array is allocated once
  let count = 0;
  for (let i = r.pos; i < end; i++) if (buf[i]! < 0x80) count++;
  if (len > 0 && buf[end - 1]! >= 0x80) r.fail('ONNX_TRUNCATED', `packed ${f.name} ends inside a varint`, end - 1);
  if (f.kind === 'int64' || f.kind === 'uint64') {
    // Small int64 arrays stay plain numbers where exact; big ones become BigInt64Array.
    const out = typedFor(f.kind, count) as BigInt64Array | BigUint64Array;
    for (let i = 0; i < count; i++) {
      const [lo, hi] = r.varint64();
      const v = (BigInt(hi) << 32n) | BigInt(lo);
      (out as BigInt64Array)[i] = f.kind === 'int64' ? BigInt.asIntN(64, v) : (v as never);
    }
    return out;
  }
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) out[i] = r.int32();
  return out;
}

function readScalar(r: Reader, f: FieldSpec): unknown {
  switch (f.kind) {
    case 'int32':
    case 'enum':
      return r.int32();
    case 'int64':
      return r.int64();
    case 'uint64':
      return r.uint64();
    case 'float': {
      if (r.pos + 4 > r.buf.length) r.fail('ONNX_TRUNCATED', `truncated float ${f.name}`);
      const dv = new DataView(r.buf.buffer, r.buf.byteOffset + r.pos, 4);
      r.pos += 4;
      return dv.getFloat32(0, true);
    }
    case 'double': {
      if (r.pos + 8 > r.buf.length) r.fail('ONNX_TRUNCATED', `truncated double ${f.name}`);
      const dv = new DataView(r.buf.buffer, r.buf.byteOffset + r.pos, 8);
      r.pos += 8;
      return dv.getFloat64(0, true);
    }
    case 'string': {
      const n = r.length();
      const v = n === 0 ? '' : utf8Decoder.decode(r.buf.subarray(r.pos, r.pos + n));
      r.pos += n;
      return v;
    }
    case 'bytes': {
      const n = r.length();
      const v = r.buf.subarray(r.pos, r.pos + n);
      r.pos += n;
      return v;
    }
  }
  throw new Error(`readScalar: ${f.kind}`);
}

function isPackable(f: FieldSpec): boolean {
  return f.kind !== 'string' && f.kind !== 'bytes' && f.kind !== 'message';
}

function decodeMessage(r: Reader, spec: MessageSpec, end: number, depth: number): ProtoObject {
  if (depth > r.maxDepth) r.fail('ONNX_TOO_DEEP', `messages nested deeper than ${r.maxDepth} (${spec.name})`);
  const obj: ProtoObject = {};
  let parts: Map<FieldSpec, { parts: Parts; packedSeen: boolean; unpackedSeen: boolean }> | undefined;
  const byNo = spec.byNo!;
  while (r.pos < end) {
    const tagAt = r.pos;
    const tag = r.uint32();
    const no = tag >>> 3;
    const wt = tag & 7;
    if (no === 0 || tag > 0xffffffff) r.fail('ONNX_BAD_WIRE', `invalid field tag ${tag} in ${spec.name}`, tagAt);
    const f = byNo.get(no);
    if (!f) {
      r.skip(wt, depth, no);
      if (r.pos > end) r.fail('ONNX_TRUNCATED', `unknown field ${no} of ${spec.name} runs past its message`, tagAt);
      (obj.$unknown ??= []).push(r.buf.subarray(tagAt, r.pos));
      continue;
    }
    const expected = wireTypeFor(f);
    if (f.repeated && isPackable(f)) {
      parts ??= new Map();
      let p = parts.get(f);
      if (!p) parts.set(f, (p = { parts: [], packedSeen: false, unpackedSeen: false }));
      if (wt === WT_LEN) {
        const n = r.length();
        if (r.pos + n > end) r.fail('ONNX_TRUNCATED', `${spec.name}.${f.name} runs past its message`, tagAt);
        p.parts.push(readPacked(r, f, n));
        p.packedSeen = true;
      } else if (wt === expected) {
        p.parts.push(readScalar(r, f) as number | bigint);
        p.unpackedSeen = true;
      } else r.fail('ONNX_BAD_WIRE', `${spec.name}.${f.name} has wire type ${wt}, expected ${expected}`, tagAt);
      continue;
    }
    if (wt !== expected) r.fail('ONNX_BAD_WIRE', `${spec.name}.${f.name} has wire type ${wt}, expected ${expected}`, tagAt);
    let v: unknown;
    if (f.kind === 'message') {
      const n = r.length();
      const subEnd = r.pos + n;
      if (subEnd > end) r.fail('ONNX_TRUNCATED', `${spec.name}.${f.name} runs past its message`, tagAt);
      v = decodeMessage(r, SCHEMA[f.msg!]!, subEnd, depth + 1);
    } else {
      v = readScalar(r, f);
      if (r.pos > end) r.fail('ONNX_TRUNCATED', `${spec.name}.${f.name} runs past its message`, tagAt);
    }
    if (f.repeated) {
      const arr = obj[f.name] as unknown[] | undefined;
      if (arr) arr.push(v);
      else obj[f.name] = [v];
    } else if (f.kind === 'message' && obj[f.name] !== undefined) {
      // protobuf merges repeated occurrences of a singular message; we keep the last one, flagged
      obj[f.name] = v;
    } else obj[f.name] = v;
  }
  if (r.pos !== end) r.fail('ONNX_TRUNCATED', `${spec.name} ends inside a field`, end);
  if (parts) {
    for (const [f, p] of parts) {
      obj[f.name] = finishRepeated(f, p.parts);
      if (f.packed ? p.unpackedSeen : p.packedSeen) (obj.$alt ??= []).push(f.name);
    }
  }
  return obj;
}

function finishRepeated(f: FieldSpec, parts: Parts): unknown {
  if (f.packed) {
    // declared packed -> typed array
    if (parts.length === 1 && typeof parts[0] === 'object') return parts[0];
    let n = 0;
    for (const p of parts) n += typeof p === 'object' ? p.length : 1;
    const out = typedFor(f.kind, n) as unknown as { [i: number]: number | bigint };
    let i = 0;
    const big = f.kind === 'int64' || f.kind === 'uint64';
    for (const p of parts) {
      if (typeof p === 'object') for (let j = 0; j < p.length; j++) out[i++] = big ? BigInt(p[j]!) : (p[j] as number);
      else out[i++] = big ? BigInt(p) : (p as number);
    }
    return out;
  }
  // declared unpacked (dims, ints, floats): a plain array of numbers (int64 beyond 2^53 as bigint)
  const out: Array<number | bigint> = [];
  for (const p of parts) {
    if (typeof p === 'object') {
      for (let j = 0; j < p.length; j++) {
        const v = p[j]!;
        out.push(typeof v === 'bigint' && v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v);
      }
    } else out.push(p);
  }
  return out;
}

/** Decodes `bytes` as the message `type` of the ONNX schema. Throws OnnxForgeError on malformed input. */
export function decode(bytes: Uint8Array, type: string, options: DecodeOptions = {}): ProtoObject {
  const spec = SCHEMA[type];
  if (!spec) throw new Error(`unknown message type ${type}`);
  const r = new Reader(bytes, options.maxDepth ?? DEFAULT_MAX_DEPTH);
  try {
    return decodeMessage(r, spec, bytes.length, 0);
  } catch (e) {
    if (e instanceof OnnxForgeError) throw e;
    if (e instanceof RangeError) {
      // typed-array allocation failures or a stack overflow from a hostile file
      throw inputError('ONNX_MALFORMED', `malformed protobuf near byte offset ${r.pos}: ${e.message}`, { offset: r.pos });
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

function varintSize(n: number): number {
  if (n < 0) return 10;
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  let size = 4;
  let v = Math.floor(n / 0x10000000);
  while (v > 0) {
    size++;
    v = Math.floor(v / 128);
  }
  return size;
}

function bigVarintSize(v: bigint): number {
  let u = BigInt.asUintN(64, v);
  let size = 1;
  while (u >= 0x80n) {
    u >>= 7n;
    size++;
  }
  return size;
}

function int64Size(v: Int64): number {
  return typeof v === 'bigint' ? bigVarintSize(v) : varintSize(v);
}

function scalarSize(f: FieldSpec, v: unknown): number {
  switch (f.kind) {
    case 'int32':
    case 'enum':
      return varintSize(v as number);
    case 'int64':
    case 'uint64':
      return int64Size(v as Int64);
    case 'float':
      return 4;
    case 'double':
      return 8;
    case 'string': {
      const n = utf8Length(v as string);
      return varintSize(n) + n;
    }
    case 'bytes': {
      const n = (v as Uint8Array).length;
      return varintSize(n) + n;
    }
  }
  throw new Error(`scalarSize ${f.kind}`);
}

function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

interface SizeCache {
  sizes: WeakMap<object, number>;
  packed: WeakMap<object, number>;
}

function packedBodySize(f: FieldSpec, arr: ArrayLike<number | bigint>): number {
  if (f.kind === 'float') return arr.length * 4;
  if (f.kind === 'double') return arr.length * 8;
  let n = 0;
  if (f.kind === 'int64' || f.kind === 'uint64') for (let i = 0; i < arr.length; i++) n += int64Size(arr[i]!);
  else for (let i = 0; i < arr.length; i++) n += varintSize(arr[i] as number);
  return n;
}

function usesPacked(f: FieldSpec, obj: ProtoObject): boolean {
  const alt = obj.$alt?.includes(f.name) ?? false;
  return f.packed ? !alt : alt;
}

function messageSize(obj: ProtoObject, spec: MessageSpec, cache: SizeCache): number {
  let size = 0;
  for (const f of spec.ordered!) {
    const v = obj[f.name];
    if (v === undefined || v === null) continue;
    const tagSize = varintSize(f.no << 3);
    if (f.repeated) {
      const arr = v as ArrayLike<unknown>;
      if (arr.length === 0) continue;
      if (isPackable(f) && usesPacked(f, obj)) {
        const body = packedBodySize(f, arr as ArrayLike<number | bigint>);
        cache.packed.set(arr as object, body);
        size += tagSize + varintSize(body) + body;
      } else if (f.kind === 'message') {
        for (let i = 0; i < arr.length; i++) {
          const sub = messageSize(arr[i] as ProtoObject, SCHEMA[f.msg!]!, cache);
          size += tagSize + varintSize(sub) + sub;
        }
      } else {
        for (let i = 0; i < arr.length; i++) size += tagSize + scalarSize(f, arr[i]);
      }
    } else if (f.kind === 'message') {
      const sub = messageSize(v as ProtoObject, SCHEMA[f.msg!]!, cache);
      size += tagSize + varintSize(sub) + sub;
    } else size += tagSize + scalarSize(f, v);
  }
  if (obj.$unknown) for (const u of obj.$unknown) size += u.length;
  cache.sizes.set(obj, size);
  return size;
}

/** Bytes fields at least this large are emitted as their own chunk instead of being copied. */
const BIG_CHUNK = 1 << 16;

class Writer {
  readonly chunks: Uint8Array[] = [];
  private buf: Uint8Array;
  private view: DataView;
  private pos = 0;
  private start = 0;

  constructor(smallBytes: number) {
    this.buf = new Uint8Array(smallBytes);
    this.view = new DataView(this.buf.buffer);
  }

  private flush(): void {
    if (this.pos > this.start) this.chunks.push(this.buf.subarray(this.start, this.pos));
    this.start = this.pos;
  }

  finish(): Uint8Array[] {
    this.flush();
    return this.chunks;
  }

  big(bytes: Uint8Array): void {
    this.flush();
    this.chunks.push(bytes);
  }

  byte(b: number): void {
    this.buf[this.pos++] = b;
  }

  varint(n: number): void {
    if (n >= 0 && n < 0x80) {
      this.buf[this.pos++] = n;
      return;
    }
    if (n < 0 || n > 0xffffffff) {
      this.bigVarint(BigInt(n));
      return;
    }
    while (n > 0x7f) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n = n >>> 7;
    }
    this.buf[this.pos++] = n;
  }

  bigVarint(v: bigint): void {
    let u = BigInt.asUintN(64, v);
    while (u >= 0x80n) {
      this.buf[this.pos++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
  }

  int64(v: Int64): void {
    if (typeof v === 'bigint') this.bigVarint(v);
    else this.varint(v);
  }

  float(v: number): void {
    this.view.setFloat32(this.pos, v, true);
    this.pos += 4;
  }

  double(v: number): void {
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
  }

  raw(bytes: Uint8Array): void {
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  string(s: string): void {
    const { written } = utf8Encoder.encodeInto(s, this.buf.subarray(this.pos));
    this.pos += written!;
  }
}

function smallBytes(obj: ProtoObject, spec: MessageSpec, total: number): number {
  // total minus the bytes of big `bytes` fields that become chunks of their own
  let big = 0;
  const walk = (o: ProtoObject, sp: MessageSpec): void => {
    for (const f of sp.fields) {
      const v = o[f.name];
      if (v === undefined || v === null) continue;
      if (f.kind === 'bytes') {
        if (f.repeated) {
          for (const b of v as Uint8Array[]) if (b.length >= BIG_CHUNK) big += b.length;
        } else if ((v as Uint8Array).length >= BIG_CHUNK) big += (v as Uint8Array).length;
      } else if (f.kind === 'message') {
        if (f.repeated) for (const sub of v as ProtoObject[]) walk(sub, SCHEMA[f.msg!]!);
        else walk(v as ProtoObject, SCHEMA[f.msg!]!);
      }
    }
  };
  walk(obj, spec);
  return total - big;
}

function writeScalar(w: Writer, f: FieldSpec, v: unknown): void {
  switch (f.kind) {
    case 'int32':
    case 'enum':
      w.varint(v as number);
      return;
    case 'int64':
    case 'uint64':
      w.int64(v as Int64);
      return;
    case 'float':
      w.float(v as number);
      return;
    case 'double':
      w.double(v as number);
      return;
    case 'string': {
      const s = v as string;
      w.varint(utf8Length(s));
      w.string(s);
      return;
    }
    case 'bytes': {
      const b = v as Uint8Array;
      w.varint(b.length);
      if (b.length >= BIG_CHUNK) w.big(b);
      else w.raw(b);
      return;
    }
  }
}

function writeMessage(w: Writer, obj: ProtoObject, spec: MessageSpec, cache: SizeCache): void {
  for (const f of spec.ordered!) {
    const v = obj[f.name];
    if (v === undefined || v === null) continue;
    const tag = (f.no << 3) | wireTypeFor(f);
    if (f.repeated) {
      const arr = v as ArrayLike<unknown>;
      if (arr.length === 0) continue;
      if (isPackable(f) && usesPacked(f, obj)) {
        w.varint((f.no << 3) | WT_LEN);
        w.varint(cache.packed.get(arr as object)!);
        if (f.kind === 'float' || f.kind === 'double') {
          const typed = f.kind === 'float' ? arr instanceof Float32Array : arr instanceof Float64Array;
          if (typed) {
            const ta = arr as Float32Array | Float64Array;
            const bytes = new Uint8Array(ta.buffer, ta.byteOffset, ta.byteLength);
            if (bytes.length >= BIG_CHUNK) w.big(bytes);
            else w.raw(bytes);
          } else if (f.kind === 'float') for (let i = 0; i < arr.length; i++) w.float(arr[i] as number);
          else for (let i = 0; i < arr.length; i++) w.double(arr[i] as number);
        } else if (f.kind === 'int64' || f.kind === 'uint64') {
          for (let i = 0; i < arr.length; i++) w.int64(arr[i] as Int64);
        } else for (let i = 0; i < arr.length; i++) w.varint(arr[i] as number);
      } else if (f.kind === 'message') {
        for (let i = 0; i < arr.length; i++) {
          const sub = arr[i] as ProtoObject;
          w.varint(tag);
          w.varint(cache.sizes.get(sub)!);
          writeMessage(w, sub, SCHEMA[f.msg!]!, cache);
        }
      } else {
        for (let i = 0; i < arr.length; i++) {
          w.varint(tag);
          writeScalar(w, f, arr[i]);
        }
      }
    } else if (f.kind === 'message') {
      w.varint(tag);
      w.varint(cache.sizes.get(v as object)!);
      writeMessage(w, v as ProtoObject, SCHEMA[f.msg!]!, cache);
    } else {
      w.varint(tag);
      writeScalar(w, f, v);
    }
  }
  if (obj.$unknown) for (const u of obj.$unknown) w.raw(u);
}

/**
 * Encodes a message into chunks whose concatenation is the serialized message. Large `bytes` and
 * packed float fields are returned as views of their own buffers (no copy).
 */
export function encodeChunks(obj: ProtoObject, type: string): { chunks: Uint8Array[]; size: number } {
  const spec = SCHEMA[type]!;
  const cache: SizeCache = { sizes: new WeakMap(), packed: new WeakMap() };
  const size = messageSize(obj, spec, cache);
  // packed float arrays >= BIG_CHUNK bytes also become their own chunks
  let big = smallBytes(obj, spec, size);
  big -= bigPackedBytes(obj, spec);
  const w = new Writer(big);
  writeMessage(w, obj, spec, cache);
  return { chunks: w.finish(), size };
}

function bigPackedBytes(obj: ProtoObject, spec: MessageSpec): number {
  let n = 0;
  for (const f of spec.fields) {
    const v = obj[f.name];
    if (v === undefined || v === null) continue;
    if ((f.kind === 'float' || f.kind === 'double') && f.repeated && usesPacked(f, obj)) {
      const arr = v as ArrayLike<number>;
      const ok = f.kind === 'float' ? arr instanceof Float32Array : arr instanceof Float64Array;
      const bytes = arr.length * (f.kind === 'float' ? 4 : 8);
      if (ok && bytes >= BIG_CHUNK) n += bytes;
    } else if (f.kind === 'message') {
      if (f.repeated) for (const sub of v as ProtoObject[]) n += bigPackedBytes(sub, SCHEMA[f.msg!]!);
      else n += bigPackedBytes(v as ProtoObject, SCHEMA[f.msg!]!);
    }
  }
  return n;
}

/** Encodes a message to one contiguous buffer. */
export function encode(obj: ProtoObject, type: string): Uint8Array {
  const { chunks, size } = encodeChunks(obj, type);
  if (chunks.length === 1 && chunks[0]!.length === size) return chunks[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
