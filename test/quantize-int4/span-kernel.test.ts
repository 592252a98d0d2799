/**
 * GPTQ's in-span loop as a WebAssembly SIMD kernel (passes/quantize/int4/span-kernel.ts) against the
 * JS loop it replaces: the same codes, scales, zero points, dequantized weights and error sums bit for
 * bit, on weights with outliers, inputs always zero (their Hessian diagonal 0), all-zero rows of
 * weights (scale 0 blocks), values exactly on a rounding half, symmetric and asymmetric blocks, every
 * span width the block sizes give (16 and 32) and an odd number of outputs (the JS loop runs then).
 * The Cholesky kernel (passes/quantize/int4/cholesky-kernel.ts) against the JS factor likewise. And
 * the assembler's encodings the kernels rely on.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../data/generate.js';
import { code, op, simdAvailable, sleb, uleb, wasmModule } from '../../core/wasm.js';
import { hessianFactor, quantizeGptqBlocked } from '../../passes/quantize/int4/gptq.js';
import { sharedLinalg } from '../../passes/quantize/int4/linalg.js';
import { spanKernel, useSpanKernel } from '../../passes/quantize/int4/span-kernel.js';
import { useCholeskyKernel } from '../../passes/quantize/int4/cholesky-kernel.js';
import { cholesky } from '../../passes/quantize/int4/linalg.js';
import { nodeRunner } from '../../runtime/runner.js';

/** A Hessian from 3K random rows, input `zero` always 0. */
function hessian(K: number, rand: () => number, zero: number): Float64Array {
  const rows = 3 * K;
  const x = new Float64Array(rows * K).map(() => rand() - 0.5);
  for (let r = 0; r < rows; r++) x[r * K + zero] = 0;
  const h = new Float64Array(K * K);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < K; i++) {
      const xi = x[r * K + i]!;
      if (xi !== 0) for (let j = 0; j < K; j++) h[i * K + j]! += xi * x[r * K + j]!;
    }
  }
  return h;
}

/** B [K, N] with a few large outliers, row `zeroRow` all 0, and some values on exact halves of a step. */
function weights(K: number, N: number, rand: () => number, zeroRow: number): Float32Array {
  const w = new Float32Array(K * N).map(() => (rand() - 0.5) * (rand() > 0.97 ? 8 : 1));
  w.fill(0, zeroRow * N, (zeroRow + 1) * N);
  for (let i = 0; i < w.length; i += 17) w[i] = Math.round(w[i]! * 16) / 16 + 1 / 32;
  return w;
}

describe('GPTQ span kernel (WebAssembly SIMD)', () => {
  afterEach(() => useSpanKernel(true));

  it('is available on Node 20', () => {
    expect(simdAvailable()).toBe(true);
    expect(spanKernel()).toBeDefined();
  });

  const linalg = sharedLinalg(nodeRunner);
  const cases: Array<[number, number, number, boolean]> = [
    [128, 96, 64, false],
    [128, 96, 32, true],
    [64, 40, 16, false],
    [96, 10, 32, true],
    [64, 7, 16, false], // odd N: the JS loop on both sides
    [256, 24, 128, false],
  ];
  it.each(cases)('K %i, N %i, block %i, symmetric %s: the JS loop bit for bit', async (K, N, blockSize, symmetric) => {
    const rand = mulberry32(K * 131 + N);
    const h = hessian(K, rand, 3);
    // a whole block of inputs that never fire: their weights go to 0, scale-0 blocks
    for (let k = blockSize; k < 2 * blockSize && k < K; k++) h.fill(0, k * K, (k + 1) * K);
    for (let i = 0; i < K; i++) for (let k = blockSize; k < 2 * blockSize && k < K; k++) h[i * K + k] = 0;
    const w = weights(K, N, rand, 5);
    const factor = await hessianFactor(h, K, 0.01, linalg);
    const run = async (on: boolean) => {
      useSpanKernel(on);
      return quantizeGptqBlocked({ kn: w }, N, K, h, 4, blockSize, symmetric, factor, linalg);
    };
    const js = await run(false);
    const simd = await run(true);
    expect(Buffer.from(simd.q.codes).equals(Buffer.from(js.q.codes))).toBe(true);
    expect(Buffer.from(simd.q.scales.buffer).equals(Buffer.from(js.q.scales.buffer))).toBe(true);
    expect(Buffer.from(simd.q.zeroPoints).equals(Buffer.from(js.q.zeroPoints))).toBe(true);
    expect(Buffer.from(simd.dequantized.buffer).equals(Buffer.from(js.dequantized.buffer))).toBe(true);
    expect(simd.outputError).toBe(js.outputError);
    expect(simd.weightError).toBe(js.weightError);
    // the codes use the whole 4-bit range and the zero-weight block kept its zero point
    expect(Math.max(...js.q.codes)).toBe(15);
    expect(js.q.scales.some((s) => s === 0)).toBe(true);
  });

  it('the Cholesky kernel factors as the JS loop does, bit for bit, and finds the same matrices not positive definite', () => {
    try {
      for (const n of [16, 17, 31, 64, 65, 128, 129]) {
        const rand = mulberry32(n);
        const h = hessian(n, rand, 2);
        for (let i = 0; i < n; i++) h[i * n + i]! += 1e-3;
        const run = (on: boolean) => {
          useCholeskyKernel(on);
          const a = h.slice();
          return { ok: cholesky(a, n), a };
        };
        const js = run(false);
        const simd = run(true);
        expect(js.ok).toBe(true);
        expect(simd.ok).toBe(true);
        expect(Buffer.from(simd.a.buffer).equals(Buffer.from(js.a.buffer))).toBe(true);
        // not positive definite: a negative pivot partway down
        const bad = h.slice();
        bad[(n >> 1) * (n + 1)] = -1;
        useCholeskyKernel(false);
        expect(cholesky(bad.slice(), n)).toBe(false);
        useCholeskyKernel(true);
        expect(cholesky(bad.slice(), n)).toBe(false);
      }
    } finally {
      useCholeskyKernel(true);
    }
  });

  it('the inverse kernels give the JS loops\' values bit for bit (a wide factor\'s panels, GPTQ\'s block starts)', async () => {
    // a 256-wide factor runs in panels (lowerInverse of each diagonal block) and GPTQ at block size 32
    // takes block-start inverses of 32 x 32: the whole quantization compared with the kernels off
    const K = 256;
    const N = 24;
    const rand = mulberry32(99);
    const h = hessian(K, rand, 7);
    const w = weights(K, N, rand, 9);
    const run = async (on: boolean) => {
      useCholeskyKernel(on);
      const f = await hessianFactor(h, K, 0.01, linalg);
      return { f, r: await quantizeGptqBlocked({ kn: w }, N, K, h, 4, 32, false, f, linalg) };
    };
    try {
      const js = await run(false);
      const simd = await run(true);
      expect(Buffer.from(simd.f.m.buffer).equals(Buffer.from(js.f.m.buffer))).toBe(true);
      expect(Buffer.from(simd.r.q.codes).equals(Buffer.from(js.r.q.codes))).toBe(true);
      expect(Buffer.from(simd.r.dequantized.buffer).equals(Buffer.from(js.r.dequantized.buffer))).toBe(true);
      expect(simd.r.outputError).toBe(js.r.outputError);
    } finally {
      useCholeskyKernel(true);
    }
  });

  it('encodes LEB128 and runs a module the assembler wrote', () => {
    expect(uleb(0)).toEqual([0]);
    expect(uleb(624485)).toEqual([0xe5, 0x8e, 0x26]);
    expect(sleb(-123456)).toEqual([0xc0, 0xbb, 0x78]);
    expect(sleb(63)).toEqual([63]);
    expect(sleb(64)).toEqual([0xc0, 0x00]);
    // f(a, b) stores floor(a / b) + 0.5 for two lanes at address 0 and returns nothing
    const body = code(op.i32_const(0), op.local_get(0), op.f64x2_splat, op.local_get(1), op.f64x2_splat, op.f64x2_div, op.f64x2_floor, op.f64_const(0.5), op.f64x2_splat, op.f64x2_add, op.v128_store());
    const m = new WebAssembly.Instance(new WebAssembly.Module(wasmModule([{ name: 'f', params: ['f64', 'f64'], locals: [], body }], 1)), {});
    (m.exports.f as (a: number, b: number) => void)(7, 2);
    expect([...new Float64Array((m.exports.memory as WebAssembly.Memory).buffer, 0, 2)]).toEqual([3.5, 3.5]);
  });
});
