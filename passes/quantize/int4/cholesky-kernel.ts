/**
 * The in-JS Cholesky factor of int4/linalg.ts (`cholesky`: whole factors up to 128 wide, and the
 * diagonal blocks of the panels of wider ones) as a WebAssembly SIMD kernel. The matrix is held
 * column by column (column p of L contiguous), so that each column's update by an earlier one is a
 * run of pairs along the rows: for column j, every element below the diagonal starts as A[i][j] and
 * loses L[i][p] L[j][p] for p = 0, 1, ... in turn, then is scaled by 1 / L[j][j] — the JS loop's
 * operations in its order (no fused multiply-add), so the factor is the JS loop's bit for bit
 * (test/quantize-int4/span-kernel.test.ts). Undefined where WebAssembly SIMD is not available.
 */
import { code, lazyKernel, Locals, op, reserveMemory } from '../../../core/wasm.js';

/** `chol(n, base) -> 1 | 0`: the lower factor of the n x n matrix at `base` (column-major, the lower triangle read), in place; 0 when not positive definite. */
function cholFunction() {
  const L = new Locals([
    ['n', 'i32'],
    ['base', 'i32'],
  ]);
  L.declare('i32', 'j', 'p', 'at', 'colJ', 'colP', 'rowEnd', 'pairsEnd', 'colBytes');
  L.declare('f64', 'd', 'x', 'inv');
  L.declare('v128', 'cv', 'iv');
  const i32 = op.i32_const;
  /** for (at = (j + 1) * 8; at + 16 <= rowEnd; at += 16) body; then the last odd element, `tail`, when there is one */
  const overPairs = (body: number[][], tail: number[][]) =>
    code(
      L.get('j'), i32(1), op.i32_add, i32(3), op.i32_shl, L.set('at'),
      op.block, op.loop, L.get('at'), i32(16), op.i32_add, L.get('rowEnd'), op.i32_gt_s, op.br_if(1), ...body, L.get('at'), i32(16), op.i32_add, L.set('at'), op.br(0), op.end, op.end,
      L.get('at'), L.get('rowEnd'), op.i32_lt_s, op.if, ...tail, op.end,
    );
  const body = code(
    L.get('n'), i32(3), op.i32_shl, L.tee('colBytes'), L.set('rowEnd'),
    i32(0), L.set('j'),
    op.block, op.loop, L.get('j'), L.get('n'), op.i32_ge_s, op.br_if(1),
    L.get('base'), L.get('j'), L.get('colBytes'), op.i32_mul, op.i32_add, L.set('colJ'),
    // d = A[j][j] - sum over p < j of L[j][p]^2, in order
    L.get('colJ'), L.get('j'), i32(3), op.i32_shl, op.i32_add, op.f64_load(), L.set('d'),
    i32(0), L.set('p'),
    op.block, op.loop, L.get('p'), L.get('j'), op.i32_ge_s, op.br_if(1),
    L.get('base'), L.get('p'), L.get('colBytes'), op.i32_mul, op.i32_add, L.get('j'), i32(3), op.i32_shl, op.i32_add, op.f64_load(), L.set('x'),
    L.get('d'), L.get('x'), L.get('x'), op.f64_mul, op.f64_sub, L.set('d'),
    L.get('p'), i32(1), op.i32_add, L.set('p'), op.br(0), op.end, op.end,
    // not positive definite (NaN included)
    L.get('d'), op.f64_const(0), op.f64_gt, op.if, op.else, i32(0), op.return, op.end,
    L.get('colJ'), L.get('j'), i32(3), op.i32_shl, op.i32_add, L.get('d'), op.f64_sqrt, L.tee('x'), op.f64_store(),
    op.f64_const(1), L.get('x'), op.f64_div, L.tee('inv'), op.f64x2_splat, L.set('iv'),
    // the column below the diagonal: each earlier column's products off, in order, then the scale
    i32(0), L.set('p'),
    op.block, op.loop, L.get('p'), L.get('j'), op.i32_ge_s, op.br_if(1),
    L.get('base'), L.get('p'), L.get('colBytes'), op.i32_mul, op.i32_add, L.tee('colP'), L.get('j'), i32(3), op.i32_shl, op.i32_add, op.f64_load(), L.tee('x'), op.f64x2_splat, L.set('cv'),
    overPairs(
      [code(L.get('colJ'), L.get('at'), op.i32_add, L.get('colJ'), L.get('at'), op.i32_add, op.v128_load(), L.get('colP'), L.get('at'), op.i32_add, op.v128_load(), L.get('cv'), op.f64x2_mul, op.f64x2_sub, op.v128_store())],
      [code(L.get('colJ'), L.get('at'), op.i32_add, L.get('colJ'), L.get('at'), op.i32_add, op.f64_load(), L.get('colP'), L.get('at'), op.i32_add, op.f64_load(), L.get('x'), op.f64_mul, op.f64_sub, op.f64_store())],
    ),
    L.get('p'), i32(1), op.i32_add, L.set('p'), op.br(0), op.end, op.end,
    overPairs(
      [code(L.get('colJ'), L.get('at'), op.i32_add, L.get('colJ'), L.get('at'), op.i32_add, op.v128_load(), L.get('iv'), op.f64x2_mul, op.v128_store())],
      [code(L.get('colJ'), L.get('at'), op.i32_add, L.get('colJ'), L.get('at'), op.i32_add, op.f64_load(), L.get('inv'), op.f64_mul, op.f64_store())],
    ),
    L.get('j'), i32(1), op.i32_add, L.set('j'), op.br(0), op.end, op.end,
    i32(1),
  );
  return { name: 'chol', params: L.params, results: ['i32' as const], locals: L.locals, body };
}

/**
 * `inverse(n, a, out, acc, unit)`: the inverse of a lower triangular matrix row by row, each row from
 * the earlier ones, every element's terms in the JS loops' order (p ascending, zero coefficients
 * skipped; no fused multiply-add). `unit` (gptq.ts unitLowerInverse): (I + A)^-1 for A strictly
 * lower, out[i] = e_i - sum over p < i of A[i][p] out[p], starting from 0 - ...; else (linalg.ts
 * lowerInverse) out[i][c] = -(sum over p < i of A[i][p] out[p][c]) / A[i][i] from 0 + ..., and
 * out[i][i] = 1 / A[i][i]. Row-major n x n at `a` and `out` (out zeroed by the caller), `acc` n scratch.
 */
function inverseFunction() {
  const L = new Locals([
    ['n', 'i32'],
    ['a', 'i32'],
    ['out', 'i32'],
    ['acc', 'i32'],
    ['unit', 'i32'],
  ]);
  L.declare('i32', 'i', 'p', 'at', 'rowBytes', 'rowI', 'rowP', 'end', 'dst');
  L.declare('f64', 'c', 'd');
  L.declare('v128', 'cv');
  const i32 = op.i32_const;
  // over elements 0..end-1 (bytes) of a row: pairs, then the last odd one
  const overPairs = (pair: ReadonlyArray<readonly number[]>, one: ReadonlyArray<readonly number[]>) =>
    code(
      i32(0), L.set('at'),
      op.block, op.loop, L.get('at'), i32(16), op.i32_add, L.get('end'), op.i32_gt_s, op.br_if(1), ...pair, L.get('at'), i32(16), op.i32_add, L.set('at'), op.br(0), op.end, op.end,
      L.get('at'), L.get('end'), op.i32_lt_s, op.if, ...one, op.end,
    );
  const addr = (base: string) => code(L.get(base), L.get('at'), op.i32_add);
  // dst: the unit form works in `out`'s row i itself, the other in `acc`
  const body = code(
    L.get('n'), i32(3), op.i32_shl, L.set('rowBytes'),
    i32(0), L.set('i'),
    op.block, op.loop, L.get('i'), L.get('n'), op.i32_ge_s, op.br_if(1),
    L.get('a'), L.get('i'), L.get('rowBytes'), op.i32_mul, op.i32_add, L.set('rowI'),
    L.get('unit'), op.if, L.get('out'), L.get('i'), L.get('rowBytes'), op.i32_mul, op.i32_add, L.set('dst'), op.else,
    L.get('acc'), L.set('dst'),
    // acc[0..i) = 0
    L.get('i'), i32(3), op.i32_shl, L.set('end'),
    overPairs([code(addr('dst'), op.f64_const(0), op.f64x2_splat, op.v128_store())], [code(addr('dst'), op.f64_const(0), op.f64_store())]),
    op.end,
    i32(0), L.set('p'),
    op.block, op.loop, L.get('p'), L.get('i'), op.i32_ge_s, op.br_if(1),
    L.get('rowI'), L.get('p'), i32(3), op.i32_shl, op.i32_add, op.f64_load(), L.tee('c'), op.f64_const(0), op.f64_eq,
    op.if, op.else,
    L.get('c'), op.f64x2_splat, L.set('cv'),
    L.get('out'), L.get('p'), L.get('rowBytes'), op.i32_mul, op.i32_add, L.set('rowP'),
    L.get('p'), i32(1), op.i32_add, i32(3), op.i32_shl, L.set('end'),
    L.get('unit'),
    op.if,
    overPairs(
      [code(addr('dst'), addr('dst'), op.v128_load(), L.get('cv'), addr('rowP'), op.v128_load(), op.f64x2_mul, op.f64x2_sub, op.v128_store())],
      [code(addr('dst'), addr('dst'), op.f64_load(), L.get('c'), addr('rowP'), op.f64_load(), op.f64_mul, op.f64_sub, op.f64_store())],
    ),
    op.else,
    overPairs(
      [code(addr('dst'), addr('dst'), op.v128_load(), L.get('cv'), addr('rowP'), op.v128_load(), op.f64x2_mul, op.f64x2_add, op.v128_store())],
      [code(addr('dst'), addr('dst'), op.f64_load(), L.get('c'), addr('rowP'), op.f64_load(), op.f64_mul, op.f64_add, op.f64_store())],
    ),
    op.end,
    op.end,
    L.get('p'), i32(1), op.i32_add, L.set('p'), op.br(0), op.end, op.end,
    // the diagonal, and (not unit) the row from acc: -acc / d
    L.get('out'), L.get('i'), L.get('rowBytes'), op.i32_mul, op.i32_add, L.set('rowP'),
    L.get('unit'),
    op.if,
    L.get('rowP'), L.get('i'), i32(3), op.i32_shl, op.i32_add, op.f64_const(1), op.f64_store(),
    op.else,
    L.get('rowI'), L.get('i'), i32(3), op.i32_shl, op.i32_add, op.f64_load(), L.set('d'),
    L.get('i'), i32(3), op.i32_shl, L.set('end'),
    overPairs(
      [code(addr('rowP'), addr('acc'), op.v128_load(), op.f64x2_neg, L.get('d'), op.f64x2_splat, op.f64x2_div, op.v128_store())],
      [code(addr('rowP'), addr('acc'), op.f64_load(), op.f64_neg, L.get('d'), op.f64_div, op.f64_store())],
    ),
    L.get('rowP'), L.get('i'), i32(3), op.i32_shl, op.i32_add, op.f64_const(1), L.get('d'), op.f64_div, op.f64_store(),
    op.end,
    L.get('i'), i32(1), op.i32_add, L.set('i'), op.br(0), op.end, op.end,
  );
  return { name: 'inverse', params: L.params, locals: L.locals, body };
}

/** One instance of the kernel (its own memory: one per thread). */
export class CholeskyKernel {
  private readonly memory: WebAssembly.Memory;
  private readonly fn: (n: number, base: number) => number;
  private readonly inverseFn: (n: number, a: number, out: number, acc: number, unit: number) => void;

  constructor(module: WebAssembly.Module) {
    const instance = new WebAssembly.Instance(module, {});
    this.memory = instance.exports.memory as WebAssembly.Memory;
    this.fn = instance.exports.chol as (n: number, base: number) => number;
    this.inverseFn = instance.exports.inverse as (n: number, a: number, out: number, acc: number, unit: number) => void;
  }


  /** Runs `inverse` on the n x n matrix `fill` writes into the first region; the inverse, a view valid until the next call. */
  private inverse(n: number, unit: boolean, fill: (a: Float64Array) => void): Float64Array {
    const size = 8 * n * n;
    const buf = reserveMemory(this.memory, 2 * size + 8 * n);
    const a = new Float64Array(buf, 0, n * n);
    fill(a);
    const out = new Float64Array(buf, size, n * n).fill(0);
    this.inverseFn(n, 0, size, 2 * size, unit ? 1 : 0);
    return out;
  }

  /** gptq.ts unitLowerInverse: (I + M[k1:k2, k1:k2])^-1 of the strictly lower M (K x K), float32. */
  unitLowerInverse(m: Float64Array, K: number, k1: number, k2: number): Float32Array {
    const n = k2 - k1;
    return Float32Array.from(this.inverse(n, true, (a) => {
      for (let i = 0; i < n; i++) a.set(m.subarray((k1 + i) * K + k1, (k1 + i) * K + k2), i * n);
    }));
  }

  /** linalg.ts lowerInverse: the inverse of the lower triangular `l` (n x n), a new array. */
  lowerInverse(l: Float64Array, n: number): Float64Array {
    return this.inverse(n, false, (a) => a.set(l.subarray(0, n * n))).slice();
  }

  /**
   * The lower Cholesky factor of `a` (n x n, row-major, its lower triangle read) in place, the upper
   * triangle zeroed; false when `a` is not positive definite (`a` is then left partly factored, as
   * the JS loop leaves it in another state: callers drop it).
   */
  factor(a: Float64Array, n: number): boolean {
    const c = new Float64Array(reserveMemory(this.memory, 8 * n * n), 0, n * n);
    for (let p = 0; p < n; p++) transposeColumn(a, c, n, p);
    if (this.fn(n, 0) === 0) return false;
    for (let i = 0; i < n; i++) {
      copyRow(c, a, n, i);
      a.fill(0, i * n + i + 1, (i + 1) * n);
    }
    return true;
  }
}

/** c[p][i] = a[i][p] for i >= p (column p of a's lower triangle into c's row p). */
function transposeColumn(a: Float64Array, c: Float64Array, n: number, p: number): void {
  const row = p * n;
  for (let i = p; i < n; i++) c[row + i] = a[i * n + p]!;
}

/** a[i][p] = c[p][i] for p <= i (row i of the factor, back from c's columns). */
function copyRow(c: Float64Array, a: Float64Array, n: number, i: number): void {
  const row = i * n;
  for (let p = 0; p <= i; p++) a[row + p] = c[p * n + i]!;
}

const lazy = lazyKernel(() => [cholFunction(), inverseFunction()], (m) => new CholeskyKernel(m));

/** Turns the kernel off (the JS loop everywhere in this thread) or back on: tests compare the two. */
export const useCholeskyKernel = (on: boolean): void => lazy.use(on);

/**
 * Factors and inverses at least this wide run in the kernel (the same values as the JS loops): on
 * the smallest the copies in and out cost more than it saves.
 */
const KERNEL_MIN_WIDTH = 16;

/** This thread's kernel for a matrix `n` wide, or undefined when it is narrower than {@link KERNEL_MIN_WIDTH}, where WebAssembly SIMD is not available, or with ONNXFORGE_WASM=0. */
export const choleskyKernel = (n: number): CholeskyKernel | undefined => (n >= KERNEL_MIN_WIDTH ? lazy.get() : undefined);
