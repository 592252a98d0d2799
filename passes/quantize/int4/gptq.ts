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
import { internalError } from '../../../core/errors.js';
import { BlockQuantized, Bits, blockParams, codeOf, emptyBlocks } from './blocks.js';

/** In-place lower Cholesky factor of the symmetric positive definite a (n x n); false if it is not. */
function cholesky(a: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j]!;
    for (let p = 0; p < j; p++) d -= a[j * n + p]! * a[j * n + p]!;
    if (!(d > 0)) return false;
    const ljj = Math.sqrt(d);
    a[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j]!;
      for (let p = 0; p < j; p++) s -= a[i * n + p]! * a[j * n + p]!;
      a[i * n + j] = s / ljj;
    }
    for (let p = j + 1; p < n; p++) a[j * n + p] = 0;
  }
  return true;
}

/** H^-1 from its lower Cholesky factor L (H = L L^T): L^-T L^-1. */
function inverseFromCholesky(l: Float64Array, n: number): Float64Array {
  // Linv, lower triangular, by forward substitution column by column
  const inv = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    for (let i = c; i < n; i++) {
      let s = i === c ? 1 : 0;
      for (let p = c; p < i; p++) s -= l[i * n + p]! * inv[p * n + c]!;
      inv[i * n + c] = s / l[i * n + i]!;
    }
  }
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let p = i; p < n; p++) s += inv[p * n + i]! * inv[p * n + j]!;
      out[i * n + j] = s;
      out[j * n + i] = s;
    }
  }
  return out;
}

/** The upper factor U (row-major, n x n) with H^-1 = U^T U, damping H until it factors. */
export function inverseHessianFactor(hessian: Float64Array, n: number, damp: number): Float64Array {
  let mean = 0;
  for (let i = 0; i < n; i++) mean += hessian[i * n + i]!;
  mean = mean / n || 1;
  for (let d = damp; d < 1e3; d *= 10) {
    const h = hessian.slice();
    for (let i = 0; i < n; i++) h[i * n + i] = (h[i * n + i]! === 0 ? 1 : h[i * n + i]!) + d * mean;
    if (!cholesky(h, n)) continue;
    const hinv = inverseFromCholesky(h, n);
    if (!cholesky(hinv, n)) continue;
    // hinv now holds C (lower) with H^-1 = C C^T; U = C^T
    const u = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) u[j * n + i] = hinv[i * n + j]!;
    return u;
  }
  throw internalError('INT4_GPTQ_HESSIAN', `the calibration Hessian (${n} x ${n}) does not factor even with heavy damping`);
}

/**
 * GPTQ of `rows` ([N, K]) given the calibration Hessian `hessian` ([K, K], sum of x x^T over the
 * layer's input rows).
 */
export function quantizeGptq(rows: Float32Array, N: number, K: number, hessian: Float64Array, bits: Bits, blockSize: number, symmetric: boolean, damp = 0.01): BlockQuantized {
  const w = Float64Array.from(rows);
  for (let k = 0; k < K; k++) if (hessian[k * K + k] === 0) for (let n = 0; n < N; n++) w[n * K + k] = 0;
  const u = inverseHessianFactor(hessian, K, damp);
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

/** tr(D H D^T) for D = rows - dequant: the layer's squared output error summed over the calibration rows. */
export function outputError(rows: Float32Array, dq: Float32Array, N: number, K: number, hessian: Float64Array): number {
  let total = 0;
  const d = new Float64Array(K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) d[k] = rows[n * K + k]! - dq[n * K + k]!;
    for (let i = 0; i < K; i++) {
      if (d[i] === 0) continue;
      let s = 0;
      for (let j = 0; j < K; j++) s += hessian[i * K + j]! * d[j]!;
      total += d[i]! * s;
    }
  }
  return total;
}
