/**
 * GPTQ (Frantar et al., 2022) for block quantization: quantize the inputs k of a weight one at a time
 * and spread each one's rounding error over the inputs not yet quantized, so as to minimise the
 * layer's squared output error ||X W^T - X Wq^T||^2 on calibration activations X (rows x K), whose
 * Hessian is H = X^T X + lambda I (lambda = damp * mean(diag H)). The paper's form uses U, the upper
 * Cholesky factor of H^-1:
 *
 *   for k = 0 .. K-1:  q_k = quant(w_k),  e = (w_k - dequant(q_k)) / U[k][k],  w_j -= e * U[k][j] (j > k)
 *
 * Computed here in the equivalent error-feedback form (GPTQ as Babai's nearest-plane algorithm), which
 * needs only a Cholesky factor, no inverse: with H = B^T B, B lower triangular (B = U^-T), the weight
 * input k is quantized as it stands after the feedback of every earlier input's error against the
 * original weights, d_j = w_j - dequant(q_j):
 *
 *   w'_k = w_k + sum_{j<k} M[k][j] d_j,   M[k][j] = B[k][j] / B[k][k],   q_k = quant(w'_k)
 *
 * (from d = U^T e: e_k = (B d)_k and w'_k - dequant(q_k) = e_k / B[k][k]; the same codes in exact
 * arithmetic). B comes from the lower Cholesky factor L of H with its order reversed, J H J = L L^T,
 * B = J L^T J. A block's scale and zero point are set from the weights as the paper's loop holds them
 * when the block starts ({@link blockStartWeights}), which is not w' there. Inputs always zero in the
 * calibration data (H[k][k] = 0) get H[k][k] = 1 and weight 0.
 */
import { internalError } from '../../../core/errors.js';
import type { Cancellation } from '../../../core/share-work.js';
import { asymmetricParams, BlockQuantized, Bits, codeOf, emptyBlocks, symmetricParams } from './blocks.js';
import type { Linalg } from './linalg.js';
import { spanKernel, type SpanKernel } from './span-kernel.js';
import { choleskyKernel } from './cholesky-kernel.js';

/**
 * The error-feedback coefficients of one Hessian: `m` (K x K row-major, strictly lower: M[k][j] =
 * B[k][j] / B[k][k]), `diag` (B[k][k]) and the damping lambda that made H + lambda I factor.
 */
export interface GptqFactor {
  m: Float64Array;
  diag: Float64Array;
  lambda: number;
  /**
   * Values that every weight quantized with this factor computes alike (float32 blocks of M for the
   * lazy updates, block-start inverses), kept here by the first weight for the others when several
   * weights share the factor (separate q, k and v projections); absent: each weight computes its own.
   */
  shared?: Map<string, Float32Array>;
}

/**
 * {@link GptqFactor} of the damped Hessian (damping raised tenfold until it factors); the Cholesky
 * factor by onnxruntime's Gemms (int4/linalg.ts). `shared`: several weights will be quantized with it
 * ({@link GptqFactor.shared}).
 */
export async function hessianFactor(hessian: Float64Array, n: number, damp: number, linalg: Linalg, signal?: Cancellation, shared = false): Promise<GptqFactor> {
  const mean = meanDiagonal(hessian, n);
  for (let d = damp; d < 1e3; d *= 10) {
    signal?.throwIfAborted();
    const l = reversedDamped(hessian, n, d * mean);
    if (await linalg.cholesky(l, n, signal)) return { ...feedback(l, n), lambda: d * mean, ...(shared ? { shared: new Map<string, Float32Array>() } : {}) };
    keepSpare(l);
  }
  throw notFactoring(n);
}

function meanDiagonal(hessian: Float64Array, n: number): number {
  let mean = 0;
  for (let i = 0; i < n; i++) mean += hessian[i * n + i]!;
  return mean / n || 1;
}

/**
 * J (H + lambda I) J, the order of rows and columns reversed, its lower triangle only (all the factor
 * reads; the upper one stays zero); a zero diagonal (an input always 0) counts as 1. Row i is row
 * n-1-i of H read backwards: H's rows are read forward from their diagonal (H is symmetric, its
 * upper triangle the lower one's mirror), which ran 0.33 ms at n = 512 against 0.43 reading its
 * lower triangle backwards, and 1.0 when H is in shared memory (a helper thread's).
 */
function reversedDamped(hessian: Float64Array, n: number, lambda: number): Float64Array {
  const h = takeSquare(n * n);
  for (let i = 0; i < n; i++) {
    const r = n - 1 - i;
    reverseRow(hessian, r * n, h, i * n + n - 1, r + 1, n);
    const diag = hessian[r * n + r]!;
    h[i * n + i] = (diag === 0 ? 1 : diag) + lambda;
  }
  return h;
}

/**
 * n x n buffers of factors done with ({@link releaseFactor}), for the next factor's J H J: this
 * thread's, a few and small ones only. A reused buffer's upper triangle holds old values, which
 * nothing reads: the factor reads the lower triangle and zeroes the upper one.
 */
const spare: Float64Array[] = [];
const SPARE_COUNT = 4;
const SPARE_BYTES = 8 << 20;

function takeSquare(length: number): Float64Array {
  const i = spare.findIndex((a) => a.length === length);
  return i >= 0 ? spare.splice(i, 1)[0]! : new Float64Array(length);
}

function keepSpare(a: Float64Array): void {
  if (spare.length < SPARE_COUNT && a.byteLength <= SPARE_BYTES && !spare.includes(a)) spare.push(a);
}

/** Hands `factor`'s storage back for a later factor of this thread: `factor` must not be used after. */
export function releaseFactor(factor: GptqFactor): void {
  keepSpare(factor.m);
}

/** to[end - c] = from[src + c] for c in c0..c1-1. */
function reverseRow(from: Float64Array, src: number, to: Float64Array, end: number, c0: number, c1: number): void {
  for (let c = c0; c < c1; c++) to[end - c] = from[src + c]!;
}

/**
 * M and diag(B) from the lower factor L of J H J, B[k][j] = L[n-1-j][n-1-k], in place: M is L
 * reflected across its anti-diagonal (each pair of elements swapped, the anti-diagonal itself staying)
 * and each row k divided by diag(B)[k]; the diagonal then zeroed (M is strictly lower). No second
 * n x n array: allocating one (fresh pages) took longer than the loop.
 */
function feedback(l: Float64Array, n: number): { m: Float64Array; diag: Float64Array } {
  const diag = new Float64Array(n);
  for (let k = 0; k < n; k++) diag[k] = l[(n - 1 - k) * (n + 1)]!;
  // pairs (k, j) and (n-1-j, n-1-k), k > j, taken once (k + j <= n - 1), in tiles of rows k and
  // columns j so that the partner reads, which go down a column, reuse the cache lines just loaded
  for (let k0 = 0; k0 < n; k0 += FEEDBACK_TILE) {
    const k1 = Math.min(n, k0 + FEEDBACK_TILE);
    for (let j0 = 0; j0 < k1; j0 += FEEDBACK_TILE) reflectTile(l, diag, n, k0, k1, j0, Math.min(k1, j0 + FEEDBACK_TILE));
  }
  for (let k = 0; k < n; k++) l[k * (n + 1)] = 0;
  return { m: l, diag };
}

const FEEDBACK_TILE = 16;

function reflectTile(l: Float64Array, diag: Float64Array, n: number, k0: number, k1: number, j0: number, j1: number): void {
  for (let k = k0; k < k1; k++) {
    const row = k * n;
    const dk = diag[k]!;
    for (let j = j0; j < Math.min(j1, k, n - k); j++) {
      // partner: row n-1-j, column n-1-k (k + j < n - 1), or the element itself (k + j = n - 1: the same value written twice)
      const at = (n - 1 - j) * n + n - 1 - k;
      const mine = l[row + j]!;
      l[row + j] = l[at]! / dk;
      l[at] = mine / diag[n - 1 - j]!;
    }
  }
}

const notFactoring = (n: number) => internalError('INT4_GPTQ_HESSIAN', `the calibration Hessian (${n} x ${n}) does not factor even with heavy damping`);

/** GPTQ's codes, and the squared layer-output error they leave on the calibration data. */
export interface GptqResult {
  q: BlockQuantized;
  /**
   * tr(D H D^T), D = rows - dequant(q), from the run: e = B d per row, B^T B = H + lambda I (+1 on the
   * diagonal of inputs always zero, whose columns of D are zero), so tr(D H D^T) = ||E||^2 - lambda
   * ||D||^2 without the N K^2 multiply-adds of the quadratic form.
   */
  outputError: number;
  /** The float32 weights the codes stand for, as B [K, N] (what onnxruntime computes with). */
  dequantized: Float32Array;
  /** Relative squared weight error ||W - Wq||^2 / ||W||^2 (inputs always zero included: their weights become 0). */
  weightError: number;
}

/**
 * GPTQ of a weight (rows [N, K] or B [K, N]) given the calibration Hessian `hessian` ([K, K], sum of x x^T over the
 * layer's input rows) and its {@link hessianFactor}, in the lazy-batch form of the GPTQ paper: the
 * inputs are taken {@link SPAN} at a time; within a span each input's errors feed the span's later
 * inputs in JS, and the span's errors D [S, N] feed every later input at once, W'[k2:] += M[k2:,
 * k1:k2] D, one float32 Gemm by onnxruntime. The weights are held as B [K, N] (input k's weights for
 * every output contiguous), so every loop runs along N and each update is one contiguous block;
 * float32 as in the reference GPTQ, the errors' sums in float64.
 */
export async function quantizeGptqBlocked(weight: GptqWeight, N: number, K: number, hessian: Float64Array, bits: Bits, blockSize: number, symmetric: boolean, factor: GptqFactor, linalg: Linalg, signal?: Cancellation): Promise<GptqResult> {
  const { m, diag, lambda } = factor;
  const once = (key: string, make: () => Float32Array): Float32Array => {
    const shared = factor.shared;
    if (!shared) return make();
    let v = shared.get(key);
    if (!v) shared.set(key, (v = make()));
    return v;
  };
  const inverse = (k1: number, k2: number) => once(`u${k1},${k2}`, () => unitLowerInverse(m, K, k1, k2));
  const { w: orig, energy, dropped } = workingCopy(weight, N, K, hessian);
  const w = orig.slice();
  const dequantized = new Float32Array(K * N);
  const r = emptyBlocks(N, K, bits, blockSize, symmetric);
  const s = new Float64Array(N);
  const z = new Float64Array(N);
  // spans never straddle a quantization block (block sizes are powers of two from 16)
  const span = blockSize % SPAN === 0 ? SPAN : blockSize;
  const work = spanWork(span, N);
  // the block-start state of the block beginning where the last update ended, when that update computed it
  let start: Float32Array | undefined;
  for (let k1 = 0; k1 < K; k1 += span) {
    signal?.throwIfAborted();
    const k2 = Math.min(K, k1 + span);
    const width = k2 - k1;
    // the first block starts as the original weights: w's rows from 0
    if (k1 % blockSize === 0) setBlockParams(k1 === 0 ? w : (start ?? (await blockStartWeights(w, orig, inverse(k1, Math.min(K, k1 + blockSize)), N, k1, Math.min(K, k1 + blockSize), linalg))), r, k1, s, z, work.kernel);
    start = undefined;
    quantizeSpan(w, orig, r, m, diag, k1, k2, s, z, work);
    dequantized.set(work.dq.subarray(0, width * N), k1 * N);
    if (k2 === K) break;
    // rows of the update in chunks of at most UPDATE_BYTES (each also copied back into w); the first
    // chunk also gives the next block's start state when this span ends a block and the chunk holds it
    const chunk = Math.max(1, Math.floor(UPDATE_BYTES / (4 * N)));
    const next = k2 % blockSize === 0 ? Math.min(K, k2 + blockSize) : 0;
    for (let i0 = k2; i0 < K; i0 += chunk) {
      const i1 = Math.min(K, i0 + chunk);
      const a = once(`c${i0},${i1},${k1},${k2}`, () => coefficients(m, K, i0, i1, k1, k2));
      const b = work.d.subarray(0, width * N);
      const c = w.subarray(i0 * N, i1 * N);
      if (i0 === k2 && next > 0 && next <= i1) {
        const { y, p } = await linalg.gemm32Start(a, i1 - i0, width, b, N, c, inverse(k2, next), next - k2, orig.subarray(k2 * N, next * N));
        w.set(y, i0 * N);
        start = p;
      } else w.set(await linalg.gemm32(a, i1 - i0, width, b, N, c), i0 * N);
    }
  }
  return { q: r, outputError: work.sums.e2 - lambda * work.sums.d2, dequantized, weightError: energy > 0 ? (work.sums.d2 + dropped) / energy : 0 };
}

/** A weight as rows [N, K] or as MatMul's B [K, N] (GPTQ's own layout: no transpose). */
export type GptqWeight = { rows: Float32Array } | { kn: Float32Array };

/**
 * The weight as B [K, N] in float32 (a copy), inputs always zero (H[k][k] = 0) set to 0; its sum of
 * squares, and that of the weights set to 0.
 */
function workingCopy(weight: GptqWeight, N: number, K: number, hessian: Float64Array): { w: Float32Array; energy: number; dropped: number } {
  let w: Float32Array;
  if ('kn' in weight) w = weight.kn.slice();
  else {
    w = new Float32Array(K * N);
    const rows = weight.rows;
    for (let n = 0; n < N; n++) {
      const row = n * K;
      for (let k = 0; k < K; k++) w[k * N + n] = rows[row + k]!;
    }
  }
  let energy = 0;
  for (let i = 0; i < w.length; i++) energy += w[i]! * w[i]!;
  let dropped = 0;
  for (let k = 0; k < K; k++) {
    if (hessian[k * K + k] !== 0) continue;
    for (let n = 0; n < N; n++) dropped += w[k * N + n]! ** 2;
    w.fill(0, k * N, (k + 1) * N);
  }
  return { w, energy, dropped };
}

/** M[i0:i1, k1:k2] as float32 [i1 - i0, k2 - k1]. */
function coefficients(m: Float64Array, K: number, i0: number, i1: number, k1: number, k2: number): Float32Array {
  const width = k2 - k1;
  const out = new Float32Array((i1 - i0) * width);
  for (let i = i0; i < i1; i++) {
    const at = (i - i0) * width;
    const row = i * K;
    for (let j = k1; j < k2; j++) out[at + j - k1] = m[row + j]!;
  }
  return out;
}

/**
 * Inputs per lazy update. A span costs JS N S (S - 1) / 2 multiply-adds for its in-span feedback and
 * one onnxruntime call for the rest.
 */
const SPAN = 32;

/**
 * Bytes of one update product in {@link quantizeGptqBlocked}: chunking by rows of W changes no value
 * (each element is the same dot product); it bounds memory: an LM head [32000, 1024] took 0.26 GB per
 * product, twice (onnxruntime's buffer and JS's copy).
 */
const UPDATE_BYTES = 16 << 20;

/*
 * The loops of quantizeGptqBlocked live in plain functions: V8 compiles a hot loop inside an async
 * function less well than in a plain one (the in-block loop: 0.78 against 0.46 ms in a micro-benchmark).
 */

/**
 * The weights of inputs k1..k2 (a quantization block) as GPTQ's input-by-input loop holds them when
 * k1 starts the block: compensated for every earlier input's rounding error, as if the block's inputs
 * stayed continuous (each later input's value then also depends on the block's earlier ones). The
 * error feedback F = w' - w the block's rows have received (from inputs before k1) is only the direct
 * part; with the block's own coefficients M_bb (strictly lower), that state is w + (I + M_bb)^-1 F
 * (B_bb^-1 B_bp d_p, the optimal compensation of the block's inputs for the earlier errors d_p).
 * `inverse` is (I + M_bb)^-1 ({@link unitLowerInverse}). Returns [k2 - k1, N] (float32, one Gemm by onnxruntime).
 */
async function blockStartWeights(w: Float32Array, orig: Float32Array, inverse: Float32Array, N: number, k1: number, k2: number, linalg: Linalg): Promise<Float32Array> {
  const f = w.slice(k1 * N, k2 * N);
  subtractInPlace(f, orig.subarray(k1 * N, k2 * N));
  return linalg.gemm32(inverse, k2 - k1, k2 - k1, f, N, orig.slice(k1 * N, k2 * N));
}

/** a -= b, elementwise. */
function subtractInPlace(a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < a.length; i++) a[i]! -= b[i]!;
}

/**
 * (I + M[k1:k2, k1:k2])^-1 (M strictly lower: unit lower triangular, by forward substitution), float32
 * [k2 - k1, k2 - k1]. Row by row: row i is e_i less M[i][p] times each earlier row p, every read
 * contiguous (each element's terms summed in the same order, p ascending, as column by column); in
 * int4/cholesky-kernel.ts's WebAssembly where it runs, the same values.
 */
function unitLowerInverse(m: Float64Array, K: number, k1: number, k2: number): Float32Array {
  const n = k2 - k1;
  const kernel = choleskyKernel(n);
  if (kernel) return kernel.unitLowerInverse(m, K, k1, k2);
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const row = (k1 + i) * K + k1;
    const ti = i * n;
    for (let p = 0; p < i; p++) {
      const c = m[row + p]!;
      if (c !== 0) subtractScaled(t, ti, p * n, p + 1, c);
    }
    t[ti + i] = 1;
  }
  return Float32Array.from(t);
}

/** t[to..to+len] -= c t[from..from+len]. */
function subtractScaled(t: Float64Array, to: number, from: number, len: number, c: number): void {
  for (let q = 0; q < len; q++) t[to + q]! -= c * t[from + q]!;
}

/**
 * Scale and zero point of quantization block k1 / blockSize of every output, from the weights of its
 * inputs (`w`'s rows from 0, [N] each): the same values as blocks.ts blockParams on each output's row
 * (same comparisons in the same order), left in s and z for the block's codes.
 */
function setBlockParams(w: Float32Array, r: BlockQuantized, k1: number, s: Float64Array, z: Float64Array, kernel?: SpanKernel): void {
  const { N, K, bits, symmetric, kBlocks } = r;
  const b = k1 / r.blockSize;
  const k2 = Math.min(K, k1 + r.blockSize);
  // s: min or (symmetric) the value of largest magnitude; z: max
  if (kernel) {
    const { lo, hi } = kernel.range(w, k2 - k1, N, symmetric);
    s.set(lo);
    z.set(hi);
  } else blockRange(w, k2 - k1, N, symmetric, s, z);
  for (let n = 0; n < N; n++) {
    const p = symmetric ? symmetricParams(s[n]!, bits) : asymmetricParams(s[n]!, z[n]!, bits);
    r.scales[n * kBlocks + b] = s[n] = p.scale;
    r.zeroPoints[n * kBlocks + b] = z[n] = p.zeroPoint;
  }
}

/** Per output n, over `rows` rows of `w` ([rows, N]): the min into s and the max into z, or (symmetric) the value of largest magnitude into s (int4/span-kernel.ts `range` runs the same comparisons). */
function blockRange(w: Float32Array, rows: number, N: number, symmetric: boolean, s: Float64Array, z: Float64Array): void {
  s.fill(0);
  z.fill(0);
  for (let k = 0; k < rows; k++) {
    const row = k * N;
    if (symmetric) {
      for (let n = 0; n < N; n++) {
        const x = w[row + n]!;
        if (Math.abs(x) > Math.abs(s[n]!)) s[n] = x;
      }
    } else {
      for (let n = 0; n < N; n++) {
        const x = w[row + n]!;
        if (x < s[n]!) s[n] = x;
        if (x > z[n]!) z[n] = x;
      }
    }
  }
}

/** Work buffers of {@link quantizeSpan}, one span of inputs for every output (allocated once per weight). */
interface SpanWork {
  /** The WebAssembly kernel that runs the spans of this weight (undefined: the JS loop). */
  kernel: SpanKernel | undefined;
  /** The span's weights w' in float64, [S, N] (the JS loop only, as `dd` and `codes`). */
  ws: Float64Array;
  /** Its errors d against the original weights, float64 (the in-span feedback) and float32 (the Gemm's B). */
  dd: Float64Array;
  d: Float32Array;
  /** Its codes, [S, N], and the float32 weights they stand for. */
  codes: Uint8Array;
  dq: Float32Array;
  sums: { e2: number; d2: number };
}

function spanWork(span: number, N: number): SpanWork {
  const kernel = N % 2 === 0 ? spanKernel() : undefined;
  const js = kernel ? 0 : span * N;
  return { kernel, ws: new Float64Array(js), dd: new Float64Array(js), d: new Float32Array(span * N), codes: new Uint8Array(js), dq: new Float32Array(span * N), sums: { e2: 0, d2: 0 } };
}

/**
 * Inputs k1..k2 (inside one quantization block) of every output, input by input: the feedback of the
 * span's earlier inputs' errors (left-looking, eight at a time: one pass over the row per eight
 * coefficients; 5-7% faster than four at a time), then the codes from w', the errors d against the
 * original weights (into work.d, [k2 - k1, N]) and the sums of e^2 = ((w' - dequant) B[k][k])^2 and
 * d^2; the codes go to r at the end. Where WebAssembly SIMD runs and N is even, the same loop runs
 * as int4/span-kernel.ts's kernel, two outputs per instruction, with the same results bit for bit
 * (single-thread GPTQ of the trained LM's weights: 37 -> 24 ms).
 */
function quantizeSpan(w: Float32Array, orig: Float32Array, r: BlockQuantized, m: Float64Array, diag: Float64Array, k1: number, k2: number, s: Float64Array, z: Float64Array, work: SpanWork): void {
  const { N, K } = r;
  const kernel = work.kernel;
  if (kernel) {
    const out = kernel.run(w, orig, m, diag, K, N, k1, k2, s, z, r.bits, work.sums);
    work.d.set(out.d);
    work.dq.set(out.dq);
    work.sums.e2 = out.e2;
    work.sums.d2 = out.d2;
    scatterCodes(out.codes, r.codes, N, K, k1, k2);
    return;
  }
  const { ws, dd } = work;
  for (let i = 0; i < (k2 - k1) * N; i++) ws[i] = w[k1 * N + i]!;
  for (let j = 0; j < k2 - k1; j++) {
    const row = j * N;
    const mj = (k1 + j) * K + k1;
    let k = 0;
    for (; k + 8 <= j; k += 8) feedback8(ws, row, dd, k * N, N, m, mj + k);
    if (k + 4 <= j) {
      feedback4(ws, row, dd, k * N, N, m[mj + k]!, m[mj + k + 1]!, m[mj + k + 2]!, m[mj + k + 3]!);
      k += 4;
    }
    // the last one to three inputs in one pass too (one at a time, they cost a tenth of the span's time)
    if (j - k === 3) feedback3(ws, row, dd, k * N, N, m[mj + k]!, m[mj + k + 1]!, m[mj + k + 2]!);
    else if (j - k === 2) feedback2(ws, row, dd, k * N, N, m[mj + k]!, m[mj + k + 1]!);
    else if (j - k === 1) feedback1(ws, row, dd, k * N, N, m[mj + k]!);
    quantizeRow(ws, orig, (k1 + j) * N, row, N, diag[k1 + j]!, s, z, r.bits, work);
  }
  scatterCodes(work.codes, r.codes, N, K, k1, k2);
}

/** ws[row..] += c0 dd[at..] + c1 dd[at + N..] + c2 dd[at + 2N..] + c3 dd[at + 3N..] over N elements. */
function feedback4(ws: Float64Array, row: number, dd: Float64Array, at: number, N: number, c0: number, c1: number, c2: number, c3: number): void {
  const a1 = at + N;
  const a2 = a1 + N;
  const a3 = a2 + N;
  for (let n = 0; n < N; n++) ws[row + n]! += c0 * dd[at + n]! + c1 * dd[a1 + n]! + c2 * dd[a2 + n]! + c3 * dd[a3 + n]!;
}

/** ws[row..] += the sum over eight inputs of M[k][k + i] dd[at + i N..] (coefficients from m[mk..]), in two groups of four. */
function feedback8(ws: Float64Array, row: number, dd: Float64Array, at: number, N: number, m: Float64Array, mk: number): void {
  const c0 = m[mk]!, c1 = m[mk + 1]!, c2 = m[mk + 2]!, c3 = m[mk + 3]!, c4 = m[mk + 4]!, c5 = m[mk + 5]!, c6 = m[mk + 6]!, c7 = m[mk + 7]!;
  const a1 = at + N, a2 = a1 + N, a3 = a2 + N, a4 = a3 + N, a5 = a4 + N, a6 = a5 + N, a7 = a6 + N;
  for (let n = 0; n < N; n++) ws[row + n]! += c0 * dd[at + n]! + c1 * dd[a1 + n]! + c2 * dd[a2 + n]! + c3 * dd[a3 + n]! + (c4 * dd[a4 + n]! + c5 * dd[a5 + n]! + c6 * dd[a6 + n]! + c7 * dd[a7 + n]!);
}

function feedback3(ws: Float64Array, row: number, dd: Float64Array, at: number, N: number, c0: number, c1: number, c2: number): void {
  const a1 = at + N;
  const a2 = a1 + N;
  for (let n = 0; n < N; n++) ws[row + n]! += c0 * dd[at + n]! + c1 * dd[a1 + n]! + c2 * dd[a2 + n]!;
}

function feedback2(ws: Float64Array, row: number, dd: Float64Array, at: number, N: number, c0: number, c1: number): void {
  const a1 = at + N;
  for (let n = 0; n < N; n++) ws[row + n]! += c0 * dd[at + n]! + c1 * dd[a1 + n]!;
}

function feedback1(ws: Float64Array, row: number, dd: Float64Array, at: number, N: number, c: number): void {
  if (c === 0) return;
  for (let n = 0; n < N; n++) ws[row + n]! += c * dd[at + n]!;
}

/** Codes of one input's weights w' (ws[row..]) for every output, their errors, and the sums. */
function quantizeRow(ws: Float64Array, orig: Float32Array, from: number, row: number, N: number, bkk: number, s: Float64Array, z: Float64Array, bits: Bits, work: SpanWork): void {
  const { dd, d, codes } = work;
  const out = work.dq;
  let e2 = 0;
  let d2 = 0;
  for (let n = 0; n < N; n++) {
    // w' is held as float32, as the reference GPTQ holds its weights
    const x = Math.fround(ws[row + n]!);
    const q = codeOf(x, s[n]!, z[n]!, bits);
    codes[row + n] = q;
    const dq = Math.fround((q - z[n]!) * s[n]!);
    out[row + n] = dq;
    const e = (x - dq) * bkk;
    const dn = orig[from + n]! - dq;
    dd[row + n] = dn;
    d[row + n] = dn;
    e2 += e * e;
    d2 += dn * dn;
  }
  work.sums.e2 += e2;
  work.sums.d2 += d2;
}

/** The span's codes ([k2 - k1, N]) into the [N, K] codes. */
function scatterCodes(from: Uint8Array, to: Uint8Array, N: number, K: number, k1: number, k2: number): void {
  for (let k = k1; k < k2; k++) {
    const at = (k - k1) * N;
    for (let n = 0; n < N; n++) to[n * K + k] = from[at + n]!;
  }
}

/**
 * Squared layer-output errors on the calibration rows, tr(D H D^T), of several approximations of the
 * same weight rows ([N, K]) at once (D = rows - approximation; an all-zero approximation gives the
 * output energy tr(W H W^T)): D H as one float32 Gemm by onnxruntime over the stacked D [m * N, K],
 * then the row sums of (D H) * D.
 */
export async function outputErrors(linalg: Linalg, rows: Float32Array, approximations: ReadonlyArray<Float32Array | 'zero'>, N: number, K: number, hessian: Float64Array | Float32Array): Promise<number[]> {
  if (approximations.length === 0) return [];
  const d = differences(rows, approximations);
  const dh = await linalg.gemm32(d, approximations.length * N, K, hessian instanceof Float32Array ? hessian : Float32Array.from(hessian), K);
  return sumsOf(dh, d, approximations.length, N * K);
}

/** The rows minus each approximation ('zero': the rows themselves), stacked ([m * N, K]). */
function differences(rows: Float32Array, approximations: ReadonlyArray<Float32Array | 'zero'>): Float32Array {
  const size = rows.length;
  const d = new Float32Array(approximations.length * size);
  approximations.forEach((x, a) => {
    const at = a * size;
    if (x === 'zero') d.set(rows, at);
    else for (let i = 0; i < size; i++) d[at + i] = rows[i]! - x[i]!;
  });
  return d;
}

/** Per approximation, the sum of (D H) * D over its `size` elements. */
function sumsOf(dh: Float32Array, d: Float32Array, m: number, size: number): number[] {
  const totals = new Array<number>(m).fill(0);
  for (let a = 0; a < m; a++) {
    let s = 0;
    for (let i = a * size; i < (a + 1) * size; i++) s += dh[i]! * d[i]!;
    totals[a] = s;
  }
  return totals;
}
