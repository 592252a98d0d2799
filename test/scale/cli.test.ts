/**
 * The streaming paths through the CLI (in process): quantize --stream for int4, weights and fp16,
 * convert --max-data-file-size, the disk-space guard's exit 2 (free space injected with
 * ONNXFORGE_FREE_BYTES), dynamic mode refusing --stream.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSyntheticLlm } from '../../benchmarks/scale-model.js';
import { runCli } from '../helpers/run-cli.js';

let dir: string;
let model: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-scale-'));
  model = path.join(dir, 'llm.onnx');
  writeSyntheticLlm(model, { d: 64, ff: 128, vocab: 256, layers: 1 });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('streaming through the CLI', () => {
  for (const mode of ['int4', 'weights', 'fp16']) {
    it(`quantize --mode ${mode} --stream writes the model and a streamed report`, async () => {
      const out = path.join(dir, `${mode}.onnx`);
      const r = await runCli(['quantize', model, '-o', out, '--mode', mode, '--stream', '--json']);
      expect(r.code, r.err).toBe(0);
      const report = JSON.parse(r.out) as { schema: string; mode: string; write: { dataFiles: { path: string }[] } };
      expect(report.schema).toBe('onnxforge.quantize-stream/1');
      expect(report.mode).toBe(mode);
      expect(fs.existsSync(out)).toBe(true);
      const text = await runCli(['quantize', model, '-o', out, '--mode', mode, '--stream']);
      expect(text.out).toMatch(/\(streamed\)/);
      expect(text.out).toMatch(/note: streamed tensor by tensor/);
    });
  }

  it('convert --max-data-file-size splits the data', async () => {
    const out = path.join(dir, 'split.onnx');
    const r = await runCli(['convert', model, '-o', out, '--max-data-file-size', '64KiB']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/split\.onnx\.data\.1-of-\d+/);
    for (const f of fs.readdirSync(dir).filter((x) => x.startsWith('split.onnx.data'))) expect(fs.statSync(path.join(dir, f)).size).toBeLessThanOrEqual(65536);
    expect((await runCli(['convert', model, '-o', out, '--max-data-file-size', 'lots'])).code).toBe(2);
  });

  it('too little free space: exit 2 with the figures, nothing written', async () => {
    const out = path.join(dir, 'full', 'q.onnx');
    process.env.ONNXFORGE_FREE_BYTES = '4096';
    try {
      const r = await runCli(['quantize', model, '-o', out, '--mode', 'int4', '--stream']);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/error\[OUTPUT_NO_SPACE\].*has 4096 bytes \(4096 bytes\) free; nothing written/);
      const c = await runCli(['convert', model, '-o', out, '--stream']);
      expect(c.code).toBe(2);
      expect(c.err).toMatch(/OUTPUT_NO_SPACE/);
    } finally {
      delete process.env.ONNXFORGE_FREE_BYTES;
    }
    expect(fs.existsSync(path.dirname(out)) ? fs.readdirSync(path.dirname(out)) : []).toEqual([]);
  });

  it('dynamic mode is not streamed', async () => {
    const r = await runCli(['quantize', model, '-o', path.join(dir, 'dyn.onnx'), '--mode', 'dynamic', '--stream']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/dynamic is not streamed/);
  });
});
