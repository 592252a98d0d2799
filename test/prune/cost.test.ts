/**
 * prune-channels with `cost: flops` (global ranking by importance per FLOP) and `maxRatio`: the
 * per-channel FLOP costs against hand-computed values, the selection against the plain global one
 * on the same model, the cap, option errors, and onnxruntime still running the pruned model.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { constantOf, Model } from '../../ir/ir.js';
import { cloneModel } from '../../onnx/index.js';
import { OnnxForgeError } from '../../core/errors.js';
import { planChannels, pruneChannels } from '../../passes/prune/prune-channels.js';
import { channelCosts } from '../../passes/prune/channels.js';
import { analyzeChannels } from '../../analysis/channel-dependency.js';
import { countFlops, flopsByNode } from '../../analysis/flops.js';
import { f32, feedFor, PER_LAYER, run, weight, weights } from './helpers.js';

/**
 * x [1,3,16,16] -> conv0 (16, 1x1) -> conv1 (16, 1x1, stride 2) -> conv2 (16, 1x1) -> out (2).
 * Every producer's weights are the same 16-channel profile scaled, so mean-normalized importances
 * are equal across the three groups and only the cost can tell them apart.
 */
function stridedChain(symbolic = false): Model {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', 'float32', symbolic ? [1, 3, 'h', 'w'] : [1, 3, 16, 16]);
  const profile = Float32Array.from({ length: 16 }, (_, c) => 0.2 + 0.05 * c);
  const w = (name: string, cin: number, scale: number) => {
    const base = weights([16, cin, 1, 1], name.length + cin);
    for (let c = 0; c < 16; c++) {
      let s = 0;
      for (let i = 0; i < cin; i++) s += Math.abs(base[c * cin + i]!);
      for (let i = 0; i < cin; i++) base[c * cin + i] = (base[c * cin + i]! / s) * profile[c]! * scale;
    }
    return weight(b, name, f32([16, cin, 1, 1], base));
  };
  const [c0] = b.op('Conv', [x, w('w0', 3, 1)], {}, { name: 'conv0' });
  const [c1] = b.op('Conv', [c0!, w('w1', 16, 2)], { strides: [2, 2] }, { name: 'conv1' });
  const [c2] = b.op('Conv', [c1!, w('w2', 16, 3)], {}, { name: 'conv2' });
  const [y] = b.op('Conv', [c2!, weight(b, 'wout', f32([2, 16, 1, 1], weights([2, 16, 1, 1], 9)))], {}, { name: 'out' });
  b.output(y!, 'y', 'float32', symbolic ? [1, 2, 'h2', 'w2'] : [1, 2, 8, 8]);
  return b.model();
}

const kept = (m: Model, name: string) => constantOf(m.graph.nodes.find((n) => n.name === name)!.input(1))!.dims[0]!;

describe('channel costs', () => {
  it('charge each group the FLOPs per channel of every weight along its channel axis', () => {
    const m = stridedChain();
    const a = analyzeChannels(m.graph, 13);
    const flops = flopsByNode(m);
    const byName = new Map([...flops].map(([n, f]) => [n.name, f]));
    // a multiply-add is 2 FLOPs: 2 * out elements * C_in
    expect(byName.get('conv0')).toBe(2 * 16 * 256 * 3);
    expect(byName.get('conv1')).toBe(2 * 16 * 64 * 16);
    const costs = channelCosts(a, flops);
    const bySpace = new Map(a.prunable().map((s) => [s.members[0]!.name, costs.get(s.id)]));
    // conv0's channels: conv0's F/16 (outputs) + conv1's F/16 (inputs)
    expect(bySpace.get('conv0')).toBe((2 * 16 * 256 * 3) / 16 + (2 * 16 * 64 * 16) / 16);
    expect(bySpace.get('conv1')).toBe((2 * 16 * 64 * 16) / 16 + (2 * 16 * 64 * 16) / 16);
    expect(bySpace.get('conv2')).toBe((2 * 16 * 64 * 16) / 16 + (2 * 2 * 64 * 16) / 16);
  });

  it('give symbolic spatial dims a nominal size so strides still count', () => {
    const m = stridedChain(true);
    const flops = new Map([...flopsByNode(m)].map(([n, f]) => [n.name, f]));
    // 256 x 256 nominal: conv0 runs at 4x the positions of conv1
    expect(flops.get('conv0')! / flops.get('conv1')!).toBeCloseTo((4 * 3) / 16, 10);
  });
});

describe('cost: flops', () => {
  it('removes the same number of channels as the plain global ranking, from the costlier groups, so fewer FLOPs remain', () => {
    const plain = stridedChain();
    const weighted = stridedChain();
    const r1 = pruneChannels(plain, { ratio: 0.25, ...PER_LAYER, scope: 'global' });
    const r2 = pruneChannels(weighted, { ratio: 0.25, ...PER_LAYER, scope: 'global', cost: 'flops' });
    expect(r1.channelsBefore - r1.channelsAfter).toBe(12);
    expect(r2.channelsBefore - r2.channelsAfter).toBe(12);
    // conv1's channels cost the most, conv2's the least
    // equal normalized importances: the plain ranking takes 4 from each group (ties to the first)
    expect(['conv0', 'conv1', 'conv2'].map((n) => kept(plain, n))).toEqual([12, 12, 12]);
    // per FLOP, the costliest group (conv1) loses most and the cheapest (conv2) least
    expect(kept(weighted, 'conv1')).toBeLessThan(kept(weighted, 'conv0'));
    expect(kept(weighted, 'conv0')).toBeLessThan(kept(weighted, 'conv2'));
    const f = (m: Model) => countFlops(m).totalFlops;
    expect(f(weighted)).toBeLessThan(f(plain));
  });

  it('maxRatio caps what any one group loses; the rest of the budget goes elsewhere', async () => {
    const m = stridedChain();
    const before = cloneModel(m);
    const r = pruneChannels(m, { ratio: 0.25, ...PER_LAYER, scope: 'global', cost: 'flops', maxRatio: 0.4 });
    expect(r.channelsBefore - r.channelsAfter).toBe(12);
    for (const name of ['conv0', 'conv1', 'conv2']) expect(kept(m, name)).toBeGreaterThanOrEqual(Math.ceil(16 * 0.6));
    const feed = feedFor([1, 3, 16, 16], 5);
    expect((await run(m, feed)).y!.dims).toEqual((await run(before, feed)).y!.dims);
  });

  it('maxRatio holds with roundTo too', () => {
    const m = stridedChain();
    pruneChannels(m, { ratio: 0.3, scope: 'global', cost: 'flops', maxRatio: 0.5, roundTo: 4 });
    for (const name of ['conv0', 'conv1', 'conv2']) {
      expect(kept(m, name) % 4).toBe(0);
      expect(kept(m, name)).toBeGreaterThanOrEqual(8);
    }
  });

  it('rejects an unknown cost and a maxRatio outside (0, 1] with stable codes', () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e instanceof OnnxForgeError ? e.code : 'other';
      }
      return 'none';
    };
    expect(code(() => planChannels(stridedChain(), { ratio: 0.3, scope: 'global', cost: 'latency' }))).toBe('PRUNE_BAD_COST');
    for (const maxRatio of [0, -1, 1.5, Number.NaN]) expect(code(() => planChannels(stridedChain(), { ratio: 0.3, scope: 'global', maxRatio }))).toBe('PRUNE_BAD_MAX_RATIO');
  });

  it('scope layer: every group loses the same ratio whatever the cost, and maxRatio caps that ratio', () => {
    const keptAll = (o: Parameters<typeof pruneChannels>[1]) => {
      const m = stridedChain();
      pruneChannels(m, o);
      return ['conv0', 'conv1', 'conv2'].map((n) => kept(m, n));
    };
    expect(keptAll({ ratio: 0.25, ...PER_LAYER, cost: 'flops' })).toEqual([12, 12, 12]);
    expect(keptAll({ ratio: 0.25, ...PER_LAYER, cost: 'none' })).toEqual([12, 12, 12]);
    expect(keptAll({ ratio: 0.75, ...PER_LAYER, maxRatio: 0.5 })).toEqual([8, 8, 8]);
    expect(keptAll({ ratio: 0.75, ...PER_LAYER })).toEqual([4, 4, 4]);
    // rounding may not take a group below what maxRatio leaves: 16 - round(0.7 * 16) = 5 rounds to 4,
    // under the 16 * 0.3 = 4.8 channels a 0.7 cap keeps, so the next multiple of 4 is kept
    expect(keptAll({ ratio: 0.75, ...PER_LAYER, maxRatio: 0.7, roundTo: 4 })).toEqual([8, 8, 8]);
  });
});
