/**
 * int4 and the transformer preset's fused com.microsoft Attention: with kernel auto or measure the
 * fused Attention is kept and its packed Q/K/V weight is block-quantized and unpacked (constants
 * onnxruntime folds into a float32 weight at load), so the q4 model runs the fp32 model's attention
 * (the trained LM's q4 ran 1.19x / 1.06x of fp32 at seq 1 / 128 with attention left unfused). Checked
 * on outputs: the same codes as with attention unfused (block quantization runs per output column, so
 * packing the columns does not change them), the same outputs within float rounding.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DataType } from '../../core/dtype.js';
import type { Feed } from '../../core/host-tensor.js';
import type { Model } from '../../ir/ir.js';
import { loadModel, saveModel } from '../../onnx/index.js';
import { reference, relativeError } from '../../passes/quantize/int4/probe.js';
import { RULE_NBITS_MIN_K } from '../../passes/quantize/int4/kernels.js';
import { quantizeInt4, quantizesPackedAttention, type QuantizeInt4Options } from '../../passes/quantize/quantize-int4.js';
import { createPassContext } from '../../passes/manager.js';
import { nodeRunner } from '../../runtime/runner.js';
import { Session } from '../../runtime/session.js';
import { fuseTransformer, quantizeInt4Workflow } from '../../workflows/quantize/int4.js';
import { transformerFeed, transformerVariant } from '../models/transformers.js';

const dir = mkdtempSync(join(tmpdir(), 'onnxforge-q4-attention-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ops = (m: Model, op: string) => m.graph.nodes.filter((n) => n.opType === op);

async function q4(model: Model, attentionWeights: boolean, probe: Feed[], options: Partial<QuantizeInt4Options> = {}) {
  const fused = await fuseTransformer(model, { keepWeights: true, attentionWeights });
  const report = await quantizeInt4(fused.model, { calibration: [], probe }, { method: 'rtn', keepInt8: 'none', ...options }, createPassContext());
  return { model: fused.model, step: fused.step, report };
}

describe('int4 with the fused com.microsoft Attention', () => {
  it('which pass options keep a fused Attention: format msft with kernel auto (default) or measure', () => {
    expect(quantizesPackedAttention({})).toBe(true);
    expect(quantizesPackedAttention({ kernel: 'auto' })).toBe(true);
    expect(quantizesPackedAttention({ kernel: 'unpack' })).toBe(false);
    expect(quantizesPackedAttention({ kernel: 'measure' })).toBe(true);
    expect(quantizesPackedAttention({ kernel: 'nbits' })).toBe(false);
    expect(quantizesPackedAttention({ format: 'qdq' })).toBe(false);
  });

  it('kernel auto keeps it only where the kernel table would unpack Q/K/V anyway (K < 768); from hidden 768 on they run as MatMulNBits', () => {
    expect(RULE_NBITS_MIN_K).toBe(768);
    for (const hidden of [128, 256, 512, 640]) expect(quantizesPackedAttention({}, { K: hidden, N: 3 * hidden }), `hidden ${hidden}`).toBe(true);
    for (const hidden of [768, 1024, 4096]) expect(quantizesPackedAttention({ kernel: 'auto' }, { K: hidden, N: 3 * hidden }), `hidden ${hidden}`).toBe(false);
    // measure keeps it (not timed); an explicit kernel or qdq never takes it
    expect(quantizesPackedAttention({ kernel: 'measure' }, { K: 768, N: 2304 })).toBe(true);
    for (const o of [{ kernel: 'nbits' as const }, { kernel: 'unpack' as const }, { format: 'qdq' as const }]) expect(quantizesPackedAttention(o, { K: 128, N: 384 })).toBe(false);
  });

  it('quantize --mode int4 (workflow, defaults) at hidden 768: attention unfused, Q/K/V as MatMulNBits; hidden 128 keeps the fused Attention', async () => {
    const variant = transformerVariant('bert-ts17');
    for (const hidden of [768, 128]) {
      const input = join(dir, `bert-${hidden}.onnx`);
      await saveModel(variant.build({ hidden, heads: hidden / 64, ffn: 2 * hidden, layers: 1, vocab: 256, maxPositions: 64 }), input);
      const r = await quantizeInt4Workflow({ model: input, output: join(dir, `bert-${hidden}-q4.onnx`), latencyRuns: 2, pass: { method: 'rtn', keepInt8: 'none' } });
      const m = await loadModel(join(dir, `bert-${hidden}-q4.onnx`));
      const linear = r.int4.weights.filter((w) => w.op === 'MatMul');
      if (hidden === 768) {
        expect(ops(m, 'Attention').length).toBe(0);
        expect(r.fusion?.reason).toMatch(/left unfused/);
        // Q, K, V, the output projection and the FFN's two: all MatMulNBits
        expect(linear.length).toBe(6);
        expect(linear.every((w) => w.kernel === 'MatMulNBits')).toBe(true);
        expect(ops(m, 'MatMulNBits').length).toBe(6);
      } else {
        expect(ops(m, 'Attention').length).toBe(1);
        expect(r.int4.weights.filter((w) => w.op === 'Attention').map((w) => w.kernel)).toEqual(['unpacked']);
      }
    }
  }, 120_000);

  for (const name of ['gpt2-ts17', 'bert-ts17']) {
    it(`${name}: the packed Q/K/V weight at 4 bits, unpacked and folded at load; outputs as with the Q/K/V projections quantized as MatMuls (attention as MultiHeadAttention)`, async () => {
      const variant = transformerVariant(name);
      const layers = 2;
      const model = variant.build({ layers });
      const probe = [1, 2].map((seed) => transformerFeed(variant, 1, 16, { seed, padded: true }));
      const packed = await q4(model, true, probe);
      const unpacked = await q4(model, false, probe);
      expect(packed.step.fused.Attention).toBe(layers);
      expect(packed.step.reason).not.toMatch(/left unfused/);
      // no packed weight taken: attention fuses unpacked, MultiHeadAttention on the projections, which stay MatMuls
      expect(ops(unpacked.model, 'Attention').length).toBe(0);
      expect(ops(unpacked.model, 'MultiHeadAttention').length).toBe(layers);
      expect(unpacked.step.reason).toMatch(/MultiHeadAttention, its Q\/K\/V projections left as MatMuls/);

      const att = packed.report.weights.filter((w) => w.op === 'Attention');
      expect(att.length).toBe(layers);
      const hidden = 128;
      for (const w of att) {
        expect([w.K, w.N, w.bits, w.kernel]).toEqual([hidden, 3 * hidden, 4, 'unpacked']);
        expect(w.bytes).toBeLessThan(w.floatBytes * 0.2);
      }
      // the Attention weights come from the unpacking subgraph: no float32 [H, 3H] initializer is left
      const g = packed.model.graph;
      for (const n of ops(packed.model, 'Attention')) {
        expect(g.initializerTensor(n.inputs[1]!)).toBeUndefined();
        expect(n.inputs[1]!.producer?.opType).toBe('Reshape');
      }
      expect([...g.initializers.values()].map((v) => g.initializerTensor(v)!).some((t) => t.dataType === DataType.FLOAT && t.dims.join() === `${hidden},${3 * hidden}`)).toBe(false);
      // every weight the unpacked model quantizes is quantized here too: the same number of 4-bit values
      const values = (r: typeof packed.report) => r.weights.filter((w) => w.bits === 4).reduce((a, w) => a + w.K * w.N, 0);
      expect(values(packed.report)).toBe(values(unpacked.report));

      // the same codes: outputs equal to the unpacked q4's within float rounding
      const held = [3, 4].map((seed) => transformerFeed(variant, 1, 24, { seed, padded: true }));
      const ref = await reference(unpacked.model, held, nodeRunner);
      expect(await relativeError(packed.model, ref, nodeRunner)).toBeLessThan(1e-9);

      // onnxruntime folds the unpacking subgraph at load: its optimized graph holds the fp32 model's operators only
      const optimized = join(dir, `${name}-opt.onnx`);
      const file = join(dir, `${name}-q4.onnx`);
      await saveModel(packed.model, file);
      const s = await Session.create(file, { intraOpNumThreads: 1, optimizedModelFilePath: optimized });
      await s.dispose();
      const opt = await loadModel(optimized);
      for (const op of ['Mod', 'BitShift', 'Softmax']) expect(ops(opt, op).length, op).toBe(0);
      expect(ops(opt, 'Attention').length).toBe(layers);
    }, 60_000);
  }

  it('kernel nbits: attention stays unfused so that Q, K and V run as MatMulNBits; format qdq leaves an Attention weight float (reported)', async () => {
    const variant = transformerVariant('gpt2-ts17');
    const model = variant.build({ layers: 2 });
    const probe = [transformerFeed(variant, 1, 16, { seed: 1 })];
    const fused = await fuseTransformer(model, { keepWeights: true, attentionWeights: quantizesPackedAttention({ kernel: 'nbits' }) });
    expect(ops(fused.model, 'Attention').length).toBe(0);
    // an input model that has the fused Attention already, quantized to the standard form
    const withAttention = await q4(model, true, probe, { kernel: 'unpack' });
    const qdq = await quantizeInt4((await fuseTransformer(model, { keepWeights: true, attentionWeights: true })).model, { calibration: [], probe }, { method: 'rtn', keepInt8: 'none', format: 'qdq' }, createPassContext());
    const att = qdq.weights.filter((w) => w.op === 'Attention');
    expect(att.length).toBe(2);
    for (const w of att) {
      expect(w.bits).toBe(0);
      expect(w.reason).toMatch(/format qdq/);
    }
    expect(withAttention.report.weights.filter((w) => w.op === 'Attention' && w.bits === 4).length).toBe(2);
  }, 60_000);

  it('quantize --mode int4 (workflow, defaults): the written q4 keeps the fused Attention and stays small', async () => {
    const variant = transformerVariant('gpt2-ts17');
    const input = join(dir, 'gpt2.onnx');
    await saveModel(variant.build({ layers: 2 }), input);
    const r = await quantizeInt4Workflow({ model: input, output: join(dir, 'gpt2-q4.onnx'), latencyRuns: 2, pass: { method: 'rtn' } });
    expect(r.fusion?.fused.Attention).toBe(2);
    const m = await loadModel(join(dir, 'gpt2-q4.onnx'));
    expect(ops(m, 'Attention').length).toBe(2);
    expect(ops(m, 'Softmax').length).toBe(0);
    // every linear weight quantized (the packed Q/K/V included): a 2-layer toy with 8-bit ends and float norms
    expect(r.int4.weights.filter((w) => w.op !== 'Gather').every((w) => w.bits > 0)).toBe(true);
    expect(r.size.ratio).toBeLessThan(0.22);
    // as accurate as without the preset (a random-weight toy: int4 RTN keeps ~8 dB either way)
    const plain = await quantizeInt4Workflow({ model: input, output: join(dir, 'gpt2-q4-plain.onnx'), latencyRuns: 2, fuseTransformer: false, pass: { method: 'rtn' } });
    expect(r.outputs[0]!.sqnrDb).toBeGreaterThan(plain.outputs[0]!.sqnrDb - 0.5);
  }, 60_000);
});
