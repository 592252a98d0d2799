/**
 * The FLOP counter on hand-computed cases, sparse storage that onnxruntime loads with the same
 * outputs, and kept-channel rounding.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { constantOf } from '../../ir/ir.js';
import { countFlops } from '../../analysis/flops.js';
import { toSparseStorage, sparseEncode } from '../../passes/prune/sparse.js';
import { deployedSizes } from '../../passes/prune/deploy.js';
import { planChannels, pruneChannels } from '../../passes/prune/prune-channels.js';
import { f32, feedFor, maxAbsDiff, PER_LAYER, run, weight, weights } from './helpers.js';

describe('FLOP counter', () => {
  it('counts Conv, depthwise Conv, pooling, elementwise and MatMul as documented', () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', ['N', 3, 8, 8]);
    const [c] = b.op('Conv', [x, weight(b, 'w', f32([4, 3, 3, 3], weights([4, 3, 3, 3], 1))), weight(b, 'bias', f32([4], weights([4], 2)))], { pads: [1, 1, 1, 1] }, { name: 'conv' });
    const [d] = b.op('Conv', [c!, weight(b, 'wd', f32([4, 1, 3, 3], weights([4, 1, 3, 3], 3)))], { group: 4, pads: [1, 1, 1, 1], strides: [2, 2] }, { name: 'dw' });
    const [r] = b.op('Relu', [d!], {}, { name: 'relu' });
    const [g] = b.op('GlobalAveragePool', [r!], {}, { name: 'gap' });
    const [f] = b.op('Flatten', [g!], {}, { name: 'flat' });
    const [y] = b.op('MatMul', [f!, weight(b, 'wm', f32([4, 5], weights([4, 5], 4)))], {}, { name: 'fc' });
    b.output(y!, 'y', 'float32', ['N', 5]);
    const rep = countFlops(b.model(), { x: [2, 3, 8, 8] });
    const by = Object.fromEntries(rep.nodes.map((n) => [n.node, n]));
    expect(by.conv!.flops).toBe(2 * (2 * 4 * 8 * 8) * 3 * 9 + 2 * 4 * 8 * 8);
    expect(by.conv!.params).toBe(4 * 27 + 4);
    expect(by.dw!.flops).toBe(2 * (2 * 4 * 4 * 4) * 1 * 9);
    expect(by.relu!.flops).toBe(2 * 4 * 4 * 4);
    expect(by.gap!.flops).toBe(2 * 4 * 4 * 4);
    expect(by.flat!.flops).toBe(0);
    expect(by.fc!.flops).toBe(2 * 2 * 5 * 4);
    expect(rep.unknown).toEqual([]);
    expect(rep.totalParams).toBe(4 * 27 + 4 + 36 + 20);
  });
});

describe('sparse storage', () => {
  it('encodes linear indices and onnxruntime loads sparse initializers and sparse Constants identically', async () => {
    const t = f32([2, 3], [0, 1.5, 0, 0, -2, 0]);
    const s = sparseEncode(t, 'int16');
    expect(s.values!.toFloat32()).toEqual(Float32Array.from([1.5, -2]));
    expect(s.indices!.toNumbers()).toEqual([1, 4]);
    expect(s.dims).toEqual([2, 3]);

    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 16, 4, 4]);
    const sparse = (dims: number[], seed: number) => {
      const w = weights(dims, seed);
      for (let i = 0; i < w.length; i++) if (i % 5 !== 0) w[i] = 0;
      return w;
    };
    const [c1] = b.op('Conv', [x, weight(b, 'w1', f32([16, 16, 3, 3], sparse([16, 16, 3, 3], 1)), true)], { pads: [1, 1, 1, 1] });
    const [c2] = b.op('Conv', [c1!, weight(b, 'w2', f32([8, 16, 3, 3], sparse([8, 16, 3, 3], 2)), false)], { pads: [1, 1, 1, 1] });
    b.output(c2!, 'y', 'float32', [1, 8, 4, 4]);
    const m = b.model();
    const sp = toSparseStorage(m, ['int16', 'int64']);
    expect(sp.converted.map((e) => e.name).sort()).toEqual(['w1', 'w2']);
    expect(sp.model.graph.sparseInitializers.length).toBe(1);
    expect(sp.model.graph.nodes.some((n) => n.attributes[0]?.name === 'sparse_value')).toBe(true);
    const feed = feedFor([1, 16, 4, 4], 5);
    const want = await run(m, feed);
    const got = await run(sp.model, feed);
    expect(maxAbsDiff(got.y!.data, want.y!.data)).toBe(0);
    const sizes = await deployedSizes(m, feed);
    expect(sizes.sparse?.loads).toBe(true);
    expect(sizes.best.raw.variant).toBe('sparse');
    expect(sizes.best.raw.bytes).toBeLessThan(sizes.dense.raw);
  });
});

describe('kept-channel rounding', () => {
  it('rounds each group to a multiple of roundTo', () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 3, 4, 4]);
    const [c] = b.op('Conv', [x, weight(b, 'w', f32([32, 3, 1, 1], weights([32, 3, 1, 1], 1)))], {}, { name: 'conv' });
    const [y] = b.op('Conv', [c!, weight(b, 'w2', f32([2, 32, 1, 1], weights([2, 32, 1, 1], 2)))], {}, { name: 'out' });
    b.output(y!, 'y', 'float32', [1, 2, 4, 4]);
    const m = b.model();
    pruneChannels(m, { ratio: 0.3, ...PER_LAYER, roundTo: 8 });
    // 32 - round(9.6) = 22 kept, rounded to 24
    expect(constantOf(m.graph.nodes.find((n) => n.name === 'conv')!.input(1))!.dims).toEqual([24, 3, 1, 1]);
  });
});

describe('global selection with roundTo', () => {
  /** x -> conv a (sizes[0] channels) -> conv b (sizes[1]) -> ... -> conv out (2 channels). */
  function chain(sizes: number[]) {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1, 3, 4, 4]);
    let v = x;
    let cin = 3;
    sizes.forEach((c, i) => {
      [v] = b.op('Conv', [v, weight(b, `w${i}`, f32([c, cin, 1, 1], weights([c, cin, 1, 1], i + 1)))], {}, { name: `conv${i}` }) as [typeof x];
      cin = c;
    });
    const [y] = b.op('Conv', [v, weight(b, 'wout', f32([2, cin, 1, 1], weights([2, cin, 1, 1], 9)))], {}, { name: 'out' });
    b.output(y!, 'y', 'float32', [1, 2, 4, 4]);
    return b.model();
  }

  it('keeps multiples of roundTo in every group and removes the budget within roundTo/2', () => {
    const m = chain([32, 48, 24, 64]);
    const rep = pruneChannels(m, { ratio: 0.3, ...PER_LAYER, scope: 'global', roundTo: 8 });
    const total = 32 + 48 + 24 + 64;
    const budget = Math.round(0.3 * total);
    expect(Math.abs(rep.channelsBefore - rep.channelsAfter - budget)).toBeLessThanOrEqual(4);
    for (let i = 0; i < 4; i++) {
      const kept = constantOf(m.graph.nodes.find((n) => n.name === `conv${i}`)!.input(1))!.dims[0]!;
      expect(kept % 8).toBe(0);
      expect(kept).toBeGreaterThanOrEqual(8);
    }
  });

  it('without rounding removes exactly round(ratio * total)', () => {
    const m = chain([32, 48, 24, 64]);
    const rep = pruneChannels(m, { ratio: 0.3, ...PER_LAYER, scope: 'global' });
    expect(rep.channelsBefore - rep.channelsAfter).toBe(Math.round(0.3 * (32 + 48 + 24 + 64)));
  });

  it('a layer ratio of 0 keeps that group whole; keptChannels names the original indices', () => {
    const m = chain([16, 16]);
    const plan = planChannels(m, { ratio: 0.5, layers: ['conv0=0'], ...PER_LAYER });
    const kept = plan.keptChannels(m.graph.nodes.find((n) => n.name === 'conv1')!.outputs[0]!.name)!;
    plan.apply();
    expect(constantOf(m.graph.nodes.find((n) => n.name === 'conv0')!.input(1))!.dims[0]).toBe(16);
    expect(constantOf(m.graph.nodes.find((n) => n.name === 'conv1')!.input(1))!.dims[0]).toBe(8);
    expect(plan.keptChannels(m.graph.nodes.find((n) => n.name === 'conv0')!.outputs[0]!.name)).toEqual(Array.from({ length: 16 }, (_, i) => i));
    expect(kept).toHaveLength(8);
    expect(new Set(kept).size).toBe(8);
    expect(kept.every((c) => c >= 0 && c < 16)).toBe(true);
  });
});
