import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DataType } from '../../core/dtype.js';
import { Tensor } from '../../core/tensor.js';
import { GraphBuilder } from '../../ir/builder.js';
import { loadModel, saveModel } from '../../onnx/index.js';
import { runCli } from '../helpers/run-cli.js';
import { transformerVariant } from '../models/transformers.js';

const SMALL = { hidden: 64, ffn: 256, layers: 2, heads: 4, vocab: 256 };
const FILES = ['model.onnx', 'model_fp16.onnx', 'model_quantized.onnx', 'model_int8.onnx', 'model_uint8.onnx', 'model_q4.onnx', 'model_q4f16.onnx'];

describe('onnxforge variants (CLI)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'onnxforge-variants-'));
  const gpt2 = join(dir, 'gpt2.onnx');
  beforeAll(async () => {
    await saveModel(transformerVariant('gpt2-ts17').build(SMALL), gpt2);
  });

  it('writes the transformers.js set and one report (symbolic dims, no --shape): size, latency, fidelity, logits KL/top-1, the variant to ship', async () => {
    const out = join(dir, 'gpt2-out');
    const r = await runCli(['variants', gpt2, '-o', out, '--latency-runs', '3', '--latency-at', 'seq1:input_ids=1,1', '--json']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(readdirSync(out).sort()).toEqual([...FILES, 'variants.html', 'variants.json', 'variants.md'].sort());
    const doc = JSON.parse(readFileSync(join(out, 'variants.json'), 'utf8'));
    expect(JSON.parse(r.out)).toEqual(doc);
    expect(doc.schema).toBe('onnxforge.variants/1');
    expect(doc.rows.map((x: { file: string }) => x.file)).toEqual(FILES);
    expect(doc.latencySettings).toEqual(['data', 'seq1']);
    expect(doc.backend).toMatchObject({ backend: 'node', threads: 1 });
    for (const row of doc.rows) {
      expect(row.ok, `${row.variant}: ${row.error?.message}`).toBe(true);
      expect(row.latencyMs.data).toBeGreaterThan(0);
      expect(row.latencyMs.seq1).toBeGreaterThan(0);
      expect(row.nonFinite).toBe(0);
      expect(row.logits[0].output).toBe('logits');
      expect(row.logits[0].top1).toBeGreaterThan(0.9);
      expect(row.minCosine).toBeGreaterThan(0.99);
    }
    const by = Object.fromEntries(doc.rows.map((x: { variant: string }) => [x.variant, x]));
    expect(by.fp32.minCosine).toBeGreaterThan(0.99999);
    expect(by.q4.sizeRatio).toBeLessThan(by.q8.sizeRatio);
    expect(by.q8.sizeRatio).toBeLessThan(0.7);
    expect(by.fp16.sizeRatio).toBeLessThan(0.7);
    // the written files are what the rows say: uint8 weights in uint8, int8 in int8 (q4's form is the
    // int4 pass's measured choice: MatMulNBits, or 4-bit storage unpacked at load where that runs faster)
    expect(by.q4.recipe).toBe('quantize --mode int4');
    const u8 = await loadModel(join(out, 'model_uint8.onnx'));
    const mmi = u8.graph.nodes.filter((n) => n.opType === 'MatMulInteger');
    expect(mmi.length).toBeGreaterThan(0);
    expect(u8.graph.initializerTensor(mmi[0]!.input(1)!)!.dataType).toBe(DataType.UINT8);
    const i8 = await loadModel(join(out, 'model_int8.onnx'));
    expect(i8.graph.initializerTensor(i8.graph.nodes.find((n) => n.opType === 'MatMulInteger')!.input(1)!)!.dataType).toBe(DataType.INT8);
    expect(doc.ship.file).toBe(doc.rows.filter((x: { outOfBudget: string[] }) => x.outOfBudget.length === 0).sort((a: { bytes: number }, b: { bytes: number }) => a.bytes - b.bytes)[0].file);
    const md = readFileSync(join(out, 'variants.md'), 'utf8');
    expect(md).toContain('## Size against fidelity');
    expect(md).toContain(`ship ${doc.ship.file}`);
    expect(md).toMatch(/  q4 +size \/ fp32 0\.\d+/);
    const html = readFileSync(join(out, 'variants.html'), 'utf8');
    expect(html).toMatch(/<figure data-chart="fidelity"><svg [^>]*data-points="7"/);
    expect(html).toMatch(/<figure data-chart="latency"><svg [^>]*data-points="7"/);
    expect(existsSync(join(out, readdirSync(out).find((f) => f.startsWith('.variants-staging')) ?? 'none'))).toBe(false);
  });

  it('--target wasm: fidelity and latency measured on onnxruntime-web (WASM, 1 thread), the int8 variant checked for its kernels', async () => {
    const out = join(dir, 'wasm');
    const r = await runCli(['variants', gpt2, '-o', out, '--target', 'wasm', '--variants', 'fp32,int8,q4,q4f16', '--latency-runs', '2', '--json']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out);
    expect(doc.backend.backend).toBe('wasm');
    expect(doc.backend.runtime).toMatch(/^onnxruntime-web 1\.30\.0 \(WASM\)$/);
    expect(doc.backend.threads).toBe(1);
    expect(doc.reference.latencyMs.data).toBeGreaterThan(0);
    expect(doc.rows.map((x: { variant: string }) => x.variant)).toEqual(['fp32', 'int8', 'q4', 'q4f16']);
    for (const row of doc.rows) {
      expect(row.ok, `${row.variant}: ${row.error?.message}`).toBe(true);
      expect(row.latencyMs.data).toBeGreaterThan(0);
      expect(Number.isFinite(row.latencyRatio.data)).toBe(true);
      expect(row.minCosine).toBeGreaterThan(0.99);
    }
    const md = readFileSync(join(out, 'variants.md'), 'utf8');
    expect(md).toContain('onnxruntime-web 1.30.0 (WASM), 1 thread');
  });

  it('--variants builds a subset; a budget no variant meets says so and names no variant', async () => {
    const out = join(dir, 'budget');
    const r = await runCli(['variants', gpt2, '-o', out, '--variants', 'fp32,q4', '--latency-runs', '2', '--max-size-ratio', '0.01', '--json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out);
    expect(doc.rows.map((x: { variant: string }) => x.variant)).toEqual(['fp32', 'q4']);
    expect(doc.ship).toBeUndefined();
    expect(doc.shipNote).toContain('no variant meets the budget');
    expect(doc.rows[1].outOfBudget.join(' ')).toContain('size');
    expect(readdirSync(out).sort()).toEqual(['model.onnx', 'model_q4.onnx', 'variants.html', 'variants.json', 'variants.md']);
  });

  it('--eval with --metric: the metric per variant and for fp32, and the budget applies to it', async () => {
    const evalFile = join(dir, 'eval.json');
    const ids = (seed: number) => Array.from({ length: 16 }, (_, i) => (i * 37 + seed * 11) % SMALL.vocab);
    writeFileSync(evalFile, JSON.stringify([1, 2, 3].map((s) => ({ input_ids: { dims: [1, 16], dtype: 'int64', data: ids(s) } }))));
    const metric = join(dir, 'meanLogit.mjs');
    // mean of the logits: a metric whose relative change the budget can judge
    writeFileSync(metric, 'export default function meanLogit(outputs) { const d = outputs.logits.data; let s = 0; for (const x of d) s += x; return { mean: s / d.length }; }\n');
    const out = join(dir, 'eval-out');
    const r = await runCli(['variants', gpt2, '-o', out, '--variants', 'fp32,q8', '--eval', evalFile, '--metric', metric, '--max-metric-change', '0', '--latency-runs', '2', '--json']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out);
    expect(doc.samples).toBe(3);
    expect(doc.measuredOn).toContain('--eval');
    const ref = doc.reference.metrics.meanLogit.mean;
    expect(Number.isFinite(ref)).toBe(true);
    const [fp32, q8] = doc.rows;
    expect(fp32.metrics.meanLogit.mean).toBeCloseTo(ref, 3);
    expect(q8.metrics.meanLogit.mean).not.toBe(ref);
    // --max-metric-change 0: any change puts a variant out of the budget
    expect(q8.outOfBudget.join(' ')).toContain('meanLogit.mean');
    expect(readFileSync(join(out, 'variants.md'), 'utf8')).toContain('meanLogit.mean');
  });

  it('a model without MatMul weights: q4/q4f16 rows explain INT4_NO_WEIGHTS, the rest are written (exit 0)', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', ['batch', 8]);
    const w = b.initializer('w', Tensor.from(DataType.FLOAT, [8], Float32Array.from({ length: 8 }, (_, i) => i / 8)));
    const [y] = b.op('Add', [x, w]);
    const [z] = b.op('Relu', [y!]);
    b.output(z!, 'y', 'float32', ['batch', 8]);
    const model = join(dir, 'nomatmul.onnx');
    await saveModel(b.model(), model);
    const out = join(dir, 'nomatmul-out');
    const r = await runCli(['variants', model, '-o', out, '--latency-runs', '2', '--json']);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out);
    const by = Object.fromEntries(doc.rows.map((x: { variant: string }) => [x.variant, x]));
    for (const v of ['q4', 'q4f16']) {
      expect(by[v].ok).toBe(false);
      expect(by[v].error.stage).toBe('build');
      expect(by[v].error.code).toBe('INT4_NO_WEIGHTS');
      expect(existsSync(join(out, by[v].file))).toBe(false);
    }
    for (const v of ['fp32', 'fp16', 'q8']) expect(by[v].ok).toBe(true);
    expect(readFileSync(join(out, 'variants.md'), 'utf8')).toContain('FAILED (build): INT4_NO_WEIGHTS');
  });

  it('bad input exits 2 with nothing written: missing model, output folder is a file, unknown variant, --metric without --eval', async () => {
    const missing = await runCli(['variants', join(dir, 'nope.onnx'), '-o', join(dir, 'o1')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain('FILE_NOT_FOUND');
    expect(existsSync(join(dir, 'o1'))).toBe(false);
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    const isFile = await runCli(['variants', gpt2, '-o', file]);
    expect(isFile.code).toBe(2);
    expect(isFile.err).toContain('OUTPUT_BAD_LOCATION');
    expect(readFileSync(file, 'utf8')).toBe('x');
    const unknown = await runCli(['variants', gpt2, '-o', join(dir, 'o2'), '--variants', 'fp8']);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain("unknown variant 'fp8'");
    expect(existsSync(join(dir, 'o2'))).toBe(false);
    const metric = await runCli(['variants', gpt2, '-o', join(dir, 'o3'), '--metric', 'm.js']);
    expect(metric.code).toBe(2);
    expect(existsSync(join(dir, 'o3'))).toBe(false);
  });

  it('the input inside the output folder as model.onnx is refused (OUTPUT_IS_INPUT, exit 2)', async () => {
    const d = join(dir, 'same');
    mkdirSync(d);
    const m = join(d, 'model.onnx');
    writeFileSync(m, readFileSync(gpt2));
    const r = await runCli(['variants', m, '-o', d]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('OUTPUT_IS_INPUT');
    expect(readdirSync(d)).toEqual(['model.onnx']);
  });
});
