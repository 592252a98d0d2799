import { describe, expect, it } from 'vitest';
import { DataType } from '../../core/dtype.js';
import { Tensor } from '../../core/tensor.js';
import type { HostTensor } from '../../core/host-tensor.js';
import { GraphBuilder } from '../../ir/builder.js';
import { serializeModel } from '../../onnx/index.js';
import { quantizeDynamic } from '../../passes/quantize/quantize-dynamic.js';
import { Session } from '../../runtime/session.js';
import { chartPoints, textScatter, svgScatter } from '../../report/variants.js';
import { logitsAgreement, pairedRatio } from '../../workflows/variants.js';

const f32 = (dims: number[], data: number[]): HostTensor => ({ type: 'float32', dims, data: Float32Array.from(data) });

describe('logitsAgreement', () => {
  it('KL(p || q) of the softmaxes per row and top-1 agreement, by closed form', () => {
    // row 0: p = softmax(0, 0) = (1/2, 1/2), q = softmax(ln 3, 0) = (3/4, 1/4)
    // KL = 1/2 ln(2/3) + 1/2 ln(2) ; row 1 identical -> 0; argmax row 0 ties at index 0 for p, 0 for q
    const ref = f32([2, 2], [0, 0, 5, 1]);
    const cand = f32([2, 2], [Math.log(3), 0, 5, 1]);
    const g = logitsAgreement(cand, ref);
    expect(g.rows).toBe(2);
    expect(g.kl).toBeCloseTo((0.5 * Math.log(2 / 3) + 0.5 * Math.log(2)) / 2, 6);
    expect(g.top1).toBe(1);
    const flipped = logitsAgreement(f32([2, 2], [0, 1, 1, 5]), ref);
    expect(flipped.top1).toBe(0);
    expect(logitsAgreement(ref, ref).kl).toBe(0);
  });
});

describe('pairedRatio', () => {
  it('is the median of the per-round ratios, so a burst in one round does not move it', () => {
    expect(pairedRatio([2, 2, 20, 2, 2], [1, 1, 1, 1, 1])).toBe(2);
    // a burst hitting both sides of round 2 cancels
    expect(pairedRatio([1, 1, 10], [2, 2, 20])).toBe(0.5);
    expect(pairedRatio([1, 3], [1, 1])).toBe(2);
    expect(pairedRatio([], [])).toBeNaN();
  });
});

describe('quantize-dynamic weightType uint8', () => {
  it('stores uint8 weights with zero point 128 and gives the products of full-range int8 weights (onnxruntime)', async () => {
    const K = 128;
    const N = 160;
    const w = Float32Array.from({ length: K * N }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));
    const build = () => {
      const b = new GraphBuilder({ opset: 17 });
      const x = b.input('x', 'float32', [2, K]);
      const wv = b.initializer('w', Tensor.from(DataType.FLOAT, [K, N], w));
      const [y] = b.op('MatMul', [x, wv]);
      b.output(y!, 'y', 'float32', [2, N]);
      return b.model();
    };
    const u8 = build();
    await quantizeDynamic(u8, { weightType: 'uint8', minElements: 1, prepare: false });
    const i8 = build();
    await quantizeDynamic(i8, { weightType: 'int8', reduceRange: false, minElements: 1, prepare: false });
    const mmi = u8.graph.nodes.find((n) => n.opType === 'MatMulInteger')!;
    expect(u8.graph.initializerTensor(mmi.input(1)!)!.dataType).toBe(DataType.UINT8);
    expect(Array.from(u8.graph.initializerTensor(mmi.input(3)!)!.data() as Uint8Array)).toEqual([128]);
    const x: HostTensor = { type: 'float32', dims: [2, K], data: Float32Array.from({ length: 2 * K }, (_, i) => Math.cos(i * 0.11)) };
    const [su, si, sf] = await Promise.all([u8, i8, build()].map((m) => Session.create(serializeModel(m), { intraOpNumThreads: 1 })));
    const [yu, yi, yf] = await Promise.all([su!, si!, sf!].map(async (s) => (await s.run({ x })).y!.data as Float32Array));
    for (const s of [su, si, sf]) await s!.dispose();
    let maxDiff = 0;
    let maxErr = 0;
    for (let i = 0; i < yu!.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(yu![i]! - yi![i]!));
      maxErr = Math.max(maxErr, Math.abs(yu![i]! - yf![i]!));
    }
    expect(maxDiff).toBeLessThan(1e-3);
    // and close to float: 8-bit weights and activations
    expect(maxErr).toBeLessThan(0.05 * Math.max(...Array.from(yf!, Math.abs)));
  });
});

describe('variants charts', () => {
  const view = {
    input: 'in.onnx', outDir: 'out', inputBytes: 100, measuredOn: 'random:4', samples: 4, threads: 1, latencyRuns: 3, latencySettings: ['data'],
    reference: { latencyMs: { data: 1 } }, budgetText: 'b', shipNote: 's', notes: [],
    rows: [
      { variant: 'fp32', file: 'model.onnx', recipe: 'r', ok: true, bytes: 100, sizeRatio: 1, outputs: [{ name: 'y', maxAbs: 0, cosine: 1, sqnrDb: Infinity }], latencyRatio: { data: 1 } },
      { variant: 'q4', file: 'model_q4.onnx', recipe: 'r', ok: true, bytes: 20, sizeRatio: 0.2, outputs: [{ name: 'y', maxAbs: 0.1, cosine: 0.99, sqnrDb: 25 }], latencyRatio: { data: 0.9 } },
      { variant: 'q8', file: 'model_quantized.onnx', recipe: 'r', ok: false, error: { message: 'x', stage: 'load' } },
    ],
  };
  it('plots working variants only, infinite SQNR capped, in text and SVG', () => {
    const c = chartPoints(view);
    expect(c.fidelity).toEqual([{ label: 'fp32', x: 1, y: 120 }, { label: 'q4', x: 0.2, y: 25 }]);
    expect(c.latency.map((p) => p.y)).toEqual([1, 0.9]);
    const text = textScatter(c.fidelity, 'size', 'SQNR');
    expect(text).toContain('*fp32');
    expect(text).toContain('*q4');
    // the higher point (fp32, 120 dB) is on an earlier line than q4 (25 dB)
    expect(text.indexOf('*fp32')).toBeLessThan(text.indexOf('*q4'));
    expect(svgScatter(c.latency, 'size', 'latency')).toContain('data-points="2"');
    expect(svgScatter([], 'size', 'latency')).toContain('data-points="0"');
  });
});
