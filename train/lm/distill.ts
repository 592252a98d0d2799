/**
 * A smaller student language model distilled from the trained teacher with the project's training
 * graphs: loss = alpha * T^2 KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * next-byte
 * cross-entropy, the teacher's logits computed by an onnxruntime session on the same windows each step.
 *
 * The student keeps the teacher's width and has fewer blocks; it starts from the teacher's embeddings,
 * final LayerNorm, head and an evenly spaced subset of its blocks (student block i <- teacher block
 * round(i * (Lt - 1) / max(1, Ls - 1))), the usual layer-dropping start. train/distill.ts is not used:
 * its recipe is for image classifiers (augmentation, BatchNorm adaptation, labelled item lists).
 */
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { inputError } from '../../core/errors.js';
import { Tensor } from '../../core/tensor.js';
import { loadModel } from '../../onnx/index.js';
import { createSession, SessionOptions } from '../../runtime/session.js';
import { loadLmCorpus } from './data.js';
import { LmConfig, modelWeights } from './model.js';
import { cachedModel, DEFAULT_LM_CACHE_DIR, finalLoss, fitLanguageModel, LmTrainOptions, LM_RECIPE_VERSION, readTrainedModelMeta } from './train.js';

export interface StudentOptions {
  /** Student blocks (default 1). */
  layers?: number;
  training?: LmTrainOptions;
  /** Default 2. */
  temperature?: number;
  /** Weight of the KL term (default 0.5). */
  alpha?: number;
  /** Start from the teacher's weights (default true); false trains the student from its seeded init. */
  fromTeacher?: boolean;
  cacheDir?: string;
  progress?: boolean;
  session?: SessionOptions;
}

export interface StudentMeta {
  version: number;
  teacher: string;
  config: LmConfig;
  training: LmTrainOptions;
  temperature: number;
  alpha: number;
  fromTeacher: boolean;
  trainSeconds: number;
  finalLoss: number;
}

export const STUDENT_TRAINING: LmTrainOptions = { steps: 400, batch: 16, seq: 128, lr: 2e-3, seed: 2 };

/** Teacher weights renamed for a student with `studentLayers` blocks. */
export function studentInit(teacher: ReadonlyMap<string, Tensor>, teacherLayers: number, studentLayers: number): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const blockOf = (i: number) => Math.round((i * (teacherLayers - 1)) / Math.max(1, studentLayers - 1));
  for (const [name, t] of teacher) {
    const m = /^transformer\.h\.(\d+)\.(.*)$/.exec(name);
    if (!m) out.set(name, t);
  }
  for (let i = 0; i < studentLayers; i++) {
    const prefix = `transformer.h.${blockOf(i)}.`;
    for (const [name, t] of teacher) if (name.startsWith(prefix)) out.set(`transformer.h.${i}.${name.slice(prefix.length)}`, t);
  }
  return out;
}

/** Path of the distilled student (cached beside the teacher, keyed by the teacher and the options). */
export async function distillLanguageModel(teacherPath: string, options: StudentOptions = {}): Promise<string> {
  const teacherMeta = readTrainedModelMeta(teacherPath);
  const layers = options.layers ?? 1;
  if (!Number.isInteger(layers) || layers < 1 || layers > teacherMeta.config.layers) {
    throw inputError('LM_BAD_OPTION', `student layers must be an integer from 1 to the teacher's ${teacherMeta.config.layers}, got ${layers}`);
  }
  const config: LmConfig = { ...teacherMeta.config, layers };
  const training = options.training ?? STUDENT_TRAINING;
  const temperature = options.temperature ?? 2;
  const alpha = options.alpha ?? 0.5;
  const fromTeacher = options.fromTeacher ?? true;
  const key = createHash('sha256')
    .update(JSON.stringify({ version: LM_RECIPE_VERSION, teacher: teacherMeta.key, config, training, temperature, alpha, fromTeacher, corpus: loadLmCorpus().digest }))
    .digest('hex')
    .slice(0, 16);
  const dir = path.resolve(options.cacheDir ?? DEFAULT_LM_CACHE_DIR, `student-${key}`);
  return cachedModel(dir, 1800, async () => {
    const teacherModel = await loadModel(teacherPath);
    const init = fromTeacher ? studentInit(modelWeights(teacherModel), teacherMeta.config.layers, layers) : undefined;
    const teacher = await createSession(teacherPath, options.session ?? {});
    try {
      const fit = await fitLanguageModel(config, {
        train: training,
        distill: { teacher, temperature, alpha },
        progress: options.progress,
        label: 'distill lm',
        ...(init ? { init } : {}),
        ...(options.session ? { session: options.session } : {}),
      });
      const meta: StudentMeta = { version: LM_RECIPE_VERSION, teacher: teacherMeta.key, config, training, temperature, alpha, fromTeacher, trainSeconds: fit.seconds, finalLoss: finalLoss(fit.losses) };
      return { model: fit.model, meta };
    } finally {
      await teacher.dispose();
    }
  });
}
