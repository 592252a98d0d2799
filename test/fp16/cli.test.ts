import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DataType } from '../../core/dtype.js';
import { loadModel, saveModel } from '../../onnx/index.js';
import { runCli } from '../helpers/run-cli.js';
import { transformerVariant } from '../models/transformers.js';

describe('quantize --mode fp16 (CLI)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fp16-cli-'));
  const model = join(dir, 'bert.onnx');
  beforeAll(async () => {
    await saveModel(transformerVariant('bert-ts14').build(), model);
  });

  it('writes a float16 model with float32 io and a report that lists what stayed float32', async () => {
    const out = join(dir, 'bert_fp16.onnx');
    const report = join(dir, 'report.json');
    const r = await runCli(['quantize', model, '-o', out, '--mode', 'fp16', '--fp16-target', 'any', '--shape', 'batch=1', '--shape', 'sequence=16', '--latency-runs', '2', '--report', report]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain('stay float32');
    const m = await loadModel(out);
    expect(m.graph.inputs.map((v) => v.elemType)).toEqual([DataType.INT64, DataType.INT64]);
    expect(m.graph.outputs[0]!.elemType).toBe(DataType.FLOAT);
    const doc = JSON.parse(readFileSync(report, 'utf8'));
    expect(doc.schema).toBe('onnxforge.quantize-fp16/1');
    expect(doc.size.ratio).toBeLessThan(0.55);
    expect(doc.nonFinite.values).toBe(0);
    expect(doc.conversion.keptFloat.length).toBeGreaterThan(0);
    expect(doc.outputs[0].cosine).toBeGreaterThan(0.999);
  });

  it('q4f16: MatMulNBits with float16 scales and float16 activations (target any), float32 io, finite outputs', async () => {
    const out = join(dir, 'bert_q4f16.onnx');
    const report = join(dir, 'q4f16.json');
    const r = await runCli(['quantize', model, '-o', out, '--mode', 'q4f16', '--fp16-target', 'any', '--shape', 'batch=1', '--shape', 'sequence=16', '--latency-runs', '2', '--accuracy-level', '0', '--report', report]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const m = await loadModel(out);
    const nbits = m.graph.nodes.filter((n) => n.opType === 'MatMulNBits');
    expect(nbits.length).toBeGreaterThan(0);
    for (const n of nbits) {
      // MatMulNBits types A, scales and Y alike (T): float16 scales mean float16 activations
      expect(m.graph.initializerTensor(n.input(2)!)!.dataType).toBe(DataType.FLOAT16);
    }
    expect(m.graph.outputs[0]!.elemType).toBe(DataType.FLOAT);
    const doc = JSON.parse(readFileSync(report, 'utf8'));
    expect(doc.mode).toBe('q4f16');
    expect(doc.fusion.applied).toBe(true); // the transformer preset ran first: contrib ops converted too
    expect(m.graph.nodes.some((n) => n.opDomain === 'com.microsoft' && n.opType !== 'MatMulNBits')).toBe(true);
    expect(doc.nonFinite.values).toBe(0);
    expect(doc.size.ratio).toBeLessThan(0.25);
  });

  it('fp16 on an already-fp16 model: exit 2, FP16_ALREADY_HALF, nothing written', async () => {
    const half = join(dir, 'half.onnx');
    expect((await runCli(['quantize', model, '-o', half, '--mode', 'fp16', '--shape', 'batch=1', '--shape', 'sequence=8', '--latency-runs', '1'])).code).toBe(0);
    const again = join(dir, 'again.onnx');
    const r = await runCli(['quantize', half, '-o', again, '--mode', 'fp16']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('FP16_ALREADY_HALF');
    expect(existsSync(again)).toBe(false);
  });

  it('calibration inputs of the wrong dtype (int64 ids given as float): exit 2, nothing written', async () => {
    const calib = join(dir, 'calib.json');
    writeFileSync(calib, JSON.stringify({ input_ids: { dtype: 'float32', dims: [1, 4], data: [1, 2, 3, 4] }, attention_mask: { dtype: 'int64', dims: [1, 4], data: [1, 1, 1, 1] } }));
    const out = join(dir, 'bad.onnx');
    const r = await runCli(['quantize', model, '-o', out, '--mode', 'fp16', '--calibration', calib]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('DATA_DTYPE_MISMATCH');
    expect(r.err).toContain('input_ids');
    expect(existsSync(out)).toBe(false);
  });
});
