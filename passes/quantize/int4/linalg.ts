/**
 * Dense linear algebra for GPTQ with the O(n^3) work in onnxruntime: a Cholesky factor and its
 * inverse in float64, computed recursively on halves (the two diagonal halves recursively, the
 * off-diagonal blocks and the Schur complement by float64 MatMuls run by onnxruntime, blocks of at
 * most {@link LEAF} rows factored in JS), and a float32 MatMul for GPTQ's lazy updates. In JS the
 * same factor of a 512 x 512 Hessian took 140 ms; here it is a few milliseconds of MatMuls.
 */
import type { ModelSession, Runner } from '../../../runtime/runner-types.js';
import { GraphBuilder } from '../../../ir/builder.js';
import type { Model } from '../../../ir/ir.js';

/**
 * Largest block factored in JS (below it, onnxruntime's per-run overhead costs more than the arithmetic).
 * CPU time of the trained LM's ten 128-wide and three 512-wide factors: 128 ~20 / ~46 ms, 64 ~13 / ~42,
 * 32 ~10 / ~35 (3 runs each, load ~2.5).
 */
const LEAF = 32;

/** In-place lower Cholesky factor of the symmetric positive definite a (n x n); false if it is not. */
export function cholesky(a: Float64Array, n: number): boolean {
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let d = a[rj + j]!;
    for (let p = 0; p < j; p++) d -= a[rj + p]! * a[rj + p]!;
    if (!(d > 0)) return false;
    const ljj = Math.sqrt(d);
    a[rj + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = a[ri + j]!;
      for (let p = 0; p < j; p++) s -= a[ri + p]! * a[rj + p]!;
      a[ri + j] = s / ljj;
    }
    for (let p = j + 1; p < n; p++) a[rj + p] = 0;
  }
  return true;
}

/** The inverse of the lower triangular `l` (n x n), lower triangular; rows are built in order so every read is contiguous. */
export function lowerInverse(l: Float64Array, n: number): Float64Array {
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

/** Rows r0..r1 and columns c0..c1 of the row-major a (n columns). */
export function block(a: Float64Array, n: number, r0: number, r1: number, c0: number, c1: number): Float64Array {
  const w = c1 - c0;
  const out = new Float64Array((r1 - r0) * w);
  for (let r = r0; r < r1; r++) out.set(a.subarray(r * n + c0, r * n + c1), (r - r0) * w);
  return out;
}

function transpose(a: Float64Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c]!;
  return t;
}

/**
 * One small onnxruntime session with dynamic shapes, built from `build()` on first use and run many
 * times (1 intra-op thread); `dispose` when done.
 */
export abstract class LazySession {
  private session?: Promise<ModelSession>;
  constructor(private readonly runner: Runner) {}

  protected abstract readonly label: string;
  protected abstract build(): Model;

  protected open(): Promise<ModelSession> {
    return (this.session ??= this.runner.open(this.build(), { intraOpNumThreads: 1 }, this.label));
  }

  async dispose(): Promise<void> {
    if (this.session) await (await this.session).dispose();
  }
}

/** A [m, k] x [k, n] MatMul graph of one element type, dynamic shapes. */
function matmulModel(type: 'double' | 'float'): Model {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('a', type, ['m', 'k']);
  const y = b.input('b', type, ['k', 'n']);
  b.output(b.op('MatMul', [x, y])[0]!, 'c', type, ['m', 'n']);
  return b.model();
}

/** float32 MatMul in onnxruntime (MLAS: ~3x the float64 MatMul's speed, ~7x at an inner dimension of 16). */
class Float32MatMul extends LazySession {
  protected readonly label = '(float32 MatMul)';

  protected build(): Model {
    return matmulModel('float');
  }

  async run(a: Float32Array, m: number, k: number, b: Float32Array, n: number): Promise<Float32Array> {
    const out = await (await this.open()).run({ a: { type: 'float32', dims: [m, k], data: a }, b: { type: 'float32', dims: [k, n], data: b } }, ['c']);
    return out['c']!.data as Float32Array;
  }
}

/** float64 (and float32) MatMuls in onnxruntime (one session each, dynamic shapes); `dispose` when done. */
export class Linalg extends LazySession {
  protected readonly label = '(float64 MatMul)';
  private readonly f32: Float32MatMul;

  constructor(runner: Runner) {
    super(runner);
    this.f32 = new Float32MatMul(runner);
  }

  protected build(): Model {
    return matmulModel('double');
  }

  /** a [m, k] x b [k, n]. */
  async matmul(a: Float64Array, m: number, k: number, b: Float64Array, n: number): Promise<Float64Array> {
    const s = await this.open();
    const out = await s.run({ a: { type: 'float64', dims: [m, k], data: a }, b: { type: 'float64', dims: [k, n], data: b } }, ['c']);
    return out['c']!.data as Float64Array;
  }

  /** a [m, k] x b [k, n] in float32. */
  matmul32(a: Float32Array, m: number, k: number, b: Float32Array, n: number): Promise<Float32Array> {
    return this.f32.run(a, m, k, b, n);
  }

  override async dispose(): Promise<void> {
    await this.f32.dispose();
    await super.dispose();
  }

  /**
   * The inverse of the lower Cholesky factor L of the symmetric positive definite `a` (n x n,
   * a = L L^T), or undefined when `a` is not positive definite. With a = [[A11, A21^T], [A21, A22]]:
   * X11 = L11^-1 from A11, L21 = A21 X11^T, X22 = L22^-1 from the Schur complement A22 - L21 L21^T,
   * and the lower left block of L^-1 is -X22 L21 X11. (L itself is never formed beyond the leaves.)
   */
  async choleskyInverse(a: Float64Array, n: number): Promise<Float64Array | undefined> {
    if (n <= LEAF) {
      const l = Float64Array.from(a);
      return cholesky(l, n) ? lowerInverse(l, n) : undefined;
    }
    const n1 = Math.min(n - 1, Math.ceil(n / 2 / LEAF) * LEAF);
    const n2 = n - n1;
    const x11 = await this.choleskyInverse(block(a, n, 0, n1, 0, n1), n1);
    if (!x11) return undefined;
    const l21 = await this.matmul(block(a, n, n1, n, 0, n1), n2, n1, transpose(x11, n1, n1), n1);
    const schur = block(a, n, n1, n, n1, n);
    subtractInPlace(schur, await this.matmul(l21, n2, n1, transpose(l21, n2, n1), n2));
    const x22 = await this.choleskyInverse(schur, n2);
    if (!x22) return undefined;
    const x21 = await this.matmul(x22, n2, n2, await this.matmul(l21, n2, n1, x11, n1), n1);
    return assemble(x11, x22, x21, n1, n2);
  }
}

/*
 * The loops of choleskyInverse live in plain functions: V8 compiles a hot loop inside an async
 * function less well than in a plain one (GPTQ's in-block loop, gptq.ts, measured 0.78 against 0.46 ms).
 */

/** a -= b, elementwise. */
function subtractInPlace(a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < a.length; i++) a[i]! -= b[i]!;
}

/** L^-1 = [[X11, 0], [-X21, X22]] from its blocks (n1 + n2 rows). */
function assemble(x11: Float64Array, x22: Float64Array, x21: Float64Array, n1: number, n2: number): Float64Array {
  const n = n1 + n2;
  const inv = new Float64Array(n * n);
  for (let r = 0; r < n1; r++) inv.set(x11.subarray(r * n1, (r + 1) * n1), r * n);
  for (let r = 0; r < n2; r++) {
    const o = (n1 + r) * n;
    for (let c = 0; c < n1; c++) inv[o + c] = -x21[r * n1 + c]!;
    inv.set(x22.subarray(r * n2, (r + 1) * n2), o + n1);
  }
  return inv;
}
