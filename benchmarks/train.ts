/**
 * Training-step throughput and memory: `npm run bench:train`.
 *
 * For two small CNNs (conv, depthwise conv, hard-swish, pooling, Gemm) it prints, side by side:
 * steps per second of the training graph (forward + backward + Adam in one onnxruntime session),
 * the time of one inference forward on the same batch and the ratio step / forward, the step time
 * when parameters and state are copied through fresh JS arrays between steps instead of fed back as
 * ort.Tensors, and the process's peak resident memory.
 */
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../ir/builder.js';
import { DataType } from '../core/dtype.js';
import { Model, Value } from '../ir/ir.js';
import { serializeModel } from '../onnx/index.js';
import { Tensor } from '../core/tensor.js';
import { renderTable } from '../report/table.js';
import { Trainer } from '../train/trainer.js';
import { mulberry32 } from '../data/generate.js';

const rng = mulberry32;

interface Config {
  name: string;
  batch: number;
  channels: number;
  size: number;
  classes: number;
  build: (b: GraphBuilder, x: Value, w: (name: string, dims: number[]) => Value) => Value;
}

const convBlock = (b: GraphBuilder, x: Value, w: Value, attrs: Record<string, number | number[]>) => b.op('HardSwish', [b.op('Conv', [x, w], attrs)[0]!])[0]!;

const configs: Config[] = [
  {
    name: 'tiny CNN 1x8x8, batch 32',
    batch: 32,
    channels: 1,
    size: 8,
    classes: 3,
    build: (b, x, w) => {
      const h1 = convBlock(b, x, w('c1', [4, 1, 3, 3]), { pads: [1, 1, 1, 1] });
      const h2 = convBlock(b, h1, w('dw', [4, 1, 3, 3]), { pads: [1, 1, 1, 1], strides: [2, 2], group: 4 });
      const p = b.op('MaxPool', [h2], { kernel_shape: [2, 2], strides: [2, 2] })[0]!;
      const f = b.op('Flatten', [b.op('GlobalAveragePool', [p])[0]!])[0]!;
      return b.op('Gemm', [f, w('fc', [3, 4])], { transB: 1 })[0]!;
    },
  },
  {
    name: 'mobile block 3x32x32, batch 16',
    batch: 16,
    channels: 3,
    size: 32,
    classes: 10,
    build: (b, x, w) => {
      let h = convBlock(b, x, w('stem', [16, 3, 3, 3]), { pads: [1, 1, 1, 1], strides: [2, 2] });
      h = convBlock(b, h, w('dw1', [16, 1, 3, 3]), { pads: [1, 1, 1, 1], group: 16 });
      h = convBlock(b, h, w('pw1', [32, 16, 1, 1]), {});
      h = convBlock(b, h, w('dw2', [32, 1, 3, 3]), { pads: [1, 1, 1, 1], strides: [2, 2], group: 32 });
      h = convBlock(b, h, w('pw2', [64, 32, 1, 1]), {});
      h = b.op('AveragePool', [h], { kernel_shape: [2, 2], strides: [2, 2] })[0]!;
      const f = b.op('Flatten', [b.op('GlobalAveragePool', [h])[0]!])[0]!;
      return b.op('Gemm', [f, w('fc', [10, 64]), w('fc_b', [10])], { transB: 1 })[0]!;
    },
  },
];

function buildModel(c: Config): Model {
  const rand = rng(1);
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('image', 'float32', [c.batch, c.channels, c.size, c.size]);
  const w = (name: string, dims: number[]) => {
    const fanIn = dims.length > 1 ? dims.slice(1).reduce((p, d) => p * d, 1) : 1;
    const n = dims.reduce((p, d) => p * d, 1);
    return b.initializer(name, Tensor.from(DataType.FLOAT, dims, Float32Array.from({ length: n }, () => ((rand() * 2 - 1) * 1.7) / Math.sqrt(fanIn))));
  };
  b.output(c.build(b, x, w), 'logits', 'float32', [c.batch, c.classes]);
  return b.model();
}

function batchOf(c: Config, rand: () => number): Record<string, ort.Tensor> {
  const n = c.batch * c.channels * c.size * c.size;
  return {
    image: new ort.Tensor('float32', Float32Array.from({ length: n }, () => rand() - 0.5), [c.batch, c.channels, c.size, c.size]),
    label: new ort.Tensor('int64', BigInt64Array.from({ length: c.batch }, () => BigInt(Math.floor(rand() * c.classes))), [c.batch]),
  };
}

async function timeIt(n: number, f: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(5, n); i++) await f();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await f();
  return (performance.now() - t0) / n;
}

const steps = Number(process.env.BENCH_TRAIN_STEPS ?? 200);
const rows: string[][] = [];
for (const c of configs) {
  const model = buildModel(c);
  const rand = rng(2);
  const batch = batchOf(c, rand);
  const trainer = await Trainer.create(model, {
    inputs: { image: { dims: [c.batch, c.channels, c.size, c.size] } },
    losses: [{ kind: 'cross-entropy', output: 'logits', labels: 'label' }],
    optimizer: { kind: 'adam' },
    session: { intraOpNumThreads: 1 },
  });
  const fit = await trainer.fit({ steps, batch: () => batch, lr: 1e-3 });
  const stepMs = (fit.seconds * 1000) / steps;

  // the same step, copying parameters and state through fresh JS arrays each time
  const copying = await Trainer.create(model, {
    inputs: { image: { dims: [c.batch, c.channels, c.size, c.size] } },
    losses: [{ kind: 'cross-entropy', output: 'logits', labels: 'label' }],
    optimizer: { kind: 'adam' },
    session: { intraOpNumThreads: 1 },
  });
  const copyMs = await timeIt(steps, async () => {
    await copying.step(batch, 1e-3);
    copying.restore(copying.snapshot());
  });

  const inf = await ort.InferenceSession.create(serializeModel(model), { intraOpNumThreads: 1 });
  const fwdMs = await timeIt(steps, () => inf.run({ image: batch.image! }));
  const nodes = trainer.graph.model.graph.nodes.length;
  rows.push([c.name, String(model.graph.nodes.length), String(nodes), (1000 / stepMs).toFixed(1), stepMs.toFixed(2), fwdMs.toFixed(3), (stepMs / fwdMs).toFixed(1), copyMs.toFixed(2), (copyMs / stepMs).toFixed(2)]);
  await inf.release();
  await trainer.dispose();
  await copying.dispose();
}
const peakMb = process.resourceUsage().maxRSS / 1024;
console.log(`training benchmark: ${steps} Adam steps per model, 1 intra-op thread, onnxruntime-node ${ort.env.versions?.common ?? ''}`);
console.log(renderTable(['model', 'nodes (infer)', 'nodes (train)', 'steps/s', 'ms/step', 'ms/forward', 'step/forward', 'ms/step (copying)', 'copying/fed-back'], rows));
console.log(`peak resident memory: ${peakMb.toFixed(0)} MB`);
