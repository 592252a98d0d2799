/**
 * The byte-level language model: `npm run bench:lm`.
 *
 * Trains the teacher (or loads it from `.bench-out/lm`), prints its fp32 bits per byte and next-byte
 * accuracy on the held-out split (256 windows of 128 bytes) beside the training time and the train
 * split's numbers, then distills the student (fewer blocks, cached too) and prints teacher vs student:
 * bits per byte, accuracy, parameters, file size and latency (batch 1, sequence 128, 1 thread,
 * interleaved rounds). Reference lines: uniform (8 bits) and the eval split's unigram entropy.
 */
import { statSync } from 'node:fs';
import { renderTable } from '../report/table.js';
import { measureLatency } from '../runtime/latency.js';
import { createSession } from '../runtime/session.js';
import { distillLanguageModel, languageModelFidelity, LanguageModelFidelity, lmParameterCount, loadLmCorpus, readTrainedModelMeta, trainedLanguageModel } from '../train/lm/index.js';
import type { StudentMeta } from '../train/lm/index.js';

function unigramBits(bytes: Uint8Array): number {
  const counts = new Float64Array(256);
  for (const b of bytes) counts[b]!++;
  let h = 0;
  for (const c of counts) if (c > 0) h -= (c / bytes.length) * Math.log2(c / bytes.length);
  return h;
}

const t0 = performance.now();
const teacherPath = await trainedLanguageModel();
const teacherMeta = readTrainedModelMeta(teacherPath);
const loadedTeacher = (performance.now() - t0) / 1000;
const t1 = performance.now();
const studentPath = await distillLanguageModel(teacherPath);
const studentMeta = readTrainedModelMeta(studentPath) as unknown as StudentMeta;
const loadedStudent = (performance.now() - t1) / 1000;

const session = { intraOpNumThreads: 1, graphOptimizationLevel: 'all' as const };
const evalOf = (p: string) => languageModelFidelity(p, { split: 'eval', session });
const teacherEval = await evalOf(teacherPath);
const teacherTrain = await languageModelFidelity(teacherPath, { split: 'train', session });
const studentEval = await evalOf(studentPath);

const corpus = loadLmCorpus();
console.log(`corpus: ${corpus.trainFiles.length} train files (${corpus.train.length} bytes), ${corpus.evalFiles.length} eval files (${corpus.eval.length} bytes), TypeScript lib.*.d.ts`);
console.log(`teacher ${JSON.stringify(teacherMeta.config)}: ${teacherMeta.training.steps} steps x ${teacherMeta.training.batch} x ${teacherMeta.training.seq} bytes, trained in ${teacherMeta.trainSeconds.toFixed(0)} s (this run: ${loadedTeacher < 5 ? 'cached' : `${loadedTeacher.toFixed(0)} s`}), final train loss ${(teacherMeta.finalLoss / Math.LN2).toFixed(3)} bits/byte`);
console.log(`student ${studentMeta.config.layers} block(s) from the teacher, T=${studentMeta.temperature}, alpha=${studentMeta.alpha}: ${studentMeta.training.steps} steps, distilled in ${studentMeta.trainSeconds.toFixed(0)} s (this run: ${loadedStudent < 5 ? 'cached' : `${loadedStudent.toFixed(0)} s`})`);

const sessions = [await createSession(teacherPath, { ...session, allowSpinning: false }, 'teacher'), await createSession(studentPath, { ...session, allowSpinning: false }, 'student')];
const feeds = Array.from({ length: 4 }, (_, i) => ({ input_ids: { type: 'int64' as const, dims: [1, 128], data: BigInt64Array.from(corpus.eval.subarray(i * 1000, i * 1000 + 128), BigInt) } }));
const lat = await measureLatency(sessions, feeds, { warmup: 5, runs: 60 });
for (const s of sessions) await s.dispose();
const p50 = lat.sessions.map((s) => s.stats.p50);

const row = (name: string, f: LanguageModelFidelity, params: number, path: string, ms: number): Array<string | number> => [
  name,
  f.bitsPerByte.toFixed(3),
  `${(100 * f.nextByteAccuracy).toFixed(1)}%`,
  params,
  `${(statSync(path).size / 1024).toFixed(0)} KiB`,
  `${ms.toFixed(2)} ms`,
  `${(ms / p50[0]!).toFixed(2)}x`,
];
console.log(
  renderTable(
    ['model', 'bits/byte', 'next-byte acc', 'params', 'file', 'latency p50', 'vs teacher'],
    [
      row('teacher (fp32)', teacherEval, lmParameterCount(teacherMeta.config), teacherPath, p50[0]!),
      row('student (fp32, distilled)', studentEval, lmParameterCount(studentMeta.config), studentPath, p50[1]!),
    ],
    { title: `eval split: ${teacherEval.tokens} positions (256 windows x 128 bytes); latency batch 1, seq 128, 1 thread, interleaved, 60 runs` },
  ),
);
console.log(`teacher on the train split: ${teacherTrain.bitsPerByte.toFixed(3)} bits/byte, ${(100 * teacherTrain.nextByteAccuracy).toFixed(1)}% (eval - train gap ${(teacherEval.bitsPerByte - teacherTrain.bitsPerByte).toFixed(3)})`);
console.log(`references: uniform 8.000 bits/byte; unigram entropy of the eval split ${unigramBits(corpus.eval).toFixed(3)} bits/byte`);
console.log(`models: ${teacherPath}\n        ${studentPath}`);
