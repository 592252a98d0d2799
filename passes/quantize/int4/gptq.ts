/**
 * GPTQ (Frantar et al., 2022) for block quantization: quantize the inputs k of a weight one at a time
 * and spread each one's rounding error over the inputs not yet quantized, weighted by the inverse
 * Hessian of the layer's squared output error on calibration activations X (rows x K):
 *
 *   H = X^T X + lambda I,  lambda = damp * mean(diag H)
 *   U = upper Cholesky factor of H^-1 (H^-1 = U^T U)
 *   for k = 0 .. K-1 (a block's scale and zero point are set from the current weights when k starts it):
 *     q_k = quant(w_k),  e = (w_k - dequant(q_k)) / U[k][k],  w_j -= e * U[k][j]  for j > k
 *
 * which minimises ||X W^T - X Wq^T||^2 greedily, one input at a time. Inputs that are always zero in
 * the calibration data (H[k][k] = 0) get H[k][k] = 1 and weight 0.
 */
import { DataType } from '../../../core/dtype.js';
import { internalError } from '../../../core/errors.js';
import { Tensor } from '../../../core/tensor.js';
import { GraphBuilder } from '../../../ir/builder.js';
import type { Model } from '../../../ir/ir.js';
import { BlockQuantized, Bits, blockParams, codeOf, emptyBlocks } from './blocks.js';
import { block, cholesky, LazySession, Linalg, lowerInverse } from './linalg.js';

/**
 * The upper factor U (row-major, n x n) with H^-1 = U^T U, damping H until it factors. With J the
 * order reversal, J H J = L L^T (lower Cholesky) gives H = R R^T with R = J L J upper triangular, so
 * H^-1 = (R^-1)^T R^-1 and U = R^-1 = J L^-1 J: one Cholesky and one triangular inverse.
 */
export function inverseHessianFactor(hessian: Float64Array, n: number, damp: number): Float64Array {
  const mean = meanDiagonal(hessian, n);
  for (let d = damp; d < 1e3; d *= 10) {
    const h = reversedDamped(hessian, n, d * mean);
    if (!cholesky(h, n)) continue;
    return reversedUpper(lowerInverse(h, n), n);
  }
  throw notFactoring(n);
}

/** U of the damped Hessian H + lambda I (inputs always zero counting 1 on the diagonal), and lambda. */
export interface GptqFactor {
  u: Float64Array;
  lambda: number;
}

/** {@link inverseHessianFactor} with the Cholesky factor and its inverse computed on halves, the MatMuls by onnxruntime (int4/linalg.ts). */
export async function hessianFactor(hessian: Float64Array, n: number, damp: number, linalg: Linalg): Promise<GptqFactor> {
  const mean = meanDiagonal(hessian, n);
  for (let d = damp; d < 1e3; d *= 10) {
    const inv = await linalg.choleskyInverse(reversedDamped(hessian, n, d * mean), n);
    if (inv) return { u: reversedUpper(inv, n), lambda: d * mean };
  }
  throw notFactoring(n);
}

function meanDiagonal(hessian: Float64Array, n: number): number {
  let mean = 0;
  for (let i = 0; i < n; i++) mean += hessian[i * n + i]!;
  return mean / n || 1;
}

/** J (H + lambda I) J, the order of rows and columns reversed; a zero diagonal (an input always 0) counts as 1. */
function reversedDamped(hessian: Float64Array, n: number, lambda: number): Float64Array {
  const h = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const src = (n - 1 - i) * n + n - 1;
    for (let j = 0; j < n; j++) h[i * n + j] = hessian[src - j]!;
    const diag = h[i * n + i]!;
    h[i * n + i] = (diag === 0 ? 1 : diag) + lambda;
  }
  return h;
}

/** U = J L^-1 J (upper) from the lower L^-1. */
function reversedUpper(inv: Float64Array, n: number): Float64Array {
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const src = (n - 1 - i) * n + n - 1;
    for (let j = i; j < n; j++) u[i * n + j] = inv[src - j]!;
  }
  return u;
}

const notFactoring = (n: number) => internalError('INT4_GPTQ_HESSIAN', `the calibration Hessian (${n} x ${n}) does not factor even with heavy damping`);

/**
 * GPTQ of `rows` ([N, K]) given the calibration Hessian `hessian` ([K, K], sum of x x^T over the
 * layer's input rows). `factor`: {@link inverseHessianFactor} of it, when already computed (layers
 * reading the same input share it).
 */
export function quantizeGptq(rows: Float32Array, N: number, K: number, hessian: Float64Array, bits: Bits, blockSize: number, symmetric: boolean, damp = 0.01, factor?: Float64Array): BlockQuantized {
  const w = Float64Array.from(rows);
  for (let k = 0; k < K; k++) if (hessian[k * K + k] === 0) for (let n = 0; n < N; n++) w[n * K + k] = 0;
  const u = factor ?? inverseHessianFactor(hessian, K, damp);
  const r = emptyBlocks(N, K, bits, blockSize, symmetric);
  for (let k = 0; k < K; k++) {
    const b = Math.floor(k / blockSize);
    const ukk = u[k * K + k]!;
    for (let n = 0; n < N; n++) {
      const row = n * K;
      if (k % blockSize === 0) {
        const p = blockParams(w, row + k, row + Math.min(K, k + blockSize), bits, symmetric);
        r.scales[n * r.kBlocks + b] = p.scale;
        r.zeroPoints[n * r.kBlocks + b] = p.zeroPoint;
      }
      const s = r.scales[n * r.kBlocks + b]!;
      const z = r.zeroPoints[n * r.kBlocks + b]!;
      const q = codeOf(w[row + k]!, s, z, bits);
      r.codes[row + k] = q;
      const e = (w[row + k]! - Math.fround((q - z) * s)) / ukk;
      if (e === 0) continue;
      for (let j = k + 1; j < K; j++) w[row + j]! -= e * u[k * K + j]!;
    }
  }
  return r;
}

/** GPTQ's codes, and the squared layer-output error they leave on the calibration data. */
export interface GptqResult {
  q: BlockQuantized;
  /** tr(D H D^T), D = rows - dequant(q) ({@link gptqOutputError}). */
  outputError: number;
}

/**
 * {@link quantizeGptq} in the lazy-batch form of the GPTQ paper: the inputs are taken {@link SPAN} at a
 * time; within a span each rounding error updates the span's remaining inputs (JS, float64), and the
 * span's errors E [N, S] update every later input at once, W[:, k2:] -= E U[k1:k2, k2:], one float32
 * MatMul by onnxruntime (the reference GPTQ computes in float32 throughout; W stays float64 here).
 * A quantization block's scale and zero point are set from the weights as they are when the block
 * starts, every earlier span's update applied, as in the input-by-input loop. `factor`:
 * {@link hessianFactor} of the Hessian.
 */
export async function quantizeGptqBlocked(rows: Float32Array, N: number, K: number, hessian: Float64Array, bits: Bits, blockSize: number, symmetric: boolean, factor: GptqFactor, linalg: Linalg): Promise<GptqResult> {
  const { u, lambda } = factor;
  const w = Float64Array.from(rows);
  for (let k = 0; k < K; k++) if (hessian[k * K + k] === 0) for (let n = 0; n < N; n++) w[n * K + k] = 0;
  const r = emptyBlocks(N, K, bits, blockSize, symmetric);
  let sumE2 = 0;
  // spans never straddle a quantization block (block sizes are powers of two from 16)
  const span = blockSize % SPAN === 0 ? SPAN : blockSize;
  for (let k1 = 0; k1 < K; k1 += span) {
    const k2 = Math.min(K, k1 + span);
    const width = k2 - k1;
    if (k1 % blockSize === 0) setBlockParams(w, r, k1);
    const err = quantizeSpan(w, r, u, k1, k2);
    sumE2 += sumOfSquares(err);
    if (k2 === K) break;
    const rest = K - k2;
    const ub = Float32Array.from(block(u, K, k1, k2, k2, K));
    const err32 = Float32Array.from(err);
    // rows of E in chunks: each output (onnxruntime's and its copy in JS) at most UPDATE_BYTES, not N x rest
    const chunk = Math.max(1, Math.floor(UPDATE_BYTES / (4 * rest)));
    for (let n0 = 0; n0 < N; n0 += chunk) {
      const n1 = Math.min(N, n0 + chunk);
      subtractRows(w, K, k2, await linalg.matmul32(err32.subarray(n0 * width, n1 * width), n1 - n0, width, ub, rest), n0, n1);
    }
  }
  return { q: r, outputError: gptqOutputError(sumE2, lambda, rows, hessian, r) };
}

/**
 * The layer-output error GPTQ leaves, from its own run: the weight change is D = E U (E the scaled
 * rounding errors, every update being linear), and U (H + lambda I + Z) U^T = I (Z: 1 on the diagonal
 * of the inputs always zero, whose columns of D are zero), so tr(D H D^T) = ||E||^2 - lambda ||D||^2
 * without the N K^2 multiply-adds of the quadratic form. Exact up to rounding: E is computed in
 * float64, the lazy updates in float32 (agrees with {@link OutputErrorMeter} to ~1e-5 relative).
 */
function gptqOutputError(sumE2: number, lambda: number, rows: Float32Array, hessian: Float64Array, q: BlockQuantized): number {
  const { N, K, blockSize, kBlocks, codes, scales, zeroPoints } = q;
  let d2 = 0;
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      if (hessian[k * K + k] === 0) continue; // an input always zero: its column of D is zero
      const b = n * kBlocks + Math.floor(k / blockSize);
      const i = n * K + k;
      d2 += (rows[i]! - Math.fround((codes[i]! - zeroPoints[b]!) * scales[b]!)) ** 2;
    }
  }
  return sumE2 - lambda * d2;
}

function sumOfSquares(x: Float32Array | Float64Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return s;
}

/**
 * Inputs per lazy update. The in-span updates cost JS N K (S - 1) / 2 multiply-adds, the updates
 * after each span N K^2 / (2 S) subtractions in JS plus one onnxruntime call. CPU time of GPTQ on the
 * trained LM's 13 weights (block 64, 4 runs each, load 3.4): spans of 64 81-133 ms, 32 60-82, 16
 * 55-87, 8 89-125 (the calls' overhead).
 */
const SPAN = 16;

/**
 * Bytes of one update product in {@link quantizeGptqBlocked}. Each element of E U is the same dot
 * product whatever the number of rows per MatMul, so chunking changes no value; it bounds memory: an
 * LM head [32000, 1024] took 0.26 GB per block's product, twice (onnxruntime's buffer and JS's copy).
 */
const UPDATE_BYTES = 16 << 20;

/*
 * The loops of quantizeGptqBlocked live in plain functions: V8 compiles a hot loop inside an async
 * function less well than in a plain one (the in-block loop: 0.78 against 0.46 ms in a micro-benchmark).
 */

/** Scale and zero point of quantization block k1 / blockSize of every row of `w` ([N, K]), from its weights now. */
function setBlockParams(w: Float64Array, r: BlockQuantized, k1: number): void {
  const { N, K, bits, symmetric, kBlocks } = r;
  const b = k1 / r.blockSize;
  const k2 = Math.min(K, k1 + r.blockSize);
  for (let n = 0; n < N; n++) {
    const p = blockParams(w, n * K + k1, n * K + k2, bits, symmetric);
    r.scales[n * kBlocks + b] = p.scale;
    r.zeroPoints[n * kBlocks + b] = p.zeroPoint;
  }
}

/**
 * Inputs k1..k2 (inside one quantization block) of every row of `w` ([N, K], updated in place): input
 * by input the code, its scaled rounding error e, and the update of the span's remaining inputs.
 * Returns E ([N, k2 - k1]).
 */
function quantizeSpan(w: Float64Array, r: BlockQuantized, u: Float64Array, k1: number, k2: number): Float64Array {
  const { N, K, bits, kBlocks } = r;
  const width = k2 - k1;
  const b = Math.floor(k1 / r.blockSize);
  const err = new Float64Array(N * width);
  for (let n = 0; n < N; n++) {
    const row = n * K;
    const scale = r.scales[n * kBlocks + b]!;
    const zeroPoint = r.zeroPoints[n * kBlocks + b]!;
    for (let k = k1; k < k2; k++) {
      const q = codeOf(w[row + k]!, scale, zeroPoint, bits);
      r.codes[row + k] = q;
      const e = (w[row + k]! - Math.fround((q - zeroPoint) * scale)) / u[k * K + k]!;
      err[n * width + k - k1] = e;
      if (e === 0) continue;
      const uk = k * K;
      for (let j = k + 1; j < k2; j++) w[row + j]! -= e * u[uk + j]!;
    }
  }
  return err;
}

/** w[n, k2..K] -= update[n - n0, :] for rows n0..n1 of `w` ([N, K]). */
function subtractRows(w: Float64Array, K: number, k2: number, update: Float32Array, n0: number, n1: number): void {
  const rest = K - k2;
  for (let n = n0; n < n1; n++) {
    const row = n * K + k2;
    const o = (n - n0) * rest;
    for (let j = 0; j < rest; j++) w[row + j]! -= update[o + j]!;
  }
}

/**
 * Squared layer-output errors on the calibration rows, tr(D H D^T), of several approximations of the
 * same weight rows ([N, K]) at once (D = rows - approximation; an all-zero approximation gives the
 * output energy tr(W H W^T)), computed by onnxruntime: ReduceSum((D x H) * D) over a stacked D
 * [m * N, K], one small session (dynamic N and K) for every layer.
 */
export class OutputErrorMeter extends LazySession {
  protected readonly label = '(layer output error)';

  protected build(): Model {
    const b = new GraphBuilder({ opset: 13 });
    const d = b.input('d', 'float', ['rows', 'k']);
    const h = b.input('h', 'float', ['k', 'k']);
    const [dh] = b.op('MatMul', [d, h]);
    const [p] = b.op('Mul', [dh!, d]);
    const [sum] = b.op('ReduceSum', [p!, b.initializer('axes', Tensor.from(DataType.INT64, [1], BigInt64Array.of(1n)))], { keepdims: 0 });
    b.output(sum!, 'sum', 'float', ['rows']);
    return b.model();
  }

  async errors(rows: Float32Array, approximations: readonly Float32Array[], N: number, K: number, hessian: Float64Array): Promise<number[]> {
    const m = approximations.length;
    const out = await (await this.open()).run({ d: { type: 'float32', dims: [m * N, K], data: differences(rows, approximations) }, h: { type: 'float32', dims: [K, K], data: Float32Array.from(hessian) } }, ['sum']);
    return sumsOf(out['sum']!.data as Float32Array, m, N);
  }
}

/** The rows minus each approximation, stacked ([m * N, K]). */
function differences(rows: Float32Array, approximations: readonly Float32Array[]): Float32Array {
  const size = rows.length;
  const d = new Float32Array(approximations.length * size);
  approximations.forEach((x, a) => {
    const at = a * size;
    for (let i = 0; i < size; i++) d[at + i] = rows[i]! - x[i]!;
  });
  return d;
}

/** Per approximation, the sum of its N row errors. */
function sumsOf(per: Float32Array, m: number, N: number): number[] {
  const totals = new Array<number>(m).fill(0);
  for (let r = 0; r < m * N; r++) totals[Math.floor(r / N)]! += per[r]!;
  return totals;
}
