/**
 * The default distillation recipe on a small image classifier built here (not one it was tuned on):
 * `distill --prune-channels R` with no other option prunes with prune-channels' defaults, matches
 * features on the kept channels, augments the image input (cached copies, fresh half-batches,
 * 180-degree turns) and trains; the pass in a pipeline (`prune-channels`, then `distill` taught by
 * the model before pruning) does the same from the same schema defaults.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Sample } from '../../data/index.js';
import { GraphBuilder } from '../../ir/builder.js';
import { DataType } from '../../core/dtype.js';
import { constantOf, type Model } from '../../ir/ir.js';
import { cloneModel, loadModelSync, saveModel } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import { mulberry32 } from '../../data/generate.js';
import { DISTILL_OPTIONS, DistillModelReport } from '../../passes/distill/distill.js';
import { optimize } from '../../passes/manager.js';
import { convInputFeatures } from '../../train/distill.js';
import { runCli } from '../helpers/run-cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'distill-recipe-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** x [N, 3, 8, 8] -> 3 x (Conv 3x3, 16 channels, Relu) -> GlobalAveragePool -> Flatten -> Gemm -> Softmax. */
function convClassifier(seed: number): Model {
  const rand = mulberry32(seed);
  const w = (dims: number[], scale: number) => Tensor.from(DataType.FLOAT, dims, Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => (rand() * 2 - 1) * scale));
  const b = new GraphBuilder({ opset: 17 });
  let h = b.input('x', 'float32', ['N', 3, 8, 8]);
  let cin = 3;
  for (let i = 0; i < 3; i++) {
    h = b.op('Conv', [h, b.initializer(`w${i}`, w([16, cin, 3, 3], 0.6)), b.initializer(`b${i}`, w([16], 0.1))], { pads: [1, 1, 1, 1] }, { name: `conv${i}` })[0]!;
    h = b.op('Relu', [h], {}, { name: `relu${i}` })[0]!;
    cin = 16;
  }
  const pooled = b.op('Flatten', [b.op('GlobalAveragePool', [h])[0]!])[0]!;
  const logits = b.op('Gemm', [pooled, b.initializer('wf', w([16, 4], 1.5)), b.initializer('bf', w([4], 0.1))])[0]!;
  b.output(b.op('Softmax', [logits], { axis: -1 })[0]!, 'probs');
  return b.model();
}

function images(n: number, seed: number): Sample[] {
  const rand = mulberry32(seed);
  return Array.from({ length: n }, (_, i) => ({ id: `img${i}`, feed: { x: { type: 'float32' as const, dims: [1, 3, 8, 8], data: Float32Array.from({ length: 192 }, () => rand() * 2 - 1) } } }));
}

describe('the default distillation recipe on a classifier it was not tuned on', () => {
  it('matches features every keptFeatures-th full Conv input, deduplicated, none from a graph input', () => {
    const m = convClassifier(1);
    const relu = (i: number) => m.graph.nodes.find((n) => n.name === `relu${i}`)!.outputs[0]!.name;
    expect(convInputFeatures(m, 1)).toEqual([relu(0), relu(1)]);
    expect(convInputFeatures(m, 2)).toEqual([relu(0)]);
    expect(convInputFeatures(m, 0)).toEqual([]);
  });

  it('distill --prune-channels with no other option: pruned by the defaults, kept-channel features, augmented images, trained', async () => {
    const teacher = path.join(tmp, 'teacher.onnx');
    await saveModel(convClassifier(1), teacher);
    const out = path.join(tmp, 'student.onnx');
    const r = await runCli(['distill', '--teacher', teacher, '--prune-channels', '0.3', '--data', 'random:20:4', '--shape', 'N=1', '--epochs', '1', '--threads', '1', '--latency-runs', '2', '--json', '-o', out]);
    expect(r.err).not.toMatch(/error/);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.out) as { pruning: { channelsBefore: number; channelsAfter: number; roundTo: number }; distill: DistillModelReport };
    // 48 channels in three groups of 16: 30% is 14, in blocks of 8 -> two groups keep 8
    expect(rep.pruning.roundTo).toBe(8);
    expect(rep.pruning.channelsBefore - rep.pruning.channelsAfter).toBe(16);
    expect(rep.distill.keptFeatures).toBe(1);
    expect(rep.distill.features).toHaveLength(1);
    expect(rep.distill.augmentation).toEqual({ inputs: ['x'], copies: DISTILL_OPTIONS.augment.default, online: DISTILL_OPTIONS.online.default, flip: DISTILL_OPTIONS.flip.default });
    // all 20 samples trained on (holdout 0 by default), each with 3 cached copies; no agreement without --eval
    expect(rep.distill.trainingRecords).toBe(20 * (1 + DISTILL_OPTIONS.augment.default));
    expect(rep.distill.heldOut).toBe(0);
    expect((JSON.parse(r.out) as { notes: string[] }).notes[0]).toMatch(/agreement with the teacher left out.*--eval SPEC.*--holdout F/);
    expect(rep.distill.epochs).toHaveLength(2);
    expect(Number.isFinite(rep.distill.epochs[1]!.meanLoss)).toBe(true);
    expect(loadModelSync(out).graph.outputs.map((v) => v.name)).toEqual(['probs']);
  }, 120_000);

  it('--kept-features 0 and --augment 0 --online 0 turn the parts off', async () => {
    const teacher = path.join(tmp, 'teacher2.onnx');
    await saveModel(convClassifier(2), teacher);
    const r = await runCli(['distill', '--teacher', teacher, '--prune-channels', '0.3', '--kept-features', '0', '--augment', '0', '--online', '0', '--data', 'random:10:4', '--shape', 'N=1', '--epochs', '1', '--threads', '1', '--latency-runs', '2', '--json', '-o', path.join(tmp, 's2.onnx')]);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.out) as { distill: DistillModelReport };
    expect(rep.distill.keptFeatures).toBe(0);
    expect(rep.distill.augmentation.copies).toBe(0);
    expect(rep.distill.trainingRecords).toBe(10);
  }, 120_000);

  it('in a pipeline: prune-channels then distill, taught by the model before pruning, with the same defaults', async () => {
    const model = convClassifier(3);
    const before = cloneModel(model);
    const res = await optimize(model, 'prune-channels<ratio=0.3>,distill<epochs=1>', { data: { train: images(12, 5), heldOut: images(6, 6) } });
    const shared = res.records.find((x) => x.pass === 'distill')!;
    expect(shared.stats).toMatchObject({ keptFeatures: 1, records: 12 * (1 + DISTILL_OPTIONS.augment.default) });
    const channels = (m: Model) => m.graph.nodes.filter((n) => n.opType === 'Conv').reduce((a, n) => a + constantOf(n.input(1))!.dims[0]!, 0);
    expect(channels(before)).toBe(48);
    expect(channels(model)).toBe(32);
  }, 120_000);

  it('in a pipeline without a teacher or a prune-channels pass before it: a clear error', async () => {
    await expect(optimize(convClassifier(4), 'distill<epochs=1>', { data: { train: images(4, 5) } })).rejects.toMatchObject({ code: 'DISTILL_NO_TEACHER' });
  });
});
