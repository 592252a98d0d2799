import { describe, expect, it } from 'vitest';
import { OnnxForgeError } from '../../core/errors.js';
import { runInSandbox } from '../../runtime/sandbox.js';
import { Feed } from '../../core/host-tensor.js';
import { endlessLoopModel, reluModel } from './models.js';

const x: Feed = { x: { type: 'float32', dims: [1], data: new Float32Array([0]) } };

async function failure(p: Promise<unknown>): Promise<OnnxForgeError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(OnnxForgeError);
    return e as OnnxForgeError;
  }
  throw new Error('expected the sandboxed run to fail');
}

describe('sandbox', () => {
  it('runs a model in a child process and returns its outputs', async () => {
    const feed: Feed = { x: { type: 'float32', dims: [2, 4], data: new Float32Array([-1, 2, -3, 4, 5, -6, 7, -8]) } };
    const r = await runInSandbox<Feed[]>({ kind: 'run', model: reluModel(), feeds: [feed] }, { timeoutMs: 60_000 });
    expect(r.value).toHaveLength(1);
    expect(Array.from(r.value[0]!.y!.data as Float32Array)).toEqual([0, 2, 0, 4, 5, 0, 7, 0]);
    expect(r.value[0]!.y!.dims).toEqual([2, 4]);
    expect(r.peakRssBytes).toBeGreaterThan(0);
  });

  it('stops a Loop that never ends with RUNTIME_TIMEOUT', async () => {
    const t0 = Date.now();
    const e = await failure(runInSandbox({ kind: 'run', model: endlessLoopModel(false), feeds: [x] }, { timeoutMs: 3000 }));
    expect(e.code).toBe('RUNTIME_TIMEOUT');
    expect(e.message).toMatch(/did not finish within 3\.0 s/);
    expect(Date.now() - t0).toBeLessThan(15_000);
  });

  it('stops a model that allocates without bound with RUNTIME_OOM', async () => {
    const e = await failure(
      runInSandbox({ kind: 'run', model: endlessLoopModel(true), feeds: [x] }, { timeoutMs: 60_000, maxMemoryBytes: 400 * 1024 ** 2 }),
    );
    expect(e.code).toBe('RUNTIME_OOM');
    expect(e.message).toMatch(/over the limit of 400 MB/);
  });

  it('reports a crashing child as RUNTIME_CRASH', async () => {
    const mod = new URL('./crash-fixture.ts', import.meta.url).pathname;
    const e = await failure(runInSandbox({ kind: 'call', module: mod, export: 'crash', args: [] }, { timeoutMs: 30_000 }));
    expect(e.code).toBe('RUNTIME_CRASH');
    expect(e.message).toMatch(/SIGSEGV|SIGABRT|exit code 3/);
  });

  it('passes runtime errors through with their code', async () => {
    const bad: Feed = { x: { type: 'float32', dims: [2], data: new Float32Array(2) } };
    const e = await failure(runInSandbox({ kind: 'run', model: reluModel(), feeds: [bad] }, { timeoutMs: 30_000 }));
    expect(e.code).toBe('RUNTIME_RUN_FAILED');
  });
});
