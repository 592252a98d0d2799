/** `onnxforge gate`: argv -> workflows/gate.ts -> report/gate.ts renderings (table or JSON, Markdown summary, JUnit). */
import * as fs from 'node:fs';
import type { CommandModule } from 'yargs';
import { writeFileAtomic } from '../../core/files.js';
import { parseShapeArg } from '../../data/index.js';
import { renderBaselineWritten, renderGateJUnit, renderGateMarkdown, renderGateTable } from '../../report/gate.js';
import { gateFailure, gateWorkflow, parsePercent } from '../../workflows/gate.js';
import { progressBars } from '../options.js';
import { parseBackends } from '../../runtime/backend.js';

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
  maxBackendDrift?: number;
  backend?: string[];
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
      .option('json', { type: 'boolean', describe: 'print the result as JSON' })
      .option('max-backend-drift', { type: 'number', describe: 'also run --model on two backends (--backend, default node,wasm) on --inputs and fail when an output differs by more than this (max abs)' })
      .option('backend', { type: 'string', array: true, describe: 'the two backends --max-backend-drift compares (default node,wasm)' }) as never,
  handler: async (args) => {
    const outcome = await gateWorkflow({
      baseline: args.baseline,
      ...(args.model ? { model: args.model } : {}),
      ...(args.report ? { report: args.report } : {}),
      ...(args.baselineModel ? { baselineModel: args.baselineModel } : {}),
      budgets: {
        maxSizeIncrease: parsePercent(args.maxSizeIncrease, '--max-size-increase'),
        maxLatencyIncrease: parsePercent(args.maxLatencyIncrease, '--max-latency-increase'),
        ...(args.minAccuracy !== undefined ? { minAccuracy: args.minAccuracy } : {}),
        strict: args.strict ?? false,
        failMinSeconds: args.failMinSeconds,
      },
      ...(args.eval ? { eval: args.eval } : {}),
      ...(args.metric ? { metric: args.metric } : {}),
      ...(args.inputs ? { inputs: args.inputs } : {}),
      ...(args.preprocess ? { preprocess: args.preprocess } : {}),
      shapes: Object.fromEntries((args.shape ?? []).map(parseShapeArg)),
      rounds: args.rounds,
      maxSeconds: args.maxSeconds,
      threads: args.threads,
      ...(args.updateBaseline ? { updateBaseline: true } : {}),
      ...(args.saveMeasurement ? { saveMeasurement: args.saveMeasurement } : {}),
      progress: progressBars(args.json),
      ...(args.maxBackendDrift !== undefined ? { backendDrift: { max: args.maxBackendDrift, backends: parseBackends(args.backend ?? ['node,wasm']) } } : {}),
    });
    if (outcome.kind === 'baseline') {
      process.stdout.write(`${renderBaselineWritten(outcome.file, outcome.baseline.measurement)}\n`);
      return;
    }
    const result = outcome.result;
    process.stdout.write(args.json ? `${JSON.stringify(result, null, 2)}\n` : `${renderGateTable(result)}\n`);
    const md = renderGateMarkdown(result);
    const summary = args.summary ?? process.env.GITHUB_STEP_SUMMARY;
    if (summary) {
      if (args.summary) writeFileAtomic(summary, md);
      else fs.appendFileSync(summary, md);
    }
    writeFileAtomic(args.junit ?? 'onnxforge-gate.xml', renderGateJUnit(result));
    const failure = gateFailure(result, args.model ?? args.report!);
    if (failure) throw failure;
  },
};
