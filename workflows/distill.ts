/**
 * Knowledge distillation as a workflow: the student is a given model or the teacher with a fraction
 * of its channels removed (prune-channels, parsed as in a pipeline); it is trained to match the teacher
 * (passes/distill/), then checked, loaded in onnxruntime and measured: agreement with the teacher on
 * held-out inputs after each epoch, size, latency (interleaved against the teacher and the student
 * before distillation) and, with `eval` + `metrics`, task accuracy of all three. The model is written
 * last, only when training finished, the result passes the checker and onnxruntime loads it.
 */
import { checkError, inputError } from '../core/errors.js';
import type { Feed } from '../core/host-tensor.js';
import { collectSamples, openDataSource, type Sample } from '../data/index.js';
import { checkModel } from '../ir/checker.js';
import type { Model } from '../ir/ir.js';
import { cloneModel, loadModel, saveModel, serializeModel, type SaveOptions } from '../onnx/index.js';
import { distillModel } from '../passes/api.js';
import distillPass, { DistillModelOptions, DistillPassOptions, prunedStudent } from '../passes/distill/distill.js';
import { withSchemaDefaults, type Logger } from '../passes/pass.js';
import { parsePipeline } from '../passes/pipeline.js';
import type { ChannelReport } from '../passes/prune/prune-channels.js';
import { distillDocument, type DistillCommandReport } from '../report/distill.js';
import type { ReportDocument } from '../report/document.js';
import { measureLatency } from '../runtime/latency.js';
import { argmaxRows, loadMetric } from '../runtime/metrics.js';
import { createSession, Session } from '../runtime/session.js';
import { evaluate } from './evaluate.js';
import { quietLogger } from './progress.js';

export interface DistillWorkflowOptions {
  teacher: string;
  /** The student model, or `pruneChannels` (exactly one). */
  student?: string;
  /** Student = the teacher with this fraction of its channels removed, in (0, 1). */
  pruneChannels?: number;
  /** More prune-channels options in pipeline syntax ("scope=layer;roundTo=1"). */
  pruneOptions?: string;
  /** Training inputs (a data spec) and their preprocessing. */
  data: string;
  preprocess?: string;
  shapes?: Record<string, number[]>;
  output: string;
  save?: SaveOptions;
  /** distill pass options; the rest take the schema defaults. */
  pass?: Partial<DistillPassOptions>;
  /** Label field giving the class for a cross-entropy term. */
  labels?: string;
  /** Held-out evaluation data, its preprocessing (default `preprocess`) and metric modules. */
  eval?: string;
  evalPreprocess?: string;
  metrics?: string[];
  /** Intra-op threads for training (default 0: onnxruntime's); latency uses 1. */
  threads?: number;
  /** Timed runs per model, interleaved (default 50). */
  latencyRuns?: number;
  /** The training's own progress bar (default true). */
  progress?: boolean;
  /** Called after each epoch (epoch 0: before training) with its loss and held-out agreement. */
  onEpoch?: DistillModelOptions['onEpoch'];
  logger?: Logger;
}

export interface DistillResult {
  report: DistillCommandReport;
  /** The same as a common report document (`.md`/`.html`/`.json` via report/files.ts). */
  document: ReportDocument;
}

function validate(o: DistillWorkflowOptions, keptFeatures: number, threads: number, latencyRuns: number): void {
  if ((o.student === undefined) === (o.pruneChannels === undefined)) throw inputError('USAGE_CONFLICT', 'give exactly one of --student FILE and --prune-channels RATIO');
  if (o.pruneChannels !== undefined && !(o.pruneChannels > 0 && o.pruneChannels < 1)) throw inputError('USAGE_BAD_VALUE', `--prune-channels must be in (0, 1), got ${o.pruneChannels}`);
  if (o.pruneOptions !== undefined && o.pruneChannels === undefined) throw inputError('USAGE_MISSING', '--prune-options needs --prune-channels RATIO');
  if (o.metrics?.length && !o.eval) throw inputError('USAGE_MISSING', '--metric needs --eval SPEC (labelled evaluation data)');
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) throw inputError('USAGE_BAD_VALUE', `--${name} must be a whole number of at least ${min}, got ${v}`);
  };
  int('kept-features', keptFeatures, 0);
  int('threads', threads, 0);
  int('latency-runs', latencyRuns, 1);
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

export async function distillWorkflow(o: DistillWorkflowOptions): Promise<DistillResult> {
  const t0 = performance.now();
  const pass = withSchemaDefaults(distillPass.options, { ...o.pass }) as DistillPassOptions;
  const threads = o.threads ?? 0;
  const latencyRuns = o.latencyRuns ?? 50;
  validate(o, pass.keptFeatures as number, threads, latencyRuns);
  const shapes = o.shapes ?? {};
  const metrics = await Promise.all((o.metrics ?? []).map((m) => loadMetric(m)));

  const teacher = await loadModel(o.teacher);
  let student: Model;
  let pruning: ChannelReport | undefined;
  let kept: ((name: string) => number[] | undefined) | undefined;
  if (o.student !== undefined) student = await loadModel(o.student);
  else {
    // the same option parsing, validation and defaults as the pass in a pipeline: prune-channels<ratio=R;...>
    const [step] = parsePipeline(`prune-channels<ratio=${o.pruneChannels!}${o.pruneOptions ? `;${o.pruneOptions}` : ''}>`);
    ({ student, pruning, kept } = prunedStudent(teacher, step!.options));
    if (pruning.note) (o.logger ?? quietLogger).warn(`prune-channels: ${pruning.note}`);
  }
  const studentBefore = cloneModel(student);
  const teacherBytes = serializeModel(teacher).byteLength;
  const studentBeforeBytes = serializeModel(studentBefore).byteLength;

  const LAT = { intraOpNumThreads: 1, allowSpinning: false };
  const teacherSession = await createSession(serializeModel(teacher), LAT, o.teacher);
  const sessions: Session[] = [teacherSession];
  try {
    const inputs = teacherSession.inputs;
    const data = openDataSource(o.data, inputs, { shapes, ...(o.preprocess ? { preprocess: o.preprocess } : {}) });
    const evalPrep = o.evalPreprocess ?? o.preprocess;
    const evalSet: Sample[] | undefined = o.eval ? await collectSamples(o.eval, inputs, { shapes, ...(evalPrep ? { preprocess: evalPrep } : {}) }) : undefined;

    const opts: DistillModelOptions = {
      ...pass,
      session: threads ? { intraOpNumThreads: threads } : {},
      ...(o.progress === false ? { progress: false } : {}),
    };
    if (kept) opts.kept = kept;
    if (o.labels) opts.labelOf = labelReader(o.labels);
    if (evalSet) opts.heldOut = evalSet;
    if (o.onEpoch) opts.onEpoch = o.onEpoch;
    const d = await distillModel(student, teacher, data, opts);

    const issues = checkModel(student);
    if (issues.length) {
      throw checkError('DISTILL_INVALID_MODEL', `the distilled model fails the checker (nothing written): ${issues.slice(0, 3).map((i) => `${i.code} ${i.message}`).join('; ')}`, { file: o.output });
    }
    const bytes = serializeModel(student);
    const after = await createSession(bytes, LAT, o.output).catch((e: Error) => {
      throw checkError('DISTILL_LOAD_FAILED', `onnxruntime cannot load the distilled model (nothing written): ${e.message}`, { file: o.output });
    });
    sessions.push(after);
    const before = await createSession(serializeModel(studentBefore), LAT, 'student before distillation');
    sessions.push(before);

    const first = d.epochs[0]!;
    const last = d.epochs[d.epochs.length - 1]!;
    const report: DistillCommandReport = {
      schema: 'onnxforge.distill/1',
      teacher: o.teacher,
      student: o.student ?? `${o.teacher} pruned ${o.pruneChannels}`,
      output: o.output,
      size: { teacherBytes, studentBeforeBytes, studentBytes: bytes.byteLength },
      latency: { teacherMs: NaN, studentBeforeMs: NaN, studentMs: NaN, ratio: NaN, runs: latencyRuns, threads: 1 },
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
    else for await (const s of openDataSource(o.data, inputs, { shapes, limit: 4, ...(o.preprocess ? { preprocess: o.preprocess } : {}) })) feeds.push(s.feed);
    const lat = await measureLatency([teacherSession, before, after], feeds, { runs: latencyRuns, warmup: 3 });
    const [lt, lb, ls] = lat.sessions.map((s) => s.stats.p50);
    report.latency = { teacherMs: lt!, studentBeforeMs: lb!, studentMs: ls!, ratio: ls! / lt!, runs: latencyRuns, threads: 1 };
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

    await saveModel(student, o.output, o.save);
    report.wallMs = performance.now() - t0;
    return { report, document: distillDocument(report, teacher, student, lat.sessions.map((s) => ({ name: s.name, samples: s.samples, stats: s.stats }))) };
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
