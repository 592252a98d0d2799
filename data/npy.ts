/**
 * NumPy `.npy` reader (format versions 1.0, 2.0 and 3.0). The header is a Python dict literal
 * `{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 48, 320), }`, padded with spaces to a
 * 64-byte boundary. Supported `descr`: f2 f4 f8, i1 i2 i4 i8, u1 u2 u4 u8, b1, little- or
 * big-endian (big-endian data is byte-swapped). Fortran-ordered arrays are transposed to C order.
 * Data is viewed in place when aligned.
 */
import { inputError } from '../core/errors.js';
import { bytesPerElement, elementCount, fromBytes, HostDType, HostTensor } from '../core/host-tensor.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const DESCR: Record<string, HostDType> = {
  f2: 'float16',
  f4: 'float32',
  f8: 'float64',
  i1: 'int8',
  i2: 'int16',
  i4: 'int32',
  i8: 'int64',
  u1: 'uint8',
  u2: 'uint16',
  u4: 'uint32',
  u8: 'uint64',
  b1: 'bool',
};

export interface NpyHeader {
  descr: string;
  fortranOrder: boolean;
  shape: number[];
  dataOffset: number;
}

/** Parses the header of a .npy file; `file` names it in errors. */
export function parseNpyHeader(bytes: Uint8Array, file: string): NpyHeader {
  const fail = (msg: string, offset?: number) => inputError('NPY_MALFORMED', `${file}: ${msg}`, { file, offset });
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) throw fail('not a .npy file (bad magic)', 0);
  const major = bytes[6]!;
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = bytes[8]! | (bytes[9]! << 8);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw fail('truncated header', 8);
    headerLen = (bytes[8]! | (bytes[9]! << 8) | (bytes[10]! << 16)) + bytes[11]! * 2 ** 24;
    start = 12;
  } else throw fail(`unsupported .npy format version ${major}.${bytes[7]}`, 6);
  if (start + headerLen > bytes.length) throw fail(`header of ${headerLen} bytes runs past the end of the file (${bytes.length} bytes)`, 8);
  const text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw fail(`cannot parse the header ${JSON.stringify(text.trim())}`, start);
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      const n = Number(s.replace(/L$/, ''));
      if (!Number.isSafeInteger(n) || n < 0) throw fail(`bad dimension ${JSON.stringify(s)} in shape (${shapeText})`, start);
      return n;
    });
  return { descr, fortranOrder: fortran === 'True', shape, dataOffset: start + headerLen };
}

/** Decodes a .npy file into a host tensor. */
export function parseNpy(bytes: Uint8Array, file: string): HostTensor {
  const h = parseNpyHeader(bytes, file);
  const order = h.descr[0];
  const code = h.descr.slice(1);
  const type = DESCR[code];
  if (!type || (order !== '<' && order !== '>' && order !== '|' && order !== '=')) {
    throw inputError('NPY_UNSUPPORTED_DTYPE', `${file}: unsupported dtype '${h.descr}' (supported: f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1)`, { file });
  }
  const width = bytesPerElement(type);
  const n = elementCount(h.shape, file);
  const need = n * width;
  const available = bytes.length - h.dataOffset;
  if (available !== need) {
    throw inputError('NPY_BAD_LENGTH', `${file}: ${available} bytes of data, but shape (${h.shape.join(', ')}) x ${h.descr} needs ${need}`, { file });
  }
  let data = bytes.subarray(h.dataOffset);
  if (order === '>' && width > 1) data = byteSwap(data, width);
  let t = fromBytes(type, h.shape, data, file);
  if (h.fortranOrder && h.shape.length > 1) t = fortranToC(t);
  return t;
}

function byteSwap(src: Uint8Array, width: number): Uint8Array {
  const out = new Uint8Array(src.length);
  for (let i = 0; i < src.length; i += width) for (let j = 0; j < width; j++) out[i + j] = src[i + width - 1 - j]!;
  return out;
}

/** Reorders column-major data to row-major (same dims). */
function fortranToC(t: HostTensor): HostTensor {
  const dims = t.dims;
  const rank = dims.length;
  const src = t.data as unknown as { length: number; [i: number]: number | bigint; constructor: new (n: number) => typeof src };
  const dst = new src.constructor(src.length);
  const fStride = new Array<number>(rank);
  let s = 1;
  for (let d = 0; d < rank; d++) {
    fStride[d] = s;
    s *= dims[d]!;
  }
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < src.length; i++) {
    let f = 0;
    for (let d = 0; d < rank; d++) f += idx[d]! * fStride[d]!;
    dst[i] = src[f]!;
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d]! < dims[d]!) break;
      idx[d] = 0;
    }
  }
  return { type: t.type, dims: [...dims], data: dst as unknown as HostTensor['data'] };
}
