/**
 * Pruning as a workflow: prune-channels (structured) or prune-magnitude (unstructured) run through
 * the pass manager, optionally followed by the lossless `default` preset; then FLOPs and parameters
 * per layer and in total, latency (interleaved, onnxruntime level `all`), the deployed sizes (raw,
 * gzip, brotli; dense and sparse storage) and accuracy with `eval` + `metric`. The model is written
 * last, only when everything succeeded. With `calibration`, removed channels' mean contributions are
 * folded into the next layers' biases.
 */
import { countFlops } from '../analysis/flops.js';
import { inputError } from '../core/errors.js';
import type { Feed } from '../core/host-tensor.js';
import { openDataSource, parseDataSpec } from '../data/index.js';
import { measurementData } from '../data/measure.js';
import { checkModel } from '../ir/checker.js';
import { cloneModel, loadModel, saveModel, serializeModel, type SaveOptions } from '../onnx/index.js';
import { optimize, passReport } from '../passes/manager.js';
import { withSchemaDefaults, type Logger } from '../passes/pass.js';
import type { PipelineStep } from '../passes/pipeline.js';
import { measureDeployed, sizesOf } from '../passes/prune/deploy.js';
import pruneChannelsPass, { type PruneChannelsOptions } from '../passes/prune/prune-channels.js';
import pruneMagnitudePass, { weightSparsity } from '../passes/prune/prune-magnitude.js';
import type { PruneCommandReport } from '../report/prune.js';
import { measureLatency } from '../runtime/latency.js';
import { loadMetric } from '../runtime/metrics.js';
import { Session } from '../runtime/session.js';
import { evaluate } from './evaluate.js';
import { noProgress, ProgressFactory, quietLogger } from './progress.js';

export interface PruneWorkflowOptions {
  model: string;
  output: string;
  save?: SaveOptions;
  /** prune-channels options (exactly one of `channels` and `magnitude`); the rest take the schema defaults. */
  channels?: Partial<PruneChannelsOptions>;
  /** prune-magnitude options. */
  magnitude?: Partial<{ sparsity: number; scope: string; ops: string[]; exclude: string[] }>;
  /** Run the lossless `default` preset after pruning (default true). */
  optimize?: boolean;
  /** Write pruned tensors as sparse initializers where smaller and verified (default 'dense'). */
  storage?: 'dense' | 'sparse';
  /** Symbolic input dims for generated inputs. */
  shapes?: Record<string, number[]>;
  /** Data specs: inputs for FLOPs/latency/storage check, calibration for bias compensation, eval for `metric`. */
  inputs?: string;
  calibration?: string;
  eval?: string;
  preprocess?: string;
  /** Metric module (`path[#export]`) evaluated on `eval`. */
  metric?: string;
  /** Interleaved latency runs (default 30); `latency: false` skips latency. */
  runs?: number;
  latency?: boolean;
  /** Collect why channels were kept. */
  explain?: boolean;
  logger?: Logger;
  progress?: ProgressFactory;
}

/**
 * The input FLOPs, latency and the sparse-storage check run on: the first sample of the data given
 * (inputs, eval, calibration), else a random one when every input dim is known, else none (pruning
 * itself needs no data; those parts are then left out with a note naming the flags).
 */
async function firstFeed(bytes: Uint8Array, o: PruneWorkflowOptions, shapes: Record<string, number[]>): Promise<{ feed?: Feed; note?: string }> {
  const s = await Session.create(bytes, { graphOptimizationLevel: 'disabled' }, o.model);
  try {
    const options = o.preprocess ? { preprocess: o.preprocess } : {};
    const given = (['inputs', 'eval', 'calibration'] as const).map((k) => (o[k] ? { spec: o[k]!, flag: `--${k}`, options } : undefined));
    const data = measurementData(s.inputs, given, shapes, 'FLOPs, latency and the sparse-storage check', { count: 1, data: '--inputs SPEC' });
    if (!data.ok) return { note: data.skipped };
    for await (const x of data.open(1)) return { feed: x.feed };
    throw inputError('PRUNE_NO_INPUTS', `${data.from} ${data.spec}: no samples`);
  } finally {
    await s.dispose();
  }
}

function feedShapes(feed: Feed): Record<string, number[]> {
  return Object.fromEntries(Object.entries(feed).map(([k, v]) => [k, v.dims]));
}

export async function pruneWorkflow(o: PruneWorkflowOptions): Promise<PruneCommandReport> {
  const runs = o.runs ?? 30;
  const logger = o.logger ?? quietLogger;
  const progress = o.progress ?? noProgress;
  if ((o.channels === undefined) === (o.magnitude === undefined)) throw inputError('USAGE_CONFLICT', 'give exactly one of --channels R or --magnitude S');
  if (!!o.eval !== !!o.metric) throw inputError('USAGE_MISSING', '--eval and --metric go together');
  if (!Number.isInteger(runs) || runs < 1) throw inputError('USAGE_BAD_VALUE', `--runs must be a positive whole number, got ${runs}`);
  const model = await loadModel(o.model);
  const original = cloneModel(model);
  // the input as onnxruntime and the size report see it: serialized once
  const originalBytes = serializeModel(original);
  const mode = o.channels !== undefined ? 'channels' : 'magnitude';
  const shapes = o.shapes ?? {};
  const data: Record<string, unknown> = {};
  if (mode === 'channels' && o.calibration) {
    const probe = await Session.create(originalBytes, { graphOptimizationLevel: 'disabled' }, o.model);
    const inputs = probe.inputs;
    await probe.dispose();
    const spec = parseDataSpec(o.calibration);
    data.calibration = () => openDataSource(spec, inputs, { shapes, ...(o.preprocess ? { preprocess: o.preprocess } : {}) });
  }
  // one step through the pass manager (both passes run once: idempotent false). The options are
  // completed from the schema but range-checked by the pass itself (PRUNE_BAD_RATIO, ...); the
  // structural check below compares with the input's own issues instead of the manager's per-pass check.
  const pruneStep: PipelineStep =
    mode === 'channels'
      ? { pass: pruneChannelsPass, options: withSchemaDefaults(pruneChannelsPass.options, { ...o.channels }) }
      : { pass: pruneMagnitudePass, options: withSchemaDefaults(pruneMagnitudePass.options, { ...o.magnitude }) };
  const run = await optimize(model, [pruneStep], { data, logger, check: false, ...(o.explain ? { explain: true } : {}) });
  const report: Partial<PruneCommandReport> = { schema: 'onnxforge.prune/1', mode, explanations: run.explanations };
  if (mode === 'channels') report.channels = passReport(run, pruneChannelsPass)!;
  else report.magnitude = passReport(run, pruneMagnitudePass)!;
  const issues = checkModel(model).filter((i) => !checkModel(original).some((x) => x.code === i.code && x.message === i.message));
  if (issues.length) throw inputError('PRUNE_INVALID_RESULT', `pruning left an invalid model: ${issues[0]!.message}`, { file: o.model });

  const { feed, note } = await firstFeed(originalBytes, o, shapes);
  if (note) report.notes = [note];
  // FLOPs of pruning alone: counted before the cleanup below removes BatchNormalization's own;
  // parameters need no input shapes
  const counted = [original, model].map((m) => countFlops(m, feed ? feedShapes(feed) : shapes));
  report.params = { before: counted[0]!.totalParams, after: counted[1]!.totalParams };
  if (feed) report.flops = { before: counted[0]!, after: counted[1]! };
  if (o.optimize ?? true) {
    // BN folding and the other lossless rewrites keep zeros zero (0 * scale) and drop the tensors
    // pruning made redundant; the report says what sparsity is left.
    const r = await optimize(model, '@default', {});
    report.optimized = { pipeline: '@default', nodesBefore: r.nodesBefore, nodesAfter: r.nodesAfter, weightSparsity: weightSparsity(model).sparsity };
  }

  const before = await Session.create(originalBytes, { graphOptimizationLevel: 'all' }, o.model);
  const after = await Session.create(serializeModel(model), { graphOptimizationLevel: 'all' }, o.output);
  try {
    if (JSON.stringify([before.inputs, before.outputs]) !== JSON.stringify([after.inputs, after.outputs])) {
      throw inputError('PRUNE_IO_CHANGED', 'the pruned model declares different inputs or outputs (nothing written)', { file: o.model });
    }
    if ((o.latency ?? true) && feed) {
      const bar = progress('latency', runs);
      const lat = await measureLatency([before, after], [feed], { warmup: 3, runs, onRound: (n) => bar.update(n) }).finally(() => bar.done());
      const [x, y] = lat.sessions;
      report.latency = { beforeMs: x!.stats.p50, afterMs: y!.stats.p50, ratio: y!.stats.p50 / x!.stats.p50, runs };
    }
    if (o.eval && o.metric) {
      const metric = await loadMetric(o.metric);
      const opts = { shapes, ...(o.preprocess ? { preprocess: o.preprocess } : {}) };
      const bar = progress('evaluating');
      let seen = 0;
      const onSample = () => bar.update(++seen);
      const ref = await evaluate(before, undefined, openDataSource(parseDataSpec(o.eval), before.inputs, opts), { metrics: metric.fn.needsReference ? [] : [metric], onSample }).finally(() => bar.done());
      const cand = await evaluate(after, before, openDataSource(parseDataSpec(o.eval), after.inputs, opts), { metrics: [metric], onSample }).finally(() => bar.done());
      report.accuracy = { metric: metric.name, before: ref.metrics[metric.name] ?? {}, after: cand.metrics[metric.name] ?? {} };
    }
  } finally {
    await before.dispose();
    await after.dispose();
  }
  const { sizes, sparseModel } = await measureDeployed(model, feed);
  report.sizes = { ...sizes, original: sizesOf(originalBytes) };
  let written = model;
  if (o.storage === 'sparse') {
    // only the variant just measured: onnxruntime loaded it and gave identical outputs
    if (sparseModel && sizes.sparse?.loads && sizes.sparse.maxAbsDiff === 0) {
      written = sparseModel;
      report.storage = { written: 'sparse', tensors: sizes.sparse.converted.length, bytes: sizes.sparse.raw };
    } else {
      const why = !sizes.sparse ? 'no tensor is smaller stored sparse' : !feed ? 'it was not checked: no input to run it on (--inputs SPEC or --shape)' : sizes.sparse.loads ? `its outputs differ (max |diff| ${sizes.sparse.maxAbsDiff})` : `onnxruntime refused it: ${sizes.sparse.error}`;
      logger.warn(`--storage sparse: writing dense storage, ${why}`);
      report.storage = { written: 'dense', reason: why, bytes: sizes.dense.raw };
    }
  } else report.storage = { written: 'dense', bytes: sizes.dense.raw };
  await saveModel(written, o.output, o.save);
  return report as PruneCommandReport;
}
