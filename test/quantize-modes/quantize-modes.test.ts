/**
 * Weight compression, dynamic INT8 and the QOperator form on small built models: structure (tag,
 * DequantizeLinear placement, axis, dtype), numerics against FP32 in onnxruntime, the
 * expandCompressedWeights round trip, untagged (static QDQ) models left untouched by the helper,
 * the dynamic pattern fused by onnxruntime, and QOperator outputs against QDQ.
 */
import { bareContext } from '../../passes/bare-context.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../core/dtype.js';
import { checkModel } from '../../ir/checker.js';
import { constantOf, Model } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import { cloneModel, loadModel, loadModelSync, serializeModel } from '../../onnx/index.js';
import { buildLstm, buildMlp, seededUniform } from '../../passes/quantize/dynamic-models.js';
import { toQOperator } from '../../passes/quantize/qop.js';
import { transposeTensor } from '../../passes/quantize/weights-int8.js';

import { WEIGHTS_TAG_KEY } from '../../passes/quantize/quantize-weights.js';
import { getPass } from '../../passes/registry.js';
import { createSession, expandCompressedWeights, isWeightCompressed } from '../../passes/quantize/compressed.js';
import type { Feed, HostTensor } from '../../core/host-tensor.js';
import { Session } from '../../runtime/session.js';
import { nodesOf } from '../quantize/helpers.js';
import { convRelu, gaussianSource, matmulAdd, randn } from '../quantize/models.js';
import { quantizeDynamic, quantizeStatic, quantizeWeights } from '../../passes/api.js';

const SO = { intraOpNumThreads: 1, logSeverityLevel: 3 as const };

async function run(m: Model | Uint8Array, feed: Feed): Promise<Float32Array> {
  const s = await Session.create(m instanceof Uint8Array ? m : serializeModel(m), SO);
  try {
    const out = await s.run(feed);
    return (Object.values(out)[0] as HostTensor).data as Float32Array;
  } finally {
    await s.dispose();
  }
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const maxAbs = (a: Float32Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
const convFeed: Feed = { x: { type: 'float32', dims: [1, 4, 8, 8], data: randn(256, 5) } };

describe('quantize-weights', () => {
  it('puts int8 per-channel weights behind DequantizeLinear on the output-channel axis and tags the model', async () => {
    const ref = convRelu(11);
    const m = cloneModel(ref);
    const r = await quantizeWeights(m, { minElements: 16 });
    expect(checkModel(m)).toEqual([]);
    expect(m.opset('')).toBeGreaterThanOrEqual(13);
    expect(m.metadata(WEIGHTS_TAG_KEY)).toBe('int8');
    expect(r.weights).toBe(2);
    const dqs = nodesOf(m, 'DequantizeLinear');
    expect(dqs).toHaveLength(2);
    for (const dq of dqs) {
      expect(constantOf(dq.inputs[0])!.dataType).toBe(DataType.INT8);
      expect(dq.getInt('axis')).toBe(0);
      expect(constantOf(dq.inputs[1])!.dims).toEqual([constantOf(dq.inputs[0])!.dims[0]]);
      expect(dq.outputs[0]!.consumers().map((n) => n.opType)).toEqual(['Conv']);
      expect(dq.outputs[0]!.uses[0]!.index).toBe(1);
    }
    // biases stay float; no float weight is left
    for (const conv of nodesOf(m, 'Conv')) expect(constantOf(conv.inputs[2])!.dataType).toBe(DataType.FLOAT);
    // numerics: the raw model (DQ at run time) is within int8 rounding of FP32
    const [a, b] = [await run(ref, convFeed), await run(m, convFeed)];
    expect(maxDiff(a, b)).toBeLessThan(0.02 * maxAbs(a));
    expect(maxDiff(a, b)).toBeGreaterThan(0);
  });

  it('uses the output axis of MatMul (N) and Gemm (transB), and leaves small tensors float', async () => {
    const ref = buildMlp([64, 96, 32], 2);
    const m = cloneModel(ref);
    await quantizeWeights(m, { minElements: 1000 });
    const dqs = nodesOf(m, 'DequantizeLinear');
    expect(dqs).toHaveLength(2);
    for (const dq of dqs) {
      const consumer = dq.outputs[0]!.consumers()[0]!;
      const dims = constantOf(dq.inputs[0])!.dims;
      const axis = dq.getInt('axis')!;
      if (consumer.opType === 'Gemm' && consumer.getInt('transB', 0) === 1) expect(axis).toBe(0);
      else expect(axis).toBe(dims.length - 1);
    }
    const small = cloneModel(ref);
    const r = await quantizeWeights(small, { minElements: 10_000 });
    expect(r.weights).toBe(0);
    expect(small.metadata(WEIGHTS_TAG_KEY)).toBeUndefined();
  });

  it('round-trips through expandCompressedWeights: float initializers, no DequantizeLinear, same outputs as the raw model', async () => {
    const m = convRelu(13);
    await quantizeWeights(m, { minElements: 16 });
    const bytes = serializeModel(m);
    const expanded = expandCompressedWeights(bytes);
    const e = loadModelSync(expanded);
    expect(isWeightCompressed(e)).toBe(false);
    expect(nodesOf(e, 'DequantizeLinear')).toHaveLength(0);
    for (const conv of nodesOf(e, 'Conv')) expect(constantOf(conv.inputs[1])!.dataType).toBe(DataType.FLOAT);
    expect(checkModel(e)).toEqual([]);
    // the same float32 values DequantizeLinear computes
    expect(maxDiff(await run(bytes, convFeed), await run(expanded, convFeed))).toBeLessThan(1e-5);
    // and the weights equal the float model's within one int8 step
    const ref = convRelu(13);
    const w0 = constantOf(ref.graph.nodes.find((n) => n.opType === 'Conv')!.inputs[1])!.toFloat32();
    const w1 = constantOf(nodesOf(e, 'Conv')[0]!.inputs[1])!.toFloat32();
    expect(maxDiff(w0, w1)).toBeLessThanOrEqual((maxAbs(w0) / 127) * 0.5 + 1e-6);
  });

  it('stores MatMul weights transposed so onnxruntime keeps a float MatMul (no MatMulNBits), and expands to the same float model', async () => {
    const ref = buildMlp([128, 256, 64], 4);
    const feed: Feed = { x: { type: 'float32', dims: [4, 128], data: seededUniform(4 * 128, 1, 5) } };
    const dir = mkdtempSync(join(tmpdir(), 'onnxforge-wq-'));
    const variants: Record<string, { bytes: Uint8Array; kernels: string[]; rawVsHelper: number }> = {};
    for (const transposeMatMul of [true, false]) {
      const m = cloneModel(ref);
      // prepare: false keeps MatMul + Add (the default preset would make them Gemm)
      const r = await quantizeWeights(m, { minElements: 1000, transposeMatMul, prepare: false });
      expect(r.transposedMatMul).toBe(transposeMatMul ? 2 : 0);
      expect(checkModel(m)).toEqual([]);
      for (const dq of nodesOf(m, 'DequantizeLinear')) {
        const [k, n] = constantOf(dq.inputs[0])!.dims as [number, number];
        const consumer = dq.outputs[0]!.consumers()[0]!;
        expect(dq.getInt('axis')).toBe(transposeMatMul ? 0 : 1);
        expect(constantOf(dq.inputs[1])!.dims).toEqual([transposeMatMul ? k : n]);
        if (transposeMatMul) {
          // [K, N] weight stored as int8 [N, K], scales per column = axis 0 of the stored tensor
          expect(consumer.opType).toBe('Transpose');
          expect(consumer.getInts('perm')).toEqual([1, 0]);
          expect(consumer.outputs[0]!.consumers().map((x) => x.opType)).toEqual(['MatMul']);
          expect(consumer.outputs[0]!.uses[0]!.index).toBe(1);
        } else expect(consumer.opType).toBe('MatMul');
      }
      const bytes = serializeModel(m);
      const opt = join(dir, `t${transposeMatMul}.onnx`);
      const raw = await Session.create(bytes, { ...SO, optimizedModelFilePath: opt });
      const helper = await createSession(bytes, SO);
      const a = (Object.values(await raw.run(feed))[0] as HostTensor).data as Float32Array;
      const b = (Object.values(await helper.run(feed))[0] as HostTensor).data as Float32Array;
      await raw.dispose();
      await helper.dispose();
      const kernels = (await loadModel(opt)).graph.nodes.map((n) => n.opType);
      variants[String(transposeMatMul)] = { bytes: expandCompressedWeights(bytes), kernels, rawVsHelper: maxDiff(a, b) };
    }
    const t = variants['true']!;
    const d = variants['false']!;
    // onnxruntime 1.30 fuses DQ(int8) -> MatMul into the 8-bit MatMulNBits; the transposed layout is not fused
    expect(d.kernels).toContain('MatMulNBits');
    expect(t.kernels).not.toContain('MatMulNBits');
    expect(t.kernels).toContain('DequantizeLinear');
    expect(t.rawVsHelper).toBeLessThan(1e-5);
    // the helper expands both layouts to the same float model
    expect(Buffer.from(t.bytes).equals(Buffer.from(d.bytes))).toBe(true);
    const e = loadModelSync(t.bytes);
    expect(nodesOf(e, 'DequantizeLinear')).toHaveLength(0);
    expect(nodesOf(e, 'Transpose')).toHaveLength(0);
    for (const mm of nodesOf(e, 'MatMul')) expect(constantOf(mm.inputs[1])!.dataType).toBe(DataType.FLOAT);
  });

  it('transposeTensor permutes any axes exactly, keeping the dtype', () => {
    const t = Tensor.from(DataType.INT8, [2, 3, 4], Int8Array.from({ length: 24 }, (_, i) => i - 12));
    const u = transposeTensor(t, [2, 0, 1]);
    expect(u.dataType).toBe(DataType.INT8);
    expect(u.dims).toEqual([4, 2, 3]);
    const x = t.data() as Int8Array;
    const y = u.data() as Int8Array;
    for (let a = 0; a < 2; a++) for (let b = 0; b < 3; b++) for (let c = 0; c < 4; c++) expect(y[c * 6 + a * 3 + b]).toBe(x[a * 12 + b * 4 + c]);
    expect(() => transposeTensor(t, [0, 0, 1])).toThrow(/perm/);
  });

  it('leaves untagged models (static QDQ) byte-identical, and createSession loads them as they are', async () => {
    const q = convRelu(13);
    await quantizeStatic(q, gaussianSource('x', () => [1, 4, 8, 8], 4));
    const bytes = serializeModel(q);
    expect(expandCompressedWeights(bytes)).toBe(bytes);
    const s = await createSession(bytes, SO);
    const direct = await run(bytes, convFeed);
    const viaHelper = (Object.values(await s.run(convFeed))[0] as HostTensor).data as Float32Array;
    await s.dispose();
    expect(maxDiff(direct, viaHelper)).toBe(0);
  });

  it('also compresses weights kept in Constant nodes and runs through the registry', async () => {
    const ref = convRelu(13); // w1 and b1 are Constant nodes in this model
    const m = cloneModel(ref);
    const pass = getPass('quantize-weights')!;
    const res = await pass.run(m, { minElements: 16, perChannel: true, prepare: false } as never, bareContext());
    expect(res.changed).toBe(true);
    expect(nodesOf(m, 'DequantizeLinear')).toHaveLength(2);
    expect(nodesOf(m, 'Constant').every((n) => constantOf(n.outputs[0])!.size <= 16)).toBe(true);
  });
});

describe('quantize-dynamic', () => {
  it('emits DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul with int8 per-column weights, which onnxruntime fuses', async () => {
    const ref = buildMlp([256, 512, 128], 1);
    const m = cloneModel(ref);
    const r = await quantizeDynamic(m, { minElements: 1024 });
    expect(checkModel(m)).toEqual([]);
    expect(Object.values(r.quantized).reduce((a, b) => a + b, 0)).toBe(2);
    const mmi = nodesOf(m, 'MatMulInteger');
    expect(mmi).toHaveLength(2);
    for (const n of mmi) {
      expect(n.inputs[0]!.producer!.opType).toBe('DynamicQuantizeLinear');
      const w = constantOf(n.inputs[1])!;
      expect(w.dataType).toBe(DataType.INT8);
      const q = w.data() as Int8Array;
      expect(q.reduce((m, v) => Math.max(m, Math.abs(v)), 0)).toBeLessThanOrEqual(64); // reduce-range default
      expect(n.outputs[0]!.consumers()[0]!.opType).toBe('Cast');
    }
    const feed: Feed = { x: { type: 'float32', dims: [1, 256], data: seededUniform(256, 1, 9) } };
    const [a, b] = [await run(ref, feed), await run(m, feed)];
    expect(maxDiff(a, b)).toBeLessThan(0.05 * maxAbs(a));
    const dir = mkdtempSync(join(tmpdir(), 'onnxforge-qm-'));
    const opt = join(dir, 'opt.onnx');
    const s = await Session.create(serializeModel(m), { ...SO, optimizedModelFilePath: opt });
    await s.dispose();
    const ops = (await loadModel(opt)).graph.nodes.map((n) => n.opType);
    expect(ops.filter((o) => o === 'DynamicQuantizeMatMul')).toHaveLength(2);
    expect(ops).not.toContain('MatMulInteger');
  });

  it('leaves Conv and small MatMuls float, and says why', async () => {
    const m = matmulAdd();
    const conv = convRelu(13);
    const r1 = await quantizeDynamic(m, { minElements: 1 << 20 });
    expect(nodesOf(m, 'MatMulInteger')).toHaveLength(0);
    expect(r1.float.some((f) => /below minElements/.test(f.reason))).toBe(true);
    await quantizeDynamic(conv);
    expect(nodesOf(conv, 'ConvInteger')).toHaveLength(0);
    expect(nodesOf(conv, 'Conv')).toHaveLength(2);
  });

  it('quantizes an LSTM into com.microsoft DynamicQuantizeLSTM with matching outputs', async () => {
    const ref = buildLstm(32, 24, 5);
    const m = cloneModel(ref);
    await quantizeDynamic(m);
    expect(checkModel(m)).toEqual([]);
    const q = m.graph.nodes.find((n) => n.opType === 'DynamicQuantizeLSTM')!;
    expect(q.opDomain).toBe('com.microsoft');
    expect(constantOf(q.inputs[1])!.dims).toEqual([1, 32, 96]);
    expect(constantOf(q.inputs[2])!.dims).toEqual([1, 24, 96]);
    const feed: Feed = { x: { type: 'float32', dims: [5, 1, 32], data: seededUniform(160, 1, 4) } };
    const [a, b] = [await run(ref, feed), await run(m, feed)];
    expect(maxDiff(a, b)).toBeLessThan(0.05 * maxAbs(a));
  });

  it('quantizes a constant Gather table per row and dequantizes after the Gather', async () => {
    const { GraphBuilder } = await import('../../ir/builder.js');
    const { Tensor } = await import('../../core/tensor.js');
    const b = new GraphBuilder({ opset: 13 });
    const idx = b.input('idx', 'int64', [1, 6]);
    const table = b.initializer('emb', Tensor.from(DataType.FLOAT, [100, 64], randn(6400, 3)));
    const [y] = b.op('Gather', [table, idx]);
    b.output(y!, 'y', 'float32', [1, 6, 64]);
    const ref = b.model();
    const m = cloneModel(ref);
    const r = await quantizeDynamic(m);
    expect(r.quantized.Gather).toBe(1);
    expect(m.graph.nodes.filter((n) => n.opType === 'Gather').some((n) => constantOf(n.inputs[0])?.dataType === DataType.INT8)).toBe(true);
    const feed: Feed = { idx: { type: 'int64', dims: [1, 6], data: BigInt64Array.from([0n, 5n, 99n, 42n, 5n, 7n]) } };
    const [a, c] = [await run(ref, feed), await run(m, feed)];
    expect(maxDiff(a, c)).toBeLessThan(maxAbs(a) / 127);
  });
});

describe('QOperator format', () => {
  it('turns the static QDQ units into QLinearConv and matches the QDQ outputs', async () => {
    const qdq = convRelu(13);
    await quantizeStatic(qdq, gaussianSource('x', () => [1, 4, 8, 8], 6));
    const q = cloneModel(qdq);
    const r = toQOperator(q);
    expect(checkModel(q)).toEqual([]);
    expect(r.converted.Conv).toBe(2);
    expect(nodesOf(q, 'QLinearConv')).toHaveLength(2);
    expect(nodesOf(q, 'Conv')).toHaveLength(0);
    const qc = nodesOf(q, 'QLinearConv')[0]!;
    expect(constantOf(qc.inputs[3])!.dataType).toBe(DataType.INT8);
    expect(constantOf(qc.inputs[8])!.dataType).toBe(DataType.INT32);
    const [a, b] = [await run(qdq, convFeed), await run(q, convFeed)];
    expect(maxDiff(a, b)).toBeLessThanOrEqual(0.02 * maxAbs(a));
  });

  it('turns MatMul units into QLinearMatMul', async () => {
    const qdq = matmulAdd();
    const feeds = gaussianSource(qdq.graph.inputs[0]!.name, () => qdq.graph.inputs[0]!.shape!.map((d) => (typeof d === 'number' ? d : 1)), 6);
    await quantizeStatic(qdq, feeds);
    const q = cloneModel(qdq);
    const r = toQOperator(q);
    expect(checkModel(q)).toEqual([]);
    expect((r.converted.MatMul ?? 0) + r.kept.filter((k) => k.op === 'MatMul').length).toBeGreaterThan(0);
    const x = qdq.graph.inputs[0]!;
    const dims = x.shape!.map((d) => (typeof d === 'number' ? d : 1));
    const feed: Feed = { [x.name]: { type: 'float32', dims, data: randn(dims.reduce((p, c) => p * c, 1), 8) } };
    const [a, b] = [await run(qdq, feed), await run(q, feed)];
    expect(maxDiff(a, b)).toBeLessThanOrEqual(0.02 * maxAbs(a) + 1e-6);
  });
});
