/**
 * Dense linear algebra for GPTQ with the O(n^3) work in onnxruntime: a blocked Cholesky factor in
 * float64 (each panel of {@link PANEL} columns updated by the columns before it and solved by float64
 * Gemms run by onnxruntime, its diagonal block factored and inverted in JS), and
 * float32 products for GPTQ's lazy updates (C + A B as one Gemm) and the first/last-layer trials.
 */
import type { ModelSession, Runner } from '../../../runtime/runner-types.js';
import type { Cancellation } from '../../../core/share-work.js';
import { choleskyKernel } from './cholesky-kernel.js';
import { GraphBuilder } from '../../../ir/builder.js';
import type { Model } from '../../../ir/ir.js';
import { DataType } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';

/**
 * Columns per panel of the blocked Cholesky factor. A panel costs JS P^3 / 3 multiply-adds (its
 * diagonal block factored and inverted) and two onnxruntime calls.
 */
const PANEL = 64;

/** Factors of at most this many columns are computed in JS alone (n^3 / 6 multiply-adds: ~1 ms at 128, against ~2 ms in panels). */
const IN_JS = 128;

/**
 * In-place lower Cholesky factor of the symmetric positive definite a (n x n, row-major, the lower
 * triangle read, the upper one zeroed); false if it is not positive definite.
 */
export function cholesky(a: Float64Array, n: number): boolean {
  const kernel = choleskyKernel(n);
  if (kernel) return kernel.factor(a, n);
  return factorPanel(a, n, 0, n) && (zeroUpper(a, n), true);
}

/**
 * Columns k0..k1 of the lower Cholesky factor of a (n x n), in place: the diagonal block
 * a[k0:k1, k0:k1] and the rows below it, assuming every earlier panel's trailing update was applied.
 * Row by row (left-looking inside the panel), every dot product over contiguous memory.
 */
function factorPanel(a: Float64Array, n: number, k0: number, k1: number): boolean {
  for (let j = k0; j < k1; j++) {
    const rj = j * n;
    let d = a[rj + j]!;
    for (let p = k0; p < j; p++) d -= a[rj + p]! * a[rj + p]!;
    if (!(d > 0)) return false;
    const ljj = Math.sqrt(d);
    a[rj + j] = ljj;
    const inv = 1 / ljj;
    let i = j + 1;
    // four rows at a time: each element of row j read once per four dot products
    for (; i + 4 <= n; i += 4) column4(a, n, k0, j, rj, i, inv);
    for (; i < n; i++) {
      const ri = i * n;
      let s = a[ri + j]!;
      for (let p = k0; p < j; p++) s -= a[ri + p]! * a[rj + p]!;
      a[ri + j] = s * inv;
    }
  }
  return true;
}

/** a[i..i+3][j] = (a[i..i+3][j] - sum over p in k0..j of a[i..i+3][p] a[j][p]) * inv. */
function column4(a: Float64Array, n: number, k0: number, j: number, rj: number, i: number, inv: number): void {
  const r0 = i * n;
  const r1 = r0 + n;
  const r2 = r1 + n;
  const r3 = r2 + n;
  let s0 = a[r0 + j]!;
  let s1 = a[r1 + j]!;
  let s2 = a[r2 + j]!;
  let s3 = a[r3 + j]!;
  for (let p = k0; p < j; p++) {
    const x = a[rj + p]!;
    s0 -= a[r0 + p]! * x;
    s1 -= a[r1 + p]! * x;
    s2 -= a[r2 + p]! * x;
    s3 -= a[r3 + p]! * x;
  }
  a[r0 + j] = s0 * inv;
  a[r1 + j] = s1 * inv;
  a[r2 + j] = s2 * inv;
  a[r3 + j] = s3 * inv;
}

function zeroUpper(a: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) a.fill(0, i * n + i + 1, (i + 1) * n);
}

/** Rows r0..r1 and columns c0..c1 of the row-major a (n columns), into the start of `into` (a view of it returned), else a new array. */
function block(a: Float64Array, n: number, r0: number, r1: number, c0: number, c1: number, into?: Float64Array): Float64Array {
  const w = c1 - c0;
  const out = into ? into.subarray(0, (r1 - r0) * w) : new Float64Array((r1 - r0) * w);
  for (let r = r0; r < r1; r++) copyRun(a, r * n + c0, out, (r - r0) * w, w);
  return out;
}

/** a[r0.., c0..] = src ([rows, cols]). */
function putBlock(a: Float64Array, n: number, r0: number, c0: number, src: Float64Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) copyRun(src, r * cols, a, (r0 + r) * n + c0, cols);
}

/**
 * to[into..] = from[at..at + count]: runs of at least {@link COPY_BY_SET} as one native copy (a view and
 * `set`: the view is a little garbage per row, the element loop cost ~2.5 ns an element, 1.2 of a
 * 512-wide factor's ~4.7 ms), shorter ones element by element.
 */
function copyRun(from: Float64Array, at: number, to: Float64Array, into: number, count: number): void {
  if (count >= COPY_BY_SET) to.set(from.subarray(at, at + count), into);
  else for (let i = 0; i < count; i++) to[into + i] = from[at + i]!;
}

const COPY_BY_SET = 32;

/** -x, elementwise (in place). */
function negate(x: Float64Array): Float64Array {
  for (let i = 0; i < x.length; i++) x[i] = -x[i]!;
  return x;
}

/**
 * One small onnxruntime session with dynamic shapes, built from `build()` on first use and run many
 * times (1 intra-op thread; no memory arena: its products vary in size, and the memory of each goes
 * back after its run, so a session kept for later calls holds none); `dispose` when done.
 */
export abstract class LazySession {
  private session?: Promise<ModelSession>;
  constructor(private readonly runner: Runner) {}

  protected abstract readonly label: string;
  protected abstract build(): Model;

  protected open(): Promise<ModelSession> {
    return (this.session ??= this.runner.open(this.build(), { intraOpNumThreads: 1, enableCpuMemArena: false }, this.label));
  }

  async dispose(): Promise<void> {
    if (this.session) await (await this.session).dispose();
  }
}

type GemmData<T extends 'double' | 'float'> = T extends 'double' ? Float64Array : Float32Array;

/**
 * y = c + alpha a b (transB: a b^T) as one Gemm of element type `type` (a [m, k], b [k, n] or [n, k],
 * c [m, n]), dynamic shapes.
 */
class GemmSession<T extends 'double' | 'float'> extends LazySession {
  protected readonly label: string;

  constructor(runner: Runner, private readonly type: T, private readonly transB: boolean, private readonly alpha: number) {
    super(runner);
    this.label = `(${type === 'double' ? 'float64' : 'float32'} Gemm)`;
  }

  protected build(): Model {
    const b = new GraphBuilder({ opset: 13 });
    const a = b.input('a', this.type, ['m', 'k']);
    const x = b.input('b', this.type, this.transB ? ['n', 'k'] : ['k', 'n']);
    const c = b.input('c', this.type, ['m', 'n']);
    b.output(b.op('Gemm', [a, x, c], { transB: this.transB ? 1 : 0, alpha: this.alpha, beta: 1 }, { floats: ['alpha', 'beta'] })[0]!, 'y', this.type, ['m', 'n']);
    return b.model();
  }

  async run(a: GemmData<T>, m: number, k: number, b: GemmData<T>, n: number, c: GemmData<T>): Promise<GemmData<T>> {
    const type = this.type === 'double' ? 'float64' : 'float32';
    const out = await (await this.open()).run({ a: { type, dims: [m, k], data: a }, b: { type, dims: this.transB ? [n, k] : [k, n], data: b }, c: { type, dims: [m, n], data: c } }, ['y']);
    return out['y']!.data as GemmData<T>;
  }
}

/**
 * c + a b in float32 and, from its first rows, o + t (y[0:r] - o) (r: the rows of o): GPTQ's lazy update
 * and the block-start state of the quantization block it reaches, in one run.
 */
class Float32GemmStart extends LazySession {
  protected readonly label = '(float32 Gemm, block start)';

  protected build(): Model {
    const b = new GraphBuilder({ opset: 13 });
    const a = b.input('a', 'float', ['m', 'k']);
    const x = b.input('b', 'float', ['k', 'n']);
    const c = b.input('c', 'float', ['m', 'n']);
    const t = b.input('t', 'float', ['r', 'r']);
    const o = b.input('o', 'float', ['r', 'n']);
    const [y] = b.op('Gemm', [a, x, c]);
    const int64 = (name: string, v: number) => b.initializer(name, Tensor.from(DataType.INT64, [1], BigInt64Array.of(BigInt(v))));
    const [r] = b.op('Slice', [b.op('Shape', [o])[0]!, int64('zero', 0), int64('one', 1)]);
    const [head] = b.op('Slice', [y!, int64('start', 0), r!, int64('axis', 0)]);
    const [p] = b.op('Add', [o, b.op('MatMul', [t, b.op('Sub', [head!, o])[0]!])[0]!]);
    b.output(y!, 'y', 'float', ['m', 'n']);
    b.output(p!, 'p', 'float', ['r', 'n']);
    return b.model();
  }

  async run(a: Float32Array, m: number, k: number, b: Float32Array, n: number, c: Float32Array, t: Float32Array, r: number, o: Float32Array): Promise<{ y: Float32Array; p: Float32Array }> {
    const out = await (await this.open()).run({ a: { type: 'float32', dims: [m, k], data: a }, b: { type: 'float32', dims: [k, n], data: b }, c: { type: 'float32', dims: [m, n], data: c }, t: { type: 'float32', dims: [r, r], data: t }, o: { type: 'float32', dims: [r, n], data: o } }, ['y', 'p']);
    return { y: out['y']!.data as Float32Array, p: out['p']!.data as Float32Array };
  }
}

const shared = new WeakMap<Runner, Linalg>();

/**
 * The {@link Linalg} of `runner` that every caller shares and none disposes: its sessions hold no
 * model's data and no memory between runs, and opening them and their first runs cost the trained
 * LM's int4 pass ~9 ms of ~60 each time (a helper thread keeps its own the same way).
 */
export function sharedLinalg(runner: Runner): Linalg {
  let l = shared.get(runner);
  if (!l) shared.set(runner, (l = new Linalg(runner)));
  return l;
}

/** Cholesky factors and float32 products in onnxruntime (small sessions, each opened on first use); `dispose` when done, unless {@link sharedLinalg} made it. */
export class Linalg {
  /** c - a b^T in float64: the Cholesky factor's panel update and solve. */
  private readonly gemm64: GemmSession<'double'>;
  /** The panel factor's operand buffers, kept for the next factor (of at most their width), and whether a factor holds them. */
  private scratch?: { n: number; a: Float64Array; b: Float64Array; panel: Float64Array; zeros: Float64Array };
  private scratchHeld = false;
  /** c + a b in float32. */
  private readonly gemm: GemmSession<'float'>;
  private readonly gemmStart: Float32GemmStart;

  constructor(runner: Runner) {
    this.gemm64 = new GemmSession(runner, 'double', true, -1);
    this.gemm = new GemmSession(runner, 'float', false, 1);
    this.gemmStart = new Float32GemmStart(runner);
  }

  /** c + a [m, k] x b [k, n] in float32 (c: [m, n]; zeros for a plain product). */
  gemm32(a: Float32Array, m: number, k: number, b: Float32Array, n: number, c: Float32Array = new Float32Array(m * n)): Promise<Float32Array> {
    return this.gemm.run(a, m, k, b, n, c);
  }

  /** y = c + a [m, k] x b [k, n] and p = o + t (y[0:r] - o) (t [r, r], o [r, n], r <= m), in float32. */
  gemm32Start(a: Float32Array, m: number, k: number, b: Float32Array, n: number, c: Float32Array, t: Float32Array, r: number, o: Float32Array): Promise<{ y: Float32Array; p: Float32Array }> {
    return this.gemmStart.run(a, m, k, b, n, c, t, r, o);
  }

  /** a [m, k] x b [k, n] in float32. */
  matmul32(a: Float32Array, m: number, k: number, b: Float32Array, n: number): Promise<Float32Array> {
    return this.gemm32(a, m, k, b, n);
  }

  /**
   * Buffers for a factor of width n: the kept ones when they are wide enough and no other factor
   * (another pass sharing this Linalg) holds them, else fresh ones (a quarter Hessian of fresh pages).
   */
  private scratchFor(n: number) {
    const fresh = () => ({ n, a: new Float64Array(Math.ceil((n * n) / 4) + n), b: new Float64Array(PANEL * n), panel: new Float64Array(PANEL * n), zeros: new Float64Array(PANEL * n) });
    if (this.scratchHeld) return { buffers: fresh(), release: () => undefined };
    if (!this.scratch || this.scratch.n < n) this.scratch = fresh();
    this.scratchHeld = true;
    return { buffers: this.scratch, release: () => (this.scratchHeld = false) };
  }

  async dispose(): Promise<void> {
    this.scratch = undefined;
    await this.gemm64.dispose();
    await this.gemm.dispose();
    await this.gemmStart.dispose();
  }

  /**
   * The lower Cholesky factor of the symmetric positive definite `a` (n x n, its lower triangle read;
   * factored in place, the upper triangle zeroed), or false when `a` is not positive definite.
   * Left-looking in panels of {@link PANEL} columns: each panel is first updated by the columns already
   * factored, A[k0:, k0:k1] -= L[k0:, :k0] L[k0:k1, :k0]^T (one float64 Gemm by onnxruntime: only the
   * panel, so n^3 / 3 flops in all, not a full trailing matrix per panel), then its diagonal block is
   * factored and inverted in JS and the rows below it solved, L21 = P21 L11^-T (a second Gemm).
   * Stops (throws) between panels once `signal` aborts.
   */
  async cholesky(a: Float64Array, n: number, signal?: Cancellation): Promise<boolean> {
    if (n <= IN_JS) return cholesky(a, n);
    // the Gemms' operands are copied into buffers kept from factor to factor (the largest of each),
    // not fresh arrays per panel: ~1 MB at n = 512 instead of ~5 MB of new pages per factor
    const held = this.scratchFor(n);
    try {
      return await this.factorPanels(a, n, held.buffers, signal);
    } finally {
      held.release();
    }
  }

  private async factorPanels(a: Float64Array, n: number, scratch: { a: Float64Array; b: Float64Array; panel: Float64Array; zeros: Float64Array }, signal?: Cancellation): Promise<boolean> {
    for (let k0 = 0; k0 < n; k0 += PANEL) {
      signal?.throwIfAborted();
      const k1 = Math.min(n, k0 + PANEL);
      const p = k1 - k0;
      const m = n - k0;
      // the panel's columns, rows k0..n, less the products of the columns already factored:
      // A[k0:, k0:k1] - L[k0:, :k0] L[k0:k1, :k0]^T
      let panel = block(a, n, k0, n, k0, k1, scratch.panel);
      if (k0 > 0) panel = await this.gemm64.run(block(a, n, k0, n, 0, k0, scratch.a), m, k0, block(a, n, k0, k1, 0, k0, scratch.b), p, panel);
      const l11 = block(panel, p, 0, p, 0, p);
      if (!cholesky(l11, p)) return false;
      putBlock(a, n, k0, k0, l11, p, p);
      if (m === p) break;
      // L21 = P21 L11^-T = 0 - (-P21) (L11^-1)^T
      putBlock(a, n, k1, k0, await this.gemm64.run(negate(panel.subarray(p * p)), m - p, p, lowerInverse(l11, p), p, scratch.zeros.subarray(0, (m - p) * p)), m - p, p);
    }
    zeroUpper(a, n);
    return true;
  }
}

/** The inverse of the lower triangular `l` (n x n), lower triangular; rows are built in order so every read is contiguous. */
function lowerInverse(l: Float64Array, n: number): Float64Array {
  const kernel = choleskyKernel(n);
  if (kernel) return kernel.lowerInverse(l, n);
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
