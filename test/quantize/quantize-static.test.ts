/**
 * quantize-static on small built models: Q/DQ placement, explicit zero points, int8 per-channel
 * weights on the right axis, int32 biases with scale s_x * s_w, reduce-range bounds, exclusions, and
 * numerics against the FP32 model in onnxruntime (SQNR thresholds).
 */
import { describe, expect, it } from 'vitest';
import { DataType } from '../../core/dtype.js';
import { checkModel } from '../../ir/checker.js';
import { constantOf, Model } from '../../ir/ir.js';
import { cloneModel, serializeModel, loadModelSync } from '../../onnx/index.js';
import { getPass } from '../../passes/registry.js';

import { byName, dqSource, floatConstants, nodesOf, outputError, quantizerOf, testContext } from './helpers.js';
import { convRelu, gaussianSource, hardswishRegion, matmulAdd, residual } from './models.js';
import { quantizeStatic } from '../../passes/api.js';

const calib4x8 = gaussianSource('x', () => [1, 4, 8, 8], 12);

async function quantized(make: () => Model, source: ReturnType<typeof gaussianSource>, opts: Parameters<typeof quantizeStatic>[2] = {}) {
  const ref = make();
  const m = cloneModel(ref);
  const report = await quantizeStatic(m, source, opts);
  return { ref, m, report };
}

describe('quantize-static: Conv + Relu', () => {
  it('places one Q/DQ per boundary, folds the Relu, and quantizes weights and biases', async () => {
    const { ref, m, report } = await quantized(convRelu, calib4x8);
    expect(checkModel(m)).toEqual([]);
    // x, relu1 output, conv2 output
    const qs = nodesOf(m, 'QuantizeLinear');
    expect(qs.map((q) => q.inputs[0]!.name).sort()).toEqual(['x', byName(m, 'relu1').outputs[0]!.name, 'y_float'].sort());
    // the graph output keeps its name: it is now the DQ output
    expect(m.graph.outputs[0]!.name).toBe('y');
    expect(m.graph.outputs[0]!.producer!.opType).toBe('DequantizeLinear');
    // explicit zero points everywhere
    for (const n of [...qs, ...nodesOf(m, 'DequantizeLinear')]) {
      const t = constantOf(n.inputs[0])?.dataType;
      if (t !== DataType.INT32 && t !== DataType.INT8) expect(n.inputs.length).toBe(3);
    }
    // Relu stays between the conv and the Q (onnxruntime drops it), with zero point 0
    const relu = byName(m, 'relu1');
    const q = quantizerOf(relu.outputs[0]!)!;
    expect(constantOf(q.inputs[2])!.dataType).toBe(DataType.UINT8);
    expect(constantOf(q.inputs[2])!.toNumbers()).toEqual([0]);
    expect(relu.inputs[0]!.producer!.name).toBe('conv1');
    // weights: int8 per channel along axis 0, the float Constant nodes are gone
    const conv1 = byName(m, 'conv1');
    const wdq = conv1.inputs[1]!.producer!;
    expect(wdq.opType).toBe('DequantizeLinear');
    expect(constantOf(wdq.inputs[0])!.dataType).toBe(DataType.INT8);
    expect(wdq.getInt('axis')).toBe(0);
    expect(constantOf(wdq.inputs[1])!.dims).toEqual([8]);
    expect(wdq.inputs[2] ?? null).toBeNull(); // symmetric: zero point 0 by definition
    expect(m.graph.initializers.has(wdq.inputs[0]!.name)).toBe(true);
    expect(floatConstants(m)).toEqual([]);
    // bias: int32, zero point 0, scale = input scale x weight scale per channel
    const bdq = conv1.inputs[2]!.producer!;
    expect(constantOf(bdq.inputs[0])!.dataType).toBe(DataType.INT32);
    const xq = quantizerOf(m.graph.inputs[0]!)!;
    const sx = constantOf(xq.inputs[1])!.toFloat32()[0]!;
    const sw = constantOf(wdq.inputs[1])!.toFloat32();
    const sb = constantOf(bdq.inputs[1])!.toFloat32();
    for (let c = 0; c < 8; c++) expect(sb[c]).toBeCloseTo(Math.fround(sx * sw[c]!), 12);
    expect(bdq.inputs[2] ?? null).toBeNull(); // zero point 0 by definition
    expect(report.emit).toMatchObject({ weights: 2, biases: 2 });
    // no float weight is left behind (as initializer or Constant)
    for (const v of m.graph.initializers.values()) {
      const t = constantOf(v)!;
      if (t.size > 16) expect(t.dataType).not.toBe(DataType.FLOAT);
    }
    // numerics
    const [err] = await outputError(ref, m, gaussianSource('x', () => [1, 4, 8, 8], 4, 500)());
    expect(err!.sqnrDb).toBeGreaterThan(25);
    // the model loads after a codec round trip
    expect(checkModel(loadModelSync(serializeModel(m)))).toEqual([]);
  });

  it('keeps reduce-range weights in [-64, 64] and full-range weights in [-127, 127]', async () => {
    for (const reduceRange of [true, false]) {
      const { m } = await quantized(convRelu, calib4x8, { reduceRange });
      const w = constantOf(byName(m, 'conv1').inputs[1]!.producer!.inputs[0])!.data() as Int8Array;
      const mx = Math.max(...Array.from(w, Math.abs));
      expect(mx).toBe(reduceRange ? 64 : 127);
    }
  });

  it('uses one weight scale with --no-per-channel', async () => {
    const { m } = await quantized(convRelu, calib4x8, { perChannel: false });
    const wdq = byName(m, 'conv1').inputs[1]!.producer!;
    expect(wdq.attr('axis')).toBeUndefined();
    expect(constantOf(wdq.inputs[1])!.dims).toEqual([]);
  });
});

describe('quantize-static: MatMul + Add with a dynamic dimension', () => {
  it('quantizes the weight per output column and merges ranges across sequence lengths', async () => {
    const src = gaussianSource('x', (i) => [1, 2 + (i % 5), 16], 15);
    const { ref, m, report } = await quantized(matmulAdd, src);
    expect(checkModel(m)).toEqual([]);
    const mm = byName(m, 'matmul');
    const wdq = mm.inputs[1]!.producer!;
    expect(wdq.getInt('axis')).toBe(1);
    expect(constantOf(wdq.inputs[1])!.dims).toEqual([32]);
    expect(dqSource(mm.inputs[0])?.name).toBe('x');
    // the bias Add has no int8 kernel: it reads the MatMul output through one Q/DQ and stays float
    const add = byName(m, 'add_bias');
    expect(dqSource(add.inputs[0])).toBe(mm.outputs[0]);
    expect(quantizerOf(add.outputs[0]!)).toBeUndefined();
    expect(report.samples).toBe(15);
    const [err] = await outputError(ref, m, gaussianSource('x', (i) => [1, 3 + i, 16], 3, 900)());
    expect(err!.sqnrDb).toBeGreaterThan(18);
  });
});

describe('quantize-static: residual Add', () => {
  it('runs the Add in int8 between int8 neighbours', async () => {
    const src = gaussianSource('x', () => [1, 8, 6, 6], 12);
    const { ref, m, report } = await quantized(residual, src);
    expect(checkModel(m)).toEqual([]);
    const add = byName(m, 'residual_add');
    expect(dqSource(add.inputs[0])).toBeDefined();
    expect(dqSource(add.inputs[1])).toBeDefined();
    expect(quantizerOf(add.outputs[0]!)).toBeDefined();
    expect(report.quantizedOps.Add).toBe(1);
    // the Relu output feeds conv2 and the Add through one shared Q
    const relu = byName(m, 'relu1');
    expect(relu.outputs[0]!.consumers().map((n) => n.opType)).toEqual(['QuantizeLinear']);
    const [err] = await outputError(ref, m, gaussianSource('x', () => [1, 8, 6, 6], 3, 700)());
    expect(err!.sqnrDb).toBeGreaterThan(20);
  });
});

describe('quantize-static: HardSwish region', () => {
  it('puts one boundary around the float region and none between its float ops', async () => {
    // prepare: false keeps the graph as built (the fuse preset may fold the Mul into conv2)
    const { ref, m, report } = await quantized(hardswishRegion, calib4x8, { method: 'percentile', percentile: 99.99, prepare: false });
    expect(checkModel(m)).toEqual([]);
    const hs = byName(m, 'hswish');
    const mul = byName(m, 'scale_half');
    expect(dqSource(hs.inputs[0])).toBe(byName(m, 'conv1').outputs[0]);
    expect(hs.outputs[0]!.consumers()).toEqual([mul]);
    expect(quantizerOf(mul.outputs[0]!)).toBeDefined();
    expect(nodesOf(m, 'QuantizeLinear')).toHaveLength(4);
    expect(report.quantizedOps).toEqual({ Conv: 2 });
    const [err] = await outputError(ref, m, gaussianSource('x', () => [1, 4, 8, 8], 4, 300)());
    expect(err!.sqnrDb).toBeGreaterThan(12);
  });

  it('leaves excluded nodes and op types in float and lists them', async () => {
    const byNode = await quantized(hardswishRegion, calib4x8, { excludeNodes: ['conv2'] });
    expect(byNode.report.float).toEqual([{ node: 'conv2', op: 'Conv', reason: expect.stringContaining('exclude-nodes') }]);
    expect(byName(byNode.m, 'conv2').inputs[1]!.producer?.opType).not.toBe('DequantizeLinear');
    expect(nodesOf(byNode.m, 'QuantizeLinear')).toHaveLength(2);
    const byOp = await quantized(hardswishRegion, calib4x8, { excludeOps: ['Conv'] });
    expect(nodesOf(byOp.m, 'QuantizeLinear')).toHaveLength(0);
    expect(byOp.report.float.map((f) => f.node).sort()).toEqual(['conv1', 'conv2']);
    const only = await quantized(matmulAdd, gaussianSource('x', () => [1, 4, 16], 4), { onlyOps: ['Conv'] });
    expect(only.report.int8Nodes).toBe(0);
    await expect(quantized(convRelu, calib4x8, { excludeNodes: ['nope'] })).rejects.toMatchObject({ code: 'QUANT_UNKNOWN_NODE' });
  });
});

describe('quantize-static: calibration methods', () => {
  for (const method of ['minmax', 'percentile', 'entropy'] as const) {
    it(`${method} gives a valid, accurate model`, async () => {
      const { ref, m, report } = await quantized(convRelu, calib4x8, { method });
      expect(report.method).toBe(method);
      expect(checkModel(m)).toEqual([]);
      for (const r of Object.values(report.ranges)) expect(r.lo).toBeLessThanOrEqual(0);
      const [err] = await outputError(ref, m, gaussianSource('x', () => [1, 4, 8, 8], 3, 800)());
      expect(err!.sqnrDb).toBeGreaterThan(20);
    });
  }

  it('splits extra outputs into groups without changing the ranges', async () => {
    const method = 'percentile';
    const one = await quantized(residual, gaussianSource('x', () => [1, 8, 6, 6], 6), { method });
    const split = await quantized(residual, gaussianSource('x', () => [1, 8, 6, 6], 6), { method, tensorsPerRun: 2 });
    const tiny = await quantized(residual, gaussianSource('x', () => [1, 8, 6, 6], 6), { method, memoryBudgetBytes: 2000 });
    expect(split.report.calibrationGroups).toBe(3);
    expect(tiny.report.calibrationGroups).toBeGreaterThan(1);
    // the same tensors and samples give the same ranges; a tensor computed in a run that does not also
    // expose its producer's input may go through one of onnxruntime's fused kernels (Conv + Add), whose
    // rounding differs in the last float32 bits on some CPUs, so compare to 1e-6 relative
    for (const other of [split, tiny]) {
      expect(Object.keys(other.report.ranges).sort()).toEqual(Object.keys(one.report.ranges).sort());
      for (const [k, r] of Object.entries(one.report.ranges)) {
        const o = other.report.ranges[k]!;
        expect(Math.abs(o.lo - r.lo), `${k}.lo`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(r.lo)));
        expect(Math.abs(o.hi - r.hi), `${k}.hi`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(r.hi)));
      }
    }
  });
});

describe('quantize-static as a registered pass', () => {
  it('reads ctx.data.calibration and reports stats', async () => {
    const pass = getPass('quantize-static')!;
    expect(pass).toBeDefined();
    const m = convRelu();
    const samples = [];
    for await (const s of calib4x8()) samples.push(s.feed);
    const ctx = testContext({ calibration: samples });
    const r = await pass.run(m, { method: 'minmax', percentile: 99.999, perChannel: true, reduceRange: true, symmetricActivations: false, excludeNodes: [], excludeOps: [], onlyOps: [], activationMatMul: false, prepare: true }, ctx);
    expect(r.changed).toBe(true);
    expect(r.stats).toMatchObject({ weights: 2, biases: 2, samples: 12 });
    expect(checkModel(m)).toEqual([]);
    await expect(Promise.resolve(pass.run(convRelu(), {}, testContext()))).rejects.toMatchObject({ code: 'QUANT_NO_CALIBRATION' });
  });
});

describe('quantize-static output in onnxruntime', () => {
  it('fuses into integer kernels (QLinearConv, QLinearAdd) with no weight DequantizeLinear left', async () => {
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { createSessionFromModel } = await import('../../runtime/from-model.js');
    const { m } = await quantized(residual, gaussianSource('x', () => [1, 8, 6, 6], 4));
    const path = join(mkdtempSync(join(tmpdir(), 'onnxforge-qdq-')), 'optimized.onnx');
    const s = await createSessionFromModel(m, { graphOptimizationLevel: 'extended', optimizedModelFilePath: path });
    await s.dispose();
    const opt = loadModelSync(path);
    const count = (op: string) => opt.graph.nodes.filter((n) => n.opType === op).length;
    expect(count('QLinearConv')).toBe(3);
    expect(count('QLinearAdd')).toBe(1);
    expect(count('Conv')).toBe(0);
    // only the model's input Q and output DQ remain
    expect(count('QuantizeLinear')).toBe(1);
    expect(count('DequantizeLinear')).toBe(1);
  });
});
