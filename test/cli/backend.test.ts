/**
 * --backend and --target through the CLI (in-process main, real onnxruntime-node and onnxruntime-web
 * WASM): bench on both backends in one table, compare one model across backends (with
 * --debug-layers), quantize --target wasm writing a model that loads in WASM and uses only integer
 * kernels with a fast path there, and bad --backend values. No timing assertions.
 */
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModelSync } from '../../onnx/index.js';
import { openSession } from '../../runtime/backend.js';
import { slowIntegerKernels } from '../../runtime/backend-kernels.js';
import { runCli } from '../helpers/run-cli.js';
import { affineModel } from '../runtime/models.js';
import { probeCases } from '../runtime/web-probe.js';

const dir = mkdtempSync(join(tmpdir(), 'onnxforge-backend-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, bytes: Uint8Array) => {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
};
const a = file('a.onnx', affineModel(2, 1));
const b = file('b.onnx', affineModel(2, 1.5));
const conv = file('conv.onnx', probeCases().find((c) => c.name === 'Conv float')!.bytes);

describe('--backend', () => {
  it('bench a b --backend node,wasm: every model on both backends in one interleaved table', async () => {
    const r = await runCli(['bench', a, b, '--backend', 'node,wasm', '--runs', '3', '--warmup', '1', '--no-sandbox', '--json']);
    expect(r.code, r.err).toBe(0);
    const rep = JSON.parse(r.out);
    expect(rep.models.map((m: { model: string; backend: string }) => `${m.model === a ? 'a' : 'b'}:${m.backend}`)).toEqual(['a:node', 'a:wasm', 'b:node', 'b:wasm']);
    const wasm = rep.backends.find((x: { backend: string }) => x.backend === 'wasm');
    expect(wasm).toMatchObject({ threads: 1, simd: true, runtime: 'onnxruntime-web 1.30.0 (WASM)' });
    for (const m of rep.models) expect(m.stats.runs).toBe(3);
    const text = await runCli(['bench', a, '--backend', 'wasm', '--runs', '2', '--warmup', '0', '--no-sandbox', '--profile']);
    expect(text.code, text.err).toBe(0);
    expect(text.out).toContain('backend wasm: onnxruntime-web 1.30.0 (WASM), 1 thread, SIMD');
    expect(text.out).toMatch(/profile of .* on wasm/);
  }, 120_000);

  it('compare a.onnx --backend node,wasm: one model on both, per output and per layer', async () => {
    const r = await runCli(['compare', a, '--backend', 'node,wasm', '--debug-layers', '--json']);
    expect(r.code, r.err).toBe(0);
    const rep = JSON.parse(r.out);
    expect(rep.pass).toBe(true);
    expect(rep.backends.reference.backend).toBe('node');
    expect(rep.backends.candidate).toMatchObject({ backend: 'wasm', threads: 1, simd: true });
    expect(rep.outputs[0].name).toBe('y');
    expect(rep.layers.tensors).toBe(2);
    expect(rep.layers.first).toBeUndefined();
    // two different models on WASM: the outputs differ by 0.5 and the command fails (exit 1)
    const d = await runCli(['compare', a, b, '--backend', 'wasm']);
    expect(d.code).toBe(1);
    expect(d.out).toContain('candidate on wasm');
    expect(d.out).toContain('FAIL');
  }, 120_000);

  it('bad --backend values and a missing candidate are input errors (exit 2)', async () => {
    const r = await runCli(['bench', a, '--backend', 'webgpu', '--no-sandbox']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('--backend webgpu');
    const c = await runCli(['compare', a]);
    expect(c.code).toBe(2);
    expect(c.err).toContain('--backend node,wasm');
  });
});

describe('quantize --target wasm', () => {
  it('writes a model that loads in WASM, uses only fast integer kernels there and reports WASM latency', async () => {
    const out = join(dir, 'conv-wasm.onnx');
    const r = await runCli(['quantize', conv, '-o', out, '--mode', 'static', '--calibration', 'random:4', '--target', 'wasm', '--json']);
    expect(r.code, r.err).toBe(0);
    expect(existsSync(out)).toBe(true);
    const rep = JSON.parse(r.out);
    expect(rep.latency.backend).toMatchObject({ backend: 'wasm', threads: 1, simd: true });
    expect(rep.quantization.latency).toBeDefined();
    expect(slowIntegerKernels(loadModelSync(out), 'wasm')).toEqual([]);
    const s = await openSession('wasm', out, {}, out);
    try {
      const y = await s.run({ x: { type: 'float32', dims: [1, 32, 24, 96], data: new Float32Array(32 * 24 * 96).fill(0.25) } });
      expect(Object.keys(y)).toEqual(['y']);
    } finally {
      await s.dispose();
    }
  }, 300_000);
});

describe('gate --max-backend-drift', () => {
  it('fails the build when the WASM outputs drift from node past the budget, passes within it', async () => {
    const baseline = join(dir, 'baseline.json');
    const timing = ['--rounds', '5', '--max-seconds', '1', '--fail-min-seconds', '0', '--junit', join(dir, 'gate.xml')];
    const made = await runCli(['gate', '--model', conv, '--baseline', baseline, '--update-baseline', ...timing]);
    expect(made.code, made.err).toBe(0);
    const ok = await runCli(['gate', '--model', conv, '--baseline', baseline, '--max-backend-drift', '0.01', '--max-latency-increase', '1000%', '--json', ...timing]);
    expect(ok.code, ok.err).toBe(0);
    const row = JSON.parse(ok.out).checks.find((c: { metric: string }) => c.metric.startsWith('backend drift'));
    expect(row).toMatchObject({ metric: 'backend drift (wasm vs node, max abs)', verdict: 'pass', budget: '<= 0.01' });
    // MLAS's AVX and WASM SIMD kernels sum the 288-term dot products in different orders: the outputs differ in the last bits
    expect(Number(row.current)).toBeGreaterThan(0);
    const tight = await runCli(['gate', '--model', conv, '--baseline', baseline, '--max-backend-drift', String(Number(row.current) / 2), '--max-latency-increase', '1000%', ...timing]);
    expect(tight.code).toBe(1);
    expect(tight.err).toContain('backend drift');
    const noModel = await runCli(['gate', '--report', baseline, '--baseline', baseline, '--max-backend-drift', '0.01', ...timing]);
    expect(noModel.code).toBe(2);
  }, 300_000);
});

describe('the deploy preset with target wasm', () => {
  it('run --target wasm: quantizes with WASM decisions, measures on WASM, writes a model WASM runs fast', async () => {
    const out = join(dir, 'conv.deploy.onnx');
    const file = join(dir, 'deploy.yaml');
    writeFileSync(file, ['version: 1', `model: ${conv}`, `output: ${out}`, 'passes:', '  - preset: deploy', 'data:', '  calibration:', '    inputs: random:4', 'latency:', '  runs: 3', '  warmup: 1'].join('\n'));
    const r = await runCli(['run', file, '--target', 'wasm', '--json']);
    expect(r.code, r.err).toBe(0);
    const rep = JSON.parse(r.out.slice(0, r.out.lastIndexOf('}') + 1));
    expect(rep.notes.join(' ')).toContain('Target wasm: onnxruntime-web 1.30.0 (WASM), 1 thread, SIMD');
    expect(slowIntegerKernels(loadModelSync(out), 'wasm')).toEqual([]);
    // a bad target in the file is an input error naming the field
    writeFileSync(file, ['version: 1', `model: ${conv}`, `output: ${out}`, 'target: webgpu', 'passes:', '  - preset: default'].join('\n'));
    const bad = await runCli(['run', file]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('target');
  }, 300_000);
});
