/**
 * Streamed GPTQ (issue 21): on a small synthetic LLM, the int4 weights streamed GPTQ writes (the graph
 * cut into segments, activations kept or spilled between them) are byte for byte those of the
 * in-memory `--int4-method gptq` with the same options, and the two models give the same logits;
 * spilling changes no byte; the temporary folder is gone afterwards; bad calibration data is refused
 * before anything is written.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSyntheticLlm } from '../../benchmarks/scale-model.js';
import { OnnxForgeError } from '../../core/errors.js';
import { constantOf, type Model } from '../../ir/ir.js';
import { loadModel } from '../../onnx/index.js';
import { Session } from '../../runtime/session.js';
import { quantizeInt4Workflow } from '../../workflows/quantize/int4.js';
import { streamInt4Workflow } from '../../workflows/stream-int4.js';
import { runCli } from '../helpers/run-cli.js';

let dir: string;
let model: string;
let calibration: string;
const shape = { d: 64, ff: 128, vocab: 256, layers: 2 };
/** One MatMul per decoder block's q/k/v/o/gate/up/down, and the head. */
const MATMULS = 7 * shape.layers + 1;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-gptq-'));
  model = path.join(dir, 'llm.onnx');
  writeSyntheticLlm(model, shape);
  // token ids over the whole vocabulary: 6 windows of 8 tokens
  let s = 12345;
  const ids = () => Array.from({ length: 8 }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31), s % shape.vocab));
  calibration = path.join(dir, 'calib.json');
  fs.writeFileSync(calibration, JSON.stringify(Array.from({ length: 6 }, () => ({ input_ids: { dims: [1, 8], dtype: 'int64', data: ids() } }))));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function logits(file: string): Promise<Float32Array> {
  const s = await Session.create(file, { intraOpNumThreads: 1 }, file);
  try {
    const out = await s.run({ input_ids: { type: 'int64', dims: [1, 4], data: BigInt64Array.from([3n, 100n, 7n, 200n]) } });
    return Float32Array.from(out.logits!.data as Float32Array);
  } finally {
    await s.dispose();
  }
}

/** Codes, scales and zero points of every MatMulNBits, by node name. */
function int4Tensors(m: Model): Map<string, Uint8Array[]> {
  const out = new Map<string, Uint8Array[]>();
  for (const n of m.graph.nodes) if (n.opType === 'MatMulNBits') out.set(n.name!, [1, 2, 3].map((i) => Uint8Array.from(constantOf(n.inputs[i])?.bytes() ?? [])));
  return out;
}

const leftovers = () => fs.readdirSync(dir).filter((f) => f.startsWith('.onnxforge-gptq-'));

describe('streamed GPTQ', () => {
  it('gives the in-memory GPTQ weights byte for byte, in one segment or many, spilled or not', async () => {
    const pass = { method: 'gptq' as const, blockSize: 32, accuracyLevel: '0' as const };
    const mem = path.join(dir, 'mem.onnx');
    await quantizeInt4Workflow({ model, output: mem, calibration, fuseTransformer: false, latencyRuns: 1, pass: { ...pass, prepare: false, keepInt8: 'none', kernel: 'nbits', compactConstants: false } });
    const ref = int4Tensors(await loadModel(mem));
    expect(ref.size).toBe(MATMULS);

    const whole = path.join(dir, 'whole.onnx');
    const a = await streamInt4Workflow({ model, output: whole, stream: true, calibration, pass });
    expect(a.method).toBe('gptq');
    expect(a.calibration).toMatchObject({ samples: 6, segments: 1, spilledBytes: 0, gptqWeights: MATMULS });
    expect(a.weights.filter((w) => w.method === 'gptq')).toHaveLength(MATMULS);

    // one weight per segment (a budget of 1 byte) and every activation spilled (a budget of 1 byte)
    const cut = path.join(dir, 'cut.onnx');
    const lines: string[] = [];
    const b = await streamInt4Workflow({ model, output: cut, stream: true, calibration, pass, gptq: { segmentBytes: 1, activationBytes: 1 }, log: (l) => lines.push(l) });
    expect(b.calibration!.segments).toBeGreaterThanOrEqual(MATMULS);
    expect(b.calibration!.spilledBytes).toBeGreaterThan(0);
    expect(b.calibration!.peakActivationBytes).toBe(0);
    expect(fs.existsSync(b.calibration!.spillDir!)).toBe(false);
    expect(path.dirname(b.calibration!.spillDir!)).toBe(dir);
    expect(lines.join('\n')).toMatch(/MiB spilled so far to .*\.onnxforge-gptq-/);
    expect(b.write.notes.join('\n')).toMatch(/bytes of activations spilled to .* \(removed\)/);
    expect(leftovers()).toEqual([]);

    for (const file of [whole, cut]) {
      const got = int4Tensors(await loadModel(file));
      expect([...got.keys()].sort()).toEqual([...ref.keys()].sort());
      for (const [name, [codes, scales, zp]] of got) {
        const [rc, rs, rz] = ref.get(name)!;
        expect(Buffer.compare(codes!, rc!), `${name} codes`).toBe(0);
        expect(Buffer.compare(scales!, rs!), `${name} scales`).toBe(0);
        // in memory, zero points that are all the default (8) are left out
        expect(Buffer.compare(zp!, rz!.length ? rz! : new Uint8Array(zp!.length).fill(0x88)), `${name} zero points`).toBe(0);
      }
    }
    expect(Buffer.compare(fs.readFileSync(`${whole}.data`), fs.readFileSync(`${cut}.data`))).toBe(0);
    expect(await logits(whole)).toEqual(await logits(mem));

    // and GPTQ is not RTN: on the calibration inputs' distribution it moves codes
    const rtn = path.join(dir, 'rtn.onnx');
    const r = await streamInt4Workflow({ model, output: rtn, stream: true, calibration, pass: { ...pass, method: 'rtn' } });
    expect(r.method).toBe('rtn');
    expect(r.write.notes.join('\n')).toMatch(/--calibration is not used: --int4-method rtn/);
    expect(Buffer.compare(fs.readFileSync(`${whole}.data`), fs.readFileSync(`${rtn}.data`))).not.toBe(0);
  }, 120_000);

  it('auto is GPTQ with calibration data; gptq without it is refused', async () => {
    const out = path.join(dir, 'auto.onnx');
    const r = await streamInt4Workflow({ model, output: out, stream: true, calibration, pass: { calibrationSamples: 2 } });
    expect(r.method).toBe('gptq');
    expect(r.calibration!.samples).toBe(2);
    const err = await streamInt4Workflow({ model, output: path.join(dir, 'never.onnx'), stream: true, pass: { method: 'gptq' } }).catch((e: unknown) => e);
    expect((err as OnnxForgeError).code).toBe('INT4_GPTQ_NEEDS_DATA');
  }, 60_000);

  it('checks before calibrating that the destination holds the temporary quantized weights and the output', async () => {
    const out = path.join(dir, 'full.onnx');
    // enough for the output alone (the RTN run's size) but not for GPTQ's temporary weights beside it
    const rtn = await streamInt4Workflow({ model, output: path.join(dir, 'space-rtn.onnx'), stream: true, pass: { method: 'rtn' } });
    const outputBytes = rtn.write.outputBytes;
    const err = await streamInt4Workflow({ model, output: out, stream: true, calibration, freeBytes: () => outputBytes }).catch((e: unknown) => e);
    expect((err as OnnxForgeError).code).toBe('OUTPUT_NO_SPACE');
    expect((err as Error).message).toMatch(/GPTQ needs about \d+ bytes at the destination \(\d+ of temporary quantized weights/);
    expect(fs.existsSync(out)).toBe(false);
    expect(leftovers()).toEqual([]);
  }, 60_000);

  it('through the CLI: the report and the progress lines say what was spilled and where', async () => {
    const out = path.join(dir, 'cli.onnx');
    const r = await runCli(['quantize', model, '-o', out, '--mode', 'int4', '--stream', '--calibration', calibration]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/method gptq/);
    expect(r.out).toMatch(/GPTQ, layer by layer/);
    expect(r.out).toMatch(/6 samples \(6 runs\) through 1 segment of at most/);
    expect(r.out).toMatch(/nothing spilled/);
    expect(r.err).toMatch(/gptq segment 1\/1: 15 weights/);
    const json = await runCli(['quantize', model, '-o', out, '--mode', 'int4', '--stream', '--calibration', calibration, '--json']);
    expect(JSON.parse(json.out).calibration.gptqWeights).toBe(MATMULS);
    expect(json.err).not.toMatch(/gptq segment/);
  }, 60_000);

  it('calibration data of the wrong type or shape: exit 2, nothing written, no temporary folder', async () => {
    const bad = path.join(dir, 'bad.json');
    const wrong = [
      { input_ids: { dims: [1, 2], dtype: 'float32', data: [1, 2] } },
      { input_ids: { dims: [1, 1, 2], dtype: 'int64', data: [1, 2] } },
    ];
    for (const doc of wrong) {
      fs.writeFileSync(bad, JSON.stringify(doc));
      const out = path.join(dir, 'bad', 'q.onnx');
      const r = await runCli(['quantize', model, '-o', out, '--mode', 'int4', '--stream', '--calibration', bad, '--int4-method', 'gptq']);
      expect(r.code, r.err).toBe(2);
      expect(r.err).toMatch(/input_ids/);
      expect(fs.existsSync(path.dirname(out))).toBe(false);
    }
    expect(leftovers()).toEqual([]);
  }, 60_000);
});
