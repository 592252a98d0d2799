/** `onnxforge compare a.onnx b.onnx` or `compare a.onnx --backend node,wasm`: per-output error of b (or of a on the second backend) against a; exit 1 past the tolerance. */
import type { CommandModule } from 'yargs';
import { compareModels } from '../../workflows/bench.js';
import { renderCompare } from '../../report/runtime.js';
import { toJson } from '../../report/json.js';
import { ProgressBar } from '../../core/progress.js';
import { inputError } from '../../core/errors.js';
import { BackendArgs, backendOptions, backendsFrom, checkCount, RunArgs, runOptions, shapesFrom } from './runtime-options.js';

interface Args extends RunArgs, BackendArgs {
  reference: string;
  candidate?: string;
  debugLayers?: boolean;
  tolerance?: number;
  limit?: number;
  metric?: string[];
}

export const compareCommand: CommandModule<object, Args> = {
  command: 'compare <reference> [candidate]',
  describe: 'Run two models on the same inputs: per-output max abs/rel error, cosine similarity, SQNR, and optional user metrics',
  builder: (y) =>
    backendOptions(runOptions(y), 'where the models run: one backend for both, or two (reference on the first, candidate on the second; with one model, the model on both)')
      .positional('reference', { type: 'string', demandOption: true, describe: 'the reference model (A)' })
      .positional('candidate', { type: 'string', describe: 'the model to check (B); omit it to compare the reference on two backends (--backend node,wasm)' })
      .option('debug-layers', { type: 'boolean', describe: 'one model on two backends: compare every float tensor and name the first one where the backends part' })
      .option('tolerance', { type: 'number', describe: 'largest allowed max-abs error of any output (default 1e-4); exit 1 past it' })
      .option('limit', { type: 'number', describe: 'use at most this many samples' })
      .option('metric', { type: 'string', array: true, describe: 'user metric module path[#export] (repeatable)' }) as never,
  handler: async (a) => {
    checkCount('limit', a.limit, 1);
    checkCount('threads', a.threads, 0);
    if (a.tolerance !== undefined && !(a.tolerance >= 0)) throw inputError('USAGE_BAD_VALUE', `--tolerance must be a non-negative number, got ${a.tolerance}`);
    const bar = new ProgressBar({ label: 'compare', ...(a.json ? { enabled: false } : {}) });
    try {
      const report = await compareModels(
        {
          reference: a.reference,
          ...(a.candidate !== undefined ? { candidate: a.candidate } : {}),
          backends: backendsFrom(a),
          ...(a.wasmThreads !== undefined ? { wasmThreads: a.wasmThreads } : {}),
          ...(a.debugLayers ? { debugLayers: true } : {}),
          shapes: shapesFrom(a),
          ...(a.inputs !== undefined ? { inputs: a.inputs } : {}),
          ...(a.preprocess !== undefined ? { preprocess: a.preprocess } : {}),
          ...(a.tolerance !== undefined ? { tolerance: a.tolerance } : {}),
          ...(a.limit !== undefined ? { limit: a.limit } : {}),
          ...(a.metric ? { metrics: a.metric } : {}),
          ...(a.threads ? { session: { intraOpNumThreads: a.threads } } : {}),
        },
        (n) => bar.update(n),
      );
      bar.done();
      process.stdout.write(a.json ? `${toJson(report)}\n` : `${renderCompare(report)}\n`);
      if (!report.pass) process.exitCode = 1;
    } finally {
      bar.done();
    }
  },
};
