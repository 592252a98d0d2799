/**
 * `quantize --mode int4` end to end on a GPT-2-style test model: the written model runs in
 * onnxruntime, is much smaller, its MatMuls are MatMulNBits; GPTQ on calibration data beats RTN on
 * held-out inputs; bad input exits 2 with a stable code and writes nothing.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Tensor } from '../../core/tensor.js';
import { GraphBuilder } from '../../ir/builder.js';
import { loadModel, saveModel } from '../../onnx/index.js';
import { reference, relativeError } from '../../passes/quantize/int4/probe.js';
import { RULE_NBITS_MIN_K } from '../../passes/quantize/int4/kernels.js';
import { nodeRunner } from '../../runtime/runner.js';
import { runCli } from '../helpers/run-cli.js';
import { transformerFeed, transformerVariant } from '../models/transformers.js';

const dir = mkdtempSync(join(tmpdir(), 'int4-cli-'));
const variant = transformerVariant('gpt2-ts17');
const modelPath = join(dir, 'gpt2.onnx');

/** A .npy file (format 1.0) of an int64 or float32 array. */
function npy(path: string, dtype: '<i8' | '<f4', dims: number[], data: BigInt64Array | Float32Array): void {
  let header = `{'descr': '${dtype}', 'fortran_order': False, 'shape': (${dims.join(', ')}${dims.length === 1 ? ',' : ''}), }`;
  while ((10 + header.length + 1) % 64 !== 0) header += ' ';
  header += '\n';
  const head = Buffer.alloc(10);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(head);
  head.writeUInt16LE(header.length, 8);
  writeFileSync(path, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

beforeAll(async () => {
  await saveModel(variant.build(), modelPath);
  mkdirSync(join(dir, 'calib'));
  mkdirSync(join(dir, 'calib-float'));
  for (let i = 0; i < 8; i++) {
    const ids = transformerFeed(variant, 1, 32, { seed: i + 1 }).input_ids!.data as BigInt64Array;
    npy(join(dir, 'calib', `s${i}.npy`), '<i8', [1, 32], ids);
    npy(join(dir, 'calib-float', `s${i}.npy`), '<f4', [1, 32], Float32Array.from(ids, Number));
  }
});

const base = ['quantize', modelPath, '--mode', 'int4', '--shape', 'batch=1', '--shape', 'sequence=16', '--latency-runs', '3', '--json'];

describe('quantize --mode int4', () => {
  it('writes MatMulNBits / GatherBlockQuantized, much smaller, and GPTQ beats RTN on held-out inputs', async () => {
    const rtnOut = join(dir, 'rtn.onnx');
    const gptqOut = join(dir, 'gptq.onnx');
    const rtn = await runCli([...base, '-o', rtnOut, '--int4-method', 'rtn', '--keep-int8', 'none', '--embeddings', 'float', '--accuracy-level', '0', '--int4-kernel', 'nbits', '--block-size', '32']);
    expect(rtn.code, rtn.err).toBe(0);
    const r = JSON.parse(rtn.out);
    expect(r.schema).toBe('onnxforge.quantize-int4/1');
    expect(r.size.ratio).toBeLessThan(0.45); // float embeddings here
    const ops = (await loadModel(rtnOut)).graph.nodes.map((n) => n.opType);
    expect(ops.filter((o) => o === 'MatMulNBits').length).toBe(9); // 2 layers x 4 linears + the tied LM head
    expect(r.int4.accuracyLevel.chosen).toBe(0);
    const gptq = await runCli([...base, '-o', gptqOut, '--calibration', join(dir, 'calib'), '--keep-int8', 'none', '--embeddings', 'float', '--accuracy-level', '0', '--int4-kernel', 'nbits', '--block-size', '32']);
    expect(gptq.code, gptq.err).toBe(0);
    expect(JSON.parse(gptq.out).int4.method).toBe('gptq');
    const held = Array.from({ length: 4 }, (_, i) => transformerFeed(variant, 1, 32, { seed: 100 + i }));
    const ref = await reference(await loadModel(modelPath), held, nodeRunner);
    const eRtn = await relativeError(await loadModel(rtnOut), ref, nodeRunner);
    const eGptq = await relativeError(await loadModel(gptqOut), ref, nodeRunner);
    expect(eGptq).toBeLessThan(eRtn * 0.8);
  }, 120_000);

  it('--format qdq writes int4 DequantizeLinear with block_size at opset 21 that onnxruntime runs', async () => {
    const out = join(dir, 'qdq.onnx');
    const res = await runCli([...base, '-o', out, '--format', 'qdq', '--block-size', '64']);
    expect(JSON.parse(res.out).outputs.length).toBe(1);
    expect(res.code, res.err).toBe(0);
    const m = await loadModel(out);
    const msft = await runCli([...base, '-o', join(dir, 'msft.onnx'), '--int4-kernel', 'nbits', '--accuracy-level', 'measure']);
    expect((await loadModel(join(dir, 'msft.onnx'))).graph.nodes.map((n) => n.opType)).toContain('GatherBlockQuantized');
    expect(msft.code).toBe(0);
    const level = JSON.parse(msft.out).int4.accuracyLevel;
    expect([0, 1, 4]).toContain(level.chosen);
    expect(level.measured.map((m: { level: number }) => m.level)).toEqual([0, 1, 4]);
    expect(m.opset('')).toBeGreaterThanOrEqual(21);
    const dq = m.graph.nodes.filter((n) => n.opType === 'DequantizeLinear' && n.getInt('block_size') === 64);
    expect(dq.length).toBeGreaterThan(0);
    expect(m.graph.nodes.some((n) => n.opDomain === 'com.microsoft')).toBe(false);
  }, 120_000);

  it('--int4-kernel unpack stores the same codes as constants onnxruntime folds: outputs match MatMulNBits, no contrib op, file as small', async () => {
    const common = [...base, '--int4-method', 'rtn', '--keep-int8', 'none', '--accuracy-level', '0', '--embeddings', 'float'];
    const nb = await runCli([...common, '-o', join(dir, 'nb.onnx'), '--int4-kernel', 'nbits']);
    const up = await runCli([...common, '-o', join(dir, 'up.onnx'), '--int4-kernel', 'unpack']);
    expect(nb.code, nb.err).toBe(0);
    expect(up.code, up.err).toBe(0);
    const m = await loadModel(join(dir, 'up.onnx'));
    expect(m.graph.nodes.some((n) => n.opType === 'MatMulNBits' || n.opType === 'GatherBlockQuantized')).toBe(false);
    expect(m.graph.nodes.filter((n) => n.opType === 'MatMul').length).toBeGreaterThanOrEqual(9);
    const r = JSON.parse(up.out);
    expect(r.int4.weights.filter((w: { bits: number }) => w.bits > 0).every((w: { kernel: string }) => w.kernel === 'unpacked')).toBe(true);
    expect(r.size.ratio).toBeLessThan(JSON.parse(nb.out).size.ratio * 1.05);
    // same codes, same arithmetic (dequantize, then float32 MatMul / Gather)
    const held = Array.from({ length: 2 }, (_, i) => transformerFeed(variant, 1, 16, { seed: 200 + i }));
    const ref = await reference(await loadModel(join(dir, 'nb.onnx')), held, nodeRunner);
    expect(await relativeError(m, ref, nodeRunner)).toBeLessThan(1e-9);
  }, 120_000);

  it('runs the transformer fusions first (reported) and still quantizes every linear weight; --no-fuse-transformer skips them', async () => {
    const common = [...base, '--int4-method', 'rtn', '--keep-int8', 'none', '--accuracy-level', '0', '--int4-kernel', 'nbits'];
    const fused = await runCli([...common, '-o', join(dir, 'fused.onnx')]);
    const plain = await runCli([...common, '-o', join(dir, 'plain.onnx'), '--no-fuse-transformer']);
    expect(fused.code, fused.err).toBe(0);
    expect(plain.code, plain.err).toBe(0);
    const f = JSON.parse(fused.out);
    const p = JSON.parse(plain.out);
    expect(f.fusion.applied).toBe(true);
    expect(p.fusion.applied).toBe(false);
    const ops = async (path: string) => (await loadModel(path)).graph.nodes.map((n) => n.opType);
    expect((await ops(join(dir, 'fused.onnx'))).some((o) => Object.keys(f.fusion.fused).includes(o))).toBe(true);
    // GPT-2's one c_attn MatMul would be packed into com.microsoft.Attention: attention is then left
    // unfused (reported), so the same weights become MatMulNBits
    const count = async (path: string) => (await ops(path)).filter((o) => o === 'MatMulNBits').length;
    expect(await count(join(dir, 'fused.onnx'))).toBe(await count(join(dir, 'plain.onnx')));
    expect(f.outputs[0].sqnrDb).toBeGreaterThan(p.outputs[0].sqnrDb - 1);
  }, 120_000);

  it('default kernel auto: the rule from the kernel table, nothing timed, the same decisions on every run', async () => {
    const runs = [];
    for (const name of ['rule-a.onnx', 'rule-b.onnx']) {
      const res = await runCli([...base, '-o', join(dir, name)]);
      expect(res.code, res.err).toBe(0);
      runs.push(JSON.parse(res.out).int4);
    }
    const [a, b] = runs;
    expect(a.kernels.length).toBeGreaterThan(0);
    expect(b.kernels).toEqual(a.kernels);
    expect(b.accuracyLevel).toEqual(a.accuracyLevel);
    for (const k of a.kernels) {
      expect(k.timings).toEqual([]);
      expect(k.reason).toMatch(/kernel table/);
      const K = Number(k.shape.split('x')[0]);
      expect(k.chosen).toBe(K >= RULE_NBITS_MIN_K ? 4 : 'unpacked');
    }
    const m = await loadModel(join(dir, 'rule-a.onnx'));
    expect(m.graph.nodes.filter((n) => n.opType === 'MatMulNBits').length).toBe(a.kernels.filter((k: { chosen: unknown }) => k.chosen !== 'unpacked').reduce((s: number, k: { weights: number }) => s + k.weights, 0));
  }, 120_000);

  it('kernel measure: every 4-bit shape class timed against float32 at sequence lengths 1 and 128, decision reported', async () => {
    const res = await runCli([...base, '-o', join(dir, 'auto.onnx'), '--int4-kernel', 'measure']);
    expect(res.code, res.err).toBe(0);
    const r = JSON.parse(res.out).int4;
    expect(r.kernels.length).toBeGreaterThan(0);
    for (const k of r.kernels) {
      expect(k.timings.map((t: { seq: number }) => t.seq)).toEqual([1, 128]);
      expect(k.chosen === 'unpacked' || [0, 1, 4].includes(k.chosen)).toBe(true);
      expect(k.reason).toMatch(/float32 MatMul/);
    }
    const m = await loadModel(join(dir, 'auto.onnx'));
    const nbits = m.graph.nodes.filter((n) => n.opType === 'MatMulNBits').length;
    const unpackedClasses = r.kernels.filter((k: { chosen: unknown }) => k.chosen === 'unpacked').reduce((a: number, k: { weights: number }) => a + k.weights, 0);
    expect(nbits + unpackedClasses).toBe(r.kernels.reduce((a: number, k: { weights: number }) => a + k.weights, 0));
  }, 120_000);
});

describe('quantize --mode int4: bad input (exit 2, nothing written)', () => {
  const cases: Array<[string, string[], string, RegExp]> = [
    ['block size not a power of two', ['--block-size', '48'], 'INT4_BAD_BLOCK_SIZE', /--block-size/],
    ['block size out of range', ['--block-size', '512'], 'INT4_BAD_BLOCK_SIZE', /16 to 256/],
    ['block size not dividing K', ['--block-size', '256'], 'INT4_BLOCK_NOT_DIVIDING', /does not divide K = 128/],
    ['gptq without calibration', ['--int4-method', 'gptq'], 'INT4_GPTQ_NEEDS_DATA', /--calibration/],
  ];
  for (const [what, args, code, msg] of cases) {
    it(what, async () => {
      const out = join(dir, `bad-${code}-${args.join('')}.onnx`);
      const res = await runCli([...base, '-o', out, ...args]);
      expect(res.code).toBe(2);
      expect(res.err).toContain(code);
      expect(res.err).toMatch(msg);
      expect(existsSync(out)).toBe(false);
    });
  }

  it('calibration ids given as float32', async () => {
    const out = join(dir, 'bad-float.onnx');
    const res = await runCli([...base, '-o', out, '--calibration', join(dir, 'calib-float')]);
    expect(res.code).toBe(2);
    expect(res.err).toContain('DATA_DTYPE_MISMATCH');
    expect(res.err).toMatch(/input_ids/);
    expect(existsSync(out)).toBe(false);
  });

  it('a model without MatMul weights', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', [1, 8]);
    const y = b.input('y', 'float32', [8, 4]);
    b.output(b.op('Relu', [b.op('MatMul', [x, y])[0]!])[0]!, 'z');
    b.output(b.op('Add', [x, b.initializer('c', Tensor.from('float32', [8], new Float32Array(8)))])[0]!, 'w');
    const path = join(dir, 'nomatmul.onnx');
    await saveModel(b.model(), path);
    const out = join(dir, 'bad-nomatmul.onnx');
    const before = readFileSync(path);
    const res = await runCli(['quantize', path, '-o', out, '--mode', 'int4']);
    expect(res.code).toBe(2);
    expect(res.err).toContain('INT4_NO_WEIGHTS');
    expect(existsSync(out)).toBe(false);
    expect(readFileSync(path).equals(before)).toBe(true);
  });
});
