/**
 * `onnxforge prune in.onnx -o out.onnx (--channels R | --magnitude S)`: runs prune-channels or
 * prune-magnitude (the same passes the pipeline uses), then reports FLOPs and parameters per layer and
 * in total before and after, latency (interleaved, onnxruntime level `all`), the deployed sizes for
 * magnitude pruning, and accuracy with `--eval SPEC --metric M`. The model is written last, only when
 * everything succeeded. With `--calibration SPEC`, removed channels' mean contributions are folded into
 * the next layers' biases.
 */
import type { CommandModule } from 'yargs';
import { openDataSource, parseDataSpec, parseShapeArg } from '../../data/index.js';
import { measurementData } from '../../data/measure.js';
import { checkModel } from '../../ir/checker.js';
import { inputError } from '../../core/errors.js';
import { cloneModel, loadModel, saveModel, serializeModel } from '../../onnx/index.js';
import type { Explanation, PassContext } from '../../passes/pass.js';
import pruneChannelsPass, { ChannelReport, PruneChannelsOptions } from '../../passes/prune/prune-channels.js';
import pruneMagnitudePass, { MagnitudeReport, weightSparsity } from '../../passes/prune/prune-magnitude.js';
import { DeployedSizes, measureDeployed, SizeSet, sizesOf } from '../../passes/prune/deploy.js';
import { optimize } from '../../passes/manager.js';
import { nodeRunner } from '../../runtime/runner.js';
import { countFlops, FlopReport } from '../../analysis/flops.js';
import { ProgressBar } from '../../core/progress.js';
import { renderTable } from '../../report/table.js';
import { evaluate } from '../../workflows/evaluate.js';
import type { Feed } from '../../core/host-tensor.js';
import { measureLatency } from '../../runtime/latency.js';
import { loadMetric } from '../../runtime/metrics.js';
import { Session } from '../../runtime/session.js';
import { saveOptionsFrom, writeOptions, WriteArgs } from '../options.js';
import { passFlag, passOptionsFrom } from '../schema-options.js';

interface Args extends WriteArgs {
  model: string;
  output: string;
  channels?: number;
  magnitude?: number;
  criterion?: string;
  scope?: string;
  exclude?: string[];
  layers?: string[];
  roundTo?: number;
  cost?: string;
  maxRatio?: number;
  optimize: boolean;
  storage: string;
  shape?: string[];
  inputs?: string;
  calibration?: string;
  preprocess?: string;
  eval?: string;
  metric?: string;
  runs: number;
  latency: boolean;
  explain?: boolean;
  json?: boolean;
}

export interface PruneCommandReport {
  schema: 'onnxforge.prune/1';
  mode: 'channels' | 'magnitude';
  channels?: ChannelReport;
  magnitude?: MagnitudeReport;
  /** FLOPs per layer and in total, at the input shapes of the sample used (absent without one: see notes). */
  flops?: { before: FlopReport; after: FlopReport };
  params: { before: number; after: number };
  /** Parts of the report left out, and why (the flags that add them). */
  notes?: string[];
  latency?: { beforeMs: number; afterMs: number; ratio: number; runs: number };
  /** Sizes of the input model and of the written one (with its sparse-storage variant). */
  sizes?: DeployedSizes & { original: SizeSet };
  /** How the written file stores the pruned tensors (--storage), and its size. */
  storage?: { written: 'dense' | 'sparse'; tensors?: number; reason?: string; bytes: number };
  /** The lossless `default` preset run after pruning (--optimize), and the weight sparsity it left. */
  optimized?: { pipeline: string; nodesBefore: number; nodesAfter: number; weightSparsity: number };
  accuracy?: { metric: string; before: Record<string, number>; after: Record<string, number> };
  explanations: Explanation[];
}

function context(explanations: Explanation[], explaining: boolean, pass: string): PassContext {
  return {
    logger: { info() {}, warn: (m) => process.stderr.write(`warning: ${m}\n`), debug() {} },
    explaining,
    explain: (e) => {
      if (explaining) explanations.push({ pass, ...e });
    },
    data: {},
    runner: nodeRunner,
    reportOf: () => undefined,
  };
}

/**
 * The input FLOPs, latency and the sparse-storage check run on: the first sample of the data given
 * (--inputs, --eval, --calibration), else a random one when every input dim is known, else none
 * (pruning itself needs no data; those parts are then left out with a note naming the flags).
 */
async function firstFeed(bytes: Uint8Array, a: Args, shapes: Record<string, number[]>): Promise<{ feed?: Feed; note?: string }> {
  const s = await Session.create(bytes, { graphOptimizationLevel: 'disabled' }, a.model);
  try {
    const options = a.preprocess ? { preprocess: a.preprocess } : {};
    const given = (['inputs', 'eval', 'calibration'] as const).map((k) => (a[k] ? { spec: a[k]!, flag: `--${k}`, options } : undefined));
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

/** The prune-channels options the flags give; the rest are the pass's schema defaults (as in a pipeline file). */
export function channelOptions(a: Args): PruneChannelsOptions {
  return passOptionsFrom(pruneChannelsPass, a, { ratio: 'channels', criterion: 'criterion', scope: 'scope', exclude: 'exclude', layers: 'layers', cost: 'cost', maxRatio: 'maxRatio', roundTo: 'roundTo' });
}

/** Help text for a flag both passes take: their default, said once when they agree. */
function sharedDefault(key: 'scope'): string {
  const c = String(pruneChannelsPass.options[key]!.default);
  const m = String(pruneMagnitudePass.options[key]!.default);
  return c === m ? c : `${c} with --channels, ${m} with --magnitude`;
}

export async function runPrune(a: Args): Promise<PruneCommandReport> {
  if ((a.channels === undefined) === (a.magnitude === undefined)) throw inputError('USAGE_CONFLICT', 'give exactly one of --channels R or --magnitude S');
  if (!!a.eval !== !!a.metric) throw inputError('USAGE_MISSING', '--eval and --metric go together');
  if (!Number.isInteger(a.runs) || a.runs < 1) throw inputError('USAGE_BAD_VALUE', `--runs must be a positive whole number, got ${a.runs}`);
  const save = saveOptionsFrom(a);
  const model = await loadModel(a.model);
  const original = cloneModel(model);
  // the input as onnxruntime and the size report see it: serialized once
  const originalBytes = serializeModel(original);
  const explanations: Explanation[] = [];
  const mode = a.channels !== undefined ? 'channels' : 'magnitude';
  const report: Partial<PruneCommandReport> = { schema: 'onnxforge.prune/1', mode, explanations };
  const shapes: Record<string, number[]> = Object.fromEntries((a.shape ?? []).map(parseShapeArg));
  if (mode === 'channels') {
    const ctx = context(explanations, !!a.explain, 'prune-channels');
    if (a.calibration) {
      const probe = await Session.create(originalBytes, { graphOptimizationLevel: 'disabled' }, a.model);
      const inputs = probe.inputs;
      await probe.dispose();
      const opts: { shapes: Record<string, number[]>; preprocess?: string } = { shapes };
      if (a.preprocess) opts.preprocess = a.preprocess;
      const spec = parseDataSpec(a.calibration);
      ctx.data.calibration = () => openDataSource(spec, inputs, opts);
    }
    report.channels = (await pruneChannelsPass.run(model, channelOptions(a), ctx)).report!;
  } else {
    const ctx = context(explanations, !!a.explain, 'prune-magnitude');
    report.magnitude = (await pruneMagnitudePass.run(model, passOptionsFrom(pruneMagnitudePass, a, { sparsity: 'magnitude', scope: 'scope', exclude: 'exclude' }), ctx)).report!;
  }
  const issues = checkModel(model).filter((i) => !checkModel(original).some((o) => o.code === i.code && o.message === i.message));
  if (issues.length) throw inputError('PRUNE_INVALID_RESULT', `pruning left an invalid model: ${issues[0]!.message}`, { file: a.model });

  const { feed, note } = await firstFeed(originalBytes, a, shapes);
  if (note) report.notes = [note];
  // FLOPs of pruning alone: counted before the cleanup below removes BatchNormalization's own;
  // parameters need no input shapes
  const counted = [original, model].map((m) => countFlops(m, feed ? feedShapes(feed) : shapes));
  report.params = { before: counted[0]!.totalParams, after: counted[1]!.totalParams };
  if (feed) report.flops = { before: counted[0]!, after: counted[1]! };
  if (a.optimize) {
    // BN folding and the other lossless rewrites keep zeros zero (0 * scale) and drop the tensors
    // pruning made redundant; the report says what sparsity is left.
    const r = await optimize(model, '@default', {});
    report.optimized = { pipeline: '@default', nodesBefore: r.nodesBefore, nodesAfter: r.nodesAfter, weightSparsity: weightSparsity(model).sparsity };
  }

  const before = await Session.create(originalBytes, { graphOptimizationLevel: 'all' }, a.model);
  const after = await Session.create(serializeModel(model), { graphOptimizationLevel: 'all' }, a.output);
  try {
    if (JSON.stringify([before.inputs, before.outputs]) !== JSON.stringify([after.inputs, after.outputs])) {
      throw inputError('PRUNE_IO_CHANGED', 'the pruned model declares different inputs or outputs (nothing written)', { file: a.model });
    }
    if (a.latency && feed) {
      const bar = new ProgressBar({ label: 'latency', total: a.runs, ...(a.json ? { enabled: false } : {}) });
      const lat = await measureLatency([before, after], [feed], { warmup: 3, runs: a.runs, onRound: (n) => bar.update(n) }).finally(() => bar.done());
      const [x, y] = lat.sessions;
      report.latency = { beforeMs: x!.stats.p50, afterMs: y!.stats.p50, ratio: y!.stats.p50 / x!.stats.p50, runs: a.runs };
    }
    if (a.eval && a.metric) {
      const metric = await loadMetric(a.metric);
      const opts: { shapes: Record<string, number[]>; preprocess?: string } = { shapes };
      if (a.preprocess) opts.preprocess = a.preprocess;
      const bar = new ProgressBar({ label: 'evaluating', ...(a.json ? { enabled: false } : {}) });
      let seen = 0;
      const onSample = () => bar.update(++seen);
      const ref = await evaluate(before, undefined, openDataSource(parseDataSpec(a.eval), before.inputs, opts), { metrics: metric.fn.needsReference ? [] : [metric], onSample }).finally(() => bar.done());
      const cand = await evaluate(after, before, openDataSource(parseDataSpec(a.eval), after.inputs, opts), { metrics: [metric], onSample }).finally(() => bar.done());
      report.accuracy = { metric: metric.name, before: ref.metrics[metric.name] ?? {}, after: cand.metrics[metric.name] ?? {} };
    }
  } finally {
    await before.dispose();
    await after.dispose();
  }
  const { sizes, sparseModel } = await measureDeployed(model, feed);
  report.sizes = { ...sizes, original: sizesOf(originalBytes) };
  let written = model;
  if (a.storage === 'sparse') {
    // only the variant just measured: onnxruntime loaded it and gave identical outputs
    if (sparseModel && sizes.sparse?.loads && sizes.sparse.maxAbsDiff === 0) {
      written = sparseModel;
      report.storage = { written: 'sparse', tensors: sizes.sparse.converted.length, bytes: sizes.sparse.raw };
    } else {
      const why = !sizes.sparse ? 'no tensor is smaller stored sparse' : !feed ? 'it was not checked: no input to run it on (--inputs SPEC or --shape)' : sizes.sparse.loads ? `its outputs differ (max |diff| ${sizes.sparse.maxAbsDiff})` : `onnxruntime refused it: ${sizes.sparse.error}`;
      process.stderr.write(`warning: --storage sparse: writing dense storage, ${why}\n`);
      report.storage = { written: 'dense', reason: why, bytes: sizes.dense.raw };
    }
  } else report.storage = { written: 'dense', bytes: sizes.dense.raw };
  await saveModel(written, a.output, save);
  return report as PruneCommandReport;
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(3)}x` : '-');

export function renderPruneReport(r: PruneCommandReport): string {
  const out: string[] = [];
  if (r.channels) {
    const rows = r.channels.groups.map((g) => [g.nodes.join(', ').slice(0, 60), g.before, g.after, g.reason ? `kept: ${g.reason}`.slice(0, 90) : '']);
    out.push(renderTable(['channel group (producers)', 'before', 'after', 'note'], rows, { title: `prune-channels ratio ${r.channels.ratio} (${r.channels.criterion}, scope ${r.channels.scope}${r.channels.scope === 'global' ? `, cost ${r.channels.cost}` : ''}, max ratio ${r.channels.maxRatio}, round to ${r.channels.roundTo}): channels ${r.channels.channelsBefore} -> ${r.channels.channelsAfter}` }));
  }
  if (r.magnitude) {
    const rows = r.magnitude.layers.map((l) => [l.weight, l.op, l.elements, pct(l.sparsity)]);
    out.push(renderTable(['weight', 'op', 'elements', 'sparsity'], rows, { title: `prune-magnitude ${r.magnitude.scope} ${r.magnitude.target}: overall sparsity ${pct(r.magnitude.sparsity)} of ${r.magnitude.elements} weights` }));
  }
  const f = r.flops;
  if (f) {
    const after = new Map(f.after.nodes.map((n) => [n.node, n]));
    const rows = f.before.nodes
      .filter((n) => n.flops > 0 || n.params > 0)
      .filter((n) => ['Conv', 'ConvTranspose', 'Gemm', 'MatMul'].includes(n.op))
      .map((n) => {
        const m = after.get(n.node);
        return [n.node, n.op, n.flops, m?.flops ?? 0, n.params, m?.params ?? 0];
      });
    out.push(renderTable(['layer', 'op', 'FLOPs before', 'FLOPs after', 'params before', 'params after'], rows, { title: 'FLOPs and parameters per layer' }));
  }
  out.push(
    renderTable(
      ['total', 'before', 'after', 'ratio'],
      [
        ...(f ? [['FLOPs', f.before.totalFlops, f.after.totalFlops, ratio(f.after.totalFlops, f.before.totalFlops)]] : []),
        ['parameters', r.params.before, r.params.after, ratio(r.params.after, r.params.before)],
        ...(r.latency ? [['latency p50 (ms)', r.latency.beforeMs.toFixed(3), r.latency.afterMs.toFixed(3), ratio(r.latency.afterMs, r.latency.beforeMs)]] : []),
        ...(r.sizes
          ? (['raw', 'gzip', 'brotli'] as const).map((k) => [`size ${k} (bytes, ${r.sizes!.best[k].variant})`, r.sizes!.original[k], r.sizes!.best[k].bytes, ratio(r.sizes!.best[k].bytes, r.sizes!.original[k])])
          : []),
      ],
      { title: 'Totals' },
    ),
  );
  if (f?.after.unknown.length) out.push(`FLOPs not counted (unknown shapes): ${f.after.unknown.slice(0, 8).join(', ')}`);
  for (const n of r.notes ?? []) out.push(`note: ${n}`);
  if (r.accuracy) {
    const keys = [...new Set([...Object.keys(r.accuracy.before), ...Object.keys(r.accuracy.after)])];
    out.push(renderTable(['metric', 'before', 'after'], keys.map((k) => [`${r.accuracy!.metric}.${k}`, r.accuracy!.before[k]?.toFixed(4) ?? '-', r.accuracy!.after[k]?.toFixed(4) ?? '-']), { title: 'Accuracy' }));
  }
  if (r.storage?.written === 'sparse') out.push(`written with sparse storage: ${r.storage.tensors} tensors, ${r.storage.bytes} bytes`);
  else if (r.storage?.reason) out.push(`written dense: ${r.storage.reason}`);
  if (r.optimized) out.push(`then ${r.optimized.pipeline}: nodes ${r.optimized.nodesBefore} -> ${r.optimized.nodesAfter}${r.magnitude ? `; Conv/Gemm/MatMul weight sparsity ${pct(r.optimized.weightSparsity)}` : ''}`);
  if (r.explanations.length) out.push(['Explanations:', ...r.explanations.map((e) => `  ${e.pass}${e.node ? ` ${e.node}` : ''}: ${e.reason}`)].join('\n'));
  return out.join('\n\n');
}

export const pruneCommand: CommandModule<object, Args> = {
  command: 'prune <model>',
  describe: 'Remove channels (structured) or zero small weights (unstructured); report FLOPs, latency, sizes and accuracy',
  builder: (y) =>
    writeOptions(
      y
        .positional('model', { type: 'string', demandOption: true, describe: 'the .onnx file' })
        .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'where to write the pruned model' })
        .option('channels', passFlag(pruneChannelsPass, 'ratio', { noDefault: true, describe: 'remove this fraction of the channels (structured; prune-channels ratio), in (0, 1)' }))
        .option('magnitude', passFlag(pruneMagnitudePass, 'sparsity', { noDefault: true, describe: 'zero this fraction of the Conv/Gemm/MatMul weights (unstructured; prune-magnitude sparsity), in (0, 1)' }))
        .option('criterion', passFlag(pruneChannelsPass, 'criterion'))
        .option('scope', passFlag(pruneChannelsPass, 'scope', { noDefault: true, describe: 'one ranking over all channels / weights (global) or the same fraction of each group / tensor (layer)', defaultDescription: sharedDefault('scope') }))
        .option('exclude', passFlag(pruneChannelsPass, 'exclude', { describe: 'node, weight or output names to leave alone (* wildcards)' }))
        .option('layers', passFlag(pruneChannelsPass, 'layers', { describe: 'per-layer channel ratios: name=ratio' }))
        .option('cost', passFlag(pruneChannelsPass, 'cost'))
        .option('max-ratio', passFlag(pruneChannelsPass, 'maxRatio'))
        .option('round-to', passFlag(pruneChannelsPass, 'roundTo'))
        .option('storage', { choices: ['dense', 'sparse'], default: 'dense', describe: 'write pruned tensors as ONNX sparse initializers where smaller, when onnxruntime loads that file with identical outputs (measured; else dense with a warning)' })
        .option('optimize', { type: 'boolean', default: true, describe: 'run the lossless default preset after pruning (folds BatchNormalization into the pruned weights, zeros stay zero); --no-optimize writes the graph as pruned' })
        .option('shape', { type: 'string', array: true, describe: 'size of symbolic input dims: name=1,3,224,224' })
        .option('inputs', { type: 'string', describe: 'inputs for FLOPs, latency and the sparse-storage check (data spec; default: --eval, else --calibration, else random when every input dim is known)' })
        .option('calibration', { type: 'string', describe: 'data spec for bias compensation of removed channels (--channels)' })
        .option('preprocess', { type: 'string', describe: 'image preprocessing JSON for --inputs/--eval' })
        .option('eval', { type: 'string', describe: 'evaluation data spec' })
        .option('metric', { type: 'string', describe: 'metric module (path[#export]) for --eval' })
        .option('runs', { type: 'number', default: 30, describe: 'interleaved latency runs' })
        .option('latency', { type: 'boolean', default: true, describe: 'measure latency (--no-latency to skip)' })
        .option('explain', { type: 'boolean', describe: 'say why channels were kept' })
        .option('json', { type: 'boolean', describe: 'print the report as JSON (schema onnxforge.prune/1)' }),
    ) as never,
  handler: async (a) => {
    const r = await runPrune(a);
    process.stdout.write(a.json ? `${JSON.stringify(r, null, 2)}\n` : `${renderPruneReport(r)}\nwrote ${a.output}\n`);
  },
};
