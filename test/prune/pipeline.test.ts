/**
 * One source of defaults: `onnxforge prune --channels R` and a pipeline file naming the same pass
 * (`prune-channels<ratio=R>` then the `default` preset, as the command runs with --optimize) write
 * byte-identical models, with and without calibration data for the bias compensation, with the
 * defaults and with options given.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { saveModelSync } from '../../onnx/index.js';
import { runCli } from '../helpers/run-cli.js';
import { f32, weight, weights } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'onnxforge-prune-pipeline-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** x -> Conv 32 -> BN -> Relu -> Conv 24 -> Relu -> Conv 4: groups large enough for blocks of 8. */
function modelFile(): string {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', 'float32', [1, 3, 8, 8]);
  const [c1] = b.op('Conv', [x, weight(b, 'w1', f32([32, 3, 3, 3], weights([32, 3, 3, 3], 31)))], { pads: [1, 1, 1, 1] }, { name: 'conv1' });
  const pos = (seed: number) => Float32Array.from(weights([32], seed), (v) => Math.abs(v) + 0.5);
  const [bn] = b.op('BatchNormalization', [c1!, weight(b, 'g', f32([32], pos(32))), weight(b, 'beta', f32([32], weights([32], 33))), weight(b, 'mean', f32([32], weights([32], 34))), weight(b, 'var', f32([32], pos(35)))], {}, { name: 'bn' });
  const [r1] = b.op('Relu', [bn!]);
  const [c2] = b.op('Conv', [r1!, weight(b, 'w2', f32([24, 32, 1, 1], weights([24, 32, 1, 1], 36)))], {}, { name: 'conv2' });
  const [r2] = b.op('Relu', [c2!]);
  const [y] = b.op('Conv', [r2!, weight(b, 'w3', f32([4, 24, 1, 1], weights([4, 24, 1, 1], 37)))], {}, { name: 'conv3' });
  b.output(y!, 'y', 'float32', [1, 4, 8, 8]);
  const file = join(dir, 'in.onnx');
  saveModelSync(b.model(), file);
  return file;
}

describe('prune --channels and a pipeline file give the same model', () => {
  const input = modelFile();
  const cases: Array<{ name: string; flags: string[]; pass: string; data?: string }> = [
    { name: 'defaults', flags: [], pass: 'prune-channels<ratio=0.3>' },
    { name: 'options given', flags: ['--scope', 'layer', '--round-to', '4', '--criterion', 'l2'], pass: 'prune-channels<ratio=0.3;scope=layer;roundTo=4;criterion=l2>' },
    { name: 'calibration data', flags: ['--calibration', 'random:4:7'], pass: 'prune-channels<ratio=0.3>', data: 'random:4:7' },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const viaCli = join(dir, `${c.name}-cli.onnx`);
      const viaFile = join(dir, `${c.name}-file.onnx`);
      const r = await runCli(['prune', input, '-o', viaCli, '--channels', '0.3', ...c.flags, '--no-latency', '--json']);
      expect(r.code).toBe(0);
      const rep = JSON.parse(r.out) as { channels: { channelsBefore: number; channelsAfter: number } };
      expect(rep.channels.channelsAfter).toBeLessThan(rep.channels.channelsBefore);
      const yaml = join(dir, `${c.name}.yaml`);
      writeFileSync(
        yaml,
        [
          'version: 1',
          'model: in.onnx',
          `output: ${c.name}-file.onnx`,
          'passes:',
          `  - "${c.pass}"`,
          '  - preset: default',
          ...(c.data ? ['data:', `  calibration: { inputs: "${c.data}" }`] : []),
          'latency: { skip: true }',
          '',
        ].join('\n'),
      );
      const p = await runCli(['run', yaml, '--json']);
      expect(p.err).not.toMatch(/error/);
      expect(p.code).toBe(0);
      expect(Buffer.compare(readFileSync(viaCli), readFileSync(viaFile))).toBe(0);
    }, 60_000);
  }

  it('the comparison sees option changes: the runs above differ from each other', () => {
    const bytes = cases.map((c) => readFileSync(join(dir, `${c.name}-cli.onnx`)));
    expect(Buffer.compare(bytes[0]!, bytes[1]!)).not.toBe(0);
    expect(Buffer.compare(bytes[0]!, bytes[2]!)).not.toBe(0);
  });
});
