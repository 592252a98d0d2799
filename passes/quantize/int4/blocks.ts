/**
 * Block quantization of a weight matrix along its reduction axis K, and the byte layouts onnxruntime
 * reads it in.
 *
 * A weight is handled as rows: `rows[n * K + k]`, one row per output n (MatMul's B is [K, N], so a
 * row is a column of B; Gemm with transB, and an embedding table [V, D], are rows already). Each row
 * is cut into blocks of `blockSize` consecutive k; each block b of row n has one scale s and one
 * zero point z, and stores codes q in [0, 2^bits - 1]:
 *
 *   w ~ (q - z) * s
 *
 * Round to nearest (RTN), per block:
 * - symmetric: z = 2^(bits-1); v = the block's value of largest magnitude, s = v / -2^(bits-1) (v maps
 *   to code 0 exactly, the opposite side reaches 2^(bits-1) - 1 steps), q = clamp(round(w / s) + z);
 * - asymmetric: lo = min(0, min w), hi = max(0, max w), s = (hi - lo) / (2^bits - 1),
 *   z = clamp(round(-lo / s)), q = clamp(round(w / s) + z).
 * A block of zeros gets s = 0 and q = z (dequantizes to 0).
 *
 * Layouts (com.microsoft MatMulNBits and GatherBlockQuantized with uint8 data share the row layout):
 * - codes: [N, kBlocks, blockSize * bits / 8] uint8, k ascending, two 4-bit codes per byte, the even
 *   k in the low nibble; a last partial block is padded with the zero point;
 * - scales: [N, kBlocks] float;
 * - zero points: 4 bits: [N, ceil(kBlocks / 2)] uint8, block 2j low nibble, 2j+1 high; 8 bits:
 *   [N, kBlocks] uint8. Omitted when every zero point is 2^(bits-1) (the operators' default).
 * - ONNX DequantizeLinear (opset 21) with `block_size` on axis 0 of B [K, N]: int4 (symmetric,
 *   q - 8) or uint4 with uint4 zero points, scales [kBlocks, N] ({@link qdqLayout}).
 */
import { DataType, packSubByte } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';

export type Bits = 4 | 8;

export interface BlockQuantized {
  /** Outputs (rows) and the reduction length of each row. */
  N: number;
  K: number;
  bits: Bits;
  blockSize: number;
  kBlocks: number;
  symmetric: boolean;
  /** [N, K] codes in [0, 2^bits - 1]. */
  codes: Uint8Array;
  /** [N, kBlocks]. */
  scales: Float32Array;
  /** [N, kBlocks] in [0, 2^bits - 1]. */
  zeroPoints: Uint8Array;
}

/** Rows of MatMul's B [K, N]: the transpose, [N, K]. */
export function rowsOfKN(w: Float32Array, K: number, N: number): Float32Array {
  const out = new Float32Array(K * N);
  for (let k = 0; k < K; k++) {
    const src = k * N;
    for (let n = 0; n < N; n++) out[n * K + k] = w[src + n]!;
  }
  return out;
}

/** Scale and zero point of one block of values by RTN (see the file header). */
export function blockParams(values: ArrayLike<number>, from: number, to: number, bits: Bits, symmetric: boolean): { scale: number; zeroPoint: number } {
  if (symmetric) {
    let v = 0;
    for (let i = from; i < to; i++) if (Math.abs(values[i]!) > Math.abs(v)) v = values[i]!;
    return symmetricParams(v, bits);
  }
  let lo = 0;
  let hi = 0;
  for (let i = from; i < to; i++) {
    const x = values[i]!;
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  return asymmetricParams(lo, hi, bits);
}

/** Symmetric RTN parameters of a block whose value of largest magnitude (the first such) is `v`. */
export function symmetricParams(v: number, bits: Bits): { scale: number; zeroPoint: number } {
  const mid = 1 << (bits - 1);
  return { scale: Math.fround(v / -mid), zeroPoint: mid };
}

/** Asymmetric RTN parameters of a block with lo = min(0, min w), hi = max(0, max w). */
export function asymmetricParams(lo: number, hi: number, bits: Bits): { scale: number; zeroPoint: number } {
  const levels = (1 << bits) - 1;
  const scale = Math.fround((hi - lo) / levels);
  if (scale === 0) return { scale: 0, zeroPoint: 1 << (bits - 1) };
  return { scale, zeroPoint: Math.min(levels, Math.max(0, roundHalfUp(-lo / scale))) };
}

/**
 * Math.round(x) (the nearest integer, halves up) for |x| < 2^52, ~4x faster in V8's loops: floor(x +
 * 0.5), less one where x + 0.5 rounded up to the next integer (x just below a half: 0.5 - 2^-54 + 0.5
 * is 1 in float64), which the exact comparison x < q - 0.5 finds.
 */
export function roundHalfUp(x: number): number {
  const q = Math.floor(x + 0.5);
  return x < q - 0.5 ? q - 1 : q;
}

/** The code of `w` in a block with `scale` and `zeroPoint`. */
export function codeOf(w: number, scale: number, zeroPoint: number, bits: Bits): number {
  if (scale === 0) return zeroPoint;
  const q = roundHalfUp(w / scale) + zeroPoint;
  return q < 0 ? 0 : q > (1 << bits) - 1 ? (1 << bits) - 1 : q;
}

/** An empty result to fill block by block. */
export function emptyBlocks(N: number, K: number, bits: Bits, blockSize: number, symmetric: boolean): BlockQuantized {
  const kBlocks = Math.ceil(K / blockSize);
  return { N, K, bits, blockSize, kBlocks, symmetric, codes: new Uint8Array(N * K), scales: new Float32Array(N * kBlocks), zeroPoints: new Uint8Array(N * kBlocks) };
}

/** Round-to-nearest block quantization of `rows` ([N, K]). */
export function quantizeRtn(rows: Float32Array, N: number, K: number, bits: Bits, blockSize: number, symmetric: boolean): BlockQuantized {
  const r = emptyBlocks(N, K, bits, blockSize, symmetric);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < r.kBlocks; b++) {
      const from = n * K + b * blockSize;
      const to = n * K + Math.min(K, (b + 1) * blockSize);
      const { scale, zeroPoint } = blockParams(rows, from, to, bits, symmetric);
      r.scales[n * r.kBlocks + b] = scale;
      r.zeroPoints[n * r.kBlocks + b] = zeroPoint;
      for (let i = from; i < to; i++) r.codes[i] = codeOf(rows[i]!, scale, zeroPoint, bits);
    }
  }
  return r;
}

/** The float rows ([N, K]) the codes stand for: (q - z) * s, in float32 as onnxruntime computes it. */
export function dequantizeRows(q: BlockQuantized): Float32Array {
  const { N, K, blockSize, kBlocks, codes, scales, zeroPoints } = q;
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < kBlocks; b++) {
      const s = scales[n * kBlocks + b]!;
      const z = zeroPoints[n * kBlocks + b]!;
      const to = n * K + Math.min(K, (b + 1) * blockSize);
      for (let i = n * K + b * blockSize; i < to; i++) out[i] = Math.fround((codes[i]! - z) * s);
    }
  }
  return out;
}

/** Whether every zero point is the operators' default 2^(bits-1) (then the input is omitted). */
export function defaultZeroPoints(q: BlockQuantized): boolean {
  const mid = 1 << (q.bits - 1);
  return q.zeroPoints.every((z) => z === mid);
}

/** The packed code bytes, [N, kBlocks, blockSize * bits / 8] (MatMulNBits B; GatherBlockQuantized data as [N, kBlocks * blob]). */
export function packCodes(q: BlockQuantized): Uint8Array {
  const { N, K, kBlocks, blockSize, bits, codes, zeroPoints } = q;
  const blob = (blockSize * bits) / 8;
  const out = new Uint8Array(N * kBlocks * blob);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < kBlocks; b++) {
      // a last partial block is padded with its zero point
      const full = Math.min(blockSize, K - b * blockSize);
      packBlock(codes, n * K + b * blockSize, full, blockSize, zeroPoints[n * kBlocks + b]!, bits, out, (n * kBlocks + b) * blob);
    }
  }
  return out;
}

/** One block's codes (codes[from..from + full], then the zero point up to `size`) into out[at..]: two 4-bit codes a byte (the even one low), or one byte each. */
function packBlock(codes: Uint8Array, from: number, full: number, size: number, zp: number, bits: Bits, out: Uint8Array, at: number): void {
  if (bits === 8) {
    for (let j = 0; j < size; j++) out[at + j] = j < full ? codes[from + j]! : zp;
  } else if (full === size) {
    for (let j = 0, o = at; j < size; j += 2, o++) out[o] = (codes[from + j]! & 15) | ((codes[from + j + 1]! & 15) << 4);
  } else {
    for (let j = 0; j < size; j += 2) out[at + (j >> 1)] = ((j < full ? codes[from + j]! : zp) & 15) | (((j + 1 < full ? codes[from + j + 1]! : zp) & 15) << 4);
  }
}

/** The packed zero points: 4 bits [N, ceil(kBlocks / 2)], 8 bits [N, kBlocks]. */
export function packZeroPoints(q: BlockQuantized): { bytes: Uint8Array; dims: number[] } {
  if (q.bits === 8) return { bytes: q.zeroPoints.slice(), dims: [q.N, q.kBlocks] };
  const per = Math.ceil(q.kBlocks / 2);
  const out = new Uint8Array(q.N * per);
  for (let n = 0; n < q.N; n++) {
    for (let b = 0; b < q.kBlocks; b++) out[n * per + (b >> 1)]! |= (q.zeroPoints[n * q.kBlocks + b]! & 15) << ((b & 1) * 4);
  }
  return { bytes: out, dims: [q.N, per] };
}

/**
 * ONNX blocked DequantizeLinear (opset 21) form of MatMul's B [K, N]: data [K, N] int4 (symmetric:
 * q - 8) or uint4 (asymmetric, with uint4 zero points), scales [kBlocks, N], axis 0, block_size.
 * `K` must be a multiple of the block size (checked by the caller).
 */
export function qdqLayout(q: BlockQuantized): { data: Tensor; scale: Tensor; zeroPoint?: Tensor } {
  const { N, K, kBlocks } = q;
  const values = new Int8Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const code = q.codes[n * K + k]!;
      values[k * N + n] = q.symmetric ? code - 8 : code;
    }
  }
  const scales = new Float32Array(kBlocks * N);
  const zps = new Uint8Array(kBlocks * N);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < kBlocks; b++) {
      scales[b * N + n] = q.scales[n * kBlocks + b]!;
      zps[b * N + n] = q.zeroPoints[n * kBlocks + b]!;
    }
  }
  const type = q.symmetric ? DataType.INT4 : DataType.UINT4;
  const out: { data: Tensor; scale: Tensor; zeroPoint?: Tensor } = {
    data: Tensor.fromBytes(type, [K, N], packSubByte(type, values)),
    scale: Tensor.from(DataType.FLOAT, [kBlocks, N], scales),
  };
  if (!q.symmetric) out.zeroPoint = Tensor.fromBytes(DataType.UINT4, [kBlocks, N], packSubByte(DataType.UINT4, zps));
  return out;
}

/** Sum of squared differences and of squares, rows vs their dequantized codes (for error reports). */
export function weightError(rows: Float32Array, q: BlockQuantized): { sse: number; energy: number } {
  const dq = dequantizeRows(q);
  let sse = 0;
  let energy = 0;
  for (let i = 0; i < rows.length; i++) {
    const d = rows[i]! - dq[i]!;
    sse += d * d;
    energy += rows[i]! * rows[i]!;
  }
  return { sse, energy };
}

/** Bytes of the packed zero points (MatMulNBits form; 0 when every one is the default). */
export function zeroPointBytes(q: BlockQuantized): number {
  return defaultZeroPoints(q) ? 0 : q.bits === 8 ? q.N * q.kBlocks : q.N * Math.ceil(q.kBlocks / 2);
}

/** Stored bytes of a quantized weight in MatMulNBits form (codes, float32 scales, zero points if any). */
export function storedBytes(q: BlockQuantized): number {
  return (q.N * q.kBlocks * q.blockSize * q.bits) / 8 + 4 * q.N * q.kBlocks + zeroPointBytes(q);
}
