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
 * The recipe by default (the best measured on PaddleOCR cls pruned 30%, bench:distill): 30 epochs of
 * AdamW at lr 2e-3 with a cosine schedule, batch 16, T 4; image inputs (rank 4) varied by 3 cached
 * copies per sample and half of every batch freshly augmented (crop 8%, shift 3 px, brightness and
 * contrast 0.1, and a 180-degree turn with probability 0.5); and, when the student is the teacher
 * with channels pruned, an MSE between the student's inputs of every 2nd full Conv and the teacher's
 * same tensors gathered to the kept channels (`keptFeatures`). Every default is written once, in
 * {@link DISTILL_OPTIONS}: the CLI (`onnxforge distill`), pipelines and {@link distillModel} read it there.
 *
 * Preparation: a student below opset 13 is upgraded to 17 (`upgrade-opset`, training graphs need
 * opset 13+). BatchNormalization statistics are re-estimated on the training inputs and the student
 * trains with its BatchNormalization layers as they are (per-channel affine maps, so `features`
 * names stay valid); afterwards the lossless `default` preset folds them away unless
 * `optimize=false`. The teacher is only run.
 *
 * Context: `ctx.data.teacher` (a Model or its bytes; without it, the model as it was before a
 * `prune-channels` pass earlier in the same run), `ctx.data.train` (or `ctx.data.calibration`:
 * samples, a function returning them, or an iterable), optional `ctx.data.heldOut` (samples for the
 * per-epoch agreement) and `ctx.data.labelOf(label, id) -> class`. The report is stored in
 * the pass's report. The pass reads and writes no file of its own; above the cache limit
 * the teacher cache spills to a temporary file that is always removed.
 */
import type { Sample } from '../../data/index.js';
import { inputError, internalError } from '../../core/errors.js';
import type { Model } from '../../ir/ir.js';
import { cloneModel, loadModel, serializeModel } from '../../onnx/index.js';
import type { SessionOptions } from '../../runtime/session.js';
import { adoptModel, convInputFeatures, distill, DistillOptions, DistillReport, EpochRecord, keptFeatureTeacher } from '../../train/distill.js';
import { definePass, OptionsSchema, PassContext, withSchemaDefaults } from '../pass.js';
import pruneChannels, { planChannels, PrunedFrom, PruneChannelsOptions, ChannelReport } from '../prune/prune-channels.js';

/** The options and their defaults: the one place they are written. */
export const DISTILL_OPTIONS = {
  epochs: { type: 'integer', description: 'Passes over the training records.', default: 30, min: 1 },
  lr: { type: 'number', description: 'Peak learning rate (cosine schedule: 5% linear warm-up, then decay to 0).', default: 2e-3, min: 0, exclusiveMin: true },
  temperature: { type: 'number', description: 'Softmax temperature T of the KL term (scaled by T^2).', default: 4, min: 0, exclusiveMin: true },
  alpha: { type: 'number', description: 'With labels: weight of the KL term; cross-entropy gets 1 - alpha.', default: 0.5, min: 0, max: 1 },
  batch: { type: 'integer', description: 'Samples per training step (lowered when a batch would not fit in the memory budget).', default: 16, min: 1 },
  memory: { type: 'number', description: 'GiB the training may take, estimated as 3x the forward activations of a batch: the batch and the batch-norm adaptation samples are lowered to fit; 0 for no limit.', default: 4, min: 0 },
  features: { type: 'string[]', description: 'Matched intermediate tensors as teacher:student, each adding an MSE term.', default: [] },
  featureWeight: { type: 'number', description: 'Weight of each feature MSE term.', default: 1, min: 0 },
  keptFeatures: {
    type: 'integer',
    description: "When the student is the teacher with channels pruned: match the input of every n-th full Conv to the teacher's same tensor gathered to the kept channels (MSE); 0 turns it off.",
    default: 2,
    min: 0,
  },
  augment: { type: 'integer', description: 'Augmented copies of each training sample, cached with the teacher outputs (image inputs only).', default: 3, min: 0 },
  online: { type: 'number', description: 'Fraction of every batch replaced by fresh augmentations, the teacher run on them then (image inputs only).', default: 0.5, min: 0, max: 1 },
  flip: { type: 'number', description: 'Probability that an augmentation also turns the image by 180 degrees.', default: 0.5, min: 0, max: 1 },
  shift: { type: 'number', description: 'Largest shift of an augmentation, in pixels.', default: 3, min: 0 },
  crop: { type: 'number', description: 'Largest crop of an augmentation (the window keeps at least 1 - crop of each side).', default: 0.08, min: 0, max: 1, exclusiveMax: true },
  brightness: { type: 'number', description: 'Largest brightness change of an augmentation, in input units.', default: 0.1, min: 0 },
  contrast: { type: 'number', description: 'Largest contrast change of an augmentation (a factor in [1 - c, 1 + c]).', default: 0.1, min: 0, max: 1, exclusiveMax: true },
  mixup: { type: 'number', description: 'Probability that a fresh augmentation is mixed with another sample of the batch.', default: 0, min: 0, max: 1 },
  weightDecay: { type: 'number', description: 'Decoupled weight decay (AdamW) or L2 (SGD).', default: 0, min: 0 },
  holdout: { type: 'number', description: 'Fraction of the training samples held out for the per-epoch agreement (without held-out data).', default: 0, min: 0, max: 1, exclusiveMax: true },
  seed: { type: 'integer', description: 'Seed of shuffling and augmentation.', default: 1 },
  schedule: { type: 'enum', values: ['cosine', 'constant'], description: 'Learning-rate schedule.', default: 'cosine' },
  optimizer: { type: 'enum', values: ['adam', 'sgd'], description: 'AdamW, or SGD with momentum 0.9.', default: 'adam' },
  optimize: { type: 'boolean', description: 'Run the lossless default preset on the student after training (folds BatchNormalization).', default: true },
  adaptBatchNorm: { type: 'boolean', description: 'Re-estimate BatchNormalization statistics on the training inputs before training.', default: true },
  output: { type: 'string', description: 'Graph output to distill (default: the first).', default: '' },
} satisfies OptionsSchema;

export interface DistillPassOptions extends Record<string, unknown> {
  epochs: number;
  lr: number;
  temperature: number;
  alpha: number;
  batch: number;
  memory: number;
  features: string[];
  featureWeight: number;
  keptFeatures: number;
  augment: number;
  online: number;
  flip: number;
  shift: number;
  crop: number;
  brightness: number;
  contrast: number;
  mixup: number;
  weightDecay: number;
  holdout: number;
  seed: number;
  schedule: string;
  optimizer: string;
  optimize: boolean;
  adaptBatchNorm: boolean;
  output: string;
}


type Items = AsyncIterable<Sample> | Iterable<Sample>;

/** What code can give besides the pass options. */
export interface DistillRuntimeOptions {
  /**
   * When the student is the teacher with channels pruned: the original channels each student tensor
   * kept (`ChannelPlan.keptChannels`). Enables the `keptFeatures` matching.
   */
  kept?: (name: string) => number[] | undefined;
  heldOut?: Items;
  labelOf?: (label: unknown, id: string) => number | undefined;
  session?: SessionOptions;
  progress?: boolean;
  onEpoch?: (e: EpochRecord) => void;
  cacheLimitBytes?: number;
  cacheDir?: string;
}

/** Any pass option (the rest take the schema defaults) and the runtime ones. */
export type DistillModelOptions = Partial<DistillPassOptions> & DistillRuntimeOptions;

/** Pass options (over the schema defaults) as the training settings of `runtime/distill.ts`. */
export function distillSettings(options: DistillModelOptions = {}): DistillOptions {
  const o = withSchemaDefaults(DISTILL_OPTIONS, options) as DistillPassOptions & DistillRuntimeOptions;
  const r: DistillOptions = {
    epochs: o.epochs,
    lr: o.lr,
    temperature: o.temperature,
    alpha: o.alpha,
    batch: o.batch,
    memoryBytes: o.memory * 2 ** 30,
    features: parseFeaturePairs(o.features),
    featureWeight: o.featureWeight,
    weightDecay: o.weightDecay,
    holdout: o.holdout,
    seed: o.seed,
    schedule: o.schedule as DistillOptions['schedule'],
    optimizer: o.optimizer as DistillOptions['optimizer'],
    adaptBatchNorm: o.adaptBatchNorm,
  };
  if (o.augment > 0 || o.online > 0) r.augment = { copies: o.augment, online: o.online, flip: o.flip, shift: o.shift, crop: o.crop, brightness: o.brightness, contrast: o.contrast, mixup: o.mixup };
  if (o.output) r.output = o.output;
  const { heldOut, labelOf, session, progress, onEpoch, cacheLimitBytes, cacheDir } = options;
  Object.assign(r, { heldOut, labelOf, session, progress, onEpoch, cacheLimitBytes, cacheDir });
  for (const k of Object.keys(r) as Array<keyof DistillOptions>) if (r[k] === undefined) delete r[k];
  return r;
}

export interface DistillModelReport extends DistillReport {
  opsetBefore: number;
  opsetAfter: number;
  /** Pipelines run on the student before and after training. */
  pipelines: string[];
  nodesAfter: number;
  /** Feature pairs matched on kept channels (`keptFeatures`), besides those given. */
  keptFeatures: number;
}

/**
 * Distills `teacher` into `student` on `data` with `options` over the schema defaults: upgrades a
 * student below opset 13 to 17, adds the kept-channel feature pairs when `options.kept` says the
 * student is the teacher pruned, trains, then optimizes. `student` changes only when all of it succeeded.
 */
export async function distillModel(student: Model, teacher: Model, data: Items, options: DistillModelOptions = {}, ctx: Pick<PassContext, 'pipelines'> = {}): Promise<DistillModelReport> {
  const settings = distillSettings(options);
  const { keptFeatures: keptEvery, optimize: optimizeIt } = withSchemaDefaults(DISTILL_OPTIONS, options) as DistillPassOptions;
  const optimize = (m: Model, pipeline: string) => {
    if (!ctx.pipelines) throw internalError('PASS_NO_PIPELINES', `distillation runs '${pipeline}' on the student: call it through the pass manager (a pipeline) or with a context from createPassContext() (passes/api.ts does)`);
    return ctx.pipelines.run(m, pipeline);
  };
  let from = teacher;
  let matched = 0;
  if (options.kept && keptEvery > 0) {
    const k = keptFeatureTeacher(teacher, convInputFeatures(student, keptEvery), options.kept);
    from = k.teacher;
    matched = k.features.length;
    settings.features = [...(settings.features ?? []), ...k.features];
  }
  const work = cloneModel(student);
  const opsetBefore = work.opset('') ?? 1;
  const pipelines: string[] = [];
  if (opsetBefore < 13) {
    await optimize(work, 'upgrade-opset<to=17>');
    pipelines.push('upgrade-opset<to=17>');
  }
  const report = await distill(work, from, data, settings);
  if (optimizeIt) {
    await optimize(work, '@default');
    pipelines.push('@default');
  }
  adoptModel(student, work);
  return { ...report, opsetBefore, opsetAfter: student.opset('') ?? opsetBefore, pipelines, nodesAfter: student.graph.nodes.length, keptFeatures: matched };
}

/**
 * The student of `distill --prune-channels R`: a copy of `teacher` pruned with prune-channels
 * `options` (over that pass's schema defaults), with the kept channels for {@link distillModel}.
 */
export function prunedStudent(teacher: Model, options: Partial<PruneChannelsOptions>): { student: Model; pruning: ChannelReport; kept: (name: string) => number[] | undefined } {
  const student = cloneModel(teacher);
  const plan = planChannels(student, options);
  plan.apply();
  return { student, pruning: plan.report, kept: plan.keptChannels };
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
  throw inputError('DISTILL_NO_TEACHER', 'distill: ctx.data.teacher must be a Model or its bytes');
}

/**
 * The teacher, and the kept channels when the student is it pruned: ctx.data.teacher, else the
 * model before an earlier prune-channels pass of this run (then the kept channels apply; they also
 * apply to a given teacher identical to that model).
 */
async function teacherFor(ctx: PassContext): Promise<{ teacher: Model; kept?: PrunedFrom['kept'] }> {
  const from = ctx.reportOf(pruneChannels)?.source;
  if (ctx.data.teacher === undefined) {
    if (!from) throw inputError('DISTILL_NO_TEACHER', 'distill needs a teacher: ctx.data.teacher (--teacher on the command line), or a prune-channels pass before it in the pipeline (the model before pruning teaches)');
    return { teacher: from.model, kept: from.kept };
  }
  const teacher = await teacherOf(ctx.data.teacher);
  if (!from) return { teacher };
  const a = serializeModel(teacher);
  const b = serializeModel(from.model);
  return a.length === b.length && a.every((x, i) => x === b[i]) ? { teacher, kept: from.kept } : { teacher };
}

export default definePass<DistillPassOptions, DistillModelReport>({
  name: 'distill',
  description: 'Knowledge distillation: train the model to match a teacher (ctx.data.teacher, or the model before prune-channels) on ctx.data.train',
  idempotent: false,
  options: DISTILL_OPTIONS,
  async run(model, o, ctx: PassContext) {
    const { teacher, kept } = await teacherFor(ctx);
    const data = items(ctx.data.train ?? ctx.data.calibration, 'train');
    if (!data) throw inputError('DISTILL_NO_DATA', 'distill needs training samples (ctx.data.train or ctx.data.calibration; --data SPEC on the command line)');
    const heldOut = items(ctx.data.heldOut, 'heldOut');
    const opts: DistillModelOptions = { ...o, progress: false };
    if (kept) opts.kept = kept;
    if (heldOut) opts.heldOut = heldOut;
    if (typeof ctx.data.labelOf === 'function') opts.labelOf = ctx.data.labelOf as DistillRuntimeOptions['labelOf'] & {};
    const r = await distillModel(model, teacher, data, opts, ctx);
    const last = r.epochs[r.epochs.length - 1]!;
    return {
      report: r,
      changed: r.steps > 0,
      stats: { epochs: r.epochs.length - 1, steps: r.steps, records: r.trainingRecords, params: r.params, keptFeatures: r.keptFeatures, agreementBefore: r.epochs[0]!.agreement, agreementAfter: last.agreement, finalLoss: last.meanLoss },
    };
  },
});
