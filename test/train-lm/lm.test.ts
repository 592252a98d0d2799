/**
 * The byte-level language model: a tiny model trains (loss falls), its exported inference model
 * computes the same logits as the training graph's forward in onnxruntime, the fidelity function
 * gives the closed-form numbers on models whose predictions are known, calibration feeds come from
 * the train split, and a student starts from the right teacher blocks.
 */
import { describe, expect, it } from 'vitest';
import { DataType } from '../../core/dtype.js';
import { Tensor } from '../../core/tensor.js';
import { GraphBuilder } from '../../ir/builder.js';
import { serializeModel } from '../../onnx/index.js';
import { createSession, toOrtTensor } from '../../runtime/session.js';
import { Trainer } from '../../train/trainer.js';
import {
  buildLanguageModel,
  evenWindows,
  FidelityMeter,
  fitLanguageModel,
  isEvalFile,
  languageModelCalibrationFeeds,
  languageModelFidelity,
  lmParameterCount,
  LmConfig,
  loadLmCorpus,
  modelWeights,
  studentInit,
} from '../../train/lm/index.js';

const TINY: LmConfig = { dModel: 16, heads: 2, layers: 1, ffn: 32, context: 16, seed: 3 };

function ids(dims: number[], values: ArrayLike<number>) {
  return toOrtTensor({ type: 'int64', dims, data: BigInt64Array.from(Array.from(values), BigInt) });
}

describe('byte-level language model', () => {
  it('declares the exporter interface and the parameter count of its config', () => {
    const { model, params } = buildLanguageModel(TINY);
    const g = model.graph;
    expect(g.inputs.filter((v) => !g.initializers.has(v.name)).map((v) => v.name)).toEqual(['input_ids']);
    expect(g.outputs.map((v) => v.name)).toEqual(['logits']);
    const ops = new Set(g.nodes.map((n) => n.opType));
    for (const op of ['Gather', 'LayerNormalization', 'MatMul', 'Div', 'Softmax', 'Erf', 'Reshape', 'Transpose']) expect(ops.has(op)).toBe(true);
    const weights = modelWeights(model);
    const counted = params.reduce((s, p) => s + weights.get(p)!.dims.reduce((a, b) => a * b, 1), 0);
    expect(counted).toBe(lmParameterCount(TINY));
  });

  it('trains: the loss of a tiny model falls within 50 steps', async () => {
    const fit = await fitLanguageModel(TINY, { train: { steps: 50, batch: 4, seq: 16, lr: 1e-2, seed: 5 }, progress: false });
    const head = fit.losses.slice(0, 5).reduce((a, b) => a + b) / 5;
    const tail = fit.losses.slice(-10).reduce((a, b) => a + b) / 10;
    expect(head).toBeGreaterThan(5);
    expect(tail).toBeLessThan(head - 1);
  }, 120_000);

  it('exports an inference model whose logits match the training graph forward', async () => {
    const { model, params } = buildLanguageModel(TINY);
    const trainer = await Trainer.create(model, {
      inputs: { input_ids: { dims: [2, 8], type: 'int64' } },
      losses: [{ kind: 'cross-entropy', output: 'logits', labels: 'labels' }],
      optimizer: { kind: 'adam' },
      params,
      keepOutputs: ['logits'],
    });
    const { train } = loadLmCorpus();
    const batch = (o: number) => ({ input_ids: ids([2, 8], [...train.subarray(o, o + 8), ...train.subarray(o + 100, o + 108)]), labels: ids([2, 8], [...train.subarray(o + 1, o + 9), ...train.subarray(o + 101, o + 109)]) });
    for (let s = 0; s < 5; s++) await trainer.step(batch(1000 * s), 1e-2);
    const exported = trainer.toInferenceModel();
    const b = batch(7000);
    const r = await trainer.step(b, 1e-2);
    await trainer.dispose();
    const session = await createSession(serializeModel(exported), { graphOptimizationLevel: 'disabled' });
    const out = await session.run({ input_ids: { type: 'int64', dims: [2, 8], data: b.input_ids.data as BigInt64Array } });
    await session.dispose();
    const a = out.logits!.data as Float32Array;
    const ref = r.outputs.logits!.data as Float32Array;
    expect(a.length).toBe(2 * 8 * 256);
    let maxDiff = 0;
    let maxAbs = 0;
    for (let i = 0; i < a.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(a[i]! - ref[i]!));
      maxAbs = Math.max(maxAbs, Math.abs(ref[i]!));
    }
    expect(maxAbs).toBeGreaterThan(0.01);
    expect(maxDiff).toBeLessThan(1e-4 * Math.max(1, maxAbs));
  }, 120_000);

  it('fidelity of a zero head is exactly uniform: 8 bits per byte', async () => {
    const weights = modelWeights(buildLanguageModel(TINY).model);
    weights.set('lm_head.weight', Tensor.from(DataType.FLOAT, [16, 256], new Float32Array(16 * 256)));
    const { model } = buildLanguageModel(TINY, weights);
    const f = await languageModelFidelity(serializeModel(model), { contexts: 5, seq: 16 });
    expect(f.tokens).toBe(5 * 16);
    expect(f.bitsPerByte).toBeCloseTo(8, 10);
    expect(f.nextByteAccuracy).toBe(0); // ties go to byte 0, which the text never contains
  });

  it('fidelity of a "next byte = this byte" model matches the closed form', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('input_ids', 'int64', ['batch', 'sequence']);
    const depth = b.constant('depth', Tensor.from(DataType.INT64, [], BigInt64Array.of(256n)));
    const values = b.constant('values', Tensor.from(DataType.FLOAT, [2], Float32Array.of(0, 10)));
    const [logits] = b.op('OneHot', [x, depth, values], { axis: -1 });
    b.output(logits!, 'logits', 'float32', ['batch', 'sequence', 256]);
    const bytes = new TextEncoder().encode('aaabbbbcccaaddddddeeeeefaab'.repeat(4));
    const seq = 10;
    const contexts = 6;
    const f = await languageModelFidelity(serializeModel(b.model()), { bytes, contexts, seq, batch: 4 });
    const hitP = Math.exp(10) / (Math.exp(10) + 255);
    const missP = 1 / (Math.exp(10) + 255);
    let bits = 0;
    let hits = 0;
    for (const o of evenWindows(bytes.length, contexts, seq + 1)) {
      for (let t = 0; t < seq; t++) {
        const same = bytes[o + t] === bytes[o + t + 1];
        bits -= Math.log2(same ? hitP : missP);
        if (same) hits++;
      }
    }
    expect(f.tokens).toBe(contexts * seq);
    expect(f.bitsPerByte).toBeCloseTo(bits / (contexts * seq), 6);
    expect(f.nextByteAccuracy).toBeCloseTo(hits / (contexts * seq), 12);
  });

  it('FidelityMeter rejects logits of the wrong size', () => {
    expect(() => new FidelityMeter().add(new Float32Array(10), [1])).toThrow(/logits hold 10 values/);
  });

  it('splits the corpus by file and samples calibration windows from the train split only', () => {
    const c = loadLmCorpus();
    expect(c.evalFiles.length).toBeGreaterThan(5);
    expect(c.evalFiles.every(isEvalFile)).toBe(true);
    expect(c.trainFiles.some(isEvalFile)).toBe(false);
    expect(c.trainFiles).toContain('lib.dom.d.ts');
    const feeds = languageModelCalibrationFeeds({ count: 4, seq: 32, batch: 2, seed: 9 });
    expect(feeds).toHaveLength(4);
    expect(feeds[0]!.input_ids!.dims).toEqual([2, 32]);
    expect(feeds[0]!.input_ids!.type).toBe('int64');
    expect(languageModelCalibrationFeeds({ count: 4, seq: 32, batch: 2, seed: 9 })).toEqual(feeds);
    const text = Buffer.from(c.train).toString('latin1');
    const window = Buffer.from(Array.from(feeds[3]!.input_ids!.data as BigInt64Array, Number)).toString('latin1').slice(0, 32);
    expect(text.includes(window)).toBe(true);
    expect(() => languageModelCalibrationFeeds({ count: 0 })).toThrow(/positive integer/);
  });

  it('starts a student from evenly spaced teacher blocks', () => {
    const teacher = modelWeights(buildLanguageModel({ ...TINY, layers: 3 }).model);
    const init = studentInit(teacher, 3, 2);
    expect(init.get('transformer.h.0.attn.q_proj.weight')).toBe(teacher.get('transformer.h.0.attn.q_proj.weight'));
    expect(init.get('transformer.h.1.attn.q_proj.weight')).toBe(teacher.get('transformer.h.2.attn.q_proj.weight'));
    expect(init.has('transformer.h.2.attn.q_proj.weight')).toBe(false);
    expect(init.get('lm_head.weight')).toBe(teacher.get('lm_head.weight'));
    const { model } = buildLanguageModel({ ...TINY, layers: 2 }, init);
    expect(model.graph.nodes.filter((n) => n.opType === 'Softmax')).toHaveLength(2);
  });
});
