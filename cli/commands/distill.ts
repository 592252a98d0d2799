/**
 * `onnxforge distill --teacher t.onnx (--student s.onnx | --prune-channels R) --data SPEC -o out.onnx`:
 * knowledge distillation (`passes/distill.ts`, `runtime/distill.ts`), then a report: agreement with
 * the teacher on held-out inputs after each epoch, size, latency (interleaved against the teacher and
 * the student before distillation) and, with `--eval SPEC --metric M`, task accuracy of the teacher and
 * the student before and after. The model is written last, only when training finished with a finite
 * loss, the result passes the checker and onnxruntime loads it.
 */
import type { CommandModule } from 'yargs';
import { collectSamples, openDataSource, Sample } from '../../data/index.js';
import { parseShapeArg } from '../../data/generate.js';
import { checkModel } from '../../ir/checker.js';
import { checkError, inputError } from '../../core/errors.js';
import type { Model } from '../../ir/ir.js';
import { cloneModel, loadModel, saveModel, serializeModel } from '../../onnx/index.js';
import distillPass, { DistillModelOptions, DistillModelReport, DistillPassOptions, prunedStudent } from '../../passes/distill/distill.js';
import pruneChannelsPass, { ChannelReport } from '../../passes/prune/prune-channels.js';
import { parsePipeline } from '../../passes/pipeline.js';
import { modelFacts, newReport } from '../../report/document.js';
import { writeReport } from '../../report/files.js';
import { formatBytes, renderTable } from '../../report/table.js';
import { evaluate } from '../../workflows/evaluate.js';
import type { Feed } from '../../core/host-tensor.js';
import { measureLatency } from '../../runtime/latency.js';
import { argmaxRows, loadMetric } from '../../runtime/metrics.js';
import { createSession, Session } from '../../runtime/session.js';
import { saveOptionsFrom, writeOptions, WriteArgs } from '../options.js';
import { passFlag, passOptionsFrom } from '../schema-options.js';
import { distillModel } from '../../passes/api.js';

interface Args extends WriteArgs {
  teacher: string;
  student?: string;
  pruneChannels?: number;
  pruneOptions?: string;
  data: string;
  preprocess?: string;
  shape?: string[];
  output: string;
  holdout?: number;
  labels?: string;
  eval?: string;
  evalPreprocess?: string;
  metric?: string[];
  report?: string;
  threads: number;
  latencyRuns: number;
  json: boolean;
  /** Pass options by their yargs keys (see FLAGS). */
  [flag: string]: unknown;
}

/** distill pass option -> yargs key of its flag; every default comes from the pass schema. */
const FLAGS: Partial<Record<keyof DistillPassOptions, string>> = {
  epochs: 'epochs',
  lr: 'lr',
  temperature: 'temperature',
  alpha: 'alpha',
  batch: 'batch',
  memory: 'memory',
  features: 'features',
  featureWeight: 'featureWeight',
  keptFeatures: 'keptFeatures',
  augment: 'augment',
  online: 'online',
  flip: 'flip',
  shift: 'shift',
  crop: 'crop',
  brightness: 'brightness',
  contrast: 'contrast',
  mixup: 'mixup',
  weightDecay: 'weightDecay',
  holdout: 'holdout',
  seed: 'seed',
  schedule: 'schedule',
  optimizer: 'optimizer',
  optimize: 'optimize',
  adaptBatchNorm: 'adaptBn',
  output: 'outputName',
};

export interface DistillCommandReport {
  schema: 'onnxforge.distill/1';
  teacher: string;
  student: string;
  output: string;
  pruning?: Omit<ChannelReport, 'groups'>;
  size: { teacherBytes: number; studentBeforeBytes: number; studentBytes: number };
  latency: { teacherMs: number; studentBeforeMs: number; studentMs: number; ratio: number; runs: number; threads: number };
  /** Top-1 agreement with the teacher on the evaluation (or held-out) inputs (NaN without them: see notes). */
  agreement: { before: number; after: number; samples: number };
  /** Parts of the report left out, and why. */
  notes?: string[];
  accuracy?: { metric: string; teacher: Record<string, number>; studentBefore: Record<string, number>; student: Record<string, number> }[];
  distill: DistillModelReport;
  wallMs: number;
}

export const distillCommand: CommandModule<object, Args> = {
  command: 'distill',
  describe: 'Knowledge distillation: train a student (or the teacher pruned) to match a teacher, with an agreement/size/latency/accuracy report',
  builder: (y) =>
    writeOptions(
      y
        .option('teacher', { type: 'string', demandOption: true, describe: 'the teacher .onnx model' })
        .option('student', { type: 'string', describe: 'the student .onnx model (or use --prune-channels)' })
        .option('prune-channels', passFlag(pruneChannelsPass, 'ratio', { noDefault: true, describe: 'student = the teacher with this fraction of its channels removed (prune-channels with its defaults, as `onnxforge prune --channels`)' }))
        .option('prune-options', { type: 'string', describe: 'more prune-channels options in pipeline syntax, e.g. "scope=layer;roundTo=1" (small models: groups of at most roundTo channels stay whole)' })
        .option('data', { type: 'string', demandOption: true, describe: 'training inputs: a folder or file of .npy/.npz, .pb, .json, .png (with --preprocess), or random[:count[:seed]]' })
        .option('preprocess', { type: 'string', describe: 'image preprocessing file (JSON) for .png data' })
        .option('shape', { type: 'string', array: true, describe: 'symbolic dims for random data: input=1,3,224,224 or dimname=N' })
        .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'where to write the distilled student' })
        .option('epochs', passFlag(distillPass, 'epochs'))
        .option('lr', passFlag(distillPass, 'lr'))
        .option('temperature', passFlag(distillPass, 'temperature'))
        .option('alpha', passFlag(distillPass, 'alpha'))
        .option('batch', passFlag(distillPass, 'batch'))
        .option('memory', passFlag(distillPass, 'memory'))
        .option('features', passFlag(distillPass, 'features', { describe: 'matched intermediate tensors teacher:student (comma-separated or repeated), each adding an MSE term' }))
        .option('feature-weight', passFlag(distillPass, 'featureWeight'))
        .option('kept-features', passFlag(distillPass, 'keptFeatures', { describe: "with --prune-channels: match the input of every n-th full Conv to the teacher's kept channels (MSE); 0 turns it off" }))
        .option('labels', { type: 'string', describe: 'label field giving the class (number or boolean) for a cross-entropy term, e.g. rotate180' })
        .option('augment', passFlag(distillPass, 'augment'))
        .option('online', passFlag(distillPass, 'online'))
        .option('flip', passFlag(distillPass, 'flip'))
        .option('shift', passFlag(distillPass, 'shift'))
        .option('crop', passFlag(distillPass, 'crop'))
        .option('brightness', passFlag(distillPass, 'brightness'))
        .option('contrast', passFlag(distillPass, 'contrast'))
        .option('mixup', passFlag(distillPass, 'mixup'))
        .option('weight-decay', passFlag(distillPass, 'weightDecay'))
        .option('holdout', passFlag(distillPass, 'holdout', { describe: 'fraction of --data held out (not trained on) for the per-epoch agreement with the teacher; --eval SPEC measures it on other data instead' }))
        .option('optimizer', passFlag(distillPass, 'optimizer'))
        .option('schedule', passFlag(distillPass, 'schedule'))
        .option('seed', passFlag(distillPass, 'seed'))
        .option('optimize', passFlag(distillPass, 'optimize', { describe: 'run the default preset on the distilled student (folds BatchNormalization; --no-optimize keeps the graph as trained)' }))
        .option('adapt-bn', passFlag(distillPass, 'adaptBatchNorm'))
        .option('output-name', passFlag(distillPass, 'output'))
        .option('eval', { type: 'string', describe: 'held-out evaluation data (agreement after each epoch, accuracy with --metric)' })
        .option('eval-preprocess', { type: 'string', describe: 'preprocessing for --eval images (default: --preprocess)' })
        .option('metric', { type: 'string', array: true, describe: 'task metric module path[#export] evaluated on --eval (repeatable)' })
        .option('report', { type: 'string', describe: 'write the report here (.json, .md or .html)' })
        .option('threads', { type: 'number', default: 0, describe: 'intra-op threads for training (0: onnxruntime default); latency uses 1' })
        .option('latency-runs', { type: 'number', default: 50, describe: 'timed runs per model (interleaved)' })
        .option('json', { type: 'boolean', default: false, describe: 'print the JSON report instead of tables' }),
    ) as never,
  handler: async (a) => {
    const { report, doc } = await runDistill(a);
    if (a.report) await writeReport(doc, a.report);
    process.stdout.write(a.json ? `${JSON.stringify(report, jsonReplacer, 2)}\n` : `${renderDistillReport(report)}\n`);
  },
};

function jsonReplacer(_k: string, v: unknown): unknown {
  if (typeof v === 'number' && !Number.isFinite(v)) return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
  return v;
}

function validate(a: Args): void {
  if ((a.student === undefined) === (a.pruneChannels === undefined)) throw inputError('USAGE_CONFLICT', 'give exactly one of --student FILE and --prune-channels RATIO');
  if (a.pruneChannels !== undefined && !(a.pruneChannels > 0 && a.pruneChannels < 1)) throw inputError('USAGE_BAD_VALUE', `--prune-channels must be in (0, 1), got ${a.pruneChannels}`);
  if (a.pruneOptions !== undefined && a.pruneChannels === undefined) throw inputError('USAGE_MISSING', '--prune-options needs --prune-channels RATIO');
  if (a.metric && !a.eval) throw inputError('USAGE_MISSING', '--metric needs --eval SPEC (labelled evaluation data)');
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) throw inputError('USAGE_BAD_VALUE', `--${name} must be a whole number of at least ${min}, got ${v}`);
  };
  int('kept-features', a.keptFeatures as number, 0);
  int('threads', a.threads, 0);
  int('latency-runs', a.latencyRuns, 1);
}

/** Class index from a label: a number, a boolean, or an object field of either. */
export function labelReader(field: string): (label: unknown, id: string) => number | undefined {
  return (label) => {
    const v = label && typeof label === 'object' ? (label as Record<string, unknown>)[field] : label;
    if (typeof v === 'boolean') return v ? 1 : 0;
    if (typeof v === 'number') return v;
    return undefined;
  };
}

async function runDistill(a: Args): Promise<{ report: DistillCommandReport; doc: ReturnType<typeof newReport> }> {
  const t0 = performance.now();
  validate(a);
  const save = saveOptionsFrom(a);
  const shapes = Object.fromEntries((a.shape ?? []).map(parseShapeArg));
  const metrics = await Promise.all((a.metric ?? []).map((m) => loadMetric(m)));

  const teacher = await loadModel(a.teacher);
  let student: Model;
  let pruning: ChannelReport | undefined;
  let kept: ((name: string) => number[] | undefined) | undefined;
  if (a.student !== undefined) student = await loadModel(a.student);
  else {
    // the same option parsing, validation and defaults as the pass in a pipeline: prune-channels<ratio=R;...>
    const [step] = parsePipeline(`prune-channels<ratio=${a.pruneChannels!}${a.pruneOptions ? `;${a.pruneOptions}` : ''}>`);
    ({ student, pruning, kept } = prunedStudent(teacher, step!.options));
    if (pruning.note) process.stderr.write(`warning: prune-channels: ${pruning.note}\n`);
  }
  const studentBefore = cloneModel(student);
  const teacherBytes = serializeModel(teacher).byteLength;
  const studentBeforeBytes = serializeModel(studentBefore).byteLength;

  const LAT = { intraOpNumThreads: 1, allowSpinning: false };
  const teacherSession = await createSession(serializeModel(teacher), LAT, a.teacher);
  const sessions: Session[] = [teacherSession];
  try {
    const inputs = teacherSession.inputs;
    const data = openDataSource(a.data, inputs, { shapes, ...(a.preprocess ? { preprocess: a.preprocess } : {}) });
    const evalPrep = a.evalPreprocess ?? a.preprocess;
    const evalSet: Sample[] | undefined = a.eval ? await collectSamples(a.eval, inputs, { shapes, ...(evalPrep ? { preprocess: evalPrep } : {}) }) : undefined;

    const opts: DistillModelOptions = {
      ...passOptionsFrom(distillPass, a, FLAGS),
      session: a.threads ? { intraOpNumThreads: a.threads } : {},
      ...(a.json ? { progress: false } : {}),
    };
    if (kept) opts.kept = kept;
    if (a.labels) opts.labelOf = labelReader(a.labels);
    if (evalSet) opts.heldOut = evalSet;
    const d = await distillModel(student, teacher, data, opts);

    const issues = checkModel(student);
    if (issues.length) {
      throw checkError('DISTILL_INVALID_MODEL', `the distilled model fails the checker (nothing written): ${issues.slice(0, 3).map((i) => `${i.code} ${i.message}`).join('; ')}`, { file: a.output });
    }
    const bytes = serializeModel(student);
    const after = await createSession(bytes, LAT, a.output).catch((e: Error) => {
      throw checkError('DISTILL_LOAD_FAILED', `onnxruntime cannot load the distilled model (nothing written): ${e.message}`, { file: a.output });
    });
    sessions.push(after);
    const before = await createSession(serializeModel(studentBefore), LAT, 'student before distillation');
    sessions.push(before);

    const first = d.epochs[0]!;
    const last = d.epochs[d.epochs.length - 1]!;
    const report: DistillCommandReport = {
      schema: 'onnxforge.distill/1',
      teacher: a.teacher,
      student: a.student ?? `${a.teacher} pruned ${a.pruneChannels}`,
      output: a.output,
      size: { teacherBytes, studentBeforeBytes, studentBytes: bytes.byteLength },
      latency: { teacherMs: NaN, studentBeforeMs: NaN, studentMs: NaN, ratio: NaN, runs: a.latencyRuns, threads: 1 },
      agreement: { before: first.agreement, after: last.agreement, samples: d.heldOut },
      distill: d,
      wallMs: 0,
    };
    if (pruning) {
      const { groups: _g, ...rest } = pruning;
      report.pruning = rest;
    }
    const feeds: Feed[] = [];
    if (evalSet) feeds.push(...evalSet.slice(0, 4).map((s) => s.feed));
    else for await (const s of openDataSource(a.data, inputs, { shapes, limit: 4, ...(a.preprocess ? { preprocess: a.preprocess } : {}) })) feeds.push(s.feed);
    const lat = await measureLatency([teacherSession, before, after], feeds, { runs: a.latencyRuns, warmup: 3 });
    const [lt, lb, ls] = lat.sessions.map((s) => s.stats.p50);
    report.latency = { teacherMs: lt!, studentBeforeMs: lb!, studentMs: ls!, ratio: ls! / lt!, runs: a.latencyRuns, threads: 1 };
    if (evalSet && metrics.length) {
      const it = () =>
        (async function* () {
          yield* evalSet;
        })();
      const evT = await evaluate(teacherSession, undefined, it(), { metrics });
      const evB = await evaluate(before, undefined, it(), { metrics });
      const evS = await evaluate(after, undefined, it(), { metrics });
      report.accuracy = metrics.map((m) => ({ metric: m.name, teacher: evT.metrics[m.name] ?? {}, studentBefore: evB.metrics[m.name] ?? {}, student: evS.metrics[m.name] ?? {} }));
    }
    if (d.batch < d.batchRequested) report.notes = [`batch lowered from ${d.batchRequested} to ${d.batch}: one sample's forward activations take ${(d.activationBytes / 2 ** 20).toFixed(0)} MiB and training is kept within --memory ${opts.memory ?? '-'} GiB (3x the activations of a batch)`];
    if (evalSet) report.agreement = { before: await agreement(before, teacherSession, evalSet), after: await agreement(after, teacherSession, evalSet), samples: evalSet.length };
    else if (d.heldOut === 0) (report.notes ??= []).push('agreement with the teacher left out: every --data sample was trained on. Add --eval SPEC (other data), or --holdout F to keep part of --data for it.');

    await saveModel(student, a.output, save);
    report.wallMs = performance.now() - t0;
    return { report, doc: toDocument(report, teacher, student, lat.sessions.map((s) => ({ name: s.name, samples: s.samples, stats: s.stats }))) };
  } finally {
    for (const s of sessions) await s.dispose();
  }
}

async function agreement(s: Session, t: Session, set: readonly Sample[]): Promise<number> {
  let agree = 0;
  let total = 0;
  for (const x of set) {
    const a = argmaxRows(Object.values(await s.run(x.feed))[0]!);
    const b = argmaxRows(Object.values(await t.run(x.feed))[0]!);
    for (let i = 0; i < b.length; i++) if (a[i] === b[i]) agree++;
    total += b.length;
  }
  return total ? agree / total : NaN;
}

function toDocument(r: DistillCommandReport, teacher: Model, student: Model, lat: { name: string; samples: number[]; stats: { p50: number; p90: number; mean: number; min: number } }[]): ReturnType<typeof newReport> {
  const doc = newReport('distill', `distill ${r.teacher} -> ${r.output}`);
  doc.input = modelFacts(teacher, r.size.teacherBytes, r.teacher);
  doc.output = modelFacts(student, r.size.studentBytes, r.output);
  doc.latency = lat.map((l) => ({ model: l.name, samplesMs: l.samples, p50: l.stats.p50, p90: l.stats.p90, mean: l.stats.mean, min: l.stats.min }));
  doc.accuracy = [{ metric: 'agreement with teacher', value: r.agreement.after, reference: r.agreement.before }];
  for (const a of r.accuracy ?? []) for (const [k, v] of Object.entries(a.student)) doc.accuracy.push({ metric: `${a.metric}.${k}`, value: v, ...(a.teacher[k] !== undefined ? { reference: a.teacher[k] } : {}) });
  doc.notes = r.distill.epochs.map((e) => (e.epoch === 0 ? `before training: agreement ${fmt(e.agreement, 4)}` : `epoch ${e.epoch}: mean loss ${fmt(e.meanLoss, 5)}, agreement ${fmt(e.agreement, 4)}, ${fmt(e.seconds, 1)} s`));
  doc.details = r;
  return doc;
}

const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : Number.isNaN(x) ? '-' : String(x));

export function renderDistillReport(r: DistillCommandReport): string {
  const d = r.distill;
  const parts: string[] = [];
  parts.push(
    renderTable(
      ['epoch', 'mean loss', `agreement (${d.heldOut} held out)`, 'lr (end)', 's'],
      d.epochs.map((e) => [e.epoch === 0 ? 'before' : String(e.epoch), fmt(e.meanLoss, 5), fmt(e.agreement, 4), e.epoch ? e.lr.toExponential(2) : '', fmt(e.seconds, 1)]),
      {
        title: `distill ${r.teacher} -> ${r.output}: ${d.trainingRecords} records (${d.cache.onDisk ? 'cached on disk' : 'in memory'}), batch ${d.batch}, ${d.steps} steps, T ${d.temperature}${d.labels ? `, alpha ${d.alpha}` : ''}; logits ${d.student.logits} (${d.student.via === 'output' ? 'the output' : `${d.student.via} input`})`,
      },
    ),
  );
  parts.push(
    renderTable(
      ['', 'teacher', 'student before', 'student after', 'after / teacher'],
      [
        ['size', formatBytes(r.size.teacherBytes), formatBytes(r.size.studentBeforeBytes), formatBytes(r.size.studentBytes), fmt(r.size.studentBytes / r.size.teacherBytes, 3)],
        [`latency p50 (${r.latency.threads} thread, ${r.latency.runs} interleaved runs)`, `${fmt(r.latency.teacherMs, 3)} ms`, `${fmt(r.latency.studentBeforeMs, 3)} ms`, `${fmt(r.latency.studentMs, 3)} ms`, fmt(r.latency.ratio, 3)],
        [`agreement with teacher (${r.agreement.samples} samples)`, '1', fmt(r.agreement.before, 4), fmt(r.agreement.after, 4), ''],
      ],
      { title: 'teacher vs student' },
    ),
  );
  for (const a of r.accuracy ?? []) {
    const keys = [...new Set([...Object.keys(a.teacher), ...Object.keys(a.student)])];
    parts.push(renderTable(['metric', 'teacher', 'student before', 'student after'], keys.map((k) => [k, fmt(a.teacher[k] ?? NaN, 4), fmt(a.studentBefore[k] ?? NaN, 4), fmt(a.student[k] ?? NaN, 4)]), { title: `task accuracy: ${a.metric}` }));
  }
  for (const n of r.notes ?? []) parts.push(`note: ${n}`);
  return parts.join('\n\n');
}
