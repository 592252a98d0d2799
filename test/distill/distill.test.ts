/**
 * Knowledge distillation on a small built teacher/student pair (MLPs ending in a Softmax) and
 * synthetic inputs: agreement with the teacher on held-out inputs rises, the written student is the
 * trained one, the record cache spilled to disk gives the same training as in memory and leaves no
 * file behind, batch-norm statistics are re-estimated, features and labels add their terms, and each
 * bad input (outputs of different shapes, an op without a gradient rule, a diverging loss) is a clear
 * error that leaves the student unchanged.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Sample } from '../../data/index.js';
import { GraphBuilder } from '../../ir/builder.js';
import { DataType } from '../../core/dtype.js';
import { isOnnxForgeError } from '../../core/errors.js';
import { constantOf, Model } from '../../ir/ir.js';
import { cloneModel, serializeModel } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import { optimize } from '../../passes/manager.js';
import { distillSettings, parseFeaturePairs } from '../../passes/distill/distill.js';
import { adaptBatchNorm, AugmentOptions, augmentImage, distill, findLogits, RecordCache } from '../../train/distill.js';
import { argmaxRows } from '../../runtime/metrics.js';
import { Session } from '../../runtime/session.js';
import { mulberry32 } from '../../data/generate.js';
import { distillModel } from '../../passes/api.js';

const D = 8;
const ONE = { intraOpNumThreads: 1 };
/** Runtime settings: the given options over the distill pass's schema defaults. */
const S = distillSettings;
const NO_AUG: AugmentOptions = { copies: 0, shift: 0, crop: 0, brightness: 0, contrast: 0, flip: 0, online: 0, mixup: 0 };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'distill-test-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function weights(rand: () => number, dims: number[], scale: number): Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  return Tensor.from(DataType.FLOAT, dims, Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale));
}

interface MlpOptions {
  seed: number;
  hidden?: number;
  classes?: number;
  /** BatchNormalization after the first layer. */
  bn?: boolean;
  /** An op between the layers (e.g. Sin, which has no gradient rule). */
  middle?: string;
  /** Reshape the Softmax output ([N, C] -> [N, 1, C]), as upgrade-opset leaves PaddleOCR's. */
  reshapeOut?: boolean;
  opset?: number;
}

/** x [N, 8] -> Gemm -> (BN) -> Relu -> (middle) -> Gemm -> logits -> Softmax -> probs. */
function mlp(o: MlpOptions): Model {
  const rand = mulberry32(o.seed);
  const h = o.hidden ?? 16;
  const k = o.classes ?? 3;
  const b = new GraphBuilder({ opset: o.opset ?? 17 });
  const x = b.input('x', 'float32', ['N', D]);
  let y = b.op('Gemm', [x, b.initializer('w1', weights(rand, [D, h], 1.2)), b.initializer('b1', weights(rand, [h], 0.3))])[0]!;
  y.name = 'hidden_pre';
  if (o.bn) {
    const mean = Tensor.from(DataType.FLOAT, [h], new Float32Array(h).fill(0.5));
    const variance = Tensor.from(DataType.FLOAT, [h], new Float32Array(h).fill(4));
    y = b.op('BatchNormalization', [y, b.initializer('bn_s', Tensor.from(DataType.FLOAT, [h], new Float32Array(h).fill(1))), b.initializer('bn_b', Tensor.from(DataType.FLOAT, [h], new Float32Array(h))), b.initializer('bn_m', mean), b.initializer('bn_v', variance)])[0]!;
  }
  y = b.op('Relu', [y])[0]!;
  y.name = 'hidden';
  if (o.middle) y = b.op(o.middle, [y])[0]!;
  const logits = b.op('Gemm', [y, b.initializer('w2', weights(rand, [h, k], 1.5)), b.initializer('b2', weights(rand, [k], 0.2))])[0]!;
  logits.name = 'logits';
  let out = b.op('Softmax', [logits], { axis: -1 })[0]!;
  if (o.reshapeOut) out = b.op('Reshape', [out, b.initializer('shape', Tensor.from(DataType.INT64, [3], BigInt64Array.from([0n, 1n, BigInt(k)])))])[0]!;
  b.output(out, 'probs');
  return b.model();
}

function samples(n: number, seed: number): Sample[] {
  const rand = mulberry32(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
  return Array.from({ length: n }, (_, i) => ({ id: `s${seed}#${i}`, feed: { x: { type: 'float32' as const, dims: [1, D], data: Float32Array.from({ length: D }, gauss) } } }));
}

async function agreement(student: Model, teacher: Model, set: Sample[]): Promise<number> {
  const s = await Session.create(serializeModel(student), ONE);
  const t = await Session.create(serializeModel(teacher), ONE);
  let agree = 0;
  for (const x of set) {
    const a = argmaxRows(Object.values(await s.run(x.feed))[0]!);
    const b = argmaxRows(Object.values(await t.run(x.feed))[0]!);
    if (a[0] === b[0]) agree++;
  }
  await s.dispose();
  await t.dispose();
  return agree / set.length;
}

async function failure(p: Promise<unknown>): Promise<{ code: string; message: string; details: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    if (!isOnnxForgeError(e)) throw e;
    return { code: e.code, message: e.message, details: e.details as Record<string, unknown> };
  }
  throw new Error('expected an error');
}

const teacher = mlp({ seed: 1 });
const train = samples(192, 11);
const heldOut = samples(96, 12);

describe('the distilled tensor', () => {
  it('is the input of the Softmax producing the output, also behind a Reshape', () => {
    expect(findLogits(teacher)).toMatchObject({ output: 'probs', logits: 'logits', via: 'Softmax' });
    expect(findLogits(mlp({ seed: 1, reshapeOut: true }))).toMatchObject({ output: 'probs', logits: 'logits', via: 'Softmax' });
  });
  it('is the output itself when no Softmax produces it', () => {
    const m = cloneModel(teacher);
    const g = m.graph;
    const sm = g.findValue('probs')!.producer!;
    g.findValue('probs')!.replaceAllUsesWith(g.findValue('logits')!);
    g.removeNode(sm, true);
    expect(findLogits(m)).toMatchObject({ output: 'probs', logits: 'probs', via: 'output' });
  });
  it('rejects a Softmax over a non-class axis', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', ['N', D]);
    const r = mulberry32(3);
    const z = b.op('Gemm', [x, b.initializer('w', weights(r, [D, 3], 1))])[0]!;
    b.output(b.op('Softmax', [z], { axis: 0 })[0]!, 'probs');
    const m = b.model();
    const e = await failure(distill(cloneModel(m), m, train.slice(0, 4), S({ epochs: 1, session: ONE, progress: false })));
    expect(e.code).toBe('DISTILL_SOFTMAX_AXIS');
  });
});

describe('distillation', () => {
  it('raises agreement with the teacher on held-out inputs, and the student written is the trained one', async () => {
    const student = mlp({ seed: 2, bn: true });
    const before = await agreement(student, teacher, heldOut);
    const r = await distill(student, teacher, train, S({ epochs: 12, lr: 0.02, temperature: 2, batch: 16, heldOut, seed: 3, session: ONE, progress: false }));
    const after = await agreement(student, teacher, heldOut);
    expect(r.student.logits).toBe('logits');
    expect(r.givenAgreement).toBeCloseTo(before, 10);
    expect(r.epochs).toHaveLength(13);
    expect(r.epochs[0]!.epoch).toBe(0);
    expect(r.trainingRecords).toBe(192);
    expect(r.steps).toBe(12 * 12);
    expect(r.adaptedBatchNorms).toBe(1);
    expect(after).toBeGreaterThanOrEqual(0.85);
    expect(after - before).toBeGreaterThanOrEqual(0.2);
    // the last epoch's agreement is measured on the same weights that were written back
    expect(r.epochs[r.epochs.length - 1]!.agreement).toBeCloseTo(after, 10);
    const losses = r.epochs.slice(1).map((e) => e.meanLoss);
    expect(losses[losses.length - 1]!).toBeLessThan(losses[0]! * 0.6);
  }, 60_000);

  it('gives the same training with the cache on disk as in memory, and removes the file', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'cache-'));
    const opts = S({ epochs: 2, lr: 0.01, batch: 8, seed: 5, heldOut: heldOut.slice(0, 32), session: ONE, progress: false });
    const a = mlp({ seed: 2 });
    const b = mlp({ seed: 2 });
    const ra = await distill(a, teacher, train.slice(0, 40), opts);
    const rb = await distill(b, teacher, train.slice(0, 40), { ...opts, cacheLimitBytes: 0, cacheDir: dir });
    expect(ra.cache.onDisk).toBe(false);
    expect(rb.cache.onDisk).toBe(true);
    // [N, 8] inputs are not images: the augmentation defaults leave them alone
    expect(rb.augmentation).toEqual({ inputs: [], copies: 0, online: 0, flip: 0 });
    expect(rb.cache.records).toBe(40);
    expect(rb.cache.bytes).toBe(40 * (D + 3) * 4);
    expect(fs.readdirSync(dir)).toEqual([]);
    for (const w of ['w1', 'b1', 'w2', 'b2']) {
      const ta = a.graph.initializerTensor(a.graph.findValue(w)!)!;
      const tb = b.graph.initializerTensor(b.graph.findValue(w)!)!;
      expect(Array.from(tb.toFloat32())).toEqual(Array.from(ta.toFloat32()));
    }
    expect(rb.epochs.map((e) => e.meanLoss)).toEqual(ra.epochs.map((e) => e.meanLoss));
  }, 60_000);

  it('lowers the batch to what the memory budget holds (3x the forward activations of a batch); 0 is no limit', async () => {
    const r0 = await distill(mlp({ seed: 2 }), teacher, train.slice(0, 32), S({ epochs: 1, batch: 16, memory: 0, session: ONE, progress: false }));
    expect(r0.batch).toBe(16);
    // x, hidden_pre, hidden, logits and probs of one [1, 8] sample: 4 * (8 + 16 + 16 + 3 + 3) bytes
    expect(r0.activationBytes).toBe(4 * (8 + 16 + 16 + 3 + 3));
    const budget = 3 * 2 * r0.activationBytes;
    const r = await distill(mlp({ seed: 2 }), teacher, train.slice(0, 32), S({ epochs: 1, batch: 16, memory: budget / 2 ** 30, session: ONE, progress: false }));
    expect(r.batchRequested).toBe(16);
    expect(r.batch).toBe(2);
    expect(r.steps).toBe(16);
  }, 60_000);

  it('adds feature MSE and label cross-entropy terms', async () => {
    const student = mlp({ seed: 4 });
    const labelled = train.slice(0, 64).map((s, i) => ({ ...s, label: { cls: i % 3 } }));
    const r = await distill(student, teacher, labelled, S({
      epochs: 2,
      lr: 0.01,
      batch: 16,
      features: ['hidden:hidden'],
      featureWeight: 0.1,
      labelOf: (l) => (l as { cls: number }).cls,
      alpha: 0.7,
      holdout: 0.25,
      session: ONE,
      progress: false,
    }));
    expect(r.labels).toBe(true);
    expect(r.alpha).toBe(0.7);
    expect(r.features).toEqual([{ teacher: 'hidden', student: 'hidden', dims: [1, 16] }]);
    expect(r.heldOut).toBe(16);
    expect(r.trainingRecords).toBe(48);
    expect(r.epochs.every((e) => e.epoch === 0 || Number.isFinite(e.meanLoss))).toBe(true);
  }, 60_000);

  it('runs as the registered pass through the pass manager, upgrading an old-opset student', async () => {
    const student = mlp({ seed: 2, opset: 11 });
    const rep = await optimize(student, 'distill<epochs=3;lr=0.02;batch=16>', { data: { teacher: serializeModel(teacher), train, heldOut } });
    expect(student.opset('')).toBe(17);
    const stats = rep.records.find((x) => x.pass === 'distill')!.stats;
    expect(stats.steps).toBe(36);
    expect(Number(stats.agreementAfter)).toBeGreaterThan(Number(stats.agreementBefore));
    expect(await agreement(student, teacher, heldOut)).toBeCloseTo(Number(stats.agreementAfter), 10);
  }, 60_000);
});

describe('record cache and helpers', () => {
  it('spills to a file past the limit and reads any record back', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'rc-'));
    const c = new RecordCache(5, 3 * 20, dir);
    const recs = Array.from({ length: 7 }, (_, i) => Float32Array.from({ length: 5 }, (_, j) => i * 10 + j + 0.5));
    recs.forEach((r, i) => {
      c.add(r);
      expect(c.onDisk).toBe(i >= 3);
    });
    expect(fs.existsSync(c.file!)).toBe(true);
    expect(fs.statSync(c.file!).size).toBe(7 * 20);
    for (const i of [6, 0, 3, 2, 5]) expect(Array.from(c.read(i))).toEqual(Array.from(recs[i]!));
    const file = c.file!;
    c.dispose();
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('augments an image tensor within the configured ranges', () => {
    const dims = [1, 1, 4, 6];
    const src = Float32Array.from({ length: 24 }, (_, i) => i);
    const same = augmentImage(src, dims, mulberry32(1), { ...NO_AUG, copies: 1 });
    expect(Array.from(same)).toEqual(Array.from(src));
    const bright = augmentImage(src, dims, mulberry32(1), { ...NO_AUG, copies: 1, brightness: 0.5 });
    const d = bright[0]! - src[0]!;
    expect(Math.abs(d)).toBeLessThanOrEqual(0.5);
    expect(Array.from(bright).every((v, i) => Math.abs(v - src[i]! - d) < 1e-5)).toBe(true);
    const moved = augmentImage(src, dims, mulberry32(2), { ...NO_AUG, copies: 1, shift: 2, crop: 0.2 });
    expect(Math.min(...moved)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...moved)).toBeLessThanOrEqual(23);
    // flip 1: the image turned by 180 degrees, every plane
    const planes = Float32Array.from({ length: 48 }, (_, i) => i);
    const turned = augmentImage(planes, [1, 2, 4, 6], mulberry32(3), { ...NO_AUG, copies: 1, flip: 1 });
    expect(Array.from(turned)).toEqual([...Array.from(planes.subarray(0, 24)).reverse(), ...Array.from(planes.subarray(24)).reverse()]);
  });

  it('re-estimates BatchNormalization statistics from data', async () => {
    const m = mlp({ seed: 2, bn: true });
    const set = samples(64, 9);
    const x = new Float32Array(64 * D);
    set.forEach((s, i) => x.set(s.feed.x!.data as Float32Array, i * D));
    const n = await adaptBatchNorm(m, { x: { type: 'float32', dims: [64, D], data: x } }, ONE);
    expect(n).toBe(1);
    // expected: mean and (biased) variance of the first Gemm's output over the 64 samples
    const w1 = constantOf(m.graph.findValue('w1')!)!.toFloat32();
    const b1 = constantOf(m.graph.findValue('b1')!)!.toFloat32();
    const bn = m.graph.nodes.find((q) => q.opType === 'BatchNormalization')!;
    const mean = constantOf(bn.inputs[3]!)!.toFloat32();
    const variance = constantOf(bn.inputs[4]!)!.toFloat32();
    for (const c of [0, 5, 15]) {
      const vals = set.map((s) => {
        const xv = s.feed.x!.data as Float32Array;
        let v = b1[c]!;
        for (let i = 0; i < D; i++) v += xv[i]! * w1[i * 16 + c]!;
        return v;
      });
      const mu = vals.reduce((a, b) => a + b, 0) / vals.length;
      const va = vals.reduce((a, b) => a + (b - mu) ** 2, 0) / vals.length;
      expect(mean[c]!).toBeCloseTo(mu, 4);
      expect(variance[c]!).toBeCloseTo(va, 3);
    }
    expect(m.graph.findValue('bn_m')).toBeUndefined();
  });
});

describe('bad input: a clear error, the student unchanged', () => {
  it('teacher and student outputs of different shapes', async () => {
    const student = mlp({ seed: 2, classes: 4 });
    const bytes = serializeModel(student);
    const e = await failure(distill(student, teacher, train.slice(0, 8), S({ epochs: 1, session: ONE, progress: false })));
    expect(e.code).toBe('DISTILL_SHAPE_MISMATCH');
    expect(e.message).toContain('teacher logits is [1,3]');
    expect(e.message).toContain('student logits is [1,4]');
    expect(serializeModel(student)).toEqual(bytes);
  });

  it('matched features of different shapes', async () => {
    const student = mlp({ seed: 2, hidden: 12 });
    const e = await failure(distill(student, teacher, train.slice(0, 8), S({ epochs: 1, features: ['hidden:hidden'], session: ONE, progress: false })));
    expect(e.code).toBe('DISTILL_SHAPE_MISMATCH');
    expect(e.message).toMatch(/teacher hidden is \[1,16\], student hidden is \[1,12\]/);
  });

  it('an op without a gradient rule, named with its node', async () => {
    const student = mlp({ seed: 2, middle: 'Sin' });
    const bytes = serializeModel(student);
    const e = await failure(distill(student, teacher, train.slice(0, 8), S({ epochs: 1, session: ONE, progress: false })));
    expect(e.code).toBe('AUTODIFF_NO_RULE');
    expect(e.message).toMatch(/Sin/);
    expect(e.details.op).toBe('Sin');
    expect(serializeModel(student)).toEqual(bytes);
  });

  it('a diverging loss (NaN)', async () => {
    const student = mlp({ seed: 2, bn: true });
    const bytes = serializeModel(student);
    const e = await failure(distill(student, teacher, train.slice(0, 64), S({ epochs: 5, lr: 1e30, optimizer: 'sgd', schedule: 'constant', batch: 8, session: ONE, progress: false })));
    expect(e.code).toBe('DISTILL_DIVERGED');
    expect(e.message).toMatch(/loss became (NaN|Infinity|-Infinity) at epoch \d+, step \d+/);
    expect(serializeModel(student)).toEqual(bytes);
  });

  it('bad options and data', async () => {
    expect((await failure(distill(mlp({ seed: 2 }), teacher, train, S({ temperature: 0 })))).code).toBe('DISTILL_BAD_OPTION');
    expect((await failure(distill(mlp({ seed: 2 }), teacher, [], S({ session: ONE })))).code).toBe('DISTILL_NO_DATA');
    expect((await failure(distill(mlp({ seed: 2 }), teacher, train.slice(0, 4), S({ features: ['nope:hidden'], session: ONE })))).code).toBe('DISTILL_NO_TENSOR');
    expect(() => parseFeaturePairs(['a:b,c'])).toThrow(/teacherTensor:studentTensor/);
    const ragged = [...train.slice(0, 2), { id: 'odd', feed: { x: { type: 'float32' as const, dims: [2, D], data: new Float32Array(2 * D) } } }];
    expect((await failure(distill(mlp({ seed: 2 }), teacher, ragged, S({ epochs: 1, session: ONE, progress: false })))).code).toBe('DISTILL_RAGGED_INPUT');
    const unlabelled = await failure(distill(mlp({ seed: 2 }), teacher, train.slice(0, 4), S({ epochs: 1, labelOf: () => undefined, session: ONE, progress: false })));
    expect(unlabelled.code).toBe('DISTILL_NO_LABEL');
  });
});

describe('distillModel', () => {
  it('folds BatchNormalization after training unless told not to', async () => {
    const a = mlp({ seed: 2, bn: true });
    await distillModel(a, teacher, train.slice(0, 32), { epochs: 1, session: ONE, progress: false });
    expect(a.graph.nodes.some((n) => n.opType === 'BatchNormalization')).toBe(false);
    const b = mlp({ seed: 2, bn: true });
    const r = await distillModel(b, teacher, train.slice(0, 32), { epochs: 1, session: ONE, progress: false, optimize: false });
    expect(b.graph.nodes.some((n) => n.opType === 'BatchNormalization')).toBe(true);
    expect(r.pipelines).toEqual([]);
  }, 60_000);
});
