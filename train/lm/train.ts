/**
 * Training the byte-level language model with the project's own training graphs (forward, backward
 * and Adam in one onnxruntime session, see train/trainer.ts), on random windows of the TRAIN split.
 *
 * Loss: next-byte cross-entropy (mean nats per position); with a teacher, also the temperature-scaled
 * KL divergence to the teacher's logits (distillation, see distill.ts). Learning rate: linear warm-up
 * then cosine decay to 10% of the peak.
 *
 * The cached teacher: {@link trainedLanguageModel} returns the path of the trained model under
 * `cacheDir/<key>/model.onnx`, training it when missing. The key hashes the recipe version, the
 * config, the training options and the corpus digest; a lock file keeps two processes from training
 * the same model at once (the second waits for the first).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inputError } from '../../core/errors.js';
import { writeFileAtomic } from '../../core/files.js';
import { ProgressBar } from '../../core/progress.js';
import { Tensor } from '../../core/tensor.js';
import { Model } from '../../ir/ir.js';
import { saveModel } from '../../onnx/index.js';
import { mulberry32 } from '../../data/generate.js';
import { Session, SessionOptions, toOrtTensor } from '../../runtime/session.js';
import { LossSpec } from '../autodiff/losses.js';
import { Trainer } from '../trainer.js';
import { idsTensor, loadLmCorpus } from './data.js';
import { buildLanguageModel, LmConfig } from './model.js';

/** Bump when the model definition, data pipeline or training loop changes what gets trained. */
export const LM_RECIPE_VERSION = 1;

/** The teacher: the fidelity benchmark model of `bench:lm` and `bench:transformer`. */
export const TEACHER_CONFIG: LmConfig = { dModel: 128, heads: 4, layers: 3, ffn: 512, context: 128, seed: 19 };

export interface LmTrainOptions {
  steps: number;
  /** Windows per step. */
  batch: number;
  /** Bytes per window (at most the config's context). */
  seq: number;
  /** Peak learning rate. */
  lr: number;
  /** Warm-up steps (default 5% of steps). */
  warmup?: number;
  /** Seed of the window positions. */
  seed?: number;
}

/** The teacher's training recipe. */
export const TEACHER_TRAINING: LmTrainOptions = { steps: 1000, batch: 16, seq: 128, lr: 3e-3, seed: 1 };

type OrtFeed = Parameters<Trainer['step']>[0];

export interface DistillTarget {
  teacher: Session;
  /** Softmax temperature of the KL term. */
  temperature: number;
  /** Weight of the KL term; the cross-entropy gets 1 - alpha. */
  alpha: number;
}

export interface FitLanguageModelOptions {
  train: LmTrainOptions;
  /** Initial weights (default: the config's seeded initialization). */
  init?: ReadonlyMap<string, Tensor>;
  /** Distill from a teacher in addition to the next-byte loss. */
  distill?: DistillTarget;
  progress?: boolean;
  /** Label of the progress bar. */
  label?: string;
  session?: SessionOptions;
}

export interface FitLanguageModelResult {
  model: Model;
  /** Training loss per step (cross-entropy, plus the weighted KL when distilling). */
  losses: number[];
  seconds: number;
}

export function learningRate(step: number, o: LmTrainOptions): number {
  const warm = o.warmup ?? Math.max(1, Math.round(o.steps * 0.05));
  if (step < warm) return (o.lr * (step + 1)) / warm;
  const t = (step - warm) / Math.max(1, o.steps - warm);
  return o.lr * (0.1 + 0.45 * (1 + Math.cos(Math.PI * t)));
}

function checkTrainOptions(config: LmConfig, o: LmTrainOptions): void {
  for (const [k, v] of Object.entries({ steps: o.steps, batch: o.batch, seq: o.seq })) {
    if (!Number.isInteger(v) || v < 1) throw inputError('LM_BAD_OPTION', `training ${k} must be a positive integer, got ${v}`);
  }
  if (o.seq > config.context) throw inputError('LM_BAD_OPTION', `training seq ${o.seq} exceeds the model's context ${config.context}`);
  if (!(o.lr > 0)) throw inputError('LM_BAD_OPTION', `learning rate must be positive, got ${o.lr}`);
}

/** Trains (or distills) a model of `config`; returns the inference model with the trained weights. */
export async function fitLanguageModel(config: LmConfig, opts: FitLanguageModelOptions): Promise<FitLanguageModelResult> {
  const o = opts.train;
  checkTrainOptions(config, o);
  const { model, params } = buildLanguageModel(config, opts.init);
  const losses: LossSpec[] = [];
  const alpha = opts.distill?.alpha ?? 0;
  if (opts.distill) {
    if (!(opts.distill.temperature > 0)) throw inputError('TRAIN_BAD_TEMPERATURE', `distillation temperature must be positive, got ${opts.distill.temperature}`);
    losses.push({ kind: 'kl-divergence', output: 'logits', teacher: 'teacher_logits', temperature: opts.distill.temperature, weight: alpha });
  }
  if (alpha < 1) losses.push({ kind: 'cross-entropy', output: 'logits', labels: 'labels', weight: 1 - alpha });
  const trainer = await Trainer.create(model, {
    inputs: { input_ids: { dims: [o.batch, o.seq], type: 'int64' } },
    losses,
    optimizer: { kind: 'adam', beta1: 0.9, beta2: 0.98, epsilon: 1e-8 },
    params,
    ...(opts.session ? { session: opts.session } : {}),
  });
  const { train } = loadLmCorpus();
  const rand = mulberry32(o.seed ?? 1);
  const bar = new ProgressBar({ label: opts.label ?? 'train lm', total: o.steps, ...(opts.progress === undefined ? {} : { enabled: opts.progress }) });
  const history: number[] = [];
  const t0 = performance.now();
  let ema = NaN;
  try {
    for (let s = 0; s < o.steps; s++) {
      const offsets = Array.from({ length: o.batch }, () => Math.floor(rand() * (train.length - o.seq - 1)));
      const ids = toOrtTensor({ type: 'int64', dims: [o.batch, o.seq], data: idsTensor(train, offsets, o.seq) });
      const feed: OrtFeed = { input_ids: ids };
      if (alpha < 1) feed.labels = toOrtTensor({ type: 'int64', dims: [o.batch, o.seq], data: idsTensor(train, offsets, o.seq, 1) });
      if (opts.distill) feed.teacher_logits = (await opts.distill.teacher.runOrt({ input_ids: ids })).logits as OrtFeed[string];
      const r = await trainer.step(feed, learningRate(s, o));
      if (!Number.isFinite(r.loss)) throw inputError('TRAIN_STEP_FAILED', `language-model training diverged at step ${s + 1} (loss ${r.loss})`);
      history.push(r.loss);
      ema = Number.isNaN(ema) ? r.loss : 0.95 * ema + 0.05 * r.loss;
      bar.setLabel(`${opts.label ?? 'train lm'} loss ${ema.toFixed(3)}`);
      bar.update(s + 1);
    }
    return { model: trainer.toInferenceModel(), losses: history, seconds: (performance.now() - t0) / 1000 };
  } finally {
    bar.done();
    await trainer.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// the cached teacher

export interface TrainedModelMeta {
  version: number;
  key: string;
  config: LmConfig;
  training: LmTrainOptions;
  corpusDigest: string;
  trainFiles: number;
  evalFiles: number;
  trainSeconds: number;
  /** Mean training loss (nats per byte) over the last 5% of steps. */
  finalLoss: number;
}

export interface TrainedModelOptions {
  /** Default `.bench-out/lm` (relative to the working directory). */
  cacheDir?: string;
  config?: LmConfig;
  training?: LmTrainOptions;
  progress?: boolean;
  session?: SessionOptions;
  /** Longest wait for another process training the same model, seconds (default 1800). */
  waitSeconds?: number;
}

export const DEFAULT_LM_CACHE_DIR = '.bench-out/lm';

/** Cache key of a config + recipe + corpus. */
export function lmCacheKey(config: LmConfig, training: LmTrainOptions, corpusDigest: string): string {
  const text = JSON.stringify({ version: LM_RECIPE_VERSION, config, training, corpusDigest });
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock file, or returns false while a live process holds it (a dead holder's lock is taken over). */
function tryLock(lock: string): boolean {
  try {
    fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    const holder = Number(fs.readFileSync(lock, 'utf8'));
    if (Number.isInteger(holder) && holder > 0 && pidAlive(holder)) return false;
    fs.rmSync(lock, { force: true });
    return tryLock(lock);
  }
}

/** Reads the metadata written next to a cached model. */
export function readTrainedModelMeta(modelPath: string): TrainedModelMeta {
  const file = path.join(path.dirname(modelPath), 'meta.json');
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as TrainedModelMeta;
  } catch (e) {
    throw inputError('LM_NO_DATA', `cannot read ${file}: ${(e as Error).message}`, { file });
  }
}

/**
 * `dir/model.onnx` (with `dir/meta.json`), produced by `produce` when missing. A lock file in `dir`
 * makes a second process wait for the first instead of producing the same model again.
 */
export async function cachedModel<M>(dir: string, waitSeconds: number, produce: () => Promise<{ model: Model; meta: M }>): Promise<string> {
  const modelPath = path.join(dir, 'model.onnx');
  const metaPath = path.join(dir, 'meta.json');
  const ready = () => fs.existsSync(modelPath) && fs.existsSync(metaPath);
  if (ready()) return modelPath;
  fs.mkdirSync(dir, { recursive: true });
  const lock = path.join(dir, '.lock');
  const deadline = Date.now() + waitSeconds * 1000;
  while (!tryLock(lock)) {
    if (ready()) return modelPath;
    if (Date.now() > deadline) throw inputError('LM_NO_DATA', `waited too long for another process producing ${modelPath} (lock ${lock})`, { file: modelPath });
    await new Promise((r) => setTimeout(r, 2000));
  }
  try {
    if (ready()) return modelPath;
    const { model, meta } = await produce();
    await saveModel(model, modelPath);
    writeFileAtomic(metaPath, `${JSON.stringify(meta, null, 2)}\n`);
    return modelPath;
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

/** Mean of the last 5% of a loss history. */
export function finalLoss(losses: readonly number[]): number {
  const tail = losses.slice(-Math.max(1, Math.round(losses.length * 0.05)));
  return tail.reduce((a, b) => a + b, 0) / tail.length;
}

/**
 * Path of the trained teacher language model (`model.onnx`, with `meta.json` beside it), training
 * it (with a progress bar) when the cache does not hold it yet.
 */
export async function trainedLanguageModel(options: TrainedModelOptions = {}): Promise<string> {
  const config = options.config ?? TEACHER_CONFIG;
  const training = options.training ?? TEACHER_TRAINING;
  const corpus = loadLmCorpus();
  const key = lmCacheKey(config, training, corpus.digest);
  const dir = path.resolve(options.cacheDir ?? DEFAULT_LM_CACHE_DIR, key);
  return cachedModel(dir, options.waitSeconds ?? 1800, async () => {
    const fit = await fitLanguageModel(config, { train: training, progress: options.progress, label: 'train lm', ...(options.session ? { session: options.session } : {}) });
    const meta: TrainedModelMeta = {
      version: LM_RECIPE_VERSION,
      key,
      config,
      training,
      corpusDigest: corpus.digest,
      trainFiles: corpus.trainFiles.length,
      evalFiles: corpus.evalFiles.length,
      trainSeconds: fit.seconds,
      finalLoss: finalLoss(fit.losses),
    };
    return { model: fit.model, meta };
  });
}

