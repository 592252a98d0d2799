/** `onnxforge prune`: usage errors exit 2 and write nothing; a valid run writes a model that loads. */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { constantOf } from '../../ir/ir.js';
import { loadModelSync, saveModelSync } from '../../onnx/index.js';
import { f32, feedFor, maxAbsDiff, run, weight, weights } from './helpers.js';
import { runCli } from '../helpers/run-cli.js';
import pruneChannelsPass from '../../passes/prune/prune-channels.js';

const dir = mkdtempSync(join(tmpdir(), 'onnxforge-prune-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function modelFile(): string {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', 'float32', ['N', 3, 8, 8]);
  const [c] = b.op('Conv', [x, weight(b, 'w1', f32([16, 3, 3, 3], weights([16, 3, 3, 3], 1)))], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  const [r] = b.op('Relu', [c!]);
  const [y] = b.op('Conv', [r!, weight(b, 'w2', f32([4, 16, 1, 1], weights([4, 16, 1, 1], 2)))], {}, { name: 'conv2' });
  b.output(y!, 'y', 'float32', ['N', 4, 8, 8]);
  const file = join(dir, 'in.onnx');
  saveModelSync(b.model(), file);
  return file;
}

/** x -> Conv (6 channels) -> Relu -> Conv (4) -> Relu -> Conv: every prunable group has at most 8 channels. */
function smallModelFile(): string {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', 'float32', ['N', 3, 8, 8]);
  const [c1] = b.op('Conv', [x, weight(b, 'w1', f32([6, 3, 3, 3], weights([6, 3, 3, 3], 21)))], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  const [r1] = b.op('Relu', [c1!]);
  const [c2] = b.op('Conv', [r1!, weight(b, 'w2', f32([4, 6, 1, 1], weights([4, 6, 1, 1], 22)))], {}, { name: 'conv2' });
  const [r2] = b.op('Relu', [c2!]);
  const [y] = b.op('Conv', [r2!, weight(b, 'w3', f32([2, 4, 1, 1], weights([2, 4, 1, 1], 23)))], {}, { name: 'conv3' });
  b.output(y!, 'y', 'float32', ['N', 2, 8, 8]);
  const file = join(dir, 'small.onnx');
  saveModelSync(b.model(), file);
  return file;
}

/** x -> Conv -> BatchNormalization -> Relu -> Conv: the default preset folds the BN into conv1. */
function bnModelFile(): string {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', 'float32', [1, 3, 8, 8]);
  const [c] = b.op('Conv', [x, weight(b, 'w1', f32([16, 3, 3, 3], weights([16, 3, 3, 3], 11)))], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  const pos = (seed: number) => Float32Array.from(weights([16], seed), (v) => Math.abs(v) + 0.5);
  const [bn] = b.op('BatchNormalization', [c!, weight(b, 'g', f32([16], pos(12))), weight(b, 'beta', f32([16], weights([16], 13))), weight(b, 'mean', f32([16], weights([16], 14))), weight(b, 'var', f32([16], pos(15)))], {}, { name: 'bn' });
  const [r] = b.op('Relu', [bn!]);
  const [y] = b.op('Conv', [r!, weight(b, 'w2', f32([4, 16, 1, 1], weights([4, 16, 1, 1], 16)))], {}, { name: 'conv2' });
  b.output(y!, 'y', 'float32', [1, 4, 8, 8]);
  const file = join(dir, 'bn.onnx');
  saveModelSync(b.model(), file);
  return file;
}

const cli = runCli;

describe('onnxforge prune', () => {
  const input = modelFile();

  it('rejects bad usage with exit code 2 and writes nothing', async () => {
    const out = join(dir, 'bad.onnx');
    const both = await cli(['prune', input, '-o', out, '--channels', '0.3', '--magnitude', '0.5', '--no-latency']);
    expect(both.code).toBe(2);
    expect(both.err).toContain('exactly one of --channels');
    const ratio = await cli(['prune', input, '-o', out, '--channels', '1.5', '--no-latency']);
    expect(ratio.code).toBe(2);
    expect(ratio.err).toContain('PRUNE_BAD_RATIO');
    expect(existsSync(out)).toBe(false);
  });

  it('prunes channels, reports FLOPs before and after, and writes a loadable model', async () => {
    const out = join(dir, 'out.onnx');
    const r = await cli(['prune', input, '-o', out, '--channels', '0.25', '--scope', 'layer', '--cost', 'none', '--max-ratio', '1', '--round-to', '1', '--shape', 'x=1,3,8,8', '--no-latency', '--json']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.out) as { flops: { before: { totalFlops: number }; after: { totalFlops: number } }; channels: { channelsBefore: number; channelsAfter: number } };
    expect(rep.channels.channelsAfter).toBe(rep.channels.channelsBefore - 4);
    expect(rep.flops.after.totalFlops).toBeLessThan(rep.flops.before.totalFlops);
    const m = loadModelSync(out);
    expect(constantOf(m.graph.nodes.find((n) => n.name === 'conv1')!.input(1))!.dims).toEqual([12, 3, 3, 3]);
  });

  it('needs no data: on a symbolic batch dim without --shape, pruning succeeds and FLOPs/latency are left out with one note naming the flags', async () => {
    for (const mode of [['--channels', '0.25', '--round-to', '1'], ['--magnitude', '0.5']]) {
      const out = join(dir, `nodata-${mode[0]!.slice(2)}.onnx`);
      const r = await cli(['prune', input, '-o', out, ...mode, '--json']);
      expect(r.err).not.toMatch(/error/);
      expect(r.code).toBe(0);
      const rep = JSON.parse(r.out) as { flops?: unknown; latency?: unknown; params: { before: number; after: number }; notes?: string[] };
      expect(rep.flops).toBeUndefined();
      expect(rep.latency).toBeUndefined();
      expect(rep.notes).toHaveLength(1);
      expect(rep.notes![0]).toMatch(/left out: input 'x' has symbolic dims 'N'.*--inputs SPEC.*--shape x=N,3,8,8/);
      expect(rep.params.before).toBeGreaterThan(0);
      expect(existsSync(out)).toBe(true);
    }
    // --shape fixes the dims: FLOPs and latency come back, measured on a random input
    const r = await cli(['prune', input, '-o', join(dir, 'shaped.onnx'), '--channels', '0.25', '--round-to', '1', '--shape', 'x=1,3,8,8', '--runs', '2', '--json']);
    const rep = JSON.parse(r.out) as { flops?: { before: { totalFlops: number } }; latency?: { ratio: number }; notes?: string[] };
    expect(rep.flops!.before.totalFlops).toBeGreaterThan(0);
    expect(rep.latency!.ratio).toBeGreaterThan(0);
    expect(rep.notes).toBeUndefined();
  });

  it('magnitude: folds BN after pruning by default (zeros kept), reports original and deployed sizes; --no-optimize keeps the graph', async () => {
    const bnInput = bnModelFile();
    const out = join(dir, 'mag.onnx');
    const raw = join(dir, 'mag-raw.onnx');
    const r = await cli(['prune', bnInput, '-o', out, '--magnitude', '0.5', '--no-latency', '--json']);
    expect(r.code).toBe(0);
    type Rep = { magnitude: { sparsity: number }; optimized?: { nodesBefore: number; nodesAfter: number; weightSparsity: number }; sizes: { original: { raw: number; gzip: number }; best: { gzip: { bytes: number } } } };
    const rep = JSON.parse(r.out) as Rep;
    expect(rep.magnitude.sparsity).toBeCloseTo(0.5, 2);
    expect(rep.optimized!.nodesAfter).toBeLessThan(rep.optimized!.nodesBefore);
    // BN scales each output channel: zeros stay zero, so the sparsity survives the folding
    expect(rep.optimized!.weightSparsity).toBeCloseTo(rep.magnitude.sparsity, 6);
    expect(rep.sizes.original.raw).toBe(readFileSync(bnInput).length);
    expect(rep.sizes.best.gzip.bytes).toBeLessThan(rep.sizes.original.gzip);
    const folded = loadModelSync(out);
    expect(folded.graph.nodes.some((n) => n.opType === 'BatchNormalization')).toBe(false);

    const r2 = await cli(['prune', bnInput, '-o', raw, '--magnitude', '0.5', '--no-latency', '--no-optimize', '--json']);
    expect(r2.code).toBe(0);
    expect((JSON.parse(r2.out) as Rep).optimized).toBeUndefined();
    const kept = loadModelSync(raw);
    expect(kept.graph.nodes.some((n) => n.opType === 'BatchNormalization')).toBe(true);
    const feed = feedFor([1, 3, 8, 8], 4);
    expect(maxAbsDiff((await run(folded, feed)).y!.data, (await run(kept, feed)).y!.data)).toBeLessThan(1e-4);
  });

  it('channels with --scope global --cost flops --max-ratio --round-to: the options reach the pass', async () => {
    const out = join(dir, 'flops.onnx');
    const r = await cli(['prune', input, '-o', out, '--channels', '0.25', '--scope', 'global', '--cost', 'flops', '--max-ratio', '0.5', '--round-to', '4', '--shape', 'x=1,3,8,8', '--no-latency', '--json']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.out) as { channels: { scope: string; channelsBefore: number; channelsAfter: number } };
    expect(rep.channels.scope).toBe('global');
    expect(rep.channels.channelsBefore - rep.channels.channelsAfter).toBe(4);
    const bad = await cli(['prune', input, '-o', join(dir, 'bad2.onnx'), '--channels', '0.25', '--scope', 'global', '--max-ratio', '1.5', '--no-latency']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('PRUNE_BAD_MAX_RATIO');
    // --scope layer needs no other flag: the cost does not apply to it and the default cap (0.5) is above 0.25
    const layer = await cli(['prune', input, '-o', join(dir, 'layer.onnx'), '--channels', '0.25', '--scope', 'layer', '--round-to', '1', '--shape', 'x=1,3,8,8', '--no-latency', '--json']);
    expect(layer.code).toBe(0);
    const lrep = JSON.parse(layer.out) as { channels: { scope: string; cost: string; channelsBefore: number; channelsAfter: number } };
    expect(lrep.channels.scope).toBe('layer');
    expect(lrep.channels.channelsBefore - lrep.channels.channelsAfter).toBe(4);
  });

  it('defaults are the pass schema\'s: global, cost flops, max ratio 0.5, round to 8; a model of small groups stays whole and says why', async () => {
    const out = join(dir, 'defaults.onnx');
    const r = await cli(['prune', input, '-o', out, '--channels', '0.25', '--shape', 'x=1,3,8,8', '--no-latency', '--json']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.out) as { channels: { scope: string; cost: string; maxRatio: number; roundTo: number; criterion: string; channelsBefore: number; channelsAfter: number; note?: string } };
    const s = pruneChannelsPass.options;
    expect([rep.channels.scope, rep.channels.cost, rep.channels.maxRatio, rep.channels.roundTo, rep.channels.criterion]).toEqual([s.scope!.default, s.cost!.default, s.maxRatio!.default, s.roundTo!.default, s.criterion!.default]);
    expect([rep.channels.scope, rep.channels.cost, rep.channels.maxRatio, rep.channels.roundTo]).toEqual(['global', 'flops', 0.5, 8]);
    // conv1's 16 channels lose 4 -> 12 kept, which rounds back to 16 (the nearest multiple of 8)
    expect(rep.channels.channelsAfter).toBe(rep.channels.channelsBefore);
    expect(rep.channels.note).toContain('roundTo=8');
    // a group of at most 8 channels stays whole: nothing removed, with a warning naming roundTo=1
    const small = await cli(['prune', smallModelFile(), '-o', join(dir, 'small-out.onnx'), '--channels', '0.3', '--shape', 'x=1,3,8,8', '--no-latency', '--json']);
    expect(small.code).toBe(0);
    const srep = JSON.parse(small.out) as { channels: { channelsBefore: number; channelsAfter: number; note?: string } };
    expect(srep.channels.channelsAfter).toBe(srep.channels.channelsBefore);
    expect(srep.channels.note).toContain('roundTo=1');
    expect(small.err).toContain('warning: prune-channels: nothing removed');
    const fixed = await cli(['prune', smallModelFile(), '-o', join(dir, 'small-out1.onnx'), '--channels', '0.3', '--round-to', '1', '--shape', 'x=1,3,8,8', '--no-latency', '--json']);
    expect((JSON.parse(fixed.out) as { channels: { channelsBefore: number; channelsAfter: number } }).channels.channelsAfter).toBeLessThan(srep.channels.channelsBefore);
  });

  it('--storage sparse writes the measured sparse variant: smaller, loads, same outputs; channels mode falls back to dense with a reason', async () => {
    const bnInput = bnModelFile();
    const dense = join(dir, 'st-dense.onnx');
    const sparse = join(dir, 'st-sparse.onnx');
    expect((await cli(['prune', bnInput, '-o', dense, '--magnitude', '0.5', '--no-latency'])).code).toBe(0);
    const r = await cli(['prune', bnInput, '-o', sparse, '--magnitude', '0.5', '--no-latency', '--storage', 'sparse', '--json']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.out) as { storage: { written: string; tensors: number; bytes: number } };
    expect(rep.storage.written).toBe('sparse');
    expect(rep.storage.tensors).toBeGreaterThan(0);
    expect(readFileSync(sparse).length).toBe(rep.storage.bytes);
    expect(readFileSync(sparse).length).toBeLessThan(readFileSync(dense).length);
    const sm = loadModelSync(sparse);
    const sparseTensors = sm.graph.sparseInitializers.length + sm.graph.nodes.filter((n) => n.attributes.some((x) => x.name === 'sparse_value')).length;
    expect(sparseTensors).toBe(rep.storage.tensors);
    const feed = feedFor([1, 3, 8, 8], 6);
    expect(maxAbsDiff((await run(sm, feed)).y!.data, (await run(loadModelSync(dense), feed)).y!.data)).toBe(0);

    const ch = await cli(['prune', input, '-o', join(dir, 'st-ch.onnx'), '--channels', '0.25', '--shape', 'x=1,3,8,8', '--no-latency', '--storage', 'sparse', '--json']);
    expect(ch.code).toBe(0);
    expect(ch.err).toContain('--storage sparse: writing dense storage, no tensor is smaller stored sparse');
    expect((JSON.parse(ch.out) as { storage: { written: string } }).storage.written).toBe('dense');
  });
});
