/** `onnxforge quantize --mode weights|dynamic`: writes a tagged / dynamic model; usage errors exit 2 and write nothing. */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';
import { loadModel, saveModel } from '../../onnx/index.js';
import { buildMlp } from '../../passes/quantize/dynamic-models.js';
import { WEIGHTS_TAG_KEY } from '../../passes/quantize/quantize-weights.js';

async function setup(): Promise<{ dir: string; input: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'onnxforge-qm-cli-'));
  const input = join(dir, 'mlp.onnx');
  await saveModel(buildMlp([128, 256, 64], 1), input);
  return { dir, input };
}

describe('quantize --mode weights|dynamic (CLI)', () => {
  it('writes a tagged weight-compressed model', async () => {
    const { dir, input } = await setup();
    const out = join(dir, 'w.onnx');
    const code = await main(['quantize', input, '-o', out, '--mode', 'weights', '--latency-runs', '2', '--json']);
    expect(code).toBe(0);
    const m = await loadModel(out);
    expect(m.metadata(WEIGHTS_TAG_KEY)).toBe('int8');
    expect(m.graph.nodes.filter((n) => n.opType === 'DequantizeLinear').length).toBe(2);
  });

  it('writes a dynamic model with MatMulInteger', async () => {
    const { dir, input } = await setup();
    const out = join(dir, 'd.onnx');
    const code = await main(['quantize', input, '-o', out, '--mode', 'dynamic', '--min-elements', '1024', '--latency-runs', '2', '--json']);
    expect(code).toBe(0);
    const m = await loadModel(out);
    expect(m.graph.nodes.filter((n) => n.opType === 'MatMulInteger').length).toBe(2);
  });

  it('rejects --format qop outside static mode and static mode without calibration (exit 2, nothing written)', async () => {
    const { dir, input } = await setup();
    const out = join(dir, 'x.onnx');
    expect(await main(['quantize', input, '-o', out, '--mode', 'dynamic', '--format', 'qop'])).toBe(2);
    expect(await main(['quantize', input, '-o', out, '--mode', 'static'])).toBe(2);
    expect(existsSync(out)).toBe(false);
  });
});
