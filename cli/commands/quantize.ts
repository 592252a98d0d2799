/**
 * `onnxforge quantize in.onnx -o out.onnx --mode static --calibration SPEC [...]`: static INT8
 * quantization (the `quantize-static` pass), then a report: size, latency, output error vs FP32
 * (SQNR and max error per output), task accuracy with `--eval`/`--metric`, and the per-layer SQNR
 * with `--debug-layers`. The report is typed data first (`--report FILE` writes the JSON), rendered
 * as a terminal table second. The model is written last, and only when it passes the checker and
 * loads in onnxruntime.
 */
import { createPassContext } from '../../passes/manager.js';
import { writeFileAtomic } from '../../core/files.js';
import type { CommandModule } from 'yargs';
import { openDataSource } from '../../data/index.js';
import { checkModel } from '../../ir/checker.js';
import { checkError, inputError } from '../../core/errors.js';
import type { Model } from '../../ir/ir.js';
import { cloneModel, saveModel, serializeModel } from '../../onnx/index.js';
import { layerErrors, LayerError } from '../../passes/quantize/debug.js';
import staticPass, { QuantizeStaticPassOptions, QuantizeStaticReport, staticOptionsFromPass } from '../../passes/quantize/quantize-static.js';
import weightsPass from '../../passes/quantize/quantize-weights.js';
import dynamicPass from '../../passes/quantize/quantize-dynamic.js';
import { resolveOptions } from '../../passes/pipeline.js';
import { passFlag, passOptionsFrom } from '../schema-options.js';
import { ProgressBar } from '../../core/progress.js';
import { formatBytes, renderTable } from '../../report/table.js';
import { evaluate } from '../../workflows/evaluate.js';
import { createSessionFromModel } from '../../runtime/from-model.js';
import type { Feed } from '../../core/host-tensor.js';
import { measureLatency } from '../../runtime/latency.js';
import { OutputError, UserMetric } from '../../runtime/metrics.js';
import { createSession, Session } from '../../runtime/session.js';
import { writeOptions, WriteArgs } from '../options.js';
import { toQOperator } from '../../passes/quantize/qop.js';
import { subgraphNote } from '../../passes/quantize/subgraphs.js';
import { renderDefaultRecipe } from '../../report/quantize-recipe.js';
import { list, quantizeSetup, renderQuantizeModeReport, runQuantizeMode } from './quantize-modes.js';
import type { Sample } from '../../data/index.js';
import type { SessionOptions } from '../../runtime/session.js';
import { quantizeStatic } from '../../passes/api.js';

interface Args extends WriteArgs {
  model: string;
  output: string;
  mode: string;
  format: string;
  minElements?: number;
  calibration: string;
  preprocess?: string;
  shape?: string[];
  method: string;
  percentile?: number;
  movingAverage?: number;
  perChannel?: boolean;
  reduceRange?: boolean;
  symmetricActivations: boolean;
  latencyAware: string;
  prefer: string;
  maxAccuracyDrop?: number;
  budgetKey?: string;
  budgetRank: string;
  excludeNodes?: string[];
  excludeOps?: string[];
  onlyOps?: string[];
  activationMatmul: boolean;
  weightOnlyNodes?: string[];
  descriptiveNames: boolean;
  eval?: string;
  evalPreprocess?: string;
  metric?: string[];
  limit?: number;
  debugLayers: boolean;
  report?: string;
  threads: number;
  latencyRuns: number;
  json: boolean;
}

export interface QuantizeCommandReport {
  schema: 'onnxforge.quantize/1';
  input: string;
  output: string;
  mode: 'static';
  size: { fp32Bytes: number; int8Bytes: number; ratio: number };
  latency: { fp32Ms: number; int8Ms: number; ratio: number; runs: number; threads: number };
  /** Output error of the quantized model vs FP32 on the eval set (or the calibration set). */
  outputs: OutputError[];
  evalSamples: number;
  accuracy?: { metric: string; fp32: Record<string, number>; int8: Record<string, number> }[];
  layers?: LayerError[];
  quantization: Omit<QuantizeStaticReport, 'ranges' | 'dequantized'>;
  /** What the quantizer left alone and why (e.g. weight layers inside subgraphs). */
  notes: string[];
  wallMs: number;
}

/** quantize-static options and the argument (yargs camelCase) that carries each; the rest take the schema default. */
const STATIC_FLAGS = {
  method: 'method',
  percentile: 'percentile',
  movingAverage: 'movingAverage',
  perChannel: 'perChannel',
  reduceRange: 'reduceRange',
  symmetricActivations: 'symmetricActivations',
  excludeNodes: 'excludeNodes',
  excludeOps: 'excludeOps',
  onlyOps: 'onlyOps',
  activationMatMul: 'activationMatMul',
  weightOnlyNodes: 'weightOnlyNodes',
  names: 'names',
  latencyAware: 'latencyAware',
  prefer: 'prefer',
  fidelity: 'fidelity',
  fidelityMinGain: 'fidelityMinGain',
  biasCorrection: 'biasCorrection',
} as const;

export const quantizeCommand: CommandModule<object, Args> = {
  command: 'quantize <model>',
  describe: 'Static INT8 quantization (QDQ) calibrated on a data set, with a size/latency/accuracy report',
  builder: (y) =>
    writeOptions(
      y
        .positional('model', { type: 'string', demandOption: true, describe: 'the FP32 .onnx file' })
        .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'where to write the quantized model' })
        .option('mode', { type: 'string', choices: ['static', 'weights', 'dynamic'], default: 'static', describe: 'static (calibrated QDQ), weights (int8 weights + DequantizeLinear, float activations, tagged) or dynamic (MatMul/Gemm/Gather/LSTM int8, activations quantized at run time)' })
        .option('format', { type: 'string', choices: ['qdq', 'qop'], default: 'qdq', describe: 'static mode: QDQ or QOperator (QLinearConv, QLinearMatMul, ...) emission' })
        .option('min-elements', { type: 'number', describe: 'weights/dynamic: smallest weight tensor (elements) that is quantized', defaultDescription: `${weightsPass.options.minElements!.default} for weights, ${dynamicPass.options.minElements!.default} for dynamic` })
        .option('calibration', { type: 'string', describe: 'calibration data (static mode, required): a folder or file of .npy/.npz, .pb, .json, .png (with --preprocess), or random[:count[:seed]]' })
        .option('preprocess', { type: 'string', describe: 'image preprocessing file (JSON) for .png data' })
        .option('shape', { type: 'string', array: true, describe: 'symbolic dims for random data: input=1,3,224,224 or dimname=N' })
        .option('method', passFlag(staticPass, 'method', { describe: 'activation range estimation' }))
        .option('percentile', passFlag(staticPass, 'percentile', { describe: 'percentile kept by --method percentile' }))
        .option('moving-average', passFlag(staticPass, 'movingAverage'))
        .option('per-channel', passFlag(staticPass, 'perChannel', { describe: 'one weight scale per output channel (--no-per-channel for per-tensor)', noDefault: true, defaultDescription: 'true' }))
        .option('reduce-range', passFlag(staticPass, 'reduceRange', { describe: 'int8 weights limited to [-64, 64] (avoids the saturation of AVX2 u8 x s8 pair sums; --no-reduce-range for full range)', noDefault: true, defaultDescription: `${staticPass.options.reduceRange!.default} (static), ${dynamicPass.options.reduceRange!.default} (dynamic)` }))
        .option('symmetric-activations', passFlag(staticPass, 'symmetricActivations'))
        .option('latency-aware', passFlag(staticPass, 'latencyAware', { describe: 'profile int8 and float layers in onnxruntime and keep in float what is slower in int8 (off: quantize everything quantizable)' }))
        .option('prefer', passFlag(staticPass, 'prefer', { describe: 'layers kept float for latency keep float weights (speed) or int8 weights behind a DequantizeLinear (size, slower)' }))
        .option('fidelity', passFlag(staticPass, 'fidelity', { describe: 'label-free fidelity budget: layers return to float until every output has at least this SQNR (dB) vs the float model on the calibration samples (0: off)' }))
        .option('fidelity-min-gain', passFlag(staticPass, 'fidelityMinGain'))
        .option('bias-correction', passFlag(staticPass, 'biasCorrection', { describe: 'correct biases for the mean output shift of rounded weights (--no-bias-correction to skip)' }))
        .option('max-accuracy-drop', { type: 'number', describe: 'accuracy budget: return the most sensitive layers to float until FP32 score - INT8 score <= this (needs --eval and --metric)' })
        .option('budget-rank', { type: 'string', choices: ['output', 'sqnr'], default: 'output', describe: 'how the budget ranks layers: output SQNR each recovers alone in float (measured), or the SQNR each loses itself (cheaper)' })
        .option('budget-key', { type: 'string', describe: 'metric field the budget applies to (default: the first field; key:min for lower-is-better fields such as cer:min)' })
        .option('exclude-nodes', passFlag(staticPass, 'excludeNodes', { describe: 'node names left in float (comma-separated or repeated)' }))
        .option('exclude-ops', passFlag(staticPass, 'excludeOps', { describe: 'op types left in float' }))
        .option('only-ops', passFlag(staticPass, 'onlyOps', { describe: 'quantize only these op types' }))
        .option('activation-matmul', passFlag(staticPass, 'activationMatMul', { describe: 'also quantize MatMul of two activations (attention)' }))
        .option('weight-only-nodes', passFlag(staticPass, 'weightOnlyNodes', { describe: 'node names whose weights are int8 but activations stay float' }))
        .option('descriptive-names', { type: 'boolean', default: staticPass.options.names!.default === 'descriptive', describe: 'name new tensors after the originals (default: short ids, smaller files)' })
        .option('eval', { type: 'string', describe: 'evaluation data for the report (default: the calibration data)' })
        .option('eval-preprocess', { type: 'string', describe: 'preprocessing for --eval images (default: --preprocess)' })
        .option('metric', { type: 'string', array: true, describe: 'task metric module path[#export] evaluated on --eval (repeatable)' })
        .option('limit', { type: 'number', describe: 'evaluate on at most this many samples' })
        .option('debug-layers', { type: 'boolean', default: false, describe: 'per-layer SQNR of float vs quantized activations' })
        .option('report', { type: 'string', describe: 'write the JSON report here' })
        .option('threads', { type: 'number', default: 1, describe: 'intra-op threads for latency and evaluation' })
        .option('latency-runs', { type: 'number', default: 20, describe: 'timed runs per model (interleaved)' })
        .option('json', { type: 'boolean', default: false, describe: 'print the JSON report instead of tables' }),
    ) as never,
  handler: async (a) => {
    if (a.mode === 'weights' || a.mode === 'dynamic') {
      if (a.format !== 'qdq') throw inputError('USAGE_BAD_VALUE', `--format ${a.format} applies to --mode static only`);
      const r = await runQuantizeMode(a);
      process.stdout.write(a.json ? `${JSON.stringify(r, jsonReplacer, 2)}\n` : `${renderQuantizeModeReport(r)}\n`);
      return;
    }
    const report = await runQuantize(a);
    if (a.report) writeFileAtomic(a.report, `${JSON.stringify(report, jsonReplacer, 2)}\n`);
    process.stdout.write(a.json ? `${JSON.stringify(report, jsonReplacer, 2)}\n` : `${renderQuantizeReport(report)}\n`);
  },
};

function jsonReplacer(_k: string, v: unknown): unknown {
  if (typeof v === 'number' && !Number.isFinite(v)) return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
  return v;
}

async function runQuantize(a: Args): Promise<QuantizeCommandReport> {
  const t0 = performance.now();
  if (a.mode !== 'static') throw inputError('USAGE_BAD_VALUE', `--mode ${a.mode}: only static is supported`);
  if (!a.calibration) throw inputError('USAGE_MISSING', '--mode static needs --calibration SPEC');
  if (a.maxAccuracyDrop !== undefined && (!a.eval || !a.metric)) throw inputError('USAGE_MISSING', '--max-accuracy-drop needs --eval SPEC and --metric MODULE (the score the budget applies to)');
  const { save, shapes, metrics, model, fp32Model, fp32Bytes } = await quantizeSetup(a);
  const so = { intraOpNumThreads: a.threads, allowSpinning: false };
  const fp32 = await createSession(fp32Model, so, a.model);
  const inputs = fp32.inputs;
  const calib = () => openDataSource(a.calibration, inputs, { shapes, ...(a.preprocess ? { preprocess: a.preprocess } : {}) });

  const opts = staticOptionsFromPass(
    resolveOptions(
      staticPass,
      passOptionsFrom(staticPass, { ...a, excludeNodes: list(a.excludeNodes), excludeOps: list(a.excludeOps), onlyOps: list(a.onlyOps), weightOnlyNodes: list(a.weightOnlyNodes), names: a.descriptiveNames ? 'descriptive' : 'compact' }, STATIC_FLAGS),
    ) as QuantizeStaticPassOptions,
  );
  let prepared: Model | undefined;
  if (a.debugLayers) opts.onPrepared = (m) => (prepared = cloneModel(m));
  if (a.maxAccuracyDrop !== undefined) {
    const evalPrep = a.evalPreprocess ?? a.preprocess;
    const src = () => openDataSource(a.eval!, inputs, { shapes, ...(evalPrep ? { preprocess: evalPrep } : {}), ...(a.limit !== undefined ? { limit: a.limit } : {}) });
    opts.accuracy = { maxDrop: a.maxAccuracyDrop, evaluate: budgetScorer(metrics[0]!, a.budgetKey, fp32, src, so), rank: a.budgetRank as 'output' | 'sqnr' };
  }

  const bar = new ProgressBar({ label: 'calibrating', ...(a.json ? { enabled: false } : {}) });
  let ticks = 0;
  const q = await quantizeStatic(model, calib, opts, {
    ...createPassContext(),
    progress: () => ({ tick: () => bar.update(++ticks), done: () => bar.done() }),
  });
  bar.done();
  if (a.format === 'qop') toQOperator(model);

  const issues = checkModel(model);
  if (issues.length) {
    throw checkError('QUANT_INVALID_MODEL', `the quantized model fails the checker (nothing written): ${issues.slice(0, 3).map((i) => `${i.code} ${i.message}`).join('; ')}`, { file: a.output });
  }
  const bytes = serializeModel(model);
  const int8 = await createSession(bytes, so, a.output).catch((e: Error) => {
    throw checkError('QUANT_LOAD_FAILED', `onnxruntime cannot load the quantized model (nothing written): ${e.message}`, { file: a.output });
  });

  try {
    // output error and task accuracy
    const evalSpec = a.eval ?? a.calibration;
    const evalPrep = a.evalPreprocess ?? a.preprocess;
    const evalSrc = () => openDataSource(evalSpec, inputs, { shapes, ...(evalPrep ? { preprocess: evalPrep } : {}), ...(a.limit !== undefined ? { limit: a.limit } : {}) });
    const ev = await evaluate(int8, fp32, evalSrc(), { metrics });
    const report: QuantizeCommandReport = {
      schema: 'onnxforge.quantize/1',
      input: a.model,
      output: a.output,
      mode: 'static',
      size: { fp32Bytes, int8Bytes: bytes.byteLength, ratio: bytes.byteLength / fp32Bytes },
      latency: await latency(fp32, int8, evalSrc, a.latencyRuns, a.threads),
      outputs: ev.outputs ?? [],
      evalSamples: ev.samples,
      quantization: stripLarge(q),
      notes: [],
      wallMs: 0,
    };
    const sub = subgraphNote(model);
    if (sub) report.notes.push(sub);
    if (metrics.length) report.accuracy = metrics.map((m) => ({ metric: m.name, fp32: ev.referenceMetrics?.[m.name] ?? {}, int8: ev.metrics[m.name] ?? {} }));
    if (a.debugLayers && prepared) {
      const floatNames = Object.keys(q.dequantized);
      report.layers = await layerErrors(prepared, model, q.dequantized, evalSrc(), { sessionOptions: so, limit: a.limit ?? 16 });
      report.layers.sort((x, y) => x.sqnrDb - y.sqnrDb);
      if (report.layers.length !== floatNames.length) throw checkError('QUANT_DEBUG_MISMATCH', 'per-layer comparison lost tensors');
    }
    await saveModel(model, a.output, save);
    report.wallMs = performance.now() - t0;
    return report;
  } finally {
    await fp32.dispose();
    await int8.dispose();
  }
}

/** The score the accuracy budget applies to: one field of the first metric, higher is better (negated for key:min). */
function budgetScorer(metric: { name: string; fn: UserMetric }, key: string | undefined, fp32: Session, src: () => AsyncIterable<Sample>, so: SessionOptions): (m: Model) => Promise<number> {
  const [field, dir] = (key ?? '').split(':');
  if (dir !== undefined && dir !== 'min' && dir !== 'max') throw inputError('USAGE_BAD_VALUE', `--budget-key ${key}: the direction must be min or max`);
  return async (m) => {
    const s = await createSessionFromModel(m, so, '(budget candidate)');
    try {
      const ev = await evaluate(s, fp32, src(), { metrics: [metric] });
      const r = ev.metrics[metric.name] ?? {};
      const k = field || Object.keys(r)[0];
      if (!k || !(k in r)) throw inputError('USAGE_BAD_VALUE', `--budget-key: metric ${metric.name} has no field '${k ?? ''}' (fields: ${Object.keys(r).join(', ')})`);
      return dir === 'min' ? -r[k]! : r[k]!;
    } finally {
      await s.dispose();
    }
  };
}

function stripLarge(q: QuantizeStaticReport): Omit<QuantizeStaticReport, 'ranges' | 'dequantized'> {
  const { ranges: _r, dequantized: _d, ...rest } = q;
  return rest;
}

async function latency(fp32: Session, int8: Session, src: () => AsyncIterable<{ feed: Feed }>, runs: number, threads: number): Promise<QuantizeCommandReport['latency']> {
  const feeds: Feed[] = [];
  for await (const s of src()) {
    feeds.push(s.feed);
    if (feeds.length >= 4) break;
  }
  const r = await measureLatency([fp32, int8], feeds, { runs, warmup: 3 });
  const f = r.sessions[0]!.stats.p50;
  const i = r.sessions[1]!.stats.p50;
  return { fp32Ms: f, int8Ms: i, ratio: i / f, runs, threads };
}

const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : String(x));

export function renderQuantizeReport(r: QuantizeCommandReport): string {
  const parts: string[] = [];
  const q = r.quantization;
  parts.push(
    renderTable(
      ['', 'FP32', 'INT8', 'ratio'],
      [
        ['size', formatBytes(r.size.fp32Bytes), formatBytes(r.size.int8Bytes), fmt(r.size.ratio, 3)],
        [`latency p50 (${r.latency.threads} thread)`, `${fmt(r.latency.fp32Ms)} ms`, `${fmt(r.latency.int8Ms)} ms`, fmt(r.latency.ratio, 3)],
      ],
      { title: `quantize ${r.input} -> ${r.output} (${q.method}, ${q.samples} calibration samples, ${fmt(q.calibrationMs / 1000, 1)} s)` },
    ),
  );
  parts.push(renderTable(['output', 'SQNR dB', 'max abs err', 'cosine'], r.outputs.map((o) => [o.name, fmt(o.sqnrDb, 1), o.maxAbs.toPrecision(3), o.cosine.toFixed(5)]), { title: `output error vs FP32 (${r.evalSamples} samples)` }));
  for (const a of r.accuracy ?? []) {
    const keys = [...new Set([...Object.keys(a.fp32), ...Object.keys(a.int8)])];
    parts.push(renderTable(['metric', 'FP32', 'INT8'], keys.map((k) => [k, fmt(a.fp32[k] ?? NaN, 4), fmt(a.int8[k] ?? NaN, 4)]), { title: `task accuracy: ${a.metric}` }));
  }
  parts.push(
    renderTable(
      ['int8 ops', 'count'],
      Object.entries(q.quantizedOps).sort((x, y) => y[1] - x[1]).map(([k, v]) => [k, v]),
      { title: `${q.int8Nodes} int8 nodes, ${q.emit.qdqPairs} Q/DQ pairs, ${q.emit.weights} int8 weights, ${q.emit.biases} int32 biases` },
    ),
  );
  const floatOps = Object.entries(q.floatOps).sort((x, y) => y[1] - x[1]);
  if (floatOps.length) parts.push(renderTable(['float ops', 'count'], floatOps.map(([k, v]) => [k, v]), { title: 'ops left in float' }));
  if (q.latency) {
    const l = q.latency;
    parts.push(renderTable(['kept float (latency)', 'op', 'float µs', 'int8 µs', 'weights'], l.floated.map((f) => [f.node, f.op, fmt(f.floatUs, 0), fmt(f.int8Us, 0), f.weights]), { title: `latency-aware (${l.rounds} profiling rounds, prefer ${l.prefer}): ${l.floated.length} layers kept float, ${l.kept.length} int8; float weights cost ${formatBytes(l.extraBytes)} more than int8` }));
  }
  if (q.accuracy) {
    const c = q.accuracy;
    parts.push(renderTable(['returned to float (accuracy)', 'op', 'output gain dB', 'SQNR dB', 'loses dB'], c.floated.map((f) => [f.node, f.op, f.gainDb !== undefined ? fmt(f.gainDb, 2) : '-', fmt(f.sqnrDb, 1), fmt(f.lossDb, 1)]), { title: `accuracy budget ${c.maxDrop} (ranked by ${c.rank}): FP32 ${fmt(c.reference, 4)}, INT8 ${fmt(c.score, 4)} (drop ${fmt(c.drop, 4)}) ${c.met ? 'met' : 'NOT met'} after ${c.trials.length} evaluations; int8 weights kept` }));
  }
  if (q.float.length) parts.push(renderTable(['left float', 'op', 'reason'], q.float.map((f) => [f.node, f.op, f.reason]), { title: `${q.float.length} quantizable nodes left in float` }));
  if (r.layers) parts.push(renderTable(['tensor', 'producer', 'SQNR dB', 'max abs err'], r.layers.slice(0, 30).map((l) => [l.tensor, l.producer, fmt(l.sqnrDb, 1), l.maxAbs.toPrecision(3)]), { title: `per-layer SQNR, worst ${Math.min(30, r.layers.length)} of ${r.layers.length}` }));
  const recipe = renderDefaultRecipe(q);
  if (recipe) parts.push(recipe);
  for (const w of q.warnings) parts.push(`warning: ${w}`);
  for (const n of r.notes) parts.push(`note: ${n}`);
  return parts.join('\n\n');
}
