/**
 * prune-magnitude: the global selection against an independent reference (a full sort of
 * (|w|, tensor, index) triples, as torch's global_unstructured over the concatenated weights with ties
 * broken by position), per-layer amounts, and the pass on a model (Constant-node and initializer
 * weights, a weight shared with a node that is not pruned, exclusions left byte-identical).
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { constantOf, Model } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import { cloneModel } from '../../onnx/index.js';
import { OnnxForgeError } from '../../core/errors.js';
import { globalL1Masks, layerL1Masks, roundHalfEven } from '../../passes/prune/magnitude.js';
import pruneMagnitude, { MagnitudeReport } from '../../passes/prune/prune-magnitude.js';
import { f32, feedFor, rng, run, testContext, weight, weights } from './helpers.js';

/** Independent reference: sort every (|w|, array, index) and take the first k; k uses Python round. */
function reference(arrays: Float32Array[], amount: number): Uint8Array[] {
  const all: Array<[number, number, number]> = [];
  arrays.forEach((a, j) => a.forEach((v, i) => all.push([Math.abs(v), j, i])));
  all.sort((p, q) => p[0] - q[0] || p[1] - q[1] || p[2] - q[2]);
  const exact = amount * all.length;
  // Python's round: nearest, exact halves to the even neighbour
  let k = Math.round(exact);
  if (Math.abs(exact - Math.trunc(exact) - 0.5) < 1e-12 && k % 2 === 1) k -= 1;
  const masks = arrays.map((a) => new Uint8Array(a.length));
  for (const [, j, i] of all.slice(0, k)) masks[j]![i] = 1;
  return masks;
}

/** Weights with many exact ties (values on a coarse grid, both signs, some zeros). */
function tied(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => Math.round((r() * 2 - 1) * 8) / 8);
}

describe('magnitude selection', () => {
  it('rounds like Python', () => {
    expect([0.5, 1.5, 2.5, 2.4, 2.6, 3.5, 7].map(roundHalfEven)).toEqual([0, 2, 2, 2, 3, 4, 7]);
  });

  it('global selection equals the reference, ties included', () => {
    for (const seed of [1, 2, 3]) {
      const arrays = [tied(300, seed), weights([7, 11], seed + 10), tied(45, seed + 20), tied(1, seed + 30)];
      for (const amount of [0.1, 0.5, 0.37, 0.9]) {
        const got = globalL1Masks(arrays, amount);
        expect(got).toEqual(reference(arrays, amount));
      }
    }
  });

  it('layer scope prunes round(amount * size) of each tensor', () => {
    const arrays = [tied(10, 4), tied(33, 5), weights([50], 6)];
    const masks = layerL1Masks(arrays, 0.25);
    expect(masks.map((m) => m.reduce((a, b) => a + b, 0))).toEqual([2, 8, 12]);
    arrays.forEach((a, j) => expect(masks[j]).toEqual(reference([a], 0.25)[0]));
  });
});

function buildModel(): Model {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', 'float32', [1, 4, 6, 6]);
  const [c1] = b.op('Conv', [x, weight(b, 'w1', f32([8, 4, 3, 3], tied(288, 1)))], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  const [r] = b.op('Relu', [c1!]);
  const shared = weight(b, 'w2', f32([8, 8, 1, 1], weights([8, 8, 1, 1], 2)), false);
  const [c2] = b.op('Conv', [r!, shared], {}, { name: 'conv2' });
  // the same tensor read by a node that is not pruned: it must keep seeing the original
  const [g] = b.op('GlobalAveragePool', [c2!]);
  const [fl] = b.op('Flatten', [g!]);
  const [mm] = b.op('MatMul', [fl!, weight(b, 'wm', f32([8, 64], weights([8, 64], 3)), false)], {}, { name: 'fc' });
  const [shaped] = b.op('Reshape', [shared, b.constant('flat', Tensor.from('int64', [2], BigInt64Array.of(1n, 64n)))]);
  b.output(shaped!, 'w2_flat', 'float32', [1, 64]);
  const [e] = b.op('Conv', [c2!, weight(b, 'w3', f32([2, 8, 1, 1], weights([2, 8, 1, 1], 4)))], {}, { name: 'excluded' });
  b.output(mm!, 'y', 'float32', [1, 64]);
  b.output(e!, 'z', 'float32', [1, 2, 6, 6]);
  return b.model();
}

describe('prune-magnitude pass', () => {
  it('zeroes the global selection in new tensors, leaves excluded and shared readers untouched, and runs', async () => {
    const m = buildModel();
    const before = cloneModel(m);
    const w1Before = constantOf(m.graph.nodes.find((n) => n.name === 'conv1')!.input(1))!;
    const w1Bytes = new Uint8Array(w1Before.bytes());
    const ctx = testContext('prune-magnitude');
    const res = await pruneMagnitude.run(m, { sparsity: 0.5, scope: 'global', ops: ['Conv', 'Gemm', 'MatMul'], exclude: ['excluded'] }, ctx);
    expect(res.changed).toBe(true);
    const report = res.report!;
    expect(report.layers.map((l) => l.weight)).toEqual(['w1', 'w2', 'wm']);
    const arrays = ['conv1', 'conv2', 'fc'].map((name) => constantOf(before.graph.nodes.find((n) => n.name === name)!.input(1))!.toFloat32());
    const expected = reference(arrays, 0.5);
    ['conv1', 'conv2', 'fc'].forEach((name, j) => {
      const got = constantOf(m.graph.nodes.find((n) => n.name === name)!.input(1))!.toFloat32();
      for (let i = 0; i < got.length; i++) expect(got[i]).toBe(expected[j]![i] ? 0 : arrays[j]![i]);
    });
    expect(report.zeros).toBe(roundHalfEven(0.5 * report.elements));
    // the original tensor object and its buffer are unchanged
    expect(new Uint8Array(w1Before.bytes())).toEqual(w1Bytes);
    // excluded layer: same tensor, same bytes
    const ex = (mm: Model) => constantOf(mm.graph.nodes.find((n) => n.name === 'excluded')!.input(1))!.bytes();
    expect(ex(m)).toEqual(ex(before));
    expect(report.skipped).toEqual([{ weight: 'w3', reason: 'excluded (excluded (Conv))' }]);
    // the Reshape that shares w2 still reads the original initializer
    const reshape = m.graph.nodes.find((n) => n.opType === 'Reshape')!;
    expect(reshape.input(0)!.name).toBe('w2');
    expect(constantOf(reshape.input(0))!.bytes()).toEqual(constantOf(before.graph.initializers.get('w2'))!.bytes());
    expect(m.graph.nodes.find((n) => n.name === 'conv2')!.input(1)!.name).not.toBe('w2');
    const out = await run(m, feedFor([1, 4, 6, 6], 9));
    expect(out.y!.dims).toEqual([1, 64]);
    expect(out.z!.dims).toEqual([1, 2, 6, 6]);
  });

  it('warns and reports when the global threshold zeroes a whole tensor (a layer of small weights)', async () => {
    const build = () => {
      const b = new GraphBuilder({ opset: 13 });
      const x = b.input('x', 'float32', [1, 4, 6, 6]);
      const big = weights([8, 4, 3, 3], 5).map((v) => v * 10);
      const [c1] = b.op('Conv', [x, weight(b, 'big', f32([8, 4, 3, 3], big))], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
      const small = weights([4, 8, 1, 1], 6).map((v) => v * 1e-3);
      const [c2] = b.op('Conv', [c1!, weight(b, 'small', f32([4, 8, 1, 1], small))], {}, { name: 'conv2' });
      b.output(c2!, 'y', 'float32', [1, 4, 6, 6]);
      return b.model();
    };
    const m = build();
    const warnings: string[] = [];
    const ctx = { ...testContext('prune-magnitude'), logger: { info() {}, warn: (w: string) => void warnings.push(w), debug() {} } };
    const report = (await pruneMagnitude.run(m, { sparsity: 0.1, scope: 'global', ops: ['Conv'], exclude: [] }, ctx)).report!;
    expect(report.wiped).toEqual(['small']);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/1 weight tensor is now all zeros \(small of conv2\).*scope layer/);
    // per layer, no tensor is wiped and nothing is said
    const m2 = build();
    const ctx2 = { ...testContext('prune-magnitude'), logger: { info() {}, warn: (w: string) => void warnings.push(w), debug() {} } };
    const report2 = (await pruneMagnitude.run(m2, { sparsity: 0.1, scope: 'layer', ops: ['Conv'], exclude: [] }, ctx2)).report!;
    expect(report2.wiped).toBeUndefined();
    expect(warnings).toHaveLength(1);
  });

  it('rejects sparsity outside (0, 1)', () => {
    const m = buildModel();
    for (const sparsity of [0, 1, 2, -1]) {
      let err: unknown;
      try {
        pruneMagnitude.run(m, { sparsity, scope: 'global', ops: ['Conv'], exclude: [] }, testContext());
      } catch (e) {
        err = e;
      }
      expect((err as OnnxForgeError).code).toBe('PRUNE_BAD_SPARSITY');
    }
  });
});
