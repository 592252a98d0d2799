/**
 * The packed layouts against onnxruntime: a MatMul / Gemm / Gather replaced by MatMulNBits,
 * GatherBlockQuantized or the blocked DequantizeLinear form must compute what the float op computes
 * with the weight dequantized in TypeScript, to float tolerance.
 */
import { describe, expect, it } from 'vitest';
import { Tensor } from '../../core/tensor.js';
import type { HostTensor } from '../../core/host-tensor.js';
import { GraphBuilder } from '../../ir/builder.js';
import { Model, Node } from '../../ir/ir.js';
import { checkModel } from '../../ir/checker.js';
import { nodeRunner } from '../../runtime/runner.js';
import type { SessionOptions } from '../../runtime/session.js';
import { Bits, dequantizeRows, quantizeRtn, rowsOfKN } from '../../passes/quantize/int4/blocks.js';
import { emitGatherBlockQuantized, emitMatMulNBits, emitQdqMatMul, MS_DOMAIN } from '../../passes/quantize/int4/emit.js';

function rand(seed: number, n: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  // an outlier per 97 values, as transformer weights have
  for (let i = 13; i < n; i += 97) out[i]! *= 6;
  return out;
}

/** Y = A [M, K] x W^T where `rows` is W [N, K]. */
function matmulRows(a: Float32Array, M: number, K: number, rows: Float32Array, N: number, bias?: Float32Array): Float32Array {
  const y = new Float32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = bias ? bias[n]! : 0;
      for (let k = 0; k < K; k++) acc += a[m * K + k]! * rows[n * K + k]!;
      y[m * N + n] = acc;
    }
  }
  return y;
}

async function run(model: Model, feed: Record<string, HostTensor>, options: SessionOptions = {}): Promise<Float32Array> {
  expect(checkModel(model)).toEqual([]);
  const s = await nodeRunner.open(model, options);
  try {
    const out = await s.run(feed);
    return Object.values(out)[0]!.data as Float32Array;
  } finally {
    await s.dispose();
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function matmulModel(K: number, N: number, w: Float32Array, opset: number, gemm = false, bias?: Float32Array): { model: Model; node: Node } {
  const b = new GraphBuilder({ opset, opsets: { [MS_DOMAIN]: 1 } });
  const x = b.input('x', 'float32', gemm ? [3, K] : [1, 3, K]);
  const wv = b.initializer('w', Tensor.from('float32', [K, N], w));
  const inputs = gemm && bias ? [x, wv, b.initializer('c', Tensor.from('float32', [N], bias))] : [x, wv];
  const node = b.node(gemm ? 'Gemm' : 'MatMul', inputs);
  b.output(node.outputs[0]!, 'y');
  return { model: b.model(), node };
}

describe('MatMulNBits layout', () => {
  const cases: Array<{ K: number; N: number; bs: number; bits: Bits; sym: boolean }> = [
    { K: 64, N: 24, bs: 16, bits: 4, sym: true },
    { K: 64, N: 24, bs: 32, bits: 4, sym: false },
    { K: 96, N: 10, bs: 32, bits: 4, sym: false }, // 3 blocks: odd count of packed zero points
    { K: 80, N: 8, bs: 32, bits: 4, sym: true }, // K not a multiple: a padded last block
    { K: 64, N: 12, bs: 32, bits: 8, sym: false },
    { K: 128, N: 16, bs: 128, bits: 8, sym: true },
  ];
  for (const c of cases) {
    it(`K ${c.K} N ${c.N} block ${c.bs} bits ${c.bits} ${c.sym ? 'symmetric' : 'asymmetric'} matches MatMul of the dequantized weight`, async () => {
      const w = rand(c.K * 7 + c.N, c.K * c.N, 0.2);
      const { model, node } = matmulModel(c.K, c.N, w, 17);
      const q = quantizeRtn(rowsOfKN(w, c.K, c.N), c.N, c.K, c.bits, c.bs, c.sym);
      const g = model.graph;
      const a = node.inputs[0]!;
      const wInit = node.inputs[1]!;
      emitMatMulNBits(g, g.names, node, a, q, 'w', 0);
      g.removeInitializer(wInit);
      const x = rand(5, 3 * c.K);
      const y = await run(model, { x: { type: 'float32', dims: [1, 3, c.K], data: x } });
      const ref = matmulRows(x, 3, c.K, dequantizeRows(q), c.N);
      expect(maxAbsDiff(y, ref)).toBeLessThan(1e-4);
      // and the quantized weight is close to the float one (it is a quantization, not noise)
      expect(maxAbsDiff(dequantizeRows(q), rowsOfKN(w, c.K, c.N))).toBeLessThan(c.bits === 4 ? 0.2 : 0.02);
    });
  }

  it('Gemm with a bias becomes MatMulNBits with the bias input', async () => {
    const K = 64;
    const N = 16;
    const w = rand(3, K * N, 0.3);
    const bias = rand(4, N);
    const { model, node } = matmulModel(K, N, w, 17, true, bias);
    const q = quantizeRtn(rowsOfKN(w, K, N), N, K, 4, 32, false);
    const g = model.graph;
    emitMatMulNBits(g, g.names, node, node.inputs[0]!, q, 'w', 0, bias);
    g.removeInitializer(g.initializers.get('w')!);
    g.removeInitializer(g.initializers.get('c')!);
    const x = rand(6, 3 * K);
    const y = await run(model, { x: { type: 'float32', dims: [3, K], data: x } });
    expect(maxAbsDiff(y, matmulRows(x, 3, K, dequantizeRows(q), N, bias))).toBeLessThan(1e-4);
  });
});

describe('DequantizeLinear with block_size (opset 21)', () => {
  for (const sym of [true, false]) {
    it(`${sym ? 'int4' : 'uint4 with zero points'} feeding a MatMul matches the dequantized weight`, async () => {
      const K = 64;
      const N = 20;
      const w = rand(11, K * N, 0.25);
      const { model, node } = matmulModel(K, N, w, 21);
      const q = quantizeRtn(rowsOfKN(w, K, N), N, K, 4, 32, sym);
      const g = model.graph;
      emitQdqMatMul(g, g.names, node, node.inputs[0]!, q, 'w');
      g.removeInitializer(g.initializers.get('w')!);
      g.toposort();
      const x = rand(8, 3 * K);
      const feed = { x: { type: 'float32' as const, dims: [1, 3, K], data: x } };
      const ref = matmulRows(x, 3, K, dequantizeRows(q), N);
      // onnxruntime fuses DequantizeLinear -> MatMul into MatMulNBits with the session's
      // qdq_matmulnbits_accuracy_level (default 4: int8 activations); at level 0 it is the float product
      const y = await run(model, feed, { extra: { session: { qdq_matmulnbits_accuracy_level: '0' } } });
      expect(maxAbsDiff(y, ref)).toBeLessThan(1e-4);
      const unfused = await run(model, feed, { graphOptimizationLevel: 'disabled' });
      expect(maxAbsDiff(unfused, ref)).toBeLessThan(1e-4);
    });
  }
});

describe('GatherBlockQuantized layout', () => {
  for (const [bits, sym] of [[4, true], [4, false], [8, false]] as const) {
    it(`bits ${bits} ${sym ? 'symmetric' : 'asymmetric'} rows equal the dequantized table rows`, async () => {
      const V = 40;
      const D = 64;
      const table = rand(21, V * D, 0.5);
      const b = new GraphBuilder({ opset: 17, opsets: { [MS_DOMAIN]: 1 } });
      const ids = b.input('ids', 'int64', [1, 5]);
      const t = b.initializer('table', Tensor.from('float32', [V, D], table));
      const node = b.node('Gather', [t, ids], { axis: 0 });
      b.output(node.outputs[0]!, 'y');
      const model = b.model();
      const q = quantizeRtn(table, V, D, bits, 32, sym);
      const g = model.graph;
      emitGatherBlockQuantized(g, g.names, node, ids, q, 'emb');
      g.removeInitializer(t);
      const idx = [0, 39, 7, 7, 20];
      const y = await run(model, { ids: { type: 'int64', dims: [1, 5], data: BigInt64Array.from(idx.map(BigInt)) } });
      const dq = dequantizeRows(q);
      const ref = new Float32Array(idx.flatMap((i) => [...dq.subarray(i * D, (i + 1) * D)]));
      expect(maxAbsDiff(y, ref)).toBe(0);
    });
  }
});
