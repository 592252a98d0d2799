import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yargs, { CommandModule } from 'yargs';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { benchCommand } from '../../cli/commands/bench.js';
import { compareCommand } from '../../cli/commands/compare.js';
import { ProgressBar } from '../../core/progress.js';
import { affineModel, endlessLoopModel, reluModel } from './models.js';

const dir = mkdtempSync(join(tmpdir(), 'onnxforge-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, bytes: Uint8Array) => {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
};
const relu = file('relu.onnx', reluModel());
const a = file('a.onnx', affineModel(2, 1));
const a2 = file('a2.onnx', affineModel(2, 1));
const b = file('b.onnx', affineModel(2, 1.001));
const loop = file('loop.onnx', endlessLoopModel(false));

/** Runs one command as the main CLI would (no process.exit), returning stdout and the exit code. */
async function run(cmd: CommandModule<object, any>, argv: string[]): Promise<{ out: string; code: number | undefined; error?: unknown }> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => {
    out += String(s);
    return true;
  });
  process.exitCode = undefined;
  try {
    await yargs(argv).command(cmd).strict().exitProcess(false).fail((msg, err) => {
      throw err ?? new Error(msg);
    }).parseAsync();
    return { out, code: process.exitCode as number | undefined };
  } catch (error) {
    return { out, code: undefined, error };
  } finally {
    spy.mockRestore();
  }
}

afterEach(() => {
  process.exitCode = undefined;
});

describe('bench command', () => {
  it('benchmarks in the sandbox and prints JSON', async () => {
    const r = await run(benchCommand, ['bench', relu, '--shape', 'N=2', '--runs', '5', '--warmup', '1', '--json']);
    expect(r.error).toBeUndefined();
    const rep = JSON.parse(r.out);
    expect(rep.schema).toBe('onnxforge.bench/1');
    expect(rep.models[0].stats.runs).toBe(5);
    expect(rep.sandbox.peakRssBytes).toBeGreaterThan(0);
  });

  it('interleaves several models and adds a profile (no sandbox)', async () => {
    const r = await run(benchCommand, ['bench', a, b, '--runs', '4', '--profile', '--no-sandbox', '--threads', '1']);
    expect(r.error).toBeUndefined();
    expect(r.out).toMatch(/a\.onnx/);
    expect(r.out).toMatch(/b\.onnx/);
    expect(r.out).toMatch(/profile of .*a\.onnx/);
    expect(r.out).toMatch(/Mul|Add/);
  });

  it('stops a model that never finishes', async () => {
    const r = await run(benchCommand, ['bench', loop, '--runs', '1', '--warmup', '0', '--timeout', '2']);
    expect(r.error).toMatchObject({ code: 'RUNTIME_TIMEOUT', kind: 'input' });
  });

  it('names the symbolic dim that needs --shape', async () => {
    const r = await run(benchCommand, ['bench', relu, '--no-sandbox']);
    expect(r.error).toMatchObject({ code: 'DATA_SYMBOLIC_DIM' });
  });
});

describe('compare command', () => {
  it('passes for identical models', async () => {
    const r = await run(compareCommand, ['compare', a, a2, '--inputs', 'random:3', '--json']);
    expect(r.error).toBeUndefined();
    const rep = JSON.parse(r.out);
    expect(rep.pass).toBe(true);
    expect(rep.samples).toBe(3);
    expect(rep.outputs[0].maxAbs).toBe(0);
    expect(r.code ?? 0).toBe(0);
  });

  it('sets exit code 1 past the tolerance and passes within it', async () => {
    const r = await run(compareCommand, ['compare', a, b, '--tolerance', '1e-4']);
    expect(r.error).toBeUndefined();
    expect(r.out).toMatch(/FAIL/);
    expect(r.code).toBe(1);
    const ok = await run(compareCommand, ['compare', a, b, '--tolerance', '0.01']);
    expect(ok.out).toMatch(/PASS/);
    expect(ok.code ?? 0).toBe(0);
  });

  it('rejects models with different inputs as a failed check', async () => {
    const r = await run(compareCommand, ['compare', a, relu]);
    expect(r.error).toMatchObject({ code: 'COMPARE_INPUTS_DIFFER', kind: 'check' });
  });
});

describe('progress bar', () => {
  it('renders count, rate and ETA, and is silent when disabled', () => {
    const writes: string[] = [];
    const stream = { isTTY: true, write: (s: string) => writes.push(s) } as unknown as NodeJS.WriteStream;
    const bar = new ProgressBar({ label: 'x', total: 10, stream, enabled: true, width: 10 });
    bar.update(5);
    expect(writes.join('')).toMatch(/x \[#####\.\.\.\.\.\] 5\/10 {2}[\d.]+\/s {2}ETA \S+/);
    bar.done();
    const quiet: string[] = [];
    const off = new ProgressBar({ total: 3, stream: { isTTY: false, write: (s: string) => quiet.push(s) } as unknown as NodeJS.WriteStream });
    off.update(1);
    off.done();
    expect(quiet).toEqual([]);
  });
});
