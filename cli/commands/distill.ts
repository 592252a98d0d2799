/**
 * `onnxforge distill --teacher t.onnx (--student s.onnx | --prune-channels R) --data SPEC -o out.onnx`:
 * knowledge distillation (`passes/distill.ts`, `runtime/distill.ts`), then a report: agreement with
 * the teacher on held-out inputs after each epoch, size, latency (interleaved against the teacher and
 * the student before distillation) and, with `--eval SPEC --metric M`, task accuracy of the teacher and
 * the student before and after. The model is written last, only when training finished with a finite
 * loss, the result passes the checker and onnxruntime loads it.
 */
import type { CommandModule } from 'yargs';
import { collectSamples, openDataSource, Sample } from '../../calibration/data/index.js';
import { parseShapeArg } from '../../calibration/data/generate.js';
import { checkModel } from '../../graph/checker.js';
import { checkError, inputError } from '../../graph/errors.js';
import type { Model } from '../../graph/ir.js';
import { cloneModel, loadModel, saveModel, serializeModel } from '../../graph/onnx/index.js';
import { distillModel, DistillModelOptions, DistillModelReport, parseFeaturePairs } from '../../passes/distill.js';
import { pruneChannels, ChannelReport } from '../../passes/prune-channels.js';
import { parsePipeline } from '../../passes/pipeline.js';
import { modelFacts, newReport, writeReport } from '../../report/document.js';
import { formatBytes, renderTable } from '../../report/table.js';
import { evaluate } from '../../runtime/evaluate.js';
import type { Feed } from '../../runtime/host-tensor.js';
import { measureLatency } from '../../runtime/latency.js';
import { argmaxRows, loadMetric } from '../../runtime/metrics.js';
import { createSession, Session } from '../../runtime/session.js';
import { saveOptionsFrom, writeOptions, WriteArgs } from '../options.js';

interface Args extends WriteArgs {
  teacher: string;
  student?: string;
  pruneChannels?: number;
  pruneOptions?: string;
  data: string;
  preprocess?: string;
  shape?: string[];
  output: string;
  epochs: number;
  lr: number;
  temperature: number;
  alpha: number;
  batch: number;
  features?: string[];
  featureWeight: number;
  labels?: string;
  augment: number;
  holdout?: number;
  optimizer: string;
  schedule: string;
  seed: number;
  optimize: boolean;
  adaptBn: boolean;
  outputName?: string;
  eval?: string;
  evalPreprocess?: string;
  metric?: string[];
  report?: string;
  threads: number;
  latencyRuns: number;
  json: boolean;
}

export interface DistillCommandReport {
  schema: 'onnxforge.distill/1';
  teacher: string;
  student: string;
  output: string;
  pruning?: Omit<ChannelReport, 'groups'>;
  size: { teacherBytes: number; studentBeforeBytes: number; studentBytes: number };
  latency: { teacherMs: number; studentBeforeMs: number; studentMs: number; ratio: number; runs: number; threads: number };
  /** Top-1 agreement with the teacher on the evaluation (or held-out) inputs. */
  agreement: { before: number; after: number; samples: number };
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
        .option('prune-channels', { type: 'number', describe: 'student = the teacher with this fraction of its channels pruned (prune-channels, l1)' })
        .option('prune-options', { type: 'string', describe: 'more prune-channels options in pipeline syntax, e.g. "scope=global;cost=flops;maxRatio=0.5;roundTo=8" (the setting bench:prune measures fastest)' })
        .option('data', { type: 'string', demandOption: true, describe: 'training inputs: a folder or file of .npy/.npz, .pb, .json, .png (with --preprocess), or random[:count[:seed]]' })
        .option('preprocess', { type: 'string', describe: 'image preprocessing file (JSON) for .png data' })
        .option('shape', { type: 'string', array: true, describe: 'symbolic dims for random data: input=1,3,224,224 or dimname=N' })
        .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'where to write the distilled student' })
        .option('epochs', { type: 'number', default: 10, describe: 'passes over the training records' })
        .option('lr', { type: 'number', default: 1e-3, describe: 'peak learning rate' })
        .option('temperature', { type: 'number', default: 4, describe: 'softmax temperature T (the KL term is scaled by T^2)' })
        .option('alpha', { type: 'number', default: 0.5, describe: 'with --labels: weight of the KL term; cross-entropy gets 1 - alpha' })
        .option('batch', { type: 'number', default: 16, describe: 'samples per training step' })
        .option('features', { type: 'string', array: true, describe: 'matched intermediate tensors teacher:student (comma-separated or repeated), each adding an MSE term' })
        .option('feature-weight', { type: 'number', default: 1, describe: 'weight of each feature MSE term' })
        .option('labels', { type: 'string', describe: 'label field giving the class (number or boolean) for a cross-entropy term, e.g. rotate180' })
        .option('augment', { type: 'number', default: 0, describe: 'augmented copies (crop/shift/brightness/contrast) of each training sample' })
        .option('holdout', { type: 'number', describe: 'fraction of --data held out for the per-epoch agreement (default 0.1 without --eval, else 0)' })
        .option('optimizer', { type: 'string', choices: ['adam', 'sgd'], default: 'adam', describe: 'AdamW or SGD with momentum 0.9' })
        .option('schedule', { type: 'string', choices: ['cosine', 'constant'], default: 'cosine', describe: 'learning-rate schedule' })
        .option('seed', { type: 'number', default: 1, describe: 'seed of shuffling and augmentation' })
        .option('optimize', { type: 'boolean', default: true, describe: 'run the default preset on the distilled student (folds BatchNormalization; --no-optimize keeps the graph as trained)' })
        .option('adapt-bn', { type: 'boolean', default: true, describe: 're-estimate BatchNormalization statistics on the training inputs before training' })
        .option('output-name', { type: 'string', describe: 'graph output to distill (default: the first)' })
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
  int('epochs', a.epochs, 1);
  int('batch', a.batch, 1);
  int('augment', a.augment, 0);
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
  if (a.student !== undefined) student = await loadModel(a.student);
  else {
    student = cloneModel(teacher);
    // the same option parsing and validation as the pass in a pipeline: prune-channels<ratio=R;...>
    const [step] = parsePipeline(`prune-channels<ratio=${a.pruneChannels!}${a.pruneOptions ? `;${a.pruneOptions}` : ''}>`);
    pruning = pruneChannels(student, step!.options);
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
      epochs: a.epochs,
      lr: a.lr,
      temperature: a.temperature,
      alpha: a.alpha,
      batch: a.batch,
      features: parseFeaturePairs(a.features ?? []),
      featureWeight: a.featureWeight,
      optimizer: a.optimizer as 'adam',
      schedule: a.schedule as 'cosine',
      seed: a.seed,
      optimize: a.optimize,
      adaptBatchNorm: a.adaptBn,
      holdout: a.holdout ?? (evalSet ? 0 : 0.1),
      session: a.threads ? { intraOpNumThreads: a.threads } : {},
      ...(a.json ? { progress: false } : {}),
    };
    if (a.augment > 0) opts.augment = { copies: a.augment };
    if (a.labels) opts.labelOf = labelReader(a.labels);
    if (a.outputName) opts.output = a.outputName;
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
    if (evalSet) report.agreement = { before: await agreement(before, teacherSession, evalSet), after: await agreement(after, teacherSession, evalSet), samples: evalSet.length };

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

const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : String(x));

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
  return parts.join('\n\n');
}
