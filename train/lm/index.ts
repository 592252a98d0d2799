/**
 * The byte-level transformer language model of issue 19: a small GPT-style decoder written the way
 * torch's TorchScript exporter writes one at opset 17, trained by the project's own training graphs
 * on TypeScript's lib.*.d.ts files, with a held-out split. Its bits per byte and next-byte accuracy
 * on that split are the fidelity metric of the transformer benchmarks.
 *
 * Library API (import from 'train/lm/index.js'):
 *  - `trainedLanguageModel({ cacheDir?, progress?, session? }) => Promise<string>`: path of the trained
 *    teacher (`<cacheDir>/<key>/model.onnx`, default cacheDir `.bench-out/lm`), trained when missing;
 *    `readTrainedModelMeta(path)` reads its `meta.json` (config, recipe, training seconds, final loss).
 *  - `languageModelFidelity(pathOrBytes, { split: 'eval', contexts: 256, seq: 128, batch: 8, session? })
 *    => Promise<{ bitsPerByte, nextByteAccuracy, tokens }>`: deterministic (fixed windows);
 *    `sessionFidelity(session, options)` does the same on an open runtime Session.
 *  - `languageModelCalibrationFeeds({ count: 32, seq: 128, batch: 1, seed: 1 }) => Feed[]`:
 *    `{ input_ids: int64 [batch, seq] }` windows from the TRAIN split (GPTQ/AWQ, fp16 range checks).
 *  - `buildLanguageModel(config, weights?)`, `TEACHER_CONFIG`, `TEACHER_TRAINING`, `LmConfig`,
 *    `fitLanguageModel(config, options)` (training / distillation loop), `loadLmCorpus()`.
 *  - `distillLanguageModel(teacherPath, options)`: a smaller student from the teacher (distill.ts).
 * Model interface: input `input_ids` int64 [batch, sequence] (sequence <= 128), output `logits`
 * float32 [batch, sequence, 256].
 */
export { buildLanguageModel, checkLmConfig, lmParameterCount, LM_MASK_VALUE, LM_VOCAB, modelWeights } from './model.js';
export type { LanguageModelGraph, LmConfig } from './model.js';
export { evenWindows, isEvalFile, languageModelCalibrationFeeds, loadLmCorpus, typescriptLibDir } from './data.js';
export type { CalibrationOptions, LmCorpus, LmSplit } from './data.js';
export { FidelityMeter, languageModelFidelity, sessionFidelity } from './eval.js';
export type { FidelityOptions, LanguageModelFidelity } from './eval.js';
export { DEFAULT_LM_CACHE_DIR, fitLanguageModel, learningRate, lmCacheKey, LM_RECIPE_VERSION, readTrainedModelMeta, TEACHER_CONFIG, TEACHER_TRAINING, trainedLanguageModel } from './train.js';
export type { DistillTarget, FitLanguageModelOptions, FitLanguageModelResult, LmTrainOptions, TrainedModelMeta, TrainedModelOptions } from './train.js';
export { distillLanguageModel, STUDENT_TRAINING, studentInit } from './distill.js';
export type { StudentMeta, StudentOptions } from './distill.js';
export { cachedModel, finalLoss } from './train.js';
