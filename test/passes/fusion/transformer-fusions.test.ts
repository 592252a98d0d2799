/**
 * The transformer fusions on every exporter variant (test/models/transformers.ts), both targets:
 * what fuses where, outputs against the unfused model in onnxruntime (1e-4 relative, padded batch),
 * and the near misses that must not fuse, with the reasons --explain shows.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';
import { GraphBuilder } from '../../../ir/builder.js';
import { checkModel } from '../../../ir/checker.js';
import type { Model, Value } from '../../../ir/ir.js';
import { cloneModel, loadModel, saveModel } from '../../../onnx/index.js';
import { optimize } from '../../../passes/manager.js';
import { parsePipeline, presetPipeline, retarget } from '../../../passes/pipeline.js';
import type { FusionTarget } from '../../../passes/fusion/transformer-target.js';
import fuseAttention from '../../../passes/fusion/fuse-attention.js';
import fuseSkipLayerNorm from '../../../passes/fusion/fuse-skip-layer-norm.js';
import fuseBiasGelu from '../../../passes/fusion/fuse-bias-gelu.js';
import fuseRmsNorm from '../../../passes/fusion/fuse-rms-norm.js';
import fuseRotary from '../../../passes/fusion/fuse-rotary.js';
import { upgradeOpset } from '../../../passes/convert/upgrade-opset.js';
import { TRANSFORMER_VARIANTS, transformerFeed, transformerVariant, type TransformerVariant } from '../../models/transformers.js';
import { runCli } from '../../helpers/run-cli.js';
import { buildLanguageModel } from '../../../train/lm/model.js';
import { opCount, relativeError, runModel } from './helpers.js';
import { testContext } from './ctx.js';

/** Fusions each variant must get from the preset, per target. */
function expected(v: TransformerVariant, target: FusionTarget): Record<string, number> {
  const e: Record<string, number> = {};
  if (v.norm === 'layer-norm-decomposed') e['fuse-layer-norm'] = 5;
  if (v.gelu) e['fuse-gelu'] = 2;
  if (v.gelu && target === 'microsoft') e['fuse-bias-gelu'] = 2;
  if (v.norm === 'rms-norm') e['fuse-rms-norm'] = 5;
  // Llama's rotary embeddings (Q and K of 2 layers) move before the head split as com.microsoft.RotaryEmbedding,
  // so the attention reads [B, S, H] tensors (MultiHeadAttention); the generic form takes the 4-D Q/K/V instead
  if (v.norm === 'rms-norm' && target === 'microsoft') e['fuse-rotary'] = 4;
  e['fuse-attention'] = 2;
  return e;
}

async function transformerPreset(model: Model, target: FusionTarget, explain = false) {
  const m = cloneModel(model);
  const report = await optimize(m, retarget(parsePipeline(presetPipeline('transformer')), target), { explain });
  const fused: Record<string, number> = {};
  for (const s of report.summary) if (s.pass.startsWith('fuse-') && Number(s.stats.fused ?? 0) > 0) fused[s.pass] = Number(s.stats.fused);
  return { model: m, fused, report };
}

async function expectSameOutputs(a: Model, b: Model, v: TransformerVariant): Promise<void> {
  for (const feed of [transformerFeed(v, 2, 24, { padded: true }), transformerFeed(v, 1, 128, { seed: 3 })]) {
    expect(relativeError(await runModel(a, feed), await runModel(b, feed))).toBeLessThan(1e-4);
  }
}

describe('transformer preset on the exporter variants', () => {
  for (const v of TRANSFORMER_VARIANTS) {
    for (const target of ['microsoft', 'generic'] as const) {
      it(`${v.name}, target ${target}: fuses ${Object.keys(expected(v, target)).join(', ')} and keeps the outputs`, async () => {
        const base = v.build();
        const { model, fused, report } = await transformerPreset(base, target, true);
        expect(fused).toEqual(expected(v, target));
        expect(checkModel(model)).toEqual([]);
        expect(opCount(model, 'Softmax')).toBe(fused['fuse-attention'] ? 0 : 2);
        if (target === 'generic') {
          expect(model.opset('')).toBe(23);
          expect([...model.graph.allNodes()].every((n) => n.opDomain === '')).toBe(true);
        }
        if (target === 'microsoft' && v.norm === 'rms-norm') {
          expect(opCount(model, 'RotaryEmbedding')).toBe(4);
          expect(opCount(model, 'MultiHeadAttention')).toBe(2);
          expect(report.explanations.filter((e) => e.pass === 'fuse-attention')).toEqual([]);
        }
        await expectSameOutputs(base, model, v);
      });
    }
  }
});

describe('fusions one by one', () => {
  it('attention on BERT: packed-QKV com.microsoft.Attention with the 2-D mask', async () => {
    const v = transformerVariant('bert-ts17');
    const base = v.build();
    const m = cloneModel(base);
    const r = await fuseAttention.run(m, { target: 'microsoft', maxIterations: 10 }, testContext());
    expect(r.stats).toMatchObject({ fused: 2 });
    const att = [...m.graph.allNodes()].filter((n) => n.opType === 'Attention');
    expect(att.map((n) => [n.opDomain, n.getInt('num_heads'), n.inputs.length, n.getInt('unidirectional', 0)])).toEqual([
      ['com.microsoft', 4, 4, 0],
      ['com.microsoft', 4, 4, 0],
    ]);
    expect(att[0]!.getFloat('mask_filter_value')).toBeLessThan(-1e38);
    expect(opCount(m, 'MatMul')).toBe(6);
    await expectSameOutputs(base, m, v);
  });

  it('attention on GPT-2: unidirectional Attention from the Split of c_attn; generic: is_causal Attention-23 on [B, S, H]', async () => {
    const v = transformerVariant('gpt2-ts17');
    const base = v.build();
    const ms = cloneModel(base);
    await fuseAttention.run(ms, { target: 'microsoft', maxIterations: 10 }, testContext());
    const a = [...ms.graph.allNodes()].find((n) => n.opType === 'Attention')!;
    expect([a.opDomain, a.getInt('unidirectional'), a.inputs.length, opCount(ms, 'Split')]).toEqual(['com.microsoft', 1, 3, 0]);
    await expectSameOutputs(base, ms, v);
    const g = cloneModel(base);
    upgradeOpset(g, 23);
    await fuseAttention.run(g, { target: 'generic', maxIterations: 10 }, testContext());
    const ga = [...g.graph.allNodes()].find((n) => n.opType === 'Attention')!;
    expect([ga.opDomain, ga.getInt('is_causal'), ga.getInt('q_num_heads'), ga.inputs.length]).toEqual(['', 1, 4, 3]);
    await expectSameOutputs(base, g, v);
  });

  it("attention on the project's own language model (train/lm: additive causal buffer of -1e4): unidirectional Attention, outputs kept", async () => {
    const base = buildLanguageModel({ dModel: 64, heads: 4, layers: 2, ffn: 128, context: 64, seed: 3 }).model;
    const { model, fused } = await transformerPreset(base, 'microsoft');
    expect(fused['fuse-attention']).toBe(2);
    expect([opCount(model, 'Softmax'), opCount(model, 'Attention')]).toEqual([0, 2]);
    expect([...model.graph.allNodes()].filter((n) => n.opType === 'Attention').every((n) => n.getInt('unidirectional') === 1)).toBe(true);
    const ids = (b: number, s: number, seed: number) => ({ input_ids: { type: 'int64' as const, dims: [b, s], data: BigInt64Array.from({ length: b * s }, (_, i) => BigInt((i * 37 + seed * 11) % 256)) } });
    for (const feed of [ids(1, 48, 1), ids(2, 17, 2)]) expect(relativeError(await runModel(base, feed), await runModel(model, feed))).toBeLessThan(1e-4);
  });

  it('pack off: MultiHeadAttention on the projections, which stay MatMuls (BERT with its 2-D mask; GPT-2 unidirectional after the Split of c_attn; the LM), outputs kept', async () => {
    for (const name of ['bert-ts17', 'gpt2-ts17']) {
      const v = transformerVariant(name);
      const base = v.build();
      const m = cloneModel(base);
      const r = await fuseAttention.run(m, { target: 'microsoft', maxIterations: 10, pack: false }, testContext());
      expect(r.stats).toMatchObject({ fused: 2 });
      expect([opCount(m, 'Attention'), opCount(m, 'MultiHeadAttention')]).toEqual([0, 2]);
      const mha = [...m.graph.allNodes()].filter((n) => n.opType === 'MultiHeadAttention');
      expect(mha.map((n) => [n.opDomain, n.getInt('num_heads'), n.getInt('unidirectional', 0)])).toEqual(Array(2).fill(['com.microsoft', 4, name === 'gpt2-ts17' ? 1 : 0]));
      // the Q/K/V projections keep their weights as MatMuls (BERT: three per layer; GPT-2: c_attn, one per layer)
      expect(opCount(m, 'MatMul')).toBe(name === 'bert-ts17' ? 12 : 9);
      await expectSameOutputs(base, m, v);
    }
    const lm = buildLanguageModel({ dModel: 64, heads: 4, layers: 2, ffn: 128, context: 64, seed: 3 }).model;
    const m = cloneModel(lm);
    await fuseAttention.run(m, { target: 'microsoft', maxIterations: 10, pack: false }, testContext());
    expect([opCount(m, 'Softmax'), opCount(m, 'MultiHeadAttention')]).toEqual([0, 2]);
    const ids = { input_ids: { type: 'int64' as const, dims: [2, 17], data: BigInt64Array.from({ length: 34 }, (_, i) => BigInt((i * 37 + 5) % 256)) } };
    expect(relativeError(await runModel(lm, ids), await runModel(m, ids))).toBeLessThan(1e-4);
  });

  it('skip-layer-norm (not in the preset) fuses every residual Add + LayerNormalization with the projection bias and stays within 1e-4', async () => {
    for (const name of ['bert-ts17', 'gpt2-ts17']) {
      const v = transformerVariant(name);
      const base = v.build();
      const m = cloneModel(base);
      const r = await fuseSkipLayerNorm.run(m, { target: 'microsoft', maxIterations: 10 }, testContext());
      expect(r.stats).toMatchObject({ fused: 5 });
      expect(opCount(m, 'LayerNormalization')).toBe(0);
      expect(checkModel(m)).toEqual([]);
      await expectSameOutputs(base, m, v);
    }
  });

  it('the generic target says what it lacks: no SkipLayerNormalization/BiasGelu form, opset 23 needed for Attention/RMSNormalization', async () => {
    const m = transformerVariant('llama-ts17').build();
    for (const pass of [fuseSkipLayerNorm, fuseBiasGelu]) {
      const ctx = testContext(pass.name);
      expect(await pass.run(m, { target: 'generic', maxIterations: 10 }, ctx)).toEqual({ changed: false });
      expect(ctx.explanations[0]!.reason).toMatch(/no generic form/);
    }
    for (const pass of [fuseAttention, fuseRmsNorm]) {
      const ctx = testContext(pass.name);
      expect(await pass.run(m, { target: 'generic', maxIterations: 10 }, ctx)).toEqual({ changed: false });
      expect(ctx.explanations[0]!.reason).toMatch(/needs opset 23, the model has 17/);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// near misses

const f32 = (dims: number[], seed: number) => {
  let s = seed;
  const n = dims.reduce((a, b) => a * b, 1);
  return Tensor.from(DataType.FLOAT, dims, Float32Array.from({ length: n }, () => ((s = (s * 16807) % 2147483647) / 2147483647 - 0.5) * 0.5));
};
const scalar = (x: number) => Tensor.from(DataType.FLOAT, [], Float32Array.of(x));
const i64 = (xs: number[]) => Tensor.from(DataType.INT64, [xs.length], BigInt64Array.from(xs.map(BigInt)));

/** A small self-attention block on x [B, S, 16] with 2 heads; `edit` changes one piece. */
function attentionBlock(edit: { softmaxAxis?: number; probsOut?: boolean; mask?: 'none' | 'input' | 'triangularWrong'; heads?: [number, number]; kvFrom?: 'x' | 'x2' } = {}): Model {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', ['batch', 'seq', 16]);
  const x2 = edit.kvFrom === 'x2' ? b.op('Relu', [x])[0]! : x;
  const proj = (name: string, k: number, src = x) => b.op('Add', [b.op('MatMul', [src, b.initializer(`${name}_w`, f32([16, 16], k))])[0]!, b.initializer(`${name}_b`, f32([16], k + 1))])[0]!;
  const split = (v: Value, heads: number, perm: number[]) => b.op('Transpose', [b.op('Reshape', [v, b.initializer(b.fresh('shape'), i64([0, -1, heads, 16 / heads]))])[0]!], { perm })[0]!;
  const [hq, hk] = edit.heads ?? [2, 2];
  const q = split(proj('q', 3), hq, [0, 2, 1, 3]);
  const kT = split(proj('k', 7, x2), hk, [0, 2, 3, 1]);
  const v = split(proj('v', 11, x2), 2, [0, 2, 1, 3]);
  let s = b.op('Div', [b.op('MatMul', [q, kT])[0]!, b.initializer('scale', scalar(Math.sqrt(8)))])[0]!;
  if (edit.mask === 'input') s = b.op('Add', [s, b.input('bias', 'float32', ['batch', 1, 'seq', 'seq'])])[0]!;
  if (edit.mask === 'triangularWrong') {
    const m = 32;
    const data = new Uint8Array(m * m);
    for (let i = 0; i < m; i++) for (let j = i; j < m; j++) data[i * m + j] = 1; // upper triangle: not causal
    const buf = b.initializer('tri', Tensor.from(DataType.BOOL, [1, 1, m, m], data));
    const seq = b.op('Unsqueeze', [b.op('Gather', [b.op('Shape', [x])[0]!, b.initializer('one', Tensor.from(DataType.INT64, [], BigInt64Array.of(1n)))], { axis: 0 })[0]!, b.initializer('ax0', i64([0]))])[0]!;
    const sl = b.op('Slice', [buf, b.initializer('zeros', i64([0, 0])), b.op('Concat', [seq, seq], { axis: 0 })[0]!, b.initializer('axes23', i64([2, 3]))])[0]!;
    s = b.op('Where', [sl, s, b.initializer('min', scalar(-3.4e38))])[0]!;
  }
  const p = b.op('Softmax', [s], { axis: edit.softmaxAxis ?? -1 })[0]!;
  const o = b.op('MatMul', [p, v])[0]!;
  const merged = b.op('Reshape', [b.op('Transpose', [o], { perm: [0, 2, 1, 3] })[0]!, b.initializer('merge', i64([0, -1, 16]))])[0]!;
  b.output(merged, 'y', 'float32', ['batch', 'seq', 16]);
  if (edit.probsOut) b.output(p, 'probs', 'float32');
  return b.model();
}

/**
 * Rotary embeddings (rotate_half form) on x [B, S, 16] split into 2 heads of 8, positions from `start`;
 * `edit` changes one piece. The output is the rotated [B, N, S, D] tensor.
 */
function rotaryBlock(edit: { start?: number; halvesDiffer?: boolean; positionIds?: boolean; swappedHalves?: boolean } = {}): Model {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', ['batch', 'seq', 16]);
  const [m, d] = [64, 8];
  const cos = new Float32Array(m * d);
  const sin = new Float32Array(m * d);
  for (let p = 0; p < m; p++) {
    for (let i = 0; i < d; i++) {
      const a = p * 10000 ** (-(2 * (i % (d / 2))) / d) * (edit.halvesDiffer && i >= d / 2 ? 1.5 : 1);
      cos[p * d + i] = Math.cos(a);
      sin[p * d + i] = Math.sin(a);
    }
  }
  const seqLen = b.op('Gather', [b.op('Shape', [x])[0]!, b.initializer('one', Tensor.from(DataType.INT64, [], BigInt64Array.of(1n)))], { axis: 0 })[0]!;
  const start = b.initializer('start', Tensor.from(DataType.INT64, [], BigInt64Array.of(BigInt(edit.start ?? 0))));
  const limit = b.op('Add', [seqLen, start])[0]!;
  const positions = edit.positionIds
    ? b.input('position_ids', 'int64', ['batch', 'seq'])
    : b.op('Unsqueeze', [b.op('Range', [start, edit.start ? limit : seqLen, b.initializer('step', Tensor.from(DataType.INT64, [], BigInt64Array.of(1n)))])[0]!, b.initializer('ax0', i64([0]))])[0]!;
  const table = (name: string, data: Float32Array) => b.op('Unsqueeze', [b.op('Gather', [b.initializer(name, Tensor.from(DataType.FLOAT, [m, d], data)), positions], { axis: 0 })[0]!, b.initializer(`${name}_ax`, i64([1]))])[0]!;
  const x4 = b.op('Transpose', [b.op('Reshape', [x, b.initializer('shape', i64([0, -1, 2, d]))])[0]!], { perm: [0, 2, 1, 3] })[0]!;
  const half = (from: number, to: number) => b.op('Slice', [x4, b.initializer(b.fresh('starts'), i64([from])), b.initializer(b.fresh('ends'), i64([to])), b.initializer(b.fresh('axes'), i64([3]))])[0]!;
  const [hi, lo] = edit.swappedHalves ? [half(0, d / 2), half(d / 2, 1e9)] : [half(d / 2, 1e9), half(0, d / 2)];
  const rot = b.op('Concat', [b.op('Neg', [hi])[0]!, lo], { axis: -1 })[0]!;
  const y = b.op('Add', [b.op('Mul', [x4, table('cos', cos)])[0]!, b.op('Mul', [rot, table('sin', sin)])[0]!])[0]!;
  b.output(y, 'y', 'float32', ['batch', 2, 'seq', d]);
  return b.model();
}

describe('near misses', () => {
  const attention = async (m: Model, target: FusionTarget = 'microsoft') => {
    const ctx = testContext('fuse-attention');
    if (target === 'generic') upgradeOpset(m, 23);
    const r = await fuseAttention.run(m, { target, maxIterations: 10 }, ctx);
    return { fused: r.stats?.fused, reasons: ctx.explanations.map((e) => e.reason).join('\n') };
  };

  it('a plain block fuses (the baseline of the cases below) and keeps its outputs; K/V from another tensor give MultiHeadAttention', async () => {
    const feed = { x: { type: 'float32' as const, dims: [2, 5, 16], data: f32([2, 5, 16], 5).toFloat32() } };
    for (const [kvFrom, op] of [['x', 'Attention'], ['x2', 'MultiHeadAttention']] as const) {
      const base = attentionBlock({ kvFrom });
      const m = cloneModel(base);
      expect((await attention(m)).fused).toBe(1);
      expect(opCount(m, op)).toBe(1);
      expect(relativeError(await runModel(base, feed), await runModel(m, feed))).toBeLessThan(1e-5);
    }
  });

  it('attention: Softmax over another axis, probabilities read elsewhere, different head splits, an unknown mask, a non-causal Where', async () => {
    expect(await attention(attentionBlock({ softmaxAxis: 2 }))).toMatchObject({ fused: 0 });
    const probs = await attention(attentionBlock({ probsOut: true }));
    expect(probs.fused).toBe(0);
    expect(await attention(attentionBlock({ heads: [2, 4] }))).toMatchObject({ fused: 0, reasons: expect.stringMatching(/different heads/) });
    expect(await attention(attentionBlock({ mask: 'input' }))).toMatchObject({ fused: 0, reasons: expect.stringMatching(/neither a padding mask .* nor a causal buffer/) });
    // the generic form takes any additive mask
    expect((await attention(attentionBlock({ mask: 'input' }), 'generic')).fused).toBe(1);
    expect(await attention(attentionBlock({ mask: 'triangularWrong' }))).toMatchObject({ fused: 0, reasons: expect.stringMatching(/not a Slice of a lower-triangular/) });
  });

  it('rotary: the rotate_half form with a constant start fuses into RotaryEmbedding before the head split and keeps its outputs; other caches, position_ids inputs and swapped halves stay', async () => {
    const rotary = async (m: Model) => {
      const ctx = testContext('fuse-rotary');
      const r = await fuseRotary.run(m, { target: 'microsoft', maxIterations: 10 }, ctx);
      return { fused: r.stats?.fused ?? 0, reasons: ctx.explanations.map((e) => e.reason).join('\n') };
    };
    const feed = { x: { type: 'float32' as const, dims: [2, 5, 16], data: f32([2, 5, 16], 5).toFloat32() } };
    for (const start of [0, 3]) {
      const base = rotaryBlock({ start });
      const m = cloneModel(base);
      const r = await rotary(m);
      expect(r.fused, r.reasons).toBe(1);
      expect([opCount(m, 'RotaryEmbedding'), opCount(m, 'Neg'), opCount(m, 'Concat')]).toEqual([1, 0, 0]);
      expect(checkModel(m)).toEqual([]);
      expect(relativeError(await runModel(base, feed), await runModel(m, feed))).toBeLessThan(1e-6);
    }
    expect((await rotary(rotaryBlock({ halvesDiffer: true }))).reasons).toMatch(/does not repeat its first half/);
    expect((await rotary(rotaryBlock({ positionIds: true }))).reasons).toMatch(/positions are not Range/);
    expect((await rotary(rotaryBlock({ swappedHalves: true }))).reasons).toMatch(/halves are not/);
    const generic = testContext('fuse-rotary');
    expect(await fuseRotary.run(rotaryBlock(), { target: 'generic', maxIterations: 10 }, generic)).toEqual({ changed: false });
    expect(generic.explanations[0]!.reason).toMatch(/no generic form/);
  });

  it('skip-layer-norm: a bias (constant) Add, a LayerNormalization over a middle axis, a sum that is a graph output', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', [1, 4, 8]);
    const y = b.input('y', 'float32', [1, 4, 8]);
    const g = b.initializer('g', f32([8], 1));
    const ln1 = b.op('LayerNormalization', [b.op('Add', [x, b.initializer('c', f32([8], 2))])[0]!, g], { axis: -1 })[0]!;
    const ln2 = b.op('LayerNormalization', [b.op('Add', [x, y])[0]!, b.initializer('g4', f32([4, 8], 3))], { axis: 1 })[0]!;
    const sum = b.op('Add', [ln1, y])[0]!;
    const ln3 = b.op('LayerNormalization', [sum, g], { axis: -1 })[0]!;
    b.output(ln2, 'a');
    b.output(ln3, 'b');
    b.output(sum, 'sum');
    const ctx = testContext('fuse-skip-layer-norm');
    expect(await fuseSkipLayerNorm.run(b.model(), { target: 'microsoft', maxIterations: 10 }, ctx)).toMatchObject({ changed: false });
    const reasons = ctx.explanations.map((e) => e.reason).join('\n');
    expect(reasons).toMatch(/is a constant/);
    expect(reasons).toMatch(/scale is not a constant vector|not the last axis/);
    expect(reasons).toMatch(/sum is a graph output/);
  });

  it('bias-gelu: Gelu of a sum of two computed tensors stays; rms-norm: a mean over another axis or a shared square stays', async () => {
    const b = new GraphBuilder({ opset: 20 });
    const x = b.input('x', 'float32', [2, 4, 8]);
    const y = b.input('y', 'float32', [2, 4, 8]);
    b.output(b.op('Gelu', [b.op('Add', [x, y])[0]!])[0]!, 'g');
    const rms = (axes: number[], shareSquare: boolean, name: string) => {
      const sq = b.op('Pow', [x, b.initializer(`${name}_two`, scalar(2))])[0]!;
      const ms = b.op('ReduceMean', [sq], { axes, keepdims: 1 })[0]!;
      const r = b.op('Reciprocal', [b.op('Sqrt', [b.op('Add', [ms, b.initializer(`${name}_eps`, scalar(1e-6))])[0]!])[0]!])[0]!;
      b.output(b.op('Mul', [b.initializer(`${name}_g`, f32([8], 4)), b.op('Mul', [x, r])[0]!])[0]!, name);
      if (shareSquare) b.output(sq, `${name}_sq`);
    };
    rms([1], false, 'axis1');
    rms([-1], true, 'shared');
    const m = b.model();
    const c1 = testContext('fuse-bias-gelu');
    expect(await fuseBiasGelu.run(m, { target: 'microsoft', maxIterations: 10 }, c1)).toMatchObject({ changed: false });
    expect(c1.explanations[0]!.reason).toMatch(/no constant 1-D bias/);
    const c2 = testContext('fuse-rms-norm');
    expect(await fuseRmsNorm.run(m, { target: 'microsoft', maxIterations: 10 }, c2)).toMatchObject({ changed: false });
    const reasons = c2.explanations.map((e) => e.reason).join('\n');
    expect(reasons).toMatch(/axes \[1\] are not the last axis/);
    expect(reasons).toMatch(/readers outside the RMSNorm/);
  });
});

describe('optimize --preset transformer', () => {
  it('writes com.microsoft operators by default and standard opset-23 ones with --target generic; --explain names the near misses', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'onnxforge-transformer-'));
    const src = join(dir, 'llama.onnx');
    await saveModel(transformerVariant('llama-ts17').build(), src);
    const ms = await runCli(['optimize', src, '-o', join(dir, 'ms.onnx'), '--preset', 'transformer', '--explain']);
    expect(ms.code).toBe(0);
    expect(ms.out).toMatch(/fuse-rms-norm .*fused=5/);
    expect(ms.out).toMatch(/fuse-rotary .*fused=4/);
    expect(ms.out).toMatch(/fuse-attention .*fused=2/);
    const gen = await runCli(['optimize', src, '-o', join(dir, 'gen.onnx'), '--preset', 'transformer', '--target', 'generic', '--explain']);
    expect(gen.code).toBe(0);
    expect(gen.out).toMatch(/fuse-rotary .*no generic form/);
    const m = await loadModel(join(dir, 'gen.onnx'));
    expect(m.opset('')).toBe(23);
    expect([opCount(m, 'Attention'), opCount(m, 'RMSNormalization')]).toEqual([2, 5]);
    const bad = await runCli(['optimize', src, '-o', join(dir, 'x.onnx'), '--preset', 'transformer', '--target', 'cuda']);
    expect(bad.code).toBe(2);
  });
});
