/**
 * Losses, optimizers and the training loop: loss gradients against central differences, linear
 * regression with SGD against the closed-form least-squares solution, a small CNN (conv, depthwise
 * conv, hard-swish, pooling, Gemm) trained with Adam on a synthetic task, and the errors.
 */
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { DataType } from '../../core/dtype.js';
import { Model } from '../../ir/ir.js';
import { serializeModel, loadModelSync } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import { buildTrainingGraph } from '../../train/autodiff/training.js';
import { LossSpec } from '../../train/autodiff/losses.js';
import { probeShapes, Trainer } from '../../train/trainer.js';
import { rng } from './gradcheck.js';

function f64(dims: number[], rand: () => number, scale = 1): Tensor {
  return Tensor.from(DataType.DOUBLE, dims, Float64Array.from({ length: dims.reduce((p, x) => p * x, 1) }, () => (rand() * 2 - 1) * scale));
}

function linearModel(d: number, k: number, rand: () => number): Model {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float64', [8, d]);
  const w = b.initializer('W', f64([d, k], rand));
  const bias = b.initializer('B', f64([k], rand));
  const [z] = b.op('Gemm', [x, w, bias]);
  b.output(z!, 'z', 'float64');
  return b.model();
}

describe('loss gradients match central differences', () => {
  const rand = rng(7);
  const n = 8;
  const k = 4;
  const labels = new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(i % k)), [n]);
  const rows = (m: number) => Float64Array.from({ length: n * m }, () => rand() * 2 - 1);
  const soft = (() => {
    const a = Float64Array.from({ length: n * k }, () => rand());
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < k; j++) s += a[i * k + j]!;
      for (let j = 0; j < k; j++) a[i * k + j]! /= s;
    }
    return a;
  })();
  const cases: Array<{ name: string; losses: LossSpec[]; extra: Record<string, ort.Tensor> }> = [
    { name: 'mse', losses: [{ kind: 'mse', output: 'z', target: 't' }], extra: { t: new ort.Tensor('float64', rows(k), [n, k]) } },
    { name: 'cross-entropy (integer labels)', losses: [{ kind: 'cross-entropy', output: 'z', labels: 'y' }], extra: { y: labels } },
    { name: 'cross-entropy (soft targets)', losses: [{ kind: 'cross-entropy', output: 'z', labels: 'p', soft: true }], extra: { p: new ort.Tensor('float64', soft, [n, k]) } },
    { name: 'kl-divergence T=3', losses: [{ kind: 'kl-divergence', output: 'z', teacher: 'zt', temperature: 3 }], extra: { zt: new ort.Tensor('float64', rows(k).map((v) => 4 * v), [n, k]) } },
    {
      name: 'weighted distillation mix',
      losses: [
        { kind: 'cross-entropy', output: 'z', labels: 'y', weight: 0.3 },
        { kind: 'kl-divergence', output: 'z', teacher: 'zt', temperature: 2, weight: 0.7 },
      ],
      extra: { y: labels, zt: new ort.Tensor('float64', rows(k), [n, k]) },
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const model = linearModel(3, k, rand);
      const shapes = await probeShapes(model, { x: { dims: [n, 3] } });
      const tg = buildTrainingGraph(model, { shapes, losses: c.losses, optimizer: { kind: 'sgd' } });
      const s = await ort.InferenceSession.create(serializeModel(tg.model));
      const x = new ort.Tensor('float64', rows(3), [n, 3]);
      const W = Float64Array.from(tg.params.find((p) => p.name === 'W')!.initial.data() as Float64Array);
      const B = Float64Array.from(tg.params.find((p) => p.name === 'B')!.initial.data() as Float64Array);
      const run = async (w: Float64Array, lr: number) =>
        s.run({ x, ...c.extra, W: new ort.Tensor('float64', w, [3, k]), B: new ort.Tensor('float64', B, [k]), lr: new ort.Tensor('float64', Float64Array.of(lr), []), step: new ort.Tensor('float64', Float64Array.of(1), []) });
      const out = await run(W, 1);
      const updated = out['W.updated']!.data as Float64Array;
      const eps = 1e-6;
      let err = 0;
      for (let j = 0; j < W.length; j++) {
        const wp = Float64Array.from(W);
        wp[j] = W[j]! + eps;
        const lp = Number((await run(wp, 0)).loss!.data[0]);
        wp[j] = W[j]! - eps;
        const lm = Number((await run(wp, 0)).loss!.data[0]);
        err = Math.max(err, Math.abs((lp - lm) / (2 * eps) - (W[j]! - updated[j]!)));
      }
      console.log(`loss gradcheck float64 ${err.toExponential(2)}  ${c.name}`);
      expect(err).toBeLessThan(1e-7);
      await s.release();
    });
  }
});

describe('training loop', () => {
  it('linear regression with SGD + momentum reaches the closed-form least-squares solution', async () => {
    const rand = rng(11);
    const n = 64;
    const d = 3;
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float64', [n, d]);
    const w = b.initializer('W', Tensor.from(DataType.DOUBLE, [d, 1], new Float64Array(d)));
    const bias = b.initializer('B', Tensor.from(DataType.DOUBLE, [1], new Float64Array(1)));
    b.output(b.op('Gemm', [x, w, bias])[0]!, 'y', 'float64');
    const model = b.model();
    const X = Float64Array.from({ length: n * d }, () => rand() * 2 - 1);
    const truth = [1.5, -2, 0.7];
    const T = Float64Array.from({ length: n }, (_, i) => truth.reduce((s, t, j) => s + t * X[i * d + j]!, 0.3) + 0.1 * (rand() - 0.5));
    // closed form: solve (A^T A) p = A^T t with A = [X, 1]
    const m = d + 1;
    const ata = Array.from({ length: m }, () => new Array<number>(m + 1).fill(0));
    for (let i = 0; i < n; i++) {
      const row = [...X.subarray(i * d, i * d + d), 1];
      for (let r = 0; r < m; r++) {
        for (let c = 0; c < m; c++) ata[r]![c]! += row[r]! * row[c]!;
        ata[r]![m]! += row[r]! * T[i]!;
      }
    }
    for (let p = 0; p < m; p++) {
      for (let r = 0; r < m; r++) {
        if (r === p) continue;
        const f = ata[r]![p]! / ata[p]![p]!;
        for (let c = p; c <= m; c++) ata[r]![c]! -= f * ata[p]![c]!;
      }
    }
    const exact = ata.map((row, i) => row[m]! / row[i]!);

    const trainer = await Trainer.create(model, { inputs: { x: { dims: [n, d] } }, losses: [{ kind: 'mse', output: 'y', target: 't' }], optimizer: { kind: 'sgd', momentum: 0.9 } });
    const batch = { x: new ort.Tensor('float64', X, [n, d]), t: new ort.Tensor('float64', T, [n, 1]) };
    const fit = await trainer.fit({ steps: 300, batch: () => batch, lr: 0.1, progress: false });
    const trained = [...(trainer.param('W').data() as Float64Array), ...(trainer.param('B').data() as Float64Array)];
    const err = Math.max(...trained.map((v, i) => Math.abs(v - exact[i]!)));
    console.log(`linear regression: max |param - closed form| = ${err.toExponential(2)} after ${fit.losses.length} steps, final loss ${fit.losses.at(-1)!.toExponential(3)}`);
    expect(err).toBeLessThan(1e-3);
    expect(fit.losses.at(-1)!).toBeLessThan(fit.losses[0]!);
    await trainer.dispose();
  });

  it('trains a small CNN (conv, depthwise conv, hard-swish, pooling, Gemm) to >= 90% accuracy and exports a clean inference model', async () => {
    const { model, makeBatch } = smallCnnTask();
    const batchSize = 32;
    const trainer = await Trainer.create(model, {
      inputs: { image: { dims: [batchSize, 1, 8, 8] } },
      losses: [{ kind: 'cross-entropy', output: 'logits', labels: 'label' }],
      optimizer: { kind: 'adam' },
    });
    expect(trainer.graph.params.map((p) => p.name).sort()).toEqual(['bn_b', 'bn_s', 'c1_b', 'c1_w', 'dw_w', 'fc_b', 'fc_w'].sort());
    const rand = rng(5);
    const fit = await trainer.fit({ steps: 160, batch: () => makeBatch(batchSize, rand), lr: (i) => (i < 120 ? 0.02 : 0.005), progress: false });
    const exported = trainer.toInferenceModel();
    // no training op left: same ops, same inputs and outputs as the inference model
    expect(exported.graph.nodes.map((n) => n.opType)).toEqual(model.graph.nodes.map((n) => n.opType));
    expect(exported.graph.inputs.map((v) => v.name)).toEqual(['image']);
    expect(exported.graph.outputs.map((v) => v.name)).toEqual(['logits']);
    const reloaded = loadModelSync(serializeModel(exported));
    const s = await ort.InferenceSession.create(serializeModel(reloaded));
    const test = makeBatch(256, rng(99));
    const logits = (await s.run({ image: test.image })).logits!.data as Float32Array;
    const labels = test.label.data as BigInt64Array;
    let correct = 0;
    for (let i = 0; i < 256; i++) {
      const row = logits.subarray(i * 3, i * 3 + 3);
      if (row.indexOf(Math.max(...row)) === Number(labels[i])) correct++;
    }
    const acc = correct / 256;
    console.log(`small CNN: accuracy ${(acc * 100).toFixed(1)}% on 256 held-out samples; loss ${fit.losses[0]!.toFixed(3)} -> ${fit.losses.at(-1)!.toFixed(3)}; ${fit.stepsPerSecond.toFixed(1)} steps/s`);
    expect(acc).toBeGreaterThanOrEqual(0.9);
    await s.release();
    await trainer.dispose();
  });

  it('names the node when an op on the path has no gradient rule', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', [2, 3]);
    const w = b.initializer('W', Tensor.from(DataType.FLOAT, [3, 3], new Float32Array(9).fill(0.1)));
    const [h] = b.op('MatMul', [x, w]);
    const [e] = b.op('Sin', [h!], {}, { name: 'the_sin' });
    b.output(e!, 'y');
    const model = b.model();
    const shapes = await probeShapes(model, { x: { dims: [2, 3] } });
    expect(() => buildTrainingGraph(model, { shapes, losses: [{ kind: 'mse', output: 'y' }], optimizer: { kind: 'sgd' } })).toThrow(
      expect.objectContaining({ code: 'AUTODIFF_NO_RULE', message: expect.stringContaining('the_sin') }),
    );
  });

  it('refuses models below opset 13 with a code', async () => {
    const model = linearModel(2, 2, rng(1));
    model.setOpset('', 11);
    const shapes = await probeShapes(model, { x: { dims: [8, 2] } });
    expect(() => buildTrainingGraph(model, { shapes, losses: [{ kind: 'mse', output: 'z' }], optimizer: { kind: 'sgd' } })).toThrow(expect.objectContaining({ code: 'AUTODIFF_OPSET' }));
  });
});

/**
 * Synthetic task on 8x8 images: class 0 = a horizontal bar, 1 = a vertical bar, 2 = a 3x3 blob, at a
 * random place, plus noise. The model: Conv 3x3 (1->4) + BN + HardSwish, depthwise Conv 3x3 stride 2
 * + HardSwish, MaxPool 2x2, GlobalAveragePool, Flatten, Gemm (4->3). Weights are Constant nodes and
 * initializers (both become parameters).
 */
export function smallCnnTask(): { model: Model; makeBatch: (n: number, rand: () => number) => { image: ort.Tensor; label: ort.Tensor } } {
  const rand = rng(3);
  const f32 = (dims: number[], scale: number, offset = 0) => Tensor.from(DataType.FLOAT, dims, Float32Array.from({ length: dims.reduce((p, x) => p * x, 1) }, () => offset + (rand() * 2 - 1) * scale));
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('image', 'float32', [undefined, 1, 8, 8]);
  const [c1] = b.op('Conv', [x, b.initializer('c1_w', f32([4, 1, 3, 3], 0.5)), b.initializer('c1_b', f32([4], 0.1))], { pads: [1, 1, 1, 1] });
  const [bn] = b.op('BatchNormalization', [c1!, b.initializer('bn_s', f32([4], 0.1, 1)), b.initializer('bn_b', f32([4], 0.1)), b.initializer('bn_m', f32([4], 0)), b.initializer('bn_v', f32([4], 0, 1))]);
  const [h1] = b.op('HardSwish', [bn!]);
  const [dw] = b.op('Conv', [h1!, b.constant('dw_w', f32([4, 1, 3, 3], 0.5))], { group: 4, pads: [1, 1, 1, 1], strides: [2, 2] });
  const [h2] = b.op('HardSwish', [dw!]);
  const [mp] = b.op('MaxPool', [h2!], { kernel_shape: [2, 2], strides: [2, 2] });
  const [gap] = b.op('GlobalAveragePool', [mp!]);
  const [fl] = b.op('Flatten', [gap!]);
  const [logits] = b.op('Gemm', [fl!, b.initializer('fc_w', f32([3, 4], 0.5)), b.initializer('fc_b', f32([3], 0))], { transB: 1 });
  b.output(logits!, 'logits', 'float32', [undefined, 3]);
  const model = b.model();
  const makeBatch = (n: number, r: () => number) => {
    const img = new Float32Array(n * 64);
    const lab = new BigInt64Array(n);
    for (let i = 0; i < n; i++) {
      const cls = Math.floor(r() * 3);
      lab[i] = BigInt(cls);
      const o = i * 64;
      for (let p = 0; p < 64; p++) img[o + p] = 0.3 * (r() - 0.5);
      const a = 1 + Math.floor(r() * 6);
      const c = 1 + Math.floor(r() * 6);
      if (cls === 0) for (let j = 0; j < 8; j++) img[o + a * 8 + j]! += 1;
      else if (cls === 1) for (let j = 0; j < 8; j++) img[o + j * 8 + c]! += 1;
      else for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) img[o + (a + dy) * 8 + c + dx]! += 1;
    }
    return { image: new ort.Tensor('float32', img, [n, 1, 8, 8]), label: new ort.Tensor('int64', lab, [n]) };
  };
  return { model, makeBatch };
}
