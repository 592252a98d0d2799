/**
 * Knowledge distillation on top of the {@link Trainer}: a student learns to reproduce a teacher's
 * outputs on unlabelled (or labelled) inputs.
 *
 *   L = a * T^2 * KL(softmax(t / T) || softmax(s / T))  +  (1 - a) * CE(s, y)  +  b * sum_i MSE(s_i, t_i)
 *
 * with t, s the teacher's and student's logits, T the temperature, y integer labels (the CE term
 * only when labels are given; without labels the KL term has weight 1), and (t_i, s_i) matched
 * intermediate tensors (`features`). The KL and CE terms are `graph/autodiff/losses.ts`.
 *
 * Logits, not probabilities: when a graph output is produced by a Softmax (or LogSoftmax), possibly
 * behind shape-only ops (Reshape/Flatten/Squeeze/Unsqueeze/Identity; PaddleOCR's cls outputs
 * `softmax_0.tmp_0`), the distilled tensor is the Softmax's input. Softening probabilities directly
 * (softmax(p / T)) would be wrong; log p is mathematically a valid logit (softmax is shift-invariant)
 * but loses everything float32 rounds away once p saturates at 1, which a confident teacher does.
 * The Softmax must act on the last axis (the loss's class axis), else DISTILL_SOFTMAX_AXIS.
 *
 * Teacher outputs are computed once per training sample (augmented copies are separate samples,
 * drawn once with a seeded generator) and cached with the inputs as fixed-size float32 records: in
 * memory below `cacheLimitBytes`, else spilled to a temporary file that each epoch reads back by
 * record offset in shuffled order (the file is removed when training ends, also on errors).
 *
 * After each epoch the student (current weights) runs on held-out inputs (never trained on) and its
 * top-1 agreement with the teacher is recorded. The trained weights are written into the student
 * model in place; nothing else of the student changes. Errors: DISTILL_SHAPE_MISMATCH (teacher and
 * student tensors differ), AUTODIFF_NO_RULE (naming the node), DISTILL_DIVERGED (loss NaN/Inf).
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Sample } from '../data/index.js';
import { mulberry32 } from '../data/generate.js';
import { byteLengthOf, DataType } from '../core/dtype.js';
import { inputError } from '../core/errors.js';
import { Attribute, constantOf, Model, Node, Value } from '../ir/ir.js';
import { Tensor } from '../core/tensor.js';
import { Emitter } from './autodiff/context.js';
import { gradientRule, isDifferentiableSlot } from './autodiff/registry.js';
import { defaultParams } from './autodiff/training.js';
import { cloneModel, serializeModel } from '../onnx/index.js';
import type { LossSpec } from './autodiff/losses.js';
import type { OptimizerSpec } from './autodiff/optimizers.js';
import { ProgressBar } from '../core/progress.js';
import { Feed, formatDims, HostTensor } from '../core/host-tensor.js';
import { argmaxRows } from '../runtime/metrics.js';
import { Session, SessionOptions } from '../runtime/session.js';
import { probeShapes, Trainer } from './trainer.js';

// ---------------------------------------------------------------------------------------------
// Which tensor is distilled

export interface LogitsInfo {
  /** The graph output chosen. */
  output: string;
  /** The tensor the loss reads: the Softmax/LogSoftmax input, or the output itself. */
  logits: string;
  via: 'Softmax' | 'LogSoftmax' | 'output';
  /** Softmax axis as written (normalized against the rank once it is known). */
  axis?: number;
  /** Whether the Softmax has opset < 13 semantics (coerce to 2-D at `axis`). */
  legacy?: boolean;
}

const SHAPE_ONLY = new Set(['Reshape', 'Flatten', 'Identity', 'Squeeze', 'Unsqueeze']);

/** Finds the logits behind graph output `output` (default: the first output). */
export function findLogits(model: Model, output?: string): LogitsInfo {
  const g = model.graph;
  const out = output === undefined ? g.outputs[0] : g.outputs.find((v) => v.name === output);
  if (!out) {
    throw inputError('DISTILL_NO_OUTPUT', output === undefined ? 'the model has no graph outputs' : `the model has no output ${output} (outputs: ${g.outputs.map((v) => v.name).join(', ')})`, { tensor: output });
  }
  let v: Value = out;
  for (let hops = 0; hops < 16; hops++) {
    const p = v.producer;
    if (!p || p.opDomain !== '') break;
    if (p.opType === 'Softmax' || p.opType === 'LogSoftmax') {
      const legacy = (model.opset('') ?? 13) < 13;
      const a = p.attr('axis');
      const axis = a ? Number(a.i) : legacy ? 1 : -1;
      return { output: out.name, logits: p.inputs[0]!.name, via: p.opType, axis, legacy };
    }
    if (!SHAPE_ONLY.has(p.opType) || !p.inputs[0]) break;
    v = p.inputs[0];
  }
  return { output: out.name, logits: out.name, via: 'output' };
}

function checkClassAxis(info: LogitsInfo, dims: readonly number[], who: string): void {
  if (info.axis === undefined) return;
  const rank = dims.length;
  const axis = info.axis < 0 ? info.axis + rank : info.axis;
  if (axis !== rank - 1) {
    throw inputError(
      'DISTILL_SOFTMAX_AXIS',
      `the ${who}'s ${info.via} before output ${info.output} normalizes axis ${info.axis} of ${info.logits} ${formatDims(dims)}; distillation needs the classes on the last axis`,
      { tensor: info.logits },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Record cache: float32 records in memory, spilled to a temporary file past a size limit

export class RecordCache {
  private mem: Float32Array[] = [];
  private fd: number | undefined;
  private dir: string | undefined;
  private n = 0;
  readonly recordBytes: number;

  constructor(
    readonly recordFloats: number,
    readonly limitBytes: number,
    private readonly parentDir = tmpdir(),
  ) {
    this.recordBytes = recordFloats * 4;
  }

  get count(): number {
    return this.n;
  }

  get onDisk(): boolean {
    return this.fd !== undefined;
  }

  /** Path of the spill file (undefined while in memory). */
  get file(): string | undefined {
    return this.dir ? join(this.dir, 'records.f32') : undefined;
  }

  get bytes(): number {
    return this.n * this.recordBytes;
  }

  add(rec: Float32Array): void {
    if (rec.length !== this.recordFloats) throw inputError('DISTILL_INTERNAL', `record of ${rec.length} floats, expected ${this.recordFloats}`);
    if (this.fd === undefined && (this.n + 1) * this.recordBytes > this.limitBytes) this.spill();
    if (this.fd !== undefined) this.write(rec);
    else this.mem.push(rec.slice());
    this.n++;
  }

  /** Record `i` (into `into` when given). */
  read(i: number, into: Float32Array = new Float32Array(this.recordFloats)): Float32Array {
    if (this.fd === undefined) {
      into.set(this.mem[i]!);
      return into;
    }
    const view = new Uint8Array(into.buffer, into.byteOffset, this.recordBytes);
    let done = 0;
    while (done < this.recordBytes) {
      const got = readSync(this.fd, view, done, this.recordBytes - done, i * this.recordBytes + done);
      if (got <= 0) throw inputError('DISTILL_CACHE_READ', `the teacher cache ${this.file} ended early at record ${i}`, { file: this.file });
      done += got;
    }
    return into;
  }

  dispose(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
    this.mem = [];
  }

  private spill(): void {
    this.dir = mkdtempSync(join(this.parentDir, 'onnxforge-distill-'));
    this.fd = openSync(join(this.dir, 'records.f32'), 'w+', 0o600);
    for (const r of this.mem) this.write(r);
    this.mem = [];
  }

  private write(rec: Float32Array): void {
    const bytes = new Uint8Array(rec.buffer, rec.byteOffset, rec.byteLength);
    let done = 0;
    while (done < bytes.length) done += writeSync(this.fd!, bytes, done, bytes.length - done);
  }
}

// ---------------------------------------------------------------------------------------------
// Augmentation of preprocessed image tensors

/** How training inputs are varied (the defaults are the `distill` pass's schema, `passes/distill.ts`). */
export interface AugmentOptions {
  /** Augmented copies per training sample, besides the sample itself (0: none). */
  copies: number;
  /** Largest shift in pixels along each spatial axis. */
  shift: number;
  /** Largest crop: the sampled window is at least (1 - crop) of each side, resized back. */
  crop: number;
  /** Largest additive brightness change, in tensor units. */
  brightness: number;
  /** Largest contrast change: values are scaled by a factor in [1 - c, 1 + c]. */
  contrast: number;
  /** Probability that an augmentation also turns the image by 180 degrees (both spatial axes reversed). */
  flip: number;
  /**
   * Fraction of each training batch replaced, at every step, by fresh augmentations of its samples
   * (the teacher runs on those at that moment). Fresh inputs every epoch generalize better than a
   * fixed set of copies when the data set is small.
   */
  online: number;
  /** Probability that a fresh augmentation is also mixed with another sample of the batch: x = l a + (1 - l) b, l in [0.5, 1). */
  mixup: number;
}

/**
 * A random crop/shift/brightness/contrast, and with probability `flip` a turn by 180 degrees, of one
 * [1, C, H, W] float tensor: output pixel (y, x) samples the input bilinearly at
 * (y0 + y * sy, x0 + x * sx) with edges clamped (at (H-1-y, W-1-x) of that window when turned),
 * then v * c + b. Rank < 3 tensors only get the value change.
 */
export function augmentImage(src: Float32Array, dims: readonly number[], rand: () => number, o: AugmentOptions): Float32Array {
  const { shift, crop, brightness: bright, contrast } = o;
  const turn = rand() < o.flip;
  const u = (a: number) => (rand() * 2 - 1) * a;
  const c = 1 + u(contrast);
  const b = u(bright);
  const out = new Float32Array(src.length);
  if (dims.length < 3) {
    for (let i = 0; i < src.length; i++) out[i] = src[i]! * c + b;
    return out;
  }
  const H = dims[dims.length - 2]!;
  const W = dims[dims.length - 1]!;
  const planes = src.length / (H * W);
  const sy = 1 - rand() * crop;
  const sx = 1 - rand() * crop;
  const y0 = rand() * (1 - sy) * H + Math.round(u(shift));
  const x0 = rand() * (1 - sx) * W + Math.round(u(shift));
  const ys = new Int32Array(H * 2);
  const fy = new Float32Array(H);
  const xs = new Int32Array(W * 2);
  const fx = new Float32Array(W);
  const table = (n: number, s: number, o0: number, idx: Int32Array, frac: Float32Array) => {
    for (let i = 0; i < n; i++) {
      const p = Math.min(n - 1, Math.max(0, o0 + i * s));
      const lo = Math.floor(p);
      idx[i * 2] = lo;
      idx[i * 2 + 1] = Math.min(n - 1, lo + 1);
      frac[i] = p - lo;
    }
  };
  table(H, sy, y0, ys, fy);
  table(W, sx, x0, xs, fx);
  for (let p = 0; p < planes; p++) {
    const base = p * H * W;
    for (let y = 0; y < H; y++) {
      const r0 = base + ys[y * 2]! * W;
      const r1 = base + ys[y * 2 + 1]! * W;
      const wy = fy[y]!;
      const row = base + (turn ? H - 1 - y : y) * W;
      for (let x = 0; x < W; x++) {
        const a = xs[x * 2]!;
        const d = xs[x * 2 + 1]!;
        const wx = fx[x]!;
        const top = src[r0 + a]! + (src[r0 + d]! - src[r0 + a]!) * wx;
        const bot = src[r1 + a]! + (src[r1 + d]! - src[r1 + a]!) * wx;
        out[row + (turn ? W - 1 - x : x)] = (top + (bot - top) * wy) * c + b;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Checks and adaptation before training

/**
 * The node (if any) on a path from a trainable parameter to one of `targets` that has no gradient
 * rule: the same test `appendBackward` makes, done up front so the error comes before the teacher
 * has run over the whole data set.
 */
export function checkGradientPath(model: Model, targets: readonly string[]): void {
  const g = model.graph;
  g.toposort();
  const params = new Set(defaultParams(model));
  const dependent = new Set<Value>();
  for (const name of params) {
    const v = g.findValue(name);
    if (v) dependent.add(v);
  }
  const nodes = [...g.nodes];
  for (const n of nodes) if (n.inputs.some((v) => v && dependent.has(v))) for (const o of n.outputs) dependent.add(o);
  const wanted = new Set<Value>(targets.map((t) => g.findValue(t)).filter((v): v is Value => v !== undefined));
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i]!;
    if (!n.outputs.some((o) => wanted.has(o)) || !n.inputs.some((v) => v && dependent.has(v))) continue;
    const rule = gradientRule(n.opType, n.opDomain);
    if (!rule) {
      throw inputError('AUTODIFF_NO_RULE', `node ${n.label} has no gradient rule, and the student's ${targets.join(', ')} depend on its parameters through it`, { node: n.name, op: n.opType });
    }
    n.inputs.forEach((v, slot) => {
      if (v && dependent.has(v) && isDifferentiableSlot(rule, slot)) wanted.add(v);
    });
  }
}

function adaptable(n: Node): boolean {
  if (n.opType !== 'BatchNormalization' || n.opDomain !== '' || n.getInt('training_mode', 0) !== 0) return false;
  const mean = constantOf(n.inputs[3] ?? null);
  const variance = constantOf(n.inputs[4] ?? null);
  return mean?.dataType === DataType.FLOAT && variance?.dataType === DataType.FLOAT && n.outputs.length === 1;
}

/**
 * Re-estimates the running mean and variance of every inference-mode BatchNormalization from data
 * (pruning shifts the statistics its constants were computed for). One run over `feed` (a batch of
 * samples) of a copy where each BatchNormalization normalizes with the batch's own statistics, so
 * every layer sees inputs already normalized by the new statistics of the layers before it:
 *   mean_c = E[x_c], var_c = E[(x_c - mean_c)^2] over the batch and spatial positions.
 * The new statistics become initializers of `model` (in place). Returns the layers adapted.
 */
export async function adaptBatchNorm(model: Model, feed: Feed, session: SessionOptions = {}): Promise<number> {
  const targets = model.graph.nodes.filter(adaptable);
  if (targets.length === 0) return 0;
  // shapes probed on one sample (every value of the model is returned by the probe) and scaled to
  // the batch: the statistics run itself keeps only a few values alive at a time
  const batch = Object.values(feed)[0]?.dims[0] ?? 1;
  const one = await probeShapes(model, Object.fromEntries(Object.entries(feed).map(([k, v]) => [k, { dims: [1, ...v.dims.slice(1)] }])));
  const shapes = new Map([...one].map(([k, v]) => [k, { ...v, dims: v.dims.length ? [v.dims[0] === 1 ? batch : v.dims[0]!, ...v.dims.slice(1)] : v.dims }]));
  const copy = cloneModel(model);
  const g = copy.graph;
  const emit = new Emitter(g, 'bn_adapt');
  const outputs: string[] = [];
  for (const orig of targets) {
    const n = g.findValue(orig.outputs[0]!.name)!.producer!;
    const x = n.inputs[0]!;
    const dims = shapes.get(x.name)?.dims;
    if (!dims || dims.length < 2) throw inputError('DISTILL_BN_SHAPE', `cannot adapt ${n.label}: the shape of its input ${x.name} is unknown`, { node: n.name });
    const C = dims[1]!;
    const axes = emit.int64s([0, ...dims.slice(2).map((_, i) => i + 2)], 'axes');
    const inv = emit.scalar(C / dims.reduce((a, d) => a * d, 1), DataType.FLOAT);
    const bshape = emit.int64s([1, C, ...dims.slice(2).map(() => 1)], 'shape');
    const mean = emit.op('Mul', [emit.op('ReduceSum', [x, axes], { keepdims: 1 }), inv]);
    const d = emit.op('Sub', [x, mean]);
    const variance = emit.op('Mul', [emit.op('ReduceSum', [emit.op('Mul', [d, d]), axes], { keepdims: 1 }), inv]);
    const xhat = emit.op('Div', [d, emit.op('Sqrt', [emit.op('Add', [variance, emit.scalar(n.getFloat('epsilon', 1e-5), DataType.FLOAT)])])]);
    const y = emit.op('Add', [emit.op('Mul', [xhat, emit.op('Reshape', [n.inputs[1]!, bshape])]), emit.op('Reshape', [n.inputs[2]!, bshape])]);
    n.outputs[0]!.replaceAllUsesWith(y);
    g.removeNode(n, true);
    const flat = emit.int64s([C], 'shape');
    for (const v of [mean, variance]) {
      const o = emit.op('Reshape', [v, flat]);
      g.addOutput(o);
      outputs.push(o.name);
    }
  }
  g.toposort();
  const s = await Session.create(serializeModel(copy), { ...session, logSeverityLevel: 3 }, 'batch-norm statistics');
  let out: Feed;
  try {
    out = await s.run(feed, outputs);
  } finally {
    await s.dispose();
  }
  const names = new Emitter(model.graph, 'bn_adapted');
  targets.forEach((n, i) => {
    const set = (slot: number, key: string, what: string) => {
      const t = out[key]!;
      const v = model.graph.addInitializer(Tensor.from(DataType.FLOAT, [...t.dims], Float32Array.from(t.data as Float32Array)), names.name(what));
      v.setTensorType(DataType.FLOAT, [...t.dims]);
      const old = n.inputs[slot]!;
      n.setInput(slot, v);
      if (old.uses.length || old.isGraphOutput) return;
      if (old.producer) model.graph.removeNode(old.producer);
      else if (model.graph.initializers.has(old.name)) model.graph.removeInitializer(old);
    };
    set(3, outputs[i * 2]!, 'mean');
    set(4, outputs[i * 2 + 1]!, 'var');
  });
  return targets.length;
}

// ---------------------------------------------------------------------------------------------
// Distillation

/**
 * The training settings. The tunable ones are required here: their defaults are written once, in
 * the `distill` pass's option schema (`passes/distill.ts`), whose `distillModel` fills them.
 */
export interface DistillOptions {
  /** Passes over the cached training records. */
  epochs: number;
  /** Peak learning rate. */
  lr: number;
  /** 'cosine': linear warm-up over the first 5% of steps, then cosine decay to 0; or 'constant'. */
  schedule: 'cosine' | 'constant';
  optimizer: 'adam' | 'sgd';
  weightDecay: number;
  temperature: number;
  /** Weight of the KL term when labels are given; the CE term gets 1 - alpha. */
  alpha: number;
  /** Samples per step (lowered when `memoryBytes` says a batch would not fit). */
  batch: number;
  /**
   * What the training may take, estimated as 3x the forward activations of a batch (values kept
   * for the backward pass, their gradients, workspace): the batch, and the samples the batch-norm
   * statistics are re-estimated on at once, are lowered until it fits. 0: no limit.
   */
  memoryBytes: number;
  /** Matched intermediate tensors [teacher, student], each adding b * MSE. */
  features?: ReadonlyArray<readonly [string, string]>;
  /** b, the weight of each feature MSE term. */
  featureWeight: number;
  /** Class index of a sample from its label (enables the CE term); undefined is an error. */
  labelOf?: (label: unknown, id: string) => number | undefined;
  /** Graph output to distill (default: the first output of each model). */
  output?: string;
  /** Augmentation of the image inputs (rank 4, NCHW); other inputs are used as given. None when absent. */
  augment?: AugmentOptions;
  /** Re-estimate BatchNormalization statistics on the training inputs before training. */
  adaptBatchNorm: boolean;
  /** Training records used for that (default 128, spread over the set). */
  adaptSamples?: number;
  seed: number;
  /** Held-out inputs for the per-epoch agreement (not trained on). */
  heldOut?: AsyncIterable<Sample> | Iterable<Sample>;
  /** Without `heldOut`: every k-th training sample with k = round(1 / holdout) is held out (0: none). */
  holdout: number;
  /** Records up to this many bytes stay in memory; larger sets go to a temporary file (default 256 MiB). */
  cacheLimitBytes?: number;
  /** Folder for the temporary cache file (default: the OS temp folder). */
  cacheDir?: string;
  session?: SessionOptions;
  progress?: boolean;
  onEpoch?: (e: EpochRecord) => void;
}

export interface EpochRecord {
  /** 0 = before training. */
  epoch: number;
  meanLoss: number;
  /** Top-1 agreement with the teacher on the held-out inputs (NaN without held-out inputs). */
  agreement: number;
  lr: number;
  seconds: number;
}

export interface DistillReport {
  teacher: LogitsInfo;
  student: LogitsInfo;
  features: { teacher: string; student: string; dims: number[] }[];
  samples: number;
  /** The augmentation used: the inputs varied (rank 4), copies per sample and fresh fraction per batch (none without image inputs). */
  augmentation: { inputs: string[]; copies: number; online: number; flip: number };
  /** Forward activations of one sample (bytes), and the batch asked for when `memoryBytes` lowered it. */
  activationBytes: number;
  batchRequested: number;
  /** Agreement on the held-out inputs of the student as given (before batch-norm adaptation). */
  givenAgreement: number;
  /** BatchNormalization layers whose statistics were re-estimated (see {@link adaptBatchNorm}). */
  adaptedBatchNorms: number;
  trainingRecords: number;
  heldOut: number;
  cache: { records: number; bytes: number; onDisk: boolean };
  batch: number;
  steps: number;
  params: number;
  temperature: number;
  alpha: number;
  labels: boolean;
  epochs: EpochRecord[];
  trainSeconds: number;
  teacherSeconds: number;
}

interface Segment {
  /** Training-graph data input fed from this segment. */
  name: string;
  /** Where the values come from: the sample's input or the teacher's output of this name. */
  source: string;
  dims: number[];
  offset: number;
  length: number;
  kind: 'input' | 'teacher' | 'feature' | 'label';
}

type Items = AsyncIterable<Sample> | Iterable<Sample>;

function withOutputs(model: Model, names: readonly string[], who: string): Model {
  const m = cloneModel(model);
  const g = m.graph;
  const have = new Set(g.outputs.map((v) => v.name));
  for (const n of names) {
    if (have.has(n)) continue;
    const v = g.findValue(n);
    if (!v) throw inputError('DISTILL_NO_TENSOR', `the ${who} has no tensor named ${n}`, { tensor: n });
    g.addOutput(v);
    have.add(n);
  }
  return m;
}

function floatData(t: HostTensor | undefined, name: string, id: string): Float32Array {
  if (!t) throw inputError('DISTILL_NO_TENSOR', `${id}: the model produced no ${name}`, { tensor: name });
  if (t.type !== 'float32') throw inputError('DISTILL_INPUT_TYPE', `${id}: ${name} is ${t.type}; distillation takes float32 inputs and outputs`, { tensor: name });
  return t.data as Float32Array;
}

const sameDims = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

function lrAt(step: number, total: number, peak: number, schedule: 'cosine' | 'constant'): number {
  if (schedule === 'constant') return peak;
  const warm = Math.max(1, Math.round(total * 0.05));
  if (step < warm) return (peak * (step + 1)) / warm;
  const p = (step - warm) / Math.max(1, total - warm);
  return peak * 0.5 * (1 + Math.cos(Math.PI * p));
}

async function agreementOf(session: Session, output: string, heldOut: readonly Feed[], teacherOut: readonly Int32Array[]): Promise<number> {
  if (heldOut.length === 0) return NaN;
  let agree = 0;
  let total = 0;
  for (let i = 0; i < heldOut.length; i++) {
    const out = await session.run(heldOut[i]!, [output]);
    const a = argmaxRows(out[output]!);
    const t = teacherOut[i]!;
    for (let j = 0; j < t.length; j++) if (a[j] === t[j]) agree++;
    total += t.length;
  }
  return agree / total;
}

function check(name: string, x: number, ok: boolean, rule: string): void {
  if (!ok) throw inputError('DISTILL_BAD_OPTION', `distill: ${name} ${rule}, got ${x}`, { option: name });
}

/**
 * Distills `teacher` into `student` on `data` and writes the re-estimated batch-norm statistics and
 * trained weights into `student` (in place, and only when everything succeeded: on an error the
 * student is unchanged). The student must be at opset 13 or newer (upgrade it first); the teacher
 * is only run.
 */
export async function distill(student: Model, teacher: Model, data: Items, options: DistillOptions): Promise<DistillReport> {
  const work = cloneModel(student);
  const report = await distillInto(work, teacher, data, options);
  adoptModel(student, work);
  return report;
}

/** Moves `source`'s graph, opsets and IR version into `target` (whose old graph is dropped). */
export function adoptModel(target: Model, source: Model): void {
  target.graph = source.graph;
  source.graph.model = target;
  target.opsetImports = source.opsetImports;
  target.irVersion = source.irVersion;
}

/** {@link distill} on a model the caller lets it change even when it fails. */
async function distillInto(student: Model, teacher: Model, data: Items, options: DistillOptions): Promise<DistillReport> {
  const { epochs, lr, temperature: T, alpha, featureWeight: beta, holdout } = options;
  let batch = options.batch;
  check('epochs', epochs, Number.isInteger(epochs) && epochs >= 1, 'must be a whole number of at least 1');
  check('lr', lr, lr > 0 && Number.isFinite(lr), 'must be a positive number');
  check('temperature', T, T > 0 && Number.isFinite(T), 'must be a positive number');
  check('alpha', alpha, alpha >= 0 && alpha <= 1, 'must be in [0, 1]');
  check('batch', batch, Number.isInteger(batch) && batch >= 1, 'must be a whole number of at least 1');
  check('memoryBytes', options.memoryBytes, options.memoryBytes >= 0 && Number.isFinite(options.memoryBytes), 'must be a non-negative number');
  check('featureWeight', beta, beta >= 0 && Number.isFinite(beta), 'must be a non-negative number');
  check('holdout', holdout, holdout >= 0 && holdout < 1, 'must be in [0, 1)');
  const aug = options.augment;
  if (aug) {
    check('augment.copies', aug.copies, Number.isInteger(aug.copies) && aug.copies >= 0, 'must be a whole number');
    for (const k of ['online', 'mixup', 'flip'] as const) check(`augment.${k}`, aug[k], aug[k] >= 0 && aug[k] <= 1, 'must be in [0, 1]');
    for (const k of ['shift', 'crop', 'brightness', 'contrast'] as const) check(`augment.${k}`, aug[k], aug[k] >= 0 && Number.isFinite(aug[k]), 'must be a non-negative number');
  }
  // augmentation varies images only: the inputs of rank 4 (NCHW), found on the first sample
  let images: string[] = [];
  let copies = 0;
  let online = 0;
  const rand = mulberry32(options.seed);
  const so: SessionOptions = options.session ?? {};

  // 1. the tensors compared
  const tInfo = findLogits(teacher, options.output);
  const sInfo = findLogits(student, options.output ?? (student.graph.outputs.some((v) => v.name === tInfo.output) ? tInfo.output : undefined));
  const features = options.features ?? [];
  checkGradientPath(student, [sInfo.logits, ...features.map((f) => f[1])]);
  const tNames = [tInfo.logits, tInfo.output, ...features.map((f) => f[0])];
  const sNames = [sInfo.logits, sInfo.output, ...features.map((f) => f[1])];
  const teacherRun = await Session.create(serializeModel(withOutputs(teacher, tNames, 'teacher')), so, 'teacher');
  let studentRun: Session | undefined = await Session.create(serializeModel(withOutputs(student, sNames, 'student')), so, 'student').catch(async (e) => {
    await teacherRun.dispose();
    throw e;
  });
  const inputNames = studentRun.inputs.map((i) => i.name);
  const labels = options.labelOf !== undefined;

  let cache: RecordCache | undefined;
  let trainer: Trainer | undefined;
  let segments: Segment[] = [];
  const heldOutFeeds: Feed[] = [];
  const heldOutTeacher: Int32Array[] = [];
  let samples = 0;
  let teacherMs = 0;
  const featureDims: number[][] = [];
  try {
    // 2. read the data: check shapes on the first sample, create the trainer, cache teacher outputs
    const k = holdout > 0 && !options.heldOut ? Math.max(2, Math.round(1 / holdout)) : 0;
    let scratch: Float32Array | undefined;
    let inputDims: Record<string, number[]> = {};
    for await (const s of data as AsyncIterable<Sample>) {
      const index = samples++;
      for (const n of inputNames) floatData(s.feed[n], `input ${n}`, s.id);
      const t0 = performance.now();
      const tOut = await teacherRun.run(s.feed, tNames);
      teacherMs += performance.now() - t0;
      if (!segments.length) {
        const sOut = await studentRun.run(s.feed, sNames);
        segments = layout(s, inputNames, tInfo, sInfo, features, tOut, sOut, labels, featureDims);
        inputDims = Object.fromEntries(segments.filter((g) => g.kind === 'input').map((g) => [g.name, g.dims]));
        images = aug ? inputNames.filter((n) => inputDims[n]!.length === 4) : [];
        copies = images.length ? aug!.copies : 0;
        online = images.length ? aug!.online : 0;
        const recordFloats = segments.reduce((a, g) => a + g.length, 0);
        cache = new RecordCache(recordFloats, options.cacheLimitBytes ?? 256 * 1024 * 1024, options.cacheDir);
        scratch = new Float32Array(recordFloats);
      }
      for (const n of inputNames) {
        const dims = s.feed[n]!.dims;
        if (!sameDims(dims, inputDims[n]!)) {
          throw inputError('DISTILL_RAGGED_INPUT', `${s.id}: input ${n} is ${formatDims(dims)} but the first sample's was ${formatDims(inputDims[n]!)}; distillation batches need one shape (pad the inputs)`, { tensor: n, file: s.id });
        }
      }
      if (k && index % k === k - 1) {
        heldOutFeeds.push(s.feed);
        heldOutTeacher.push(argmaxRows(tOut[tInfo.output]!));
        continue;
      }
      const label = labels ? options.labelOf!(s.label, s.id) : undefined;
      if (labels && (label === undefined || !Number.isInteger(label) || label < 0)) {
        throw inputError('DISTILL_NO_LABEL', `${s.id}: no class label (a non-negative integer) for the cross-entropy term`, { file: s.id });
      }
      fill(scratch!, segments, s.feed, tOut, label);
      cache!.add(scratch!);
      for (let c = 0; c < copies; c++) {
        const feed: Feed = {};
        for (const n of inputNames) {
          const x = s.feed[n]!;
          feed[n] = images.includes(n) ? { type: 'float32', dims: x.dims, data: augmentImage(x.data as Float32Array, x.dims, rand, aug!) } : x;
        }
        const t1 = performance.now();
        const aOut = await teacherRun.run(feed, tNames);
        teacherMs += performance.now() - t1;
        fill(scratch!, segments, feed, aOut, label);
        cache!.add(scratch!);
      }
    }
    if (!cache || cache.count === 0) throw inputError('DISTILL_NO_DATA', samples ? 'every sample was held out: nothing to train on' : 'the training data gave no samples');
    if (options.heldOut) {
      for await (const s of options.heldOut as AsyncIterable<Sample>) {
        heldOutFeeds.push(s.feed);
        heldOutTeacher.push(argmaxRows((await teacherRun.run(s.feed, [tInfo.output]))[tInfo.output]!));
      }
    }
    if (online === 0) await teacherRun.dispose();

    // 3. before training: agreement as given, what fits in memory, batch-norm statistics adapted to the data, the trainer
    const given = await agreementOf(studentRun, sInfo.output, heldOutFeeds, heldOutTeacher);
    await studentRun.dispose();
    studentRun = undefined;
    const perSample = await activationBytes(student, inputDims);
    const fits = (factor: number) => (options.memoryBytes > 0 ? Math.max(1, Math.floor(options.memoryBytes / (factor * perSample))) : Infinity);
    batch = Math.min(batch, fits(3));
    let adapted = 0;
    if (options.adaptBatchNorm) {
      const n = Math.min(cache.count, options.adaptSamples ?? 128, fits(1));
      const pick = Int32Array.from({ length: n }, (_, i) => Math.floor((i * cache!.count) / n));
      const feeds = assemble(cache, segments.filter((g) => g.kind === 'input'), pick, 0, n, new Float32Array(cache.recordFloats));
      const feed: Feed = {};
      for (const [k, t] of Object.entries(feeds)) feed[k] = { type: 'float32', dims: [...t.dims], data: t.data as Float32Array };
      adapted = await adaptBatchNorm(student, feed, so);
    }
    let agreement = given;
    if (adapted) {
      const s0 = await Session.create(serializeModel(student), so, 'student');
      agreement = await agreementOf(s0, sInfo.output, heldOutFeeds, heldOutTeacher);
      await s0.dispose();
    }
    trainer = await createTrainer(student, inputNames, inputDims, segments, sInfo, features, { T, alpha, beta, labels, batch, optimizer: options.optimizer, weightDecay: options.weightDecay, session: so });

    // 4. train
    const epochRecords: EpochRecord[] = [];
    const initial: EpochRecord = { epoch: 0, meanLoss: NaN, agreement, lr: 0, seconds: 0 };
    epochRecords.push(initial);
    options.onEpoch?.(initial);
    const N = cache.count;
    const perEpoch = Math.ceil(N / batch);
    const total = perEpoch * epochs;
    const schedule = options.schedule;
    const bar = new ProgressBar({ label: 'distill', total, ...(options.progress === undefined ? {} : { enabled: options.progress }) });
    const record = new Float32Array(cache.recordFloats);
    const order = Int32Array.from({ length: N }, (_, i) => i);
    const tTrain = performance.now();
    let step = 0;
    try {
      for (let e = 1; e <= epochs; e++) {
        const t0 = performance.now();
        shuffle(order, rand);
        let sum = 0;
        for (let b = 0; b < perEpoch; b++) {
          const feeds = assemble(cache, segments, order, b * batch, batch, record);
          if (online > 0) teacherMs += await refresh(feeds, segments, images, batch, teacherRun, rand, aug!);
          const rate = lrAt(step, total, lr, schedule);
          const r = await trainer.step(feeds, rate);
          if (!Number.isFinite(r.loss)) {
            throw inputError('DISTILL_DIVERGED', `the distillation loss became ${r.loss} at epoch ${e}, step ${step + 1} (learning rate ${rate.toPrecision(3)}); nothing was written: lower --lr`, { option: 'lr' });
          }
          sum += r.loss;
          step++;
          bar.setLabel(`distill epoch ${e}/${epochs} loss ${(sum / (b + 1)).toPrecision(4)}`);
          bar.update(step);
        }
        const s = await Session.create(serializeModel(trainer.toInferenceModel()), so, 'student');
        const agreement = await agreementOf(s, sInfo.output, heldOutFeeds, heldOutTeacher);
        await s.dispose();
        const rec: EpochRecord = { epoch: e, meanLoss: sum / perEpoch, agreement, lr: lrAt(step - 1, total, lr, schedule), seconds: (performance.now() - t0) / 1000 };
        epochRecords.push(rec);
        options.onEpoch?.(rec);
      }
    } finally {
      bar.done();
    }
    const trainSeconds = (performance.now() - tTrain) / 1000;

    // 5. the trained weights, in place
    writeBack(student, trainer);
    return {
      teacher: tInfo,
      student: sInfo,
      features: features.map((f, i) => ({ teacher: f[0], student: f[1], dims: featureDims[i]! })),
      samples,
      augmentation: { inputs: images, copies, online, flip: images.length ? aug!.flip : 0 },
      activationBytes: perSample,
      batchRequested: options.batch,
      givenAgreement: given,
      adaptedBatchNorms: adapted,
      trainingRecords: N,
      heldOut: heldOutFeeds.length,
      cache: { records: cache.count, bytes: cache.bytes, onDisk: cache.onDisk },
      batch,
      steps: step,
      params: trainer.graph.params.length,
      temperature: T,
      alpha: labels ? alpha : 1,
      labels,
      epochs: epochRecords,
      trainSeconds,
      teacherSeconds: teacherMs / 1000,
    };
  } finally {
    cache?.dispose();
    await trainer?.dispose();
    await studentRun?.dispose();
    await teacherRun.dispose().catch(() => undefined);
  }
}

/** Record layout from the first sample; checks that teacher and student tensors match. */
function layout(s: Sample, inputNames: readonly string[], tInfo: LogitsInfo, sInfo: LogitsInfo, features: DistillOptions['features'] & {}, tOut: Feed, sOut: Feed, labels: boolean, featureDims: number[][]): Segment[] {
  const segs: Segment[] = [];
  let offset = 0;
  const push = (name: string, source: string, dims: number[], kind: Segment['kind']) => {
    const length = dims.reduce((a, d) => a * d, 1);
    segs.push({ name, source, dims, offset, length, kind });
    offset += length;
  };
  for (const n of inputNames) push(n, n, [...s.feed[n]!.dims], 'input');
  const tl = tOut[tInfo.logits]!;
  const sl = sOut[sInfo.logits]!;
  floatData(tl, tInfo.logits, s.id);
  floatData(sl, sInfo.logits, s.id);
  if (!sameDims(tl.dims, sl.dims)) {
    throw inputError(
      'DISTILL_SHAPE_MISMATCH',
      `teacher and student outputs differ in shape: teacher ${tInfo.logits} is ${formatDims(tl.dims)}, student ${sInfo.logits} is ${formatDims(sl.dims)} (on ${s.id})`,
      { tensor: sInfo.logits },
    );
  }
  checkClassAxis(tInfo, tl.dims, 'teacher');
  checkClassAxis(sInfo, sl.dims, 'student');
  push('teacher', tInfo.logits, [...tl.dims], 'teacher');
  features.forEach(([tn, sn], i) => {
    floatData(tOut[tn], tn, s.id);
    floatData(sOut[sn], sn, s.id);
    const a = tOut[tn]!;
    const b = sOut[sn]!;
    if (!sameDims(a.dims, b.dims)) {
      throw inputError('DISTILL_SHAPE_MISMATCH', `matched features differ in shape: teacher ${tn} is ${formatDims(a.dims)}, student ${sn} is ${formatDims(b.dims)}`, { tensor: sn });
    }
    featureDims.push([...a.dims]);
    push(`feature${i}`, tn, [...a.dims], 'feature');
  });
  if (labels) {
    const rows = tl.dims.slice(0, -1).reduce((a, d) => a * d, 1);
    if (rows !== 1) throw inputError('DISTILL_LABEL_SHAPE', `labels give one class per sample, but ${sInfo.logits} has ${rows} rows per sample ${formatDims(sl.dims)}`, { tensor: sInfo.logits });
    push('labels', '', [1], 'label');
  }
  return segs;
}

/** Bytes of every value one forward pass of `model` computes for one sample of `inputDims` (initializers excluded). */
async function activationBytes(model: Model, inputDims: Record<string, number[]>): Promise<number> {
  const shapes = await probeShapes(model, Object.fromEntries(Object.entries(inputDims).map(([k, d]) => [k, { dims: d }])));
  let total = 0;
  for (const [name, s] of shapes) {
    if (model.graph.initializers.has(name)) continue;
    total += byteLengthOf(s.dtype, s.dims.reduce((a, d) => a * d, 1));
  }
  return total;
}

function fill(rec: Float32Array, segs: readonly Segment[], feed: Feed, tOut: Feed, label: number | undefined): void {
  for (const g of segs) {
    if (g.kind === 'label') rec[g.offset] = label ?? 0;
    else rec.set((g.kind === 'input' ? feed : tOut)[g.source]!.data as Float32Array, g.offset);
  }
}

/**
 * Online augmentation: replaces a random `online` fraction of the batch's samples by fresh
 * augmentations of their `images` inputs (optionally mixed with another sample of the batch) and
 * recomputes the teacher's targets for them. Returns the milliseconds spent in the teacher.
 */
async function refresh(feeds: Record<string, ort.Tensor>, segs: readonly Segment[], images: readonly string[], batch: number, teacher: Session, rand: () => number, o: AugmentOptions): Promise<number> {
  const inputs = segs.filter((g) => g.kind === 'input');
  const targets = segs.filter((g) => g.kind === 'teacher' || g.kind === 'feature');
  const originals = inputs.map((g) => (feeds[g.name]!.data as Float32Array).slice());
  let ms = 0;
  for (let j = 0; j < batch; j++) {
    if (rand() >= o.online) continue;
    const mate = rand() < o.mixup ? Math.floor(rand() * batch) : -1;
    const lambda = 0.5 + rand() * 0.5;
    const feed: Feed = {};
    inputs.forEach((g, i) => {
      const row = originals[i]!.subarray(j * g.length, (j + 1) * g.length);
      if (!images.includes(g.source)) {
        feed[g.source] = { type: 'float32', dims: g.dims, data: row.slice() };
        return;
      }
      const x = augmentImage(row, g.dims, rand, o);
      if (mate >= 0) {
        const other = originals[i]!.subarray(mate * g.length, (mate + 1) * g.length);
        for (let e = 0; e < x.length; e++) x[e] = lambda * x[e]! + (1 - lambda) * other[e]!;
      }
      (feeds[g.name]!.data as Float32Array).set(x, j * g.length);
      feed[g.source] = { type: 'float32', dims: g.dims, data: x };
    });
    const t0 = performance.now();
    const out = await teacher.run(feed, targets.map((g) => g.source));
    ms += performance.now() - t0;
    for (const g of targets) (feeds[g.name]!.data as Float32Array).set(out[g.source]!.data as Float32Array, j * g.length);
  }
  return ms;
}

function shuffle(a: Int32Array, rand: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
}

/** Batch `b` of records order[start..start+batch) (wrapping around), as the trainer's data feeds. */
function assemble(cache: RecordCache, segs: readonly Segment[], order: Int32Array, start: number, batch: number, record: Float32Array): Record<string, ort.Tensor> {
  const arrays = segs.map((g) => (g.kind === 'label' ? new BigInt64Array(batch) : new Float32Array(g.length * batch)));
  for (let j = 0; j < batch; j++) {
    cache.read(order[(start + j) % order.length]!, record);
    segs.forEach((g, i) => {
      const a = arrays[i]!;
      if (a instanceof BigInt64Array) a[j] = BigInt(Math.round(record[g.offset]!));
      else a.set(record.subarray(g.offset, g.offset + g.length), j * g.length);
    });
  }
  const feeds: Record<string, ort.Tensor> = {};
  segs.forEach((g, i) => {
    const a = arrays[i]!;
    feeds[g.name] = a instanceof BigInt64Array ? new ort.Tensor('int64', a, [batch]) : new ort.Tensor('float32', a, [g.dims[0]! * batch, ...g.dims.slice(1)]);
  });
  return feeds;
}

interface TrainerSetup {
  T: number;
  alpha: number;
  beta: number;
  labels: boolean;
  batch: number;
  optimizer: 'adam' | 'sgd';
  weightDecay: number;
  session: SessionOptions;
}

/** Builds the training graph; renames the segments to the data inputs it declares. */
async function createTrainer(student: Model, inputNames: readonly string[], inputDims: Record<string, number[]>, segs: Segment[], sInfo: LogitsInfo, features: DistillOptions['features'] & {}, o: TrainerSetup): Promise<Trainer> {
  const losses: LossSpec[] = [{ kind: 'kl-divergence', output: sInfo.logits, teacher: 'distill_teacher', temperature: o.T, weight: o.labels ? o.alpha : 1 }];
  if (o.labels) losses.push({ kind: 'cross-entropy', output: sInfo.logits, labels: 'distill_labels', weight: 1 - o.alpha });
  features.forEach(([, sn], i) => losses.push({ kind: 'mse', output: sn, target: `distill_feature${i}`, weight: o.beta }));
  const optimizer: OptimizerSpec = o.optimizer === 'sgd' ? { kind: 'sgd', momentum: 0.9, weightDecay: o.weightDecay } : { kind: 'adam', weightDecay: o.weightDecay, decoupled: true };
  const inputs = Object.fromEntries(inputNames.map((n) => [n, { dims: [inputDims[n]![0]! * o.batch, ...inputDims[n]!.slice(1)] }]));
  const trainer = await Trainer.create(student, { inputs, losses, optimizer, session: o.session });
  // data inputs: the model's inputs, then one per loss in order (teacher, labels?, features...)
  const lossInputs = trainer.graph.dataInputs.slice(inputNames.length);
  const bySeg: Segment[] = [segs.find((g) => g.kind === 'teacher')!];
  if (o.labels) bySeg.push(segs.find((g) => g.kind === 'label')!);
  bySeg.push(...segs.filter((g) => g.kind === 'feature'));
  bySeg.forEach((g, i) => (g.name = lossInputs[i]!));
  return trainer;
}

/** Writes the trainer's current parameters into `model`'s initializers / Constant nodes. */
function writeBack(model: Model, trainer: Trainer): void {
  const g = model.graph;
  for (const p of trainer.graph.params) {
    const v = g.findValue(p.name);
    if (!v) throw inputError('TRAIN_BAD_PARAM', `parameter ${p.name} vanished from the student`, { tensor: p.name });
    const t = trainer.param(p.name);
    if (p.source === 'initializer') g.setInitializerTensor(v, t);
    else v.producer!.setAttr(Attribute.tensor('value', t));
  }
}

// ---------------------------------------------------------------------------------------------
// Feature matching through channel pruning

/**
 * The tensors matched by default when the student is the teacher pruned: the data input of every
 * full (group 1) Conv that does not read a graph input, each name once, then every `every`-th of
 * them starting with the first. These are the pruned layers' inputs, where the student's channels
 * are a subset of the teacher's.
 */
export function convInputFeatures(model: Model, every: number): string[] {
  const g = model.graph;
  const names: string[] = [];
  for (const n of g.nodes) {
    const x = n.inputs[0];
    if (n.opType !== 'Conv' || n.opDomain !== '' || n.getInt('group', 1) !== 1 || !x || g.inputs.includes(x) || names.includes(x.name)) continue;
    names.push(x.name);
  }
  return every >= 1 ? names.filter((_, i) => i % every === 0) : [];
}

/**
 * A copy of `teacher` where each named tensor also appears as `<name>__kept`, a Gather of the
 * channels (axis 1) that the pruned student's tensor of the same name kept, so the two can be
 * matched with the MSE feature term. `kept(name)` gives those original channel indices (e.g.
 * `ChannelPlan.keptChannels`); tensors for which it gives nothing are skipped. Returns the teacher
 * copy and the `features` pairs [teacher tensor, student tensor].
 */
export function keptFeatureTeacher(teacher: Model, names: readonly string[], kept: (name: string) => number[] | undefined): { teacher: Model; features: Array<[string, string]> } {
  const m = cloneModel(teacher);
  const g = m.graph;
  const emit = new Emitter(g, 'distill_kept');
  const features: Array<[string, string]> = [];
  for (const name of names) {
    const idx = kept(name);
    const v = g.findValue(name);
    if (!idx || !v) continue;
    const gathered = emit.op('Gather', [v, emit.int64s(idx, 'kept')], { axis: 1 });
    const out = emit.op('Identity', [gathered]);
    const target = `${name}__kept`;
    if (g.findValue(target)) throw inputError('DISTILL_NO_TENSOR', `the teacher already has a tensor named ${target}`, { tensor: target });
    out.name = target;
    g.addOutput(out);
    features.push([target, name]);
  }
  g.toposort();
  return { teacher: m, features };
}
