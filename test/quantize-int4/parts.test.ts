/**
 * Parts of the int4 pass: the blocked Cholesky factor (panels, onnxruntime's trailing updates), GPTQ
 * in error-feedback form against the paper's input-by-input loop with U from the inverse, the lossless
 * second moments X^T X from onnxruntime (wide inputs as symmetric blocks, feeds stacked), the lossless
 * compaction of few-valued float constants (bit-exact after onnxruntime folds it back), and the
 * layer-output errors computed in onnxruntime against the closed form.
 */
import { describe, expect, it } from 'vitest';
import { DataType } from '../../core/dtype.js';
import { Tensor } from '../../core/tensor.js';
import { mulberry32 } from '../../data/generate.js';
import { GraphBuilder } from '../../ir/builder.js';
import { compactConstants } from '../../passes/quantize/int4/constants.js';
import { hessianFactor, outputErrors, quantizeGptqBlocked } from '../../passes/quantize/int4/gptq.js';
import { cholesky, Linalg } from '../../passes/quantize/int4/linalg.js';
import { kernelByRule } from '../../passes/quantize/int4/kernels.js';
import { blockParams, codeOf, dequantizeRows, emptyBlocks, roundHalfUp, rowsOfKN, type BlockQuantized } from '../../passes/quantize/int4/blocks.js';
import { collectInputMoments } from '../../passes/quantize/int4/activations.js';
import { nodeRunner } from '../../runtime/runner.js';
import type { Runner } from '../../runtime/runner-types.js';
import { endTrials, reference, trialErrors, type WeightSlot } from '../../passes/quantize/int4/probe.js';

function spd(n: number, seed: number): Float64Array {
  const rand = mulberry32(seed);
  const x = Array.from({ length: 3 * n * n }, () => rand() - 0.5);
  const h = new Float64Array(n * n);
  for (let r = 0; r < 3 * n; r++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) h[i * n + j]! += x[r * n + i]! * x[r * n + j]!;
  return h;
}

/** H + lambda I, lambda = damp * mean(diag H); a zero diagonal (an input always 0) counts as 1. */
function damped(h: Float64Array, n: number, damp: number): Float64Array {
  let mean = 0;
  for (let i = 0; i < n; i++) mean += h[i * n + i]! / n;
  const hd = h.slice();
  for (let i = 0; i < n; i++) hd[i * n + i] = (hd[i * n + i] === 0 ? 1 : hd[i * n + i]!) + damp * (mean || 1);
  return hd;
}

/**
 * The reference: the GPTQ paper's form, U = upper Cholesky factor of (H + lambda I)^-1 computed the
 * plain way (invert, factor), and its input-by-input loop, all in float64.
 */
function paperGptq(rows: Float32Array, N: number, K: number, h: Float64Array, blockSize: number, symmetric: boolean, damp: number): BlockQuantized {
  const hd = damped(h, K, damp);
  // inverse by Gauss-Jordan, then the upper factor U (H^-1 = U^T U: U = L^T, L the lower factor of H^-1)
  const inv = new Float64Array(K * K);
  for (let i = 0; i < K; i++) inv[i * K + i] = 1;
  const a = hd.slice();
  for (let c = 0; c < K; c++) {
    const p = a[c * K + c]!;
    for (let j = 0; j < K; j++) {
      a[c * K + j]! /= p;
      inv[c * K + j]! /= p;
    }
    for (let r = 0; r < K; r++) {
      if (r === c) continue;
      const f = a[r * K + c]!;
      for (let j = 0; j < K; j++) {
        a[r * K + j]! -= f * a[c * K + j]!;
        inv[r * K + j]! -= f * inv[c * K + j]!;
      }
    }
  }
  expect(cholesky(inv, K)).toBe(true);
  const u = new Float64Array(K * K);
  for (let i = 0; i < K; i++) for (let j = i; j < K; j++) u[i * K + j] = inv[j * K + i]!;
  const w = Float64Array.from(rows);
  for (let k = 0; k < K; k++) if (h[k * K + k] === 0) for (let n = 0; n < N; n++) w[n * K + k] = 0;
  const r = emptyBlocks(N, K, 4, blockSize, symmetric);
  for (let k = 0; k < K; k++) {
    const b = Math.floor(k / blockSize);
    for (let n = 0; n < N; n++) {
      const row = n * K;
      if (k % blockSize === 0) {
        const p = blockParams(w, row + k, row + Math.min(K, k + blockSize), 4, symmetric);
        r.scales[n * r.kBlocks + b] = p.scale;
        r.zeroPoints[n * r.kBlocks + b] = p.zeroPoint;
      }
      const s = r.scales[n * r.kBlocks + b]!;
      const z = r.zeroPoints[n * r.kBlocks + b]!;
      const q = codeOf(w[row + k]!, s, z, 4);
      r.codes[row + k] = q;
      const e = (w[row + k]! - Math.fround((q - z) * s)) / u[k * K + k]!;
      for (let j = k + 1; j < K; j++) w[row + j]! -= e * u[k * K + j]!;
    }
  }
  return r;
}

describe('int4 parts', () => {
  it('Linalg.cholesky (panels, trailing updates by onnxruntime) factors H: L L^T = H, L lower; false when H is not positive definite', async () => {
    const linalg = new Linalg(nodeRunner);
    try {
      // 200: panels of 64 with updates by onnxruntime and the last ones in JS; 40: one panel in JS
      for (const n of [200, 40]) {
        const h = spd(n, n);
        const l = h.slice();
        expect(await linalg.cholesky(l, n)).toBe(true);
        let worst = 0;
        for (let i = 0; i < n; i++) {
          for (let j = 0; j < n; j++) {
            if (j > i) expect(l[i * n + j]).toBe(0);
            let s = 0;
            for (let p = 0; p < n; p++) s += l[i * n + p]! * l[j * n + p]!;
            worst = Math.max(worst, Math.abs(s - h[i * n + j]!) / h[i * n + i]!);
          }
        }
        expect(worst).toBeLessThan(1e-10);
        const bad = h.slice();
        bad[(n - 1) * n + n - 1] = -1;
        expect(await linalg.cholesky(bad, n)).toBe(false);
      }
    } finally {
      await linalg.dispose();
    }
  });

  it("blocked GPTQ in error-feedback form writes the codes of the paper's input-by-input loop (U from the inverse), and its own output error is tr(D H D^T)", async () => {
    const linalg = new Linalg(nodeRunner);
    try {
      // an always-zero input (zero row/column); blocks of 8 (spans of 8) and 64 (spans of 32)
      for (const [K, N, blockSize] of [[200, 24, 8], [256, 40, 64]] as const) {
        const h = spd(K, K);
        for (let i = 0; i < K; i++) h[5 * K + i] = h[i * K + 5] = 0;
        const factor = await hessianFactor(h, K, 0.01, linalg);
        // B^T B = H + lambda I: B[k][j] = M[k][j] diag[k] (j < k), B[k][k] = diag[k]
        const hd = damped(h, K, 0.01);
        const B = (k: number, j: number) => (j === k ? factor.diag[k]! : j < k ? factor.m[k * K + j]! * factor.diag[k]! : 0);
        for (const [i, j] of [[0, 0], [7, 3], [K - 1, K - 1], [K - 1, 0], [100, 150]] as const) {
          let s = 0;
          for (let p = 0; p < K; p++) s += B(p, i) * B(p, j);
          expect(Math.abs(s - hd[i * K + j]!)).toBeLessThan(1e-9 * hd[i * K + i]!);
        }
        const rand = mulberry32(K + N);
        const rows = Float32Array.from({ length: N * K }, () => rand() - 0.5);
        for (const symmetric of [false, true]) {
          const a = paperGptq(rows, N, K, h, blockSize, symmetric, 0.01);
          const { q: b, outputError, dequantized, weightError } = await quantizeGptqBlocked(symmetric ? { kn: rowsOfKN(rows, N, K) } : { rows }, N, K, h, 4, blockSize, symmetric, factor, linalg);
          // its float32 weights as B [K, N] and relative weight error, from the codes
          const dq = dequantizeRows(b);
          expect(Array.from(dequantized)).toEqual(Array.from(rowsOfKN(dq, N, K)));
          let sse = 0;
          let energy = 0;
          for (let i = 0; i < rows.length; i++) {
            sse += (rows[i]! - dq[i]!) ** 2;
            energy += rows[i]! ** 2;
          }
          expect(weightError / (sse / energy)).toBeCloseTo(1, 9);
          const [measured, reference] = (await outputErrors(linalg, rows, [dequantizeRows(b), dequantizeRows(a)], N, K, h)) as [number, number];
          expect(outputError / measured).toBeCloseTo(1, 3);
          let same = 0;
          for (let i = 0; i < a.codes.length; i++) if (a.codes[i] === b.codes[i]) same++;
          // float32 weights and updates against float64: a code may flip only where w / scale lies next to a half
          expect(same / a.codes.length).toBeGreaterThan(0.999);
          expect(Math.abs(measured / reference - 1)).toBeLessThan(1e-3);
          for (let i = 0; i < a.scales.length; i++) expect(b.scales[i]).toBeCloseTo(a.scales[i]!, 5);
        }
      }
    } finally {
      await linalg.dispose();
    }
  });

  it('collectInputMoments: X^T X of narrow and wide (block-computed) inputs over stacked feeds equals the float64 sum; a MatMul output\'s energy is tr(W H W^T)', async () => {
    const widths = [64, 256, 512];
    const b = new GraphBuilder({ opset: 17 });
    const rand = mulberry32(11);
    const weights = widths.map((K) => Float32Array.from({ length: 2 * K }, () => rand() - 0.5));
    widths.forEach((K, i) => {
      const x = b.input(`x${i}`, 'float', ['batch', 3, K]);
      const [y] = b.op('MatMul', [x, b.initializer(`w${i}`, Tensor.from(DataType.FLOAT, [K, 2], weights[i]!))]);
      b.output(y!, `y${i}`, 'float');
    });
    const feeds = Array.from({ length: 10 }, () => Object.fromEntries(widths.map((K, i) => [`x${i}`, { type: 'float32' as const, dims: [1, 3, K], data: Float32Array.from({ length: 3 * K }, () => rand() * 2 - 1) }])));
    const run = await collectInputMoments(b.model(), new Map(widths.map((K, i) => [`x${i}`, K])), feeds, nodeRunner, { energyTensors: widths.map((_, i) => `y${i}`) });
    expect(run.outputs).toHaveLength(10);
    const linalg = new Linalg(nodeRunner);
    for (const [i, K] of widths.entries()) {
      const [energy] = await outputErrors(linalg, rowsOfKN(weights[i]!, K, 2), ['zero'], 2, K, run.moments.get(`x${i}`)!.hessian);
      expect(run.energies!.get(`y${i}`)! / energy!).toBeCloseTo(1, 4);
    }
    await linalg.dispose();
    widths.forEach((K, i) => {
      const want = new Float64Array(K * K);
      for (const f of feeds) {
        const d = f[`x${i}`]!.data;
        for (let r = 0; r < 3; r++) for (let p = 0; p < K; p++) for (let q = 0; q < K; q++) want[p * K + q]! += d[r * K + p]! * d[r * K + q]!;
      }
      const got = run.moments.get(`x${i}`)!.hessian;
      let worst = 0;
      for (let j = 0; j < want.length; j++) worst = Math.max(worst, Math.abs(got[j]! - want[j]!) / (1 + Math.abs(want[j]!)));
      expect(worst).toBeLessThan(1e-4);
    });
  });

  it('endTrials: a last weight reaching the output linearly (plain, through a bias Add) gets its 8-bit trial from the all-4-bit run, equal to a pass of the model; otherwise three passes', async () => {
    const rand = mulberry32(21);
    const w = (r: number, c: number) => Float32Array.from({ length: r * c }, () => rand() - 0.5);
    for (const tail of ['plain', 'bias', 'relu'] as const) {
      const b = new GraphBuilder({ opset: 17 });
      const x = b.input('x', 'float', ['batch', 5, 8]);
      const [h] = b.op('MatMul', [x, b.initializer('w0', Tensor.from(DataType.FLOAT, [8, 16], w(8, 16)))]);
      const [r] = b.op('Relu', [h!]);
      const [mid] = b.op('MatMul', [r!, b.initializer('w1', Tensor.from(DataType.FLOAT, [16, 16], w(16, 16)))]);
      const [y] = b.op('MatMul', [mid!, b.initializer('w2', Tensor.from(DataType.FLOAT, [16, 4], w(16, 4)))]);
      const [out] = tail === 'plain' ? [y] : b.op(tail === 'bias' ? 'Add' : 'Relu', tail === 'bias' ? [y!, b.initializer('b2', Tensor.from(DataType.FLOAT, [4], w(1, 4)))] : [y!]);
      b.output(out!, 'out', 'float');
      const model = b.model();
      const feeds = Array.from({ length: 3 }, () => ({ x: { type: 'float32' as const, dims: [1, 5, 8], data: w(5, 8) } }));
      const ref = await reference(model, feeds, nodeRunner);
      const slot = (node: number, K: number, N: number): WeightSlot => ({ node, input: 1, dims: [K, N] });
      const first = slot(0, 8, 16);
      const last = slot(3, 16, 4);
      const fixed: Array<[WeightSlot, Float32Array]> = [[slot(2, 16, 16), w(16, 16)]];
      const f: [Float32Array, Float32Array] = [w(8, 16), w(8, 16)];
      const l: [Float32Array, Float32Array] = [w(16, 4), w(16, 4)];
      // model passes of the trials' session: two when the last weight's trial comes from the all-4-bit run
      let passes = 0;
      const counting: Runner = {
        ...nodeRunner,
        open: async (m, o, name) => {
          const session = await nodeRunner.open(m, o, name);
          return name === '(first/last layer trials)' ? { name: session.name, inputs: session.inputs, outputs: session.outputs, run: (feed, names) => (passes++, session.run(feed, names)), dispose: () => session.dispose() } : session;
        },
      };
      const linalg = new Linalg(nodeRunner);
      const got = await endTrials(model, fixed, first, f, last, l, ref, counting, linalg).finally(() => linalg.dispose());
      expect(passes).toBe(tail === 'relu' ? 3 : 2);
      const want = await trialErrors(model, fixed, [first, last], [[f[0], l[0]], [f[1], l[0]], [f[0], l[1]]], ref, nodeRunner);
      got.forEach((e, i) => expect(e / want[i]!).toBeCloseTo(1, 5));
    }
  });

  it('roundHalfUp is Math.round (halves up, the float64 cases where x + 0.5 rounds up to an integer included)', () => {
    const rand = mulberry32(3);
    const xs = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999999999999994, -0.49999999999999994, 1.4999999999999998, 2.4999999999999996, -2.5000000000000004, 7.499999999999999, -1e-300, 0, 15.5, -16.5];
    for (let i = 0; i < 20000; i++) xs.push((rand() - 0.5) * 40, Math.floor((rand() - 0.5) * 40) + 0.5);
    for (const x of xs) expect(roundHalfUp(x) + 0).toBe(Math.round(x) + 0);
  });

  it('kernelByRule: MatMulNBits accuracy_level 4 from K = 768 (when level 4 is allowed), else unpacked; with nbits forced, level 4 from K = 512, else 1', () => {
    const cls = (K: number, N: number) => ({ K, N, bits: 4 as const, blockSize: 64, symmetric: false });
    expect(kernelByRule(cls(128, 512), false, true).chosen).toBe('unpacked');
    expect(kernelByRule(cls(512, 2048), false, true).chosen).toBe('unpacked');
    expect(kernelByRule(cls(768, 768), false, true).chosen).toBe(4);
    expect(kernelByRule(cls(3072, 768), false, true).chosen).toBe(4);
    expect(kernelByRule(cls(3072, 768), false, false).chosen).toBe('unpacked');
    expect(kernelByRule(cls(128, 128), true, true).chosen).toBe(1);
    expect(kernelByRule(cls(512, 128), true, true).chosen).toBe(4);
    expect(kernelByRule(cls(512, 128), true, false).chosen).toBe(1);
    for (const r of [kernelByRule(cls(128, 512), false, true), kernelByRule(cls(1024, 256), false, true)]) expect(r.reason).toMatch(/kernel table/);
  });

  it('compactConstants: a 0/-1e4 mask becomes uint8 codes and onnxruntime rebuilds it bit-exactly; other constants stay', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float', [64, 64]);
    const mask = new Float32Array(64 * 64);
    for (let i = 0; i < 64; i++) for (let j = i + 1; j < 64; j++) mask[i * 64 + j] = -1e4;
    const rand = mulberry32(5);
    const [y] = b.op('Add', [x, b.initializer('mask', Tensor.from(DataType.FLOAT, [64, 64], mask))]);
    const [z] = b.op('Mul', [y!, b.initializer('dense', Tensor.from(DataType.FLOAT, [64, 64], Float32Array.from({ length: 4096 }, () => rand())))]);
    b.output(z!, 'z', 'float');
    const m = b.model();
    const before = await nodeRunner.open(m);
    const feed = { x: { type: 'float32' as const, dims: [64, 64], data: Float32Array.from({ length: 4096 }, () => rand() - 0.5) } };
    const want = (await before.run(feed))['z']!.data as Float32Array;
    await before.dispose();
    const done = compactConstants(m, 1024);
    expect(done.map((c) => [c.tensor, c.bytes])).toEqual([['mask', 4096 + 4]]);
    expect(m.graph.initializerTensor(m.graph.initializers.get('dense')!)!.dataType).toBe(DataType.FLOAT);
    const after = await nodeRunner.open(m);
    const got = (await after.run(feed))['z']!.data as Float32Array;
    await after.dispose();
    expect(Array.from(got)).toEqual(Array.from(want));
  });

  it('outputErrors: tr(D H D^T) by onnxruntime matches the float64 closed form', async () => {
    const K = 16;
    const N = 5;
    const h = spd(K, 7);
    const rand = mulberry32(9);
    const rows = Float32Array.from({ length: N * K }, () => rand() - 0.5);
    const approx = Float32Array.from(rows, (v) => v + (rand() - 0.5) * 0.1);
    const linalg = new Linalg(nodeRunner);
    const [energy, zeros, err] = await outputErrors(linalg, rows, ['zero', new Float32Array(N * K), approx], N, K, h);
    await linalg.dispose();
    expect(zeros).toBe(energy);
    const exact = (d: (i: number) => number) => {
      let t = 0;
      for (let n = 0; n < N; n++) for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) t += d(n * K + i) * h[i * K + j]! * d(n * K + j);
      return t;
    };
    expect(energy! / exact((i) => rows[i]!)).toBeCloseTo(1, 4);
    expect(err! / exact((i) => rows[i]! - approx[i]!)).toBeCloseTo(1, 4);
  });
});
