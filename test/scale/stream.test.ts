/**
 * Models larger than memory (issue 21), on small synthetic LLMs written the way the benchmark writes
 * its 28 GB one (benchmarks/scale-model.ts): streamed int4 gives the int4 pass's RTN codes, scales and
 * zero points byte for byte and runs in onnxruntime-node; split data files load in onnxruntime-node;
 * the disk-space guard refuses with the figures and writes nothing; derived tensors compute on read.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataType } from '../../core/dtype.js';
import { derivedTensor, isDerived, sharedParts } from '../../core/derived.js';
import { OnnxForgeError } from '../../core/errors.js';
import { Tensor } from '../../core/tensor.js';
import { constantOf } from '../../ir/ir.js';
import { loadModel } from '../../onnx/index.js';
import { workDirOf } from '../../onnx/stream.js';
import { packCodes, packZeroPoints, quantizeRtn, rowsOfKN } from '../../passes/quantize/int4/blocks.js';
import { Session } from '../../runtime/session.js';
import { convertWorkflow } from '../../workflows/stream.js';
import { streamInt4Workflow } from '../../workflows/stream-int4.js';
import { streamWeightsWorkflow } from '../../workflows/stream-weights.js';
import { quantizeInt8 } from '../../passes/quantize/weights-int8.js';
import { DEFAULT_BLOCK_SIZE } from '../../passes/quantize/quantize-int4.js';
import { writeSyntheticLlm } from '../../benchmarks/scale-model.js';

let dir: string;
let model: string;
const shape = { d: 64, ff: 128, vocab: 256, layers: 2 };

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-scale-'));
  model = path.join(dir, 'llm.onnx');
  writeSyntheticLlm(model, shape);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function logits(file: string): Promise<Float32Array> {
  const s = await Session.create(file, { intraOpNumThreads: 1 }, file);
  try {
    const out = await s.run({ input_ids: { type: 'int64', dims: [1, 3], data: BigInt64Array.from([3n, 100n, 7n]) } });
    return Float32Array.from(out.logits!.data as Float32Array);
  } finally {
    await s.dispose();
  }
}

describe('derived tensors', () => {
  it('compute on every read, shared parts once per round', () => {
    let runs = 0;
    const part = sharedParts(() => {
      runs++;
      return { a: Uint8Array.of(1, 2), b: Uint8Array.of(3) };
    });
    const a = derivedTensor(DataType.UINT8, [2], () => part('a'), 'a');
    const b = derivedTensor(DataType.UINT8, [1], () => part('b'), 'b');
    expect(isDerived(a)).toBe(true);
    expect([...a.bytes()]).toEqual([1, 2]);
    expect([...b.bytes()]).toEqual([3]);
    expect(runs).toBe(1);
    expect([...a.bytes()]).toEqual([1, 2]);
    expect(runs).toBe(2);
    const bad = derivedTensor(DataType.FLOAT, [2], () => new Uint8Array(4), 'bad');
    expect(() => bad.bytes()).toThrow(/recipe gave 4 bytes/);
  });
});

describe('streamed int4', () => {
  // the wide model's MatMuls have N >= 512: each slice is quantized on two threads
  for (const [symmetric, wide] of [[false, false], [true, false], [false, true]] as const) {
    it(`writes the int4 pass's RTN layout byte for byte (${symmetric ? 'symmetric' : 'zero points'}${wide ? ', two threads' : ''})`, async () => {
      const model = wide ? path.join(dir, 'wide.onnx') : path.join(dir, 'llm.onnx');
      if (wide) writeSyntheticLlm(model, { ...shape, d: 512, ff: 1024, vocab: 512 });
      const out = path.join(dir, `int4-${symmetric}-${wide}.onnx`);
      const r = await streamInt4Workflow({ model, output: out, stream: true, pass: { symmetric } });
      expect(r.weights.filter((w) => w.op === 'MatMul' && w.bits === 4)).toHaveLength(7 * shape.layers + 1);
      expect(r.weights.find((w) => w.op === 'Gather')?.bits).toBe(8);
      expect(fs.existsSync(workDirOf(out))).toBe(false);
      const src = await loadModel(model);
      const q = await loadModel(out);
      let checked = 0;
      for (const n of q.graph.nodes) {
        if (n.opType !== 'MatMulNBits') continue;
        const w = src.graph.nodes.find((m) => m.name === n.name && m.opType === 'MatMul')!.inputs[1]!;
        const t = constantOf(w)!;
        const [K, N] = t.dims as [number, number];
        const ref = quantizeRtn(rowsOfKN(t.toFloat32(), K, N), N, K, 4, DEFAULT_BLOCK_SIZE, symmetric);
        expect(Buffer.compare(constantOf(n.inputs[1])!.bytes(), packCodes(ref))).toBe(0);
        expect(Buffer.compare(constantOf(n.inputs[2])!.bytes(), new Uint8Array(ref.scales.buffer))).toBe(0);
        if (symmetric) expect(n.inputs[3]).toBeUndefined();
        else expect(Buffer.compare(constantOf(n.inputs[3])!.bytes(), packZeroPoints(ref).bytes)).toBe(0);
        checked++;
      }
      expect(checked).toBe(7 * shape.layers + 1);
      // and it runs: logits close to float32 (int4 RTN on uniform random weights)
      const [f, g] = [await logits(model), await logits(out)];
      let e = 0;
      let s = 0;
      for (let i = 0; i < f.length; i++) {
        e += (f[i]! - g[i]!) ** 2;
        s += f[i]! ** 2;
      }
      expect(10 * Math.log10(s / e)).toBeGreaterThan(12);
    }, 60_000);
  }

  it('refuses the qdq format, and says what streaming leaves out (GPTQ: test/scale/stream-gptq.test.ts)', async () => {
    const out = path.join(dir, 'never.onnx');
    await expect(streamInt4Workflow({ model, output: out, pass: { format: 'qdq' } })).rejects.toThrow(/qdq is not available/);
    // the pass's own option checks, as in memory
    await expect(streamInt4Workflow({ model, output: out, pass: { damp: 5 } })).rejects.toMatchObject({ code: 'PIPELINE_BAD_OPTION' });
    expect(fs.existsSync(out)).toBe(false);
    const m = await streamInt4Workflow({ model, output: out, pass: { accuracyLevel: 'measure' } });
    expect(m.accuracyLevel).toBe(0);
    expect(m.write.notes.join('\n')).toMatch(/accuracy_level 0: measure times the levels in onnxruntime/);
    const r = await streamInt4Workflow({ model, output: out, calibration: 'random:4', pass: { method: 'rtn' } });
    expect(r.write.notes.join('\n')).toMatch(/--calibration is not used: --int4-method rtn/);
    expect(r.write.notes.join('\n')).toMatch(/no output error or latency/);
  });
});

describe('streamed weights and fp16', () => {
  const sqnr = (f: Float32Array, g: Float32Array) => {
    let e = 0;
    let s = 0;
    for (let i = 0; i < f.length; i++) {
      e += (f[i]! - g[i]!) ** 2;
      s += f[i]! ** 2;
    }
    return 10 * Math.log10(s / e);
  };

  it('weights: the pass\'s int8 per channel behind DequantizeLinear, tagged, close to float32', async () => {
    const out = path.join(dir, 'w8.onnx');
    const r = await streamWeightsWorkflow({ model, output: out, mode: 'weights' });
    expect(r.converted).toBe(7 * shape.layers + 2);
    const q = await loadModel(out);
    expect(q.metadata('onnxforge.weights')).toBe('int8');
    const src = await loadModel(model);
    const dq = q.graph.nodes.find((n) => n.opType === 'DequantizeLinear' && n.outputs[0]!.uses.some((u) => u.node.name === src.graph.nodes.find((m) => m.opType === 'MatMul')!.name))!;
    const w = constantOf(src.graph.nodes.find((m) => m.opType === 'MatMul')!.inputs[1])!;
    const ref = quantizeInt8(w, 1);
    expect(Buffer.compare(constantOf(dq.inputs[0])!.bytes(), ref.q.bytes())).toBe(0);
    expect(Buffer.compare(constantOf(dq.inputs[1])!.bytes(), ref.scale.bytes())).toBe(0);
    expect(sqnr(await logits(model), await logits(out))).toBeGreaterThan(30);
  });

  it('fp16: float16 weights behind Casts, half the bytes, close to float32', async () => {
    const out = path.join(dir, 'fp16.onnx');
    const r = await streamWeightsWorkflow({ model, output: out, mode: 'fp16' });
    expect(r.bytes).toBe(r.floatBytes / 2);
    expect(sqnr(await logits(model), await logits(out))).toBeGreaterThan(50);
  });
});

describe('split data files', () => {
  it('convert --max-data-file-size: every file within the size, onnxruntime-node loads it, same logits', async () => {
    const out = path.join(dir, 'split.onnx');
    const max = 200_000;
    const r = await convertWorkflow({ model, output: out, maxDataFileSize: max });
    expect(r.streamed).toBe(true);
    expect(r.dataFiles.length).toBeGreaterThan(2);
    for (const f of r.dataFiles) {
      expect(path.basename(f.path)).toMatch(new RegExp(`^split\\.onnx\\.data\\.\\d+-of-${r.dataFiles.length}$`));
      expect(fs.statSync(f.path).size).toBe(f.bytes);
      expect(f.bytes).toBeLessThanOrEqual(max);
    }
    expect(await logits(out)).toEqual(await logits(model));
  });

  it('a tensor larger than the limit gets a file of its own; streamed int4 splits too', async () => {
    const out = path.join(dir, 'split-int4.onnx');
    const one = path.join(dir, 'one-int4.onnx');
    const r = await streamInt4Workflow({ model, output: out, maxDataFileSize: 4096 });
    await streamInt4Workflow({ model, output: one });
    expect(r.write.dataFiles.length).toBeGreaterThan(5);
    expect(r.write.dataFiles.some((f) => f.bytes > 4096)).toBe(true);
    expect(await logits(out)).toEqual(await logits(one));
  });
});

describe('disk-space guard', () => {
  it('too little free space: OUTPUT_NO_SPACE with the figures, nothing written', async () => {
    const out = path.join(dir, 'nospace', 'q.onnx');
    const err = await streamInt4Workflow({ model, output: out, freeBytes: () => 1000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OnnxForgeError);
    expect((err as OnnxForgeError).code).toBe('OUTPUT_NO_SPACE');
    expect((err as Error).message).toMatch(/needs about .* \(\d+ bytes\) but .* has 1000 bytes \(1000 bytes\) free; nothing written/);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(`${out}.data`)).toBe(false);
    expect(fs.existsSync(workDirOf(out))).toBe(false);
    const c = await convertWorkflow({ model, output: out, stream: true, freeBytes: () => 10 }).catch((e: unknown) => e);
    expect((c as OnnxForgeError).code).toBe('OUTPUT_NO_SPACE');
    expect(fs.readdirSync(path.dirname(out))).toEqual([]);
  });
});

describe('inputs', () => {
  it('never writes over the model it reads (its weights replaced by derived tensors included)', async () => {
    const err = await streamInt4Workflow({ model, output: model }).catch((e: unknown) => e);
    expect((err as OnnxForgeError).code).toBe('OUTPUT_IS_INPUT');
  });
});

describe('readTensorRange', () => {
  it('reads part of an inline tensor', async () => {
    const { readTensorRange } = await import('../../onnx/stream.js');
    const t = Tensor.from('float32', [4], Float32Array.of(1, 2, 3, 4));
    expect([...new Float32Array(readTensorRange(t, 4, 8).slice().buffer)]).toEqual([2, 3]);
    expect(() => readTensorRange(t, 12, 8)).toThrow(/outside/);
  });
});

describe('progress in bytes', () => {
  it('shows bytes done of the total, the rate and the time left', async () => {
    const { ProgressBar } = await import('../../core/progress.js');
    const bar = new ProgressBar({ label: 'int4 (streamed)', unit: 'bytes', enabled: false, total: 28e9 });
    bar.update(7e9);
    const text = bar.render(performance.now() + 10_000);
    expect(text).toMatch(/^int4 \(streamed\) \[#+\.+\] 7\.0 GB\/28\.0 GB {2}[\d.]+ MB\/s {2}ETA \d+s$/);
  });
});
