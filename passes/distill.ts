/**
 * distill: knowledge distillation. Trains the model (the student) to reproduce a teacher's outputs on
 * the pipeline's training data and writes the trained weights into it; the graph keeps its structure.
 *
 *   L = a * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - a) * CE(s, y) + b * sum_i MSE(s_i, t_i)
 *
 * t and s are the logits (the input of a Softmax that produces the output; see `runtime/distill.ts`
 * for why logits rather than probabilities), y labels when `ctx.data.labelOf` is given, (t_i, s_i)
 * the `features` pairs `teacherTensor:studentTensor`.
 *
 * Preparation: a student below opset 13 is upgraded to 17 (`upgrade-opset`, training graphs need
 * opset 13+). BatchNormalization statistics are re-estimated on the training inputs and the student
 * trains with its BatchNormalization layers as they are (per-channel affine maps, so `features`
 * names stay valid); afterwards the lossless `default` preset folds them away unless
 * `optimize=false`. The teacher is only run.
 *
 * Context: `ctx.data.teacher` (a Model or its bytes), `ctx.data.train` (or `ctx.data.calibration`:
 * samples, a function returning them, or an iterable), optional `ctx.data.heldOut` (samples for the
 * per-epoch agreement) and `ctx.data.labelOf(label, id) -> class`. The report is stored in
 * `ctx.shared` under `distill`. The pass reads and writes no file of its own; above the cache limit
 * the teacher cache spills to a temporary file that is always removed.
 */
import type { Sample } from '../calibration/data/index.js';
import { inputError } from '../graph/errors.js';
import type { Model } from '../graph/ir.js';
import { cloneModel, loadModel } from '../graph/onnx/index.js';
import { adoptModel, distill, DistillOptions, DistillReport } from '../runtime/distill.js';
import { definePass, PassContext } from './pass.js';

export interface DistillModelOptions extends DistillOptions {
  /** Run the `default` preset on the student after training (default true). */
  optimize?: boolean;
}

export interface DistillModelReport extends DistillReport {
  opsetBefore: number;
  opsetAfter: number;
  /** Pipelines run on the student before and after training. */
  pipelines: string[];
  nodesAfter: number;
}

type Items = AsyncIterable<Sample> | Iterable<Sample>;

/**
 * Upgrades `student` to opset 17 when below 13, distills `teacher` into it on `data`, then optimizes
 * it; `student` changes only when all of it succeeded.
 */
export async function distillModel(student: Model, teacher: Model, data: Items, options: DistillModelOptions = {}): Promise<DistillModelReport> {
  const { optimize: optimizeIt, ...rest } = options;
  // imported here: the manager loads the registry, which loads this pass (a cycle at module evaluation)
  const { optimize } = await import('./manager.js');
  const work = cloneModel(student);
  const opsetBefore = work.opset('') ?? 1;
  const pipelines: string[] = [];
  if (opsetBefore < 13) {
    await optimize(work, 'upgrade-opset<to=17>');
    pipelines.push('upgrade-opset<to=17>');
  }
  const report = await distill(work, teacher, data, rest);
  if (optimizeIt ?? true) {
    await optimize(work, '@default');
    pipelines.push('@default');
  }
  adoptModel(student, work);
  return { ...report, opsetBefore, opsetAfter: student.opset('') ?? opsetBefore, pipelines, nodesAfter: student.graph.nodes.length };
}

/** Parses `teacher:student` pairs (a list, or one comma-separated string). */
export function parseFeaturePairs(items: readonly string[]): Array<[string, string]> {
  return items
    .flatMap((x) => x.split(','))
    .map((x) => x.trim())
    .filter(Boolean)
    .map((x) => {
      const i = x.lastIndexOf(':');
      if (i <= 0 || i === x.length - 1) throw inputError('DISTILL_BAD_FEATURES', `distill: feature pair '${x}' must be teacherTensor:studentTensor`, { option: 'features' });
      return [x.slice(0, i), x.slice(i + 1)] as [string, string];
    });
}

function items(x: unknown, what: string): Items | undefined {
  if (x === undefined) return undefined;
  const v = typeof x === 'function' ? (x as () => unknown)() : x;
  if (v && (typeof (v as AsyncIterable<Sample>)[Symbol.asyncIterator] === 'function' || typeof (v as Iterable<Sample>)[Symbol.iterator] === 'function')) return v as Items;
  throw inputError('DISTILL_BAD_DATA', `distill: ctx.data.${what} must be samples (an iterable, async iterable, or a function returning one)`);
}

async function teacherOf(x: unknown): Promise<Model> {
  if (x instanceof Uint8Array) return loadModel(x);
  if (x && typeof x === 'object' && 'graph' in x && 'opset' in x) return x as Model;
  throw inputError('DISTILL_NO_TEACHER', 'distill needs a teacher model (ctx.data.teacher: a Model or its bytes; --teacher on the command line)');
}

interface PassOptions extends Record<string, unknown> {
  epochs: number;
  lr: number;
  temperature: number;
  alpha: number;
  batch: number;
  features: string[];
  featureWeight: number;
  augment: number;
  holdout: number;
  seed: number;
  schedule: string;
  optimizer: string;
  optimize: boolean;
  adaptBatchNorm: boolean;
  output: string;
}

export default definePass<PassOptions>({
  name: 'distill',
  description: 'Knowledge distillation: train the model to match a teacher (ctx.data.teacher) on ctx.data.train',
  idempotent: false,
  options: {
    epochs: { type: 'integer', description: 'Passes over the training records.', default: 10, min: 1 },
    lr: { type: 'number', description: 'Peak learning rate.', default: 1e-3, min: 0, exclusiveMin: true },
    temperature: { type: 'number', description: 'Softmax temperature of the KL term.', default: 4, min: 0, exclusiveMin: true },
    alpha: { type: 'number', description: 'Weight of the KL term against cross-entropy when labels are given.', default: 0.5, min: 0, max: 1 },
    batch: { type: 'integer', description: 'Samples per training step.', default: 16, min: 1 },
    features: { type: 'string[]', description: 'Matched intermediate tensors as teacher:student (MSE terms).', default: [] },
    featureWeight: { type: 'number', description: 'Weight of each feature MSE term.', default: 1, min: 0 },
    augment: { type: 'integer', description: 'Augmented copies (crop/shift/brightness) per training sample.', default: 0, min: 0 },
    holdout: { type: 'number', description: 'Fraction of the training samples held out for the agreement (without ctx.data.heldOut).', default: 0, min: 0, max: 1, exclusiveMax: true },
    seed: { type: 'integer', description: 'Seed of shuffling and augmentation.', default: 1 },
    schedule: { type: 'enum', values: ['cosine', 'constant'], description: 'Learning-rate schedule.', default: 'cosine' },
    optimizer: { type: 'enum', values: ['adam', 'sgd'], description: 'Optimizer (AdamW or SGD with momentum 0.9).', default: 'adam' },
    optimize: { type: 'boolean', description: 'Run the default preset on the student after training (folds BatchNormalization).', default: true },
    adaptBatchNorm: { type: 'boolean', description: 'Re-estimate BatchNormalization statistics on the training inputs first.', default: true },
    output: { type: 'string', description: 'Graph output to distill (default: the first).', default: '' },
  },
  async run(model, o, ctx: PassContext) {
    const teacher = await teacherOf(ctx.data.teacher);
    const data = items(ctx.data.train ?? ctx.data.calibration, 'train');
    if (!data) throw inputError('DISTILL_NO_DATA', 'distill needs training samples (ctx.data.train; --data SPEC on the command line)');
    const heldOut = items(ctx.data.heldOut, 'heldOut');
    const opts: DistillModelOptions = {
      epochs: o.epochs,
      lr: o.lr,
      temperature: o.temperature,
      alpha: o.alpha,
      batch: o.batch,
      features: parseFeaturePairs(o.features),
      featureWeight: o.featureWeight,
      holdout: o.holdout,
      seed: o.seed,
      schedule: o.schedule as 'cosine',
      optimizer: o.optimizer as 'adam',
      optimize: o.optimize,
      adaptBatchNorm: o.adaptBatchNorm,
      progress: false,
    };
    if (o.augment > 0) opts.augment = { copies: o.augment };
    if (o.output) opts.output = o.output;
    if (heldOut) opts.heldOut = heldOut;
    if (typeof ctx.data.labelOf === 'function') opts.labelOf = ctx.data.labelOf as DistillOptions['labelOf'] & {};
    const r = await distillModel(model, teacher, data, opts);
    ctx.shared.set('distill', r);
    const last = r.epochs[r.epochs.length - 1]!;
    return {
      changed: r.steps > 0,
      stats: { epochs: r.epochs.length - 1, steps: r.steps, records: r.trainingRecords, params: r.params, agreementBefore: r.epochs[0]!.agreement, agreementAfter: last.agreement, finalLoss: last.meanLoss },
    };
  },
});
