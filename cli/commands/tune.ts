/**
 * `onnxforge tune model.onnx -o best.onnx --eval SPEC --metric M [--calibration SPEC] [--objective
 * size|latency] [--max-accuracy-drop X] [--max-latency-ratio R] [--max-size-ratio S] [--target
 * node|wasm] [--space space.yaml] [--trials N] [--workers K | --queue redis://HOST:PORT] [--resume]`: parses the flags, runs the
 * tune workflow (workflows/tune/tune.ts) with a progress bar and prints its report. No trial meeting
 * the budgets exits 1 after the reports are written.
 */
import type { CommandModule } from 'yargs';
import { checkError } from '../../core/errors.js';
import { ProgressBar } from '../../core/progress.js';
import { parseShapeArg } from '../../data/index.js';
import { toJson } from '../../report/json.js';
import { renderTuneTerminal } from '../../report/tune.js';
import { QueueExecutor } from '../../workflows/tune/queue.js';
import { tuneWorkflow } from '../../workflows/tune/tune.js';

interface Args {
  model: string;
  output: string;
  eval: string;
  metric: string;
  calibration?: string;
  train?: string;
  preprocess?: string;
  limit?: number;
  objective: 'size' | 'latency';
  maxAccuracyDrop?: number;
  maxLatencyRatio?: number;
  maxSizeRatio?: number;
  target: 'node' | 'wasm';
  threads: number;
  latencyRuns: number;
  shape?: string[];
  space?: string;
  trials: number;
  patience: number;
  workers: number;
  store?: string;
  queue?: string;
  resume: boolean;
  json: boolean;
}

export const tuneCommand: CommandModule<object, Args> = {
  command: 'tune <model>',
  describe: 'Search the recipes (presets, quantize modes and options, pruning) for the smallest or fastest model within accuracy, latency and size budgets',
  builder: (y) =>
    y
      .positional('model', { type: 'string', demandOption: true, describe: 'the float .onnx model' })
      .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'where the winner goes (.onnx); <stem>.pipeline.yaml reproduces it, <stem>.tune.json/.md/.html are the report' })
      .option('eval', { type: 'string', demandOption: true, describe: 'evaluation data (folder or random:N) the metric and latency are measured on' })
      .option('metric', { type: 'string', demandOption: true, describe: 'metric module path[#export] evaluated on --eval (higher is better)' })
      .option('calibration', { type: 'string', describe: 'calibration data: enables static int8 trials' })
      .option('train', { type: 'string', describe: 'training data: pruning trials recover by distillation' })
      .option('preprocess', { type: 'string', describe: 'image preprocessing JSON for the data' })
      .option('limit', { type: 'number', describe: 'read at most this many samples of each data set' })
      .option('objective', { choices: ['size', 'latency'] as const, default: 'size' as const, describe: 'what the winner minimizes (ties within 2% go to the other one)' })
      .option('max-accuracy-drop', { type: 'number', describe: 'budget: input metric minus candidate metric' })
      .option('max-latency-ratio', { type: 'number', describe: 'budget: candidate p50 / input p50 (interleaved); objective size defaults to 1 (not slower)' })
      .option('max-size-ratio', { type: 'number', describe: 'budget: candidate bytes / input bytes' })
      .option('target', { choices: ['node', 'wasm'] as const, default: 'node' as const, describe: 'backend trials are built for and timed on' })
      .option('threads', { type: 'number', default: 1, describe: 'intra-op threads each trial is timed with' })
      .option('latency-runs', { type: 'number', default: 30, describe: 'timed interleaved rounds per trial' })
      .option('shape', { type: 'string', array: true, describe: 'symbolic dims for random inputs: input=1,128 or dimname=N' })
      .option('space', { type: 'string', describe: 'search space file (YAML/JSON trials list) instead of the default space' })
      .option('trials', { type: 'number', default: 24, describe: 'most trials' })
      .option('patience', { type: 'number', default: 6, describe: 'stop when this many trials in a row left the Pareto front unchanged' })
      .option('workers', { type: 'number', default: 1, describe: 'local child processes running trials (timing one at a time); with --queue: trials kept in flight' })
      .option('queue', { type: 'string', describe: 'run trials on a BullMQ queue in Redis (redis://HOST:PORT); workers: onnxforge worker --queue URL, with --store a folder they share' })
      .option('store', { type: 'string', describe: 'content store folder (default <stem>.tune-store beside the output)' })
      .option('resume', { type: 'boolean', default: false, describe: 'reuse finished trials from <stem>.tune.json' })
      .option('json', { type: 'boolean', default: false, describe: 'print the JSON report instead of the table' }) as never,
  handler: async (a) => {
    const bar = new ProgressBar({ label: 'tune', ...(a.json ? { enabled: false } : {}) });
    const budgets = {
      ...(a.maxAccuracyDrop !== undefined ? { maxAccuracyDrop: a.maxAccuracyDrop } : {}),
      ...(a.maxLatencyRatio !== undefined ? { maxLatencyRatio: a.maxLatencyRatio } : {}),
      ...(a.maxSizeRatio !== undefined ? { maxSizeRatio: a.maxSizeRatio } : {}),
    };
    const r = await tuneWorkflow({
      model: a.model,
      output: a.output,
      eval: a.eval,
      metric: a.metric,
      objective: a.objective,
      budgets,
      target: a.target,
      threads: a.threads,
      latencyRuns: a.latencyRuns,
      shapes: Object.fromEntries((a.shape ?? []).map(parseShapeArg)),
      trials: a.trials,
      patience: a.patience,
      workers: a.workers,
      resume: a.resume,
      ...(a.calibration !== undefined ? { calibration: a.calibration } : {}),
      ...(a.train !== undefined ? { train: a.train } : {}),
      ...(a.preprocess !== undefined ? { preprocess: a.preprocess } : {}),
      ...(a.limit !== undefined ? { limit: a.limit } : {}),
      ...(a.space !== undefined ? { space: a.space } : {}),
      ...(a.store !== undefined ? { store: a.store } : {}),
      ...(a.queue !== undefined ? { executor: (store: string) => QueueExecutor.open(a.queue!, { store }) } : {}),
      onProgress: (e) => {
        bar.setLabel(`tune ${e.label}`);
        bar.update(e.done, e.total);
      },
    }).finally(() => bar.done());
    process.stdout.write(a.json ? `${toJson(r.report)}\n` : `${renderTuneTerminal(r.report)}\n`);
    if (!r.passed) throw checkError('TUNE_BUDGET_UNMET', `no trial met the budgets; the report (${r.files.results}, .md, .html) lists the closest: ${(r.report.closest ?? []).join('; ') || 'none ran'}`, { file: r.files.results });
  },
};
