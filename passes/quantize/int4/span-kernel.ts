/**
 * GPTQ's in-span loop (gptq.ts quantizeSpan) as a WebAssembly SIMD kernel, two outputs per
 * instruction: each input's feedback from the span's earlier inputs' errors, its codes, the float32
 * weights they stand for, its errors and their sums. The same IEEE operations in the same order as
 * the JS loop (the feedback in groups of eight, four, then three, two or one, each group's products
 * summed in the JS expression's association; round half up as blocks.ts roundHalfUp; every sum in
 * output order), so the codes and values are the JS loop's bit for bit (test/quantize-int4/span-kernel.test.ts).
 * The JS loop stays for runtimes without WebAssembly SIMD, for an odd number of outputs, and where
 * the module cannot be compiled synchronously (a browser's main thread refuses modules over 4 KB).
 *
 * Memory per call (byte offsets from 0, each region 16-aligned): the span's weights in (float32
 * [S, N]), w' and d in float64 ([S, N] each), the span's coefficients M[k1.., k1..] ([S, S]), diag
 * ([S]), scales and zero points ([N] each), the original weights (float32 [S, N]), the outputs d and
 * dequant (float32 [S, N]) and codes ([S, N] bytes), and the two sums.
 */
import { code, lazyKernel, Locals, op, reserveMemory } from '../../../core/wasm.js';

const PARAMS = ['S', 'N', 'wIn', 'ws', 'dd', 'm', 'diag', 's', 'z', 'orig', 'd', 'dq', 'codes', 'sums'] as const;

/** The kernel's instructions: `span(S, N, offsets..., levels)`. */
function spanFunction() {
  const L = new Locals([...PARAMS.map((p): [string, 'i32'] => [p, 'i32']), ['levels', 'f64']]);
  L.declare('i32', 'j', 'k', 'nb', 'rowBytes', 'row', 'ddRow', 'mRow', 'a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 'f32At', 'u8At', 'count');
  L.declare('f64', 'c0', 'e2', 'd2');
  L.declare('v128', 'v0', 'v1', 'v2', 'v3', 'v4', 'v5', 'v6', 'v7', 'x', 'sv', 'zv', 't', 'f', 'q', 'dqv', 'dn', 'e', 'lev', 'zero', 'half', 'one', 'bkk');
  const i32 = op.i32_const;
  /** for (nb = 0; nb < rowBytes; nb += 16) body */
  const overRow = (...body: number[][]) => code(i32(0), L.set('nb'), op.block, op.loop, L.get('nb'), L.get('rowBytes'), op.i32_ge_s, op.br_if(1), ...body, L.get('nb'), i32(16), op.i32_add, L.set('nb'), op.br(0), op.end, op.end);
  const at = (base: string) => code(L.get(base), L.get('nb'), op.i32_add);
  // feedback of g inputs k.. (coefficients splatted into v0.., rows' addresses in a0..): w' += sum, in the JS association
  const term = (i: number) => code(L.get(`v${i}`), at(`a${i}`), op.v128_load(), op.f64x2_mul);
  const chain = (from: number, to: number) => code(term(from), ...Array.from({ length: to - from - 1 }, (_, i) => code(term(from + 1 + i), op.f64x2_add)));
  const sumOf = (g: number) => (g === 8 ? code(chain(0, 4), chain(4, 8), op.f64x2_add) : chain(0, g));
  const setup = (g: number) =>
    code(
      ...Array.from({ length: g }, (_, i) =>
        code(
          L.get('mRow'), L.get('k'), i32(i), op.i32_add, i32(3), op.i32_shl, op.i32_add, op.f64_load(), ...(i === 0 ? [L.tee('c0')] : []), op.f64x2_splat, L.set(`v${i}`),
          L.get('dd'), L.get('k'), i32(i), op.i32_add, L.get('rowBytes'), op.i32_mul, op.i32_add, L.set(`a${i}`),
        ),
      ),
    );
  const group = (g: number) => code(setup(g), overRow(at('row'), at('row'), op.v128_load(), sumOf(g), op.f64x2_add, op.v128_store()), L.get('k'), i32(g), op.i32_add, L.set('k'));
  // a single input's feedback is skipped when its coefficient is 0 (as the JS loop's feedback1)
  const group1 = code(setup(1), L.get('c0'), op.f64_const(0), op.f64_eq, op.if, op.else, overRow(at('row'), at('row'), op.v128_load(), sumOf(1), op.f64x2_add, op.v128_store()), op.end);
  const promote = code(op.f32x4_demote_f64x2_zero, op.f64x2_promote_low_f32x4);
  // address of output n (nb = 8 n) of this input's row in a float32 or byte region
  const f32at = (base: string) => code(L.get(base), L.get('f32At'), op.i32_add, L.get('nb'), i32(1), op.i32_shr_u, op.i32_add);
  const u8at = code(L.get('codes'), L.get('u8At'), op.i32_add, L.get('nb'), i32(3), op.i32_shr_u, op.i32_add);
  const sel = (a: number[], b: number[], mask: number[]) => code(a, b, mask, op.v128_bitselect);
  const laneSum = (acc: string, v: string) => code(L.get(acc), L.get(v), L.get(v), op.f64x2_mul, L.tee('t'), op.f64x2_extract_lane(0), op.f64_add, L.get('t'), op.f64x2_extract_lane(1), op.f64_add, L.set(acc));
  const quantizeRow = code(
    L.get('diag'), L.get('j'), i32(3), op.i32_shl, op.i32_add, op.f64_load(), op.f64x2_splat, L.set('bkk'),
    op.f64_const(0), L.set('e2'), op.f64_const(0), L.set('d2'),
    overRow(
      // x = fround(w'); q = codeOf(x, s, z): round half up of x / s plus z, clamped; z where s is 0
      at('row'), op.v128_load(), promote, L.set('x'),
      at('s'), op.v128_load(), L.set('sv'),
      at('z'), op.v128_load(), L.set('zv'),
      L.get('x'), L.get('sv'), op.f64x2_div, L.tee('t'), L.get('half'), op.f64x2_add, op.f64x2_floor, L.set('f'),
      sel(code(L.get('f'), L.get('one'), op.f64x2_sub), L.get('f'), code(L.get('t'), L.get('f'), L.get('half'), op.f64x2_sub, op.f64x2_lt)), L.get('zv'), op.f64x2_add, L.set('q'),
      sel(L.get('zero'), L.get('q'), code(L.get('q'), L.get('zero'), op.f64x2_lt)), L.set('q'),
      sel(L.get('lev'), L.get('q'), code(L.get('q'), L.get('lev'), op.f64x2_gt)), L.set('q'),
      sel(L.get('zv'), L.get('q'), code(L.get('sv'), L.get('zero'), op.f64x2_eq)), L.set('q'),
      // dequant = fround((q - z) s); e = (x - dequant) B[k][k]; d = orig - dequant
      L.get('q'), L.get('zv'), op.f64x2_sub, L.get('sv'), op.f64x2_mul, promote, L.set('dqv'),
      L.get('x'), L.get('dqv'), op.f64x2_sub, L.get('bkk'), op.f64x2_mul, L.set('e'),
      f32at('orig'), op.v128_load64_zero(), op.f64x2_promote_low_f32x4, L.get('dqv'), op.f64x2_sub, L.set('dn'),
      at('ddRow'), L.get('dn'), op.v128_store(),
      f32at('d'), L.get('dn'), op.f32x4_demote_f64x2_zero, op.v128_store64_lane(0),
      f32at('dq'), L.get('dqv'), op.f32x4_demote_f64x2_zero, op.v128_store64_lane(0),
      u8at, L.get('q'), op.i32x4_trunc_sat_f64x2_s_zero, op.i32x4_extract_lane(0), op.i32_store8(0),
      u8at, L.get('q'), op.i32x4_trunc_sat_f64x2_s_zero, op.i32x4_extract_lane(1), op.i32_store8(1),
      laneSum('e2', 'e'),
      laneSum('d2', 'dn'),
    ),
    L.get('sums'), L.get('sums'), op.f64_load(0), L.get('e2'), op.f64_add, op.f64_store(0),
    L.get('sums'), L.get('sums'), op.f64_load(8), L.get('d2'), op.f64_add, op.f64_store(8),
  );
  const body = code(
    L.get('N'), i32(3), op.i32_shl, L.set('rowBytes'),
    op.f64_const(0), op.f64x2_splat, L.set('zero'),
    op.f64_const(0.5), op.f64x2_splat, L.set('half'),
    op.f64_const(1), op.f64x2_splat, L.set('one'),
    L.get('levels'), op.f64x2_splat, L.set('lev'),
    // w' = the span's weights in float64 (the whole span at once, as the JS loop)
    L.get('S'), L.get('rowBytes'), op.i32_mul, L.set('count'),
    i32(0), L.set('nb'), op.block, op.loop, L.get('nb'), L.get('count'), op.i32_ge_s, op.br_if(1),
    L.get('ws'), L.get('nb'), op.i32_add, L.get('wIn'), L.get('nb'), i32(1), op.i32_shr_u, op.i32_add, op.v128_load64_zero(), op.f64x2_promote_low_f32x4, op.v128_store(),
    L.get('nb'), i32(16), op.i32_add, L.set('nb'), op.br(0), op.end, op.end,
    // input by input
    i32(0), L.set('j'), op.block, op.loop, L.get('j'), L.get('S'), op.i32_ge_s, op.br_if(1),
    L.get('ws'), L.get('j'), L.get('rowBytes'), op.i32_mul, op.i32_add, L.set('row'),
    L.get('dd'), L.get('j'), L.get('rowBytes'), op.i32_mul, op.i32_add, L.set('ddRow'),
    L.get('m'), L.get('j'), L.get('S'), op.i32_mul, i32(3), op.i32_shl, op.i32_add, L.set('mRow'),
    L.get('j'), L.get('N'), op.i32_mul, i32(2), op.i32_shl, L.set('f32At'),
    L.get('j'), L.get('N'), op.i32_mul, L.set('u8At'),
    i32(0), L.set('k'),
    // groups of eight while they fit, then one of four, then the last one to three
    op.block, op.loop, L.get('k'), i32(8), op.i32_add, L.get('j'), op.i32_gt_s, op.br_if(1), group(8), op.br(0), op.end, op.end,
    L.get('k'), i32(4), op.i32_add, L.get('j'), op.i32_le_s, op.if, group(4), op.end,
    L.get('j'), L.get('k'), op.i32_sub, i32(3), op.i32_eq, op.if, group(3), op.else,
    L.get('j'), L.get('k'), op.i32_sub, i32(2), op.i32_eq, op.if, group(2), op.else,
    L.get('j'), L.get('k'), op.i32_sub, i32(1), op.i32_eq, op.if, group1, op.end, op.end, op.end,
    quantizeRow,
    L.get('j'), i32(1), op.i32_add, L.set('j'), op.br(0), op.end, op.end,
  );
  return { name: 'span', params: L.params, locals: L.locals, body };
}

/**
 * `range(rows, N, src, lo, hi, symmetric)`: per output n, over the block's rows of float32 weights at
 * `src` ([rows, N]), into float64 `lo`/`hi` ([N], from 0): the min and max (pmin/pmax: `x < lo ? x :
 * lo`, `x > hi ? x : hi`, as gptq.ts setBlockParams compares), or (symmetric) into `lo` the value of
 * largest magnitude, the first of equal ones.
 */
function rangeFunction() {
  const L = new Locals([
    ['rows', 'i32'],
    ['N', 'i32'],
    ['src', 'i32'],
    ['lo', 'i32'],
    ['hi', 'i32'],
    ['symmetric', 'i32'],
  ]);
  L.declare('i32', 'k', 'nb', 'rowBytes', 'row');
  L.declare('v128', 'x', 'zero');
  const i32 = op.i32_const;
  const overRow = (...body: ReadonlyArray<readonly number[]>) => code(i32(0), L.set('nb'), op.block, op.loop, L.get('nb'), L.get('rowBytes'), op.i32_ge_s, op.br_if(1), ...body, L.get('nb'), i32(16), op.i32_add, L.set('nb'), op.br(0), op.end, op.end);
  const at = (base: string) => code(L.get(base), L.get('nb'), op.i32_add);
  const body = code(
    L.get('N'), i32(3), op.i32_shl, L.set('rowBytes'),
    op.f64_const(0), op.f64x2_splat, L.set('zero'),
    overRow(at('lo'), L.get('zero'), op.v128_store(), at('hi'), L.get('zero'), op.v128_store()),
    i32(0), L.set('k'),
    op.block, op.loop, L.get('k'), L.get('rows'), op.i32_ge_s, op.br_if(1),
    // this row's float32 weights start at src + k N 4 (nb / 2 from there for output nb / 8)
    L.get('src'), L.get('k'), L.get('N'), op.i32_mul, i32(2), op.i32_shl, op.i32_add, L.set('row'),
    overRow(
      L.get('row'), L.get('nb'), i32(1), op.i32_shr_u, op.i32_add, op.v128_load64_zero(), op.f64x2_promote_low_f32x4, L.set('x'),
      L.get('symmetric'),
      op.if,
      at('lo'), L.get('x'), at('lo'), op.v128_load(), L.get('x'), op.f64x2_abs, at('lo'), op.v128_load(), op.f64x2_abs, op.f64x2_gt, op.v128_bitselect, op.v128_store(),
      op.else,
      at('lo'), at('lo'), op.v128_load(), L.get('x'), op.f64x2_pmin, op.v128_store(),
      at('hi'), at('hi'), op.v128_load(), L.get('x'), op.f64x2_pmax, op.v128_store(),
      op.end,
    ),
    L.get('k'), i32(1), op.i32_add, L.set('k'), op.br(0), op.end, op.end,
  );
  return { name: 'range', params: L.params, locals: L.locals, body };
}

/** Byte offsets of the kernel's regions for a span of S inputs of N outputs, and the bytes they take. */
function layout(S: number, N: number) {
  const o: Record<(typeof PARAMS)[number], number> = { S, N, wIn: 0, ws: 0, dd: 0, m: 0, diag: 0, s: 0, z: 0, orig: 0, d: 0, dq: 0, codes: 0, sums: 0 };
  let at = 0;
  const take = (bytes: number) => {
    const start = at;
    at += Math.ceil(bytes / 16) * 16;
    return start;
  };
  o.wIn = take(4 * S * N);
  o.ws = take(8 * S * N);
  o.dd = take(8 * S * N);
  o.m = take(8 * S * S);
  o.diag = take(8 * S);
  o.s = take(8 * N);
  o.z = take(8 * N);
  o.orig = take(4 * S * N);
  o.d = take(4 * S * N);
  o.dq = take(4 * S * N);
  o.codes = take(S * N);
  o.sums = take(16);
  return { o, bytes: at };
}

/** What one span gives back: views of the kernel's memory, valid until its next call. */
export interface SpanOutputs {
  /** The span's errors against the original weights, float32 [S, N]. */
  d: Float32Array;
  /** The float32 weights the codes stand for, [S, N]. */
  dq: Float32Array;
  /** Codes, [S, N]. */
  codes: Uint8Array;
  /** The running sums of e^2 and d^2 given, with the span's rows added one by one (gptq.ts quantizeRow's). */
  e2: number;
  d2: number;
}

/** One instance of the kernel (its own memory: one per thread). */
export class SpanKernel {
  private memory: WebAssembly.Memory;
  private readonly fn: (...args: number[]) => void;
  private readonly rangeFn: (...args: number[]) => void;

  constructor(module: WebAssembly.Module) {
    const instance = new WebAssembly.Instance(module, {});
    this.memory = instance.exports.memory as WebAssembly.Memory;
    this.fn = instance.exports.span as (...args: number[]) => void;
    this.rangeFn = instance.exports.range as (...args: number[]) => void;
  }


  /**
   * Per output, the min and max (or, symmetric, the value of largest magnitude, in `lo`) of the first
   * `rows` rows of `w` ([rows, N] float32 from 0): views of the kernel's memory, valid until its next call.
   */
  range(w: Float32Array, rows: number, N: number, symmetric: boolean): { lo: Float64Array; hi: Float64Array } {
    const src = 0;
    const lo = Math.ceil((4 * rows * N) / 16) * 16;
    const hi = lo + Math.ceil((8 * N) / 16) * 16;
    const buf = reserveMemory(this.memory, hi + 8 * N);
    new Float32Array(buf, src, rows * N).set(w.subarray(0, rows * N));
    this.rangeFn(rows, N, src, lo, hi, symmetric ? 1 : 0);
    return { lo: new Float64Array(buf, lo, N), hi: new Float64Array(buf, hi, N) };
  }

  /**
   * The span k1..k2 of gptq.ts quantizeSpan: `w` and `orig` the weights as B [K, N] (w' and the
   * originals), `m` the feedback coefficients [K, K], `diag` B's diagonal, `s`/`z` the block's scales
   * and zero points per output, `sumsBefore` the running sums. N must be even.
   */
  run(w: Float32Array, orig: Float32Array, m: Float64Array, diag: Float64Array, K: number, N: number, k1: number, k2: number, s: Float64Array, z: Float64Array, bits: number, sumsBefore: { e2: number; d2: number }): SpanOutputs {
    const S = k2 - k1;
    const { o, bytes } = layout(S, N);
    const buf = reserveMemory(this.memory, bytes);
    new Float32Array(buf, o.wIn, S * N).set(w.subarray(k1 * N, k2 * N));
    new Float32Array(buf, o.orig, S * N).set(orig.subarray(k1 * N, k2 * N));
    const mb = new Float64Array(buf, o.m, S * S);
    for (let j = 0; j < S; j++) {
      const from = (k1 + j) * K + k1;
      for (let k = 0; k < j; k++) mb[j * S + k] = m[from + k]!;
    }
    new Float64Array(buf, o.diag, S).set(diag.subarray(k1, k2));
    new Float64Array(buf, o.s, N).set(s);
    new Float64Array(buf, o.z, N).set(z);
    const sums = new Float64Array(buf, o.sums, 2);
    sums[0] = sumsBefore.e2;
    sums[1] = sumsBefore.d2;
    this.fn(...PARAMS.map((p) => o[p]), (1 << bits) - 1);
    return { d: new Float32Array(buf, o.d, S * N), dq: new Float32Array(buf, o.dq, S * N), codes: new Uint8Array(buf, o.codes, S * N), e2: sums[0]!, d2: sums[1]! };
  }
}

const lazy = lazyKernel(() => [spanFunction(), rangeFunction()], (m) => new SpanKernel(m));

/** Turns the kernel off (the JS loop everywhere in this thread) or back on: tests compare the two. */
export const useSpanKernel = (on: boolean): void => lazy.use(on);

/** This thread's kernel, or undefined where WebAssembly SIMD is not available (or ONNXFORGE_WASM=0). */
export const spanKernel = (): SpanKernel | undefined => lazy.get();
