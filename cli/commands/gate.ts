import * as fs from 'node:fs';
import type { CommandModule } from 'yargs';
import { checkError, inputError } from '../../core/errors.js';
import { collectSamples, parseDataSpec, parseShapeArg } from '../../data/index.js';
import { evaluate } from '../../workflows/evaluate.js';
import { loadMetric } from '../../runtime/metrics.js';
import { Session } from '../../runtime/session.js';
import type { Feed } from '../../core/host-tensor.js';
import {
  Baseline,
  BaselineModelComparison,
  BASELINE_SCHEMA,
  compareModels,
  comparisonIsClear,
  evaluateGate,
  measureModel,
  Measurement,
  parsePercent,
  readBaseline,
  readMeasurement,
  renderGateJUnit,
  renderGateMarkdown,
  renderGateTable,
  verdictIsClear,
  writeFileAtomic,
} from '../../workflows/gate.js';
import { describeContention } from '../../runtime/timer.js';
import { ProgressBar } from '../../core/progress.js';

interface Args {
  baseline: string;
  model?: string;
  report?: string;
  baselineModel?: string;
  maxSizeIncrease: string;
  maxLatencyIncrease: string;
  minAccuracy?: number;
  eval?: string;
  metric?: string;
  preprocess?: string;
  inputs?: string;
  shape?: string[];
  rounds: number;
  maxSeconds: number;
  failMinSeconds: number;
  strict?: boolean;
  threads: number;
  updateBaseline?: boolean;
  saveMeasurement?: string;
  summary?: string;
  junit?: string;
  json?: boolean;
}

async function timingFeed(model: string, args: Args): Promise<Feed> {
  const s = await Session.create(model, { intraOpNumThreads: 1 });
  try {
    const shapes: Record<string, number[]> = Object.fromEntries((args.shape ?? []).map(parseShapeArg));
    const spec = args.inputs ? parseDataSpec(args.inputs) : parseDataSpec('random:1:0');
    const opts: { shapes: Record<string, number[]>; limit: number; preprocess?: string } = { shapes, limit: 1 };
    if (args.preprocess) opts.preprocess = args.preprocess;
    const samples = await collectSamples(spec, s.inputs, opts);
    if (samples.length === 0) throw inputError('GATE_NO_INPUTS', `--inputs ${args.inputs}: no samples`);
    return samples[0]!.feed;
  } finally {
    await s.dispose();
  }
}

async function measureAccuracy(model: string, args: Args): Promise<{ metric: string; value: number } | undefined> {
  if (!args.eval && !args.metric) return undefined;
  if (!args.eval || !args.metric) throw inputError('USAGE_MISSING', '--eval and --metric go together');
  const metric = await loadMetric(args.metric);
  const s = await Session.create(model, {});
  try {
    const shapes: Record<string, number[]> = Object.fromEntries((args.shape ?? []).map(parseShapeArg));
    const { openDataSource } = await import('../../data/index.js');
    const opts: { shapes: Record<string, number[]>; preprocess?: string } = { shapes };
    if (args.preprocess) opts.preprocess = args.preprocess;
    const rep = await evaluate(s, undefined, openDataSource(parseDataSpec(args.eval), s.inputs, opts), { metrics: [metric] });
    const rec = rep.metrics[metric.name] ?? {};
    const keys = Object.keys(rec);
    const key = keys.includes(metric.name) ? metric.name : keys.includes('accuracy') ? 'accuracy' : keys[0];
    if (key === undefined) throw inputError('METRIC_BAD_VALUE', `metric ${metric.name} returned nothing`);
    return { metric: key === metric.name ? metric.name : `${metric.name}.${key}`, value: rec[key]! };
  } finally {
    await s.dispose();
  }
}

export const gateCommand: CommandModule<object, Args> = {
  command: 'gate',
  describe: 'Fail the build when a model got bigger, slower or less accurate than its checked-in baseline',
  builder: (y) =>
    y
      .option('baseline', { type: 'string', demandOption: true, describe: 'baseline JSON (schema onnxforge.gate-baseline/1)' })
      .option('model', { type: 'string', describe: 'the model to measure now' })
      .option('report', { type: 'string', describe: 'a measurement saved earlier with --save-measurement, instead of --model' })
      .option('baseline-model', { type: 'string', describe: 'time the old model interleaved with --model in this process instead of using the stored ratio' })
      .option('max-size-increase', { type: 'string', default: '1%', describe: 'size budget (percent)' })
      .option('max-latency-increase', { type: 'string', default: '5%', describe: 'latency budget (percent)' })
      .option('min-accuracy', { type: 'number', describe: 'fail when the metric on --eval is below this' })
      .option('eval', { type: 'string', describe: 'evaluation data spec (as --inputs)' })
      .option('metric', { type: 'string', describe: 'metric module (path[#export]) for --eval' })
      .option('inputs', { type: 'string', describe: 'inputs for timing (data spec; default generated)' })
      .option('preprocess', { type: 'string', describe: 'image preprocessing JSON for --inputs/--eval' })
      .option('shape', { type: 'string', array: true, describe: 'size of symbolic input dims: name=1,3,224,224' })
      .option('rounds', { type: 'number', default: 40, describe: 'interleaved timing rounds per trial (each trial uses fresh sessions)' })
      .option('max-seconds', { type: 'number', default: 30, describe: 'time limit of the latency measurement: trials repeat until the verdict is clear, else the latency row says inconclusive (the baseline gets twice this)' })
      .option('fail-min-seconds', { type: 'number', default: 10, describe: 'least seconds of trials before latency may fail (a burst of load on the machine cannot make a failure)' })
      .option('strict', { type: 'boolean', describe: 'an inconclusive latency verdict fails the gate (exit 1) instead of passing with a note' })
      .option('threads', { type: 'number', default: 1, describe: 'onnxruntime intra-op threads' })
      .option('update-baseline', { type: 'boolean', describe: 'write the current measurement as the new baseline and exit 0' })
      .option('save-measurement', { type: 'string', describe: 'also write the current measurement to this file' })
      .option('summary', { type: 'string', describe: 'Markdown summary file (default: $GITHUB_STEP_SUMMARY when set)' })
      .option('junit', { type: 'string', describe: 'JUnit XML file (default: onnxforge-gate.xml)' })
      .option('json', { type: 'boolean', describe: 'print the result as JSON' }) as never,
  handler: async (args) => {
    if (!args.model && !args.report) throw inputError('USAGE_MISSING', 'give --model (measure now) or --report (a saved measurement)');
    if (args.model && args.report) throw inputError('USAGE_CONFLICT', '--model and --report cannot be used together');
    if (args.baselineModel && !args.model) throw inputError('USAGE_CONFLICT', '--baseline-model needs --model');
    if (!Number.isInteger(args.rounds) || args.rounds < 5) throw inputError('USAGE_BAD_VALUE', `--rounds must be an integer of at least 5, got ${args.rounds}`);
    if (!(args.maxSeconds > 0)) throw inputError('USAGE_BAD_VALUE', `--max-seconds must be a positive number, got ${args.maxSeconds}`);
    if (!(args.failMinSeconds >= 0)) throw inputError('USAGE_BAD_VALUE', `--fail-min-seconds must be a non-negative number, got ${args.failMinSeconds}`);
    for (const f of [args.model, args.baselineModel]) if (f && !fs.existsSync(f)) throw inputError('FILE_NOT_FOUND', `${f}: no such model file`, { file: f });
    const budgets = {
      maxSizeIncrease: parsePercent(args.maxSizeIncrease, '--max-size-increase'),
      maxLatencyIncrease: parsePercent(args.maxLatencyIncrease, '--max-latency-increase'),
      ...(args.minAccuracy !== undefined ? { minAccuracy: args.minAccuracy } : {}),
      strict: args.strict ?? false,
      failMinSeconds: args.failMinSeconds,
    };
    // Validate the baseline before spending time measuring (unless we are creating it).
    const baseline: Baseline | undefined = args.updateBaseline ? undefined : readBaseline(args.baseline);

    let current: Measurement;
    let feed: Feed | undefined;
    if (args.model) {
      feed = await timingFeed(args.model, args);
      const accuracy = await measureAccuracy(args.model, args);
      // a baseline measures until its estimate is stable (twice the time limit); a check until its
      // verdict against the baseline is clear (runtime/timer.ts, workflows/gate.ts)
      const maxSeconds = args.updateBaseline ? args.maxSeconds * 2 : args.maxSeconds;
      const bar = new ProgressBar({ label: 'gate: timing (s)', total: Math.ceil(maxSeconds) });
      const stopWhen = !args.updateBaseline && baseline?.measurement.latency && !args.baselineModel ? { done: verdictIsClear(baseline.measurement.latency, budgets.maxLatencyIncrease, args.failMinSeconds) } : {};
      current = await measureModel(args.model, {
        feed,
        rounds: args.rounds,
        threads: args.threads,
        maxSeconds,
        ...(args.updateBaseline ? { minTrials: 9 } : {}),
        ...stopWhen,
        onTrial: (e) => bar.update(Math.min(Math.ceil(maxSeconds), Math.round(e.seconds))),
        ...(accuracy ? { accuracy } : {}),
        latency: !args.baselineModel,
      });
      bar.done();
    } else current = readMeasurement(args.report!);
    if (args.saveMeasurement) writeFileAtomic(args.saveMeasurement, `${JSON.stringify(current, null, 2)}\n`);

    if (args.updateBaseline) {
      const b: Baseline = { schema: BASELINE_SCHEMA, createdAt: new Date().toISOString(), measurement: current };
      writeFileAtomic(args.baseline, `${JSON.stringify(b, null, 2)}\n`);
      const l = current.latency;
      process.stdout.write(`wrote baseline ${args.baseline}: ${current.model.sizeBytes} bytes${l ? `, latency ${l.ratioToReference.toFixed(3)}x the reference workload ± ${(l.noise * 100).toFixed(1)}% (${l.trials.length} trials in ${l.seconds.toFixed(0)} s${l.stable ? '' : `, not stable: ${l.unstableReason}`}; ${describeContention(l.contention)})` : ''}\n`);
      return;
    }

    let vsModel: BaselineModelComparison | undefined;
    if (args.baselineModel && args.model) {
      vsModel = await compareModels(args.model, args.baselineModel, feed!, { rounds: args.rounds, threads: args.threads, maxSeconds: args.maxSeconds, done: comparisonIsClear(budgets.maxLatencyIncrease, args.failMinSeconds) });
    }
    const result = evaluateGate(baseline!, current, budgets, vsModel);
    process.stdout.write(args.json ? `${JSON.stringify(result, null, 2)}\n` : `${renderGateTable(result)}\n`);
    const md = renderGateMarkdown(result);
    const summary = args.summary ?? process.env.GITHUB_STEP_SUMMARY;
    if (summary) {
      if (args.summary) writeFileAtomic(summary, md);
      else fs.appendFileSync(summary, md);
    }
    writeFileAtomic(args.junit ?? 'onnxforge-gate.xml', renderGateJUnit(result));
    if (!result.passed) {
      const failed = result.checks.filter((c) => c.verdict === 'fail').map((c) => `${c.metric} ${c.change} (budget ${c.budget})`);
      if (failed.length) throw checkError('GATE_REGRESSION', `regression: ${failed.join('; ')}`, { file: args.model ?? args.report });
      const unsure = result.checks.filter((c) => c.verdict === 'inconclusive').map((c) => `${c.metric}: ${c.detail ?? c.change}`);
      throw checkError('GATE_INCONCLUSIVE', `inconclusive with --strict: ${unsure.join('; ')}`, { file: args.model ?? args.report });
    }
  },
};
