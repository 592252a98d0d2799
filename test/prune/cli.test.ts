/** `onnxforge prune`: usage errors exit 2 and write nothing; a valid run writes a model that loads. */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../graph/builder.js';
import { constantOf } from '../../graph/ir.js';
import { loadModelSync, saveModelSync } from '../../graph/onnx/index.js';
import { f32, weight, weights } from './helpers.js';
import { runCli } from '../helpers/run-cli.js';

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
    const r = await cli(['prune', input, '-o', out, '--channels', '0.25', '--shape', 'x=1,3,8,8', '--no-latency', '--json']);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.out) as { flops: { before: { totalFlops: number }; after: { totalFlops: number } }; channels: { channelsBefore: number; channelsAfter: number } };
    expect(rep.channels.channelsAfter).toBe(rep.channels.channelsBefore - 4);
    expect(rep.flops.after.totalFlops).toBeLessThan(rep.flops.before.totalFlops);
    const m = loadModelSync(out);
    expect(constantOf(m.graph.nodes.find((n) => n.name === 'conv1')!.input(1))!.dims).toEqual([12, 3, 3, 3]);
  });
});
