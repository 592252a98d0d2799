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
import type { ModelSession, Runner } from '../../../runtime/runner-types.js';
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

/** The inverse of the lower triangular `l` (n x n), lower triangular; rows are built in order so every read is contiguous. */
function lowerInverse(l: Float64Array, n: number): Float64Array {
  const inv = new Float64Array(n * n);
  const acc = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    acc.fill(0, 0, i);
    for (let p = 0; p < i; p++) {
      const lip = l[i * n + p]!;
      if (lip === 0) continue;
      const row = p * n;
      for (let c = 0; c <= p; c++) acc[c]! += lip * inv[row + c]!;
    }
    const d = l[i * n + i]!;
    for (let c = 0; c < i; c++) inv[i * n + c] = -acc[c]! / d;
    inv[i * n + i] = 1 / d;
  }
  return inv;
}

/**
 * The upper factor U (row-major, n x n) with H^-1 = U^T U, damping H until it factors. With J the
 * order reversal, J H J = L L^T (lower Cholesky) gives H = R R^T with R = J L J upper triangular, so
 * H^-1 = (R^-1)^T R^-1 and U = R^-1 = J L^-1 J: one Cholesky and one triangular inverse.
 */
export function inverseHessianFactor(hessian: Float64Array, n: number, damp: number): Float64Array {
  let mean = 0;
  for (let i = 0; i < n; i++) mean += hessian[i * n + i]!;
  mean = mean / n || 1;
  for (let d = damp; d < 1e3; d *= 10) {
    const h = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      const src = (n - 1 - i) * n + n - 1;
      for (let j = 0; j < n; j++) h[i * n + j] = hessian[src - j]!;
      const diag = h[i * n + i]!;
      h[i * n + i] = (diag === 0 ? 1 : diag) + d * mean;
    }
    if (!cholesky(h, n)) continue;
    const inv = lowerInverse(h, n);
    const u = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      const src = (n - 1 - i) * n + n - 1;
      for (let j = i; j < n; j++) u[i * n + j] = inv[src - j]!;
    }
    return u;
  }
  throw internalError('INT4_GPTQ_HESSIAN', `the calibration Hessian (${n} x ${n}) does not factor even with heavy damping`);
}

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

/**
 * Squared layer-output errors on the calibration rows, tr(D H D^T), of several approximations of the
 * same weight rows ([N, K]) at once (D = rows - approximation; an all-zero approximation gives the
 * output energy tr(W H W^T)), computed by onnxruntime: ReduceSum((D x H) * D) over a stacked D
 * [m * N, K], one small session (dynamic N and K) for every layer.
 */
export class OutputErrorMeter {
  private session?: Promise<ModelSession>;
  constructor(private readonly runner: Runner) {}

  private open(): Promise<ModelSession> {
    if (!this.session) {
      const b = new GraphBuilder({ opset: 13 });
      const d = b.input('d', 'float', ['rows', 'k']);
      const h = b.input('h', 'float', ['k', 'k']);
      const [dh] = b.op('MatMul', [d, h]);
      const [p] = b.op('Mul', [dh!, d]);
      const [sum] = b.op('ReduceSum', [p!, b.initializer('axes', Tensor.from(DataType.INT64, [1], BigInt64Array.of(1n)))], { keepdims: 0 });
      b.output(sum!, 'sum', 'float', ['rows']);
      this.session = this.runner.open(b.model(), { intraOpNumThreads: 1 }, '(layer output error)');
    }
    return this.session;
  }

  async errors(rows: Float32Array, approximations: readonly Float32Array[], N: number, K: number, hessian: Float64Array): Promise<number[]> {
    const m = approximations.length;
    const d = new Float32Array(m * N * K);
    approximations.forEach((x, a) => {
      for (let i = 0; i < N * K; i++) d[a * N * K + i] = rows[i]! - x[i]!;
    });
    const out = await (await this.open()).run({ d: { type: 'float32', dims: [m * N, K], data: d }, h: { type: 'float32', dims: [K, K], data: Float32Array.from(hessian) } }, ['sum']);
    const per = out['sum']!.data as Float32Array;
    const totals = new Array<number>(m).fill(0);
    for (let r = 0; r < m * N; r++) totals[Math.floor(r / N)]! += per[r]!;
    return totals;
  }

  async dispose(): Promise<void> {
    if (this.session) await (await this.session).dispose();
  }
}
