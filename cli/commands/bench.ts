/** `onnxforge bench model.onnx [more.onnx ...]`: latency in interleaved rounds, in a sandboxed child process. */
import type { CommandModule } from 'yargs';
import { benchmark, benchmarkInSandbox, BenchOptions } from '../../workflows/bench.js';
import { renderBench } from '../../report/runtime.js';
import { toJson } from '../../report/json.js';
import { ProgressBar } from '../../core/progress.js';
import { BackendArgs, backendOptions, backendsFrom, checkCount, RunArgs, runOptions, shapesFrom } from './runtime-options.js';

interface Args extends RunArgs, BackendArgs {
  models: string[];
  warmup?: number;
  runs?: number;
  samples?: number;
  profile?: boolean;
  sandbox?: boolean;
  spinning?: boolean;
  timeout?: number;
  maxMemory?: number;
  raw?: boolean;
}

export const benchCommand: CommandModule<object, Args> = {
  command: 'bench <models..>',
  describe: 'Measure latency (min, mean, p50, p90, p99, spread), load time and peak memory; several models run in interleaved rounds',
  builder: (y) =>
    backendOptions(runOptions(y), 'where the models run; node,wasm times every model on both in the same rounds and prints one table')
      .positional('models', { type: 'string', array: true, demandOption: true, describe: 'one or more .onnx files' })
      .option('warmup', { type: 'number', describe: 'untimed runs per model first (default 5)' })
      .option('runs', { type: 'number', describe: 'timed runs per model (default 50)' })
      .option('samples', { type: 'number', describe: 'distinct input samples to cycle through (default 1)' })
      .option('profile', { type: 'boolean', describe: 'add a per-op profile from onnxruntime' })
      .option('spinning', { type: 'boolean', describe: "let idle onnxruntime threads spin (onnxruntime's default; off by default here for fair, stable numbers on shared machines)" })
      .option('sandbox', { type: 'boolean', default: true, describe: 'run in a child process with time and memory limits (--no-sandbox to disable)' })
      .option('timeout', { type: 'number', describe: 'wall-time limit in seconds (default 600)' })
      .option('max-memory', { type: 'number', describe: 'memory limit in MB (default 8192)' })
      .option('raw', { type: 'boolean', default: false, describe: 'load weight-compressed models (onnxforge.weights=int8) as written instead of expanding their weights to float first' }) as never,
  handler: async (a) => {
    checkCount('warmup', a.warmup, 0);
    checkCount('runs', a.runs, 1);
    checkCount('samples', a.samples, 1);
    checkCount('threads', a.threads, 0);
    checkCount('timeout', a.timeout, 1);
    checkCount('max-memory', a.maxMemory, 16);
    const opts: BenchOptions = {
      models: a.models,
      shapes: shapesFrom(a),
      profile: Boolean(a.profile),
      expandCompressed: !a.raw,
      backends: backendsFrom(a),
      ...(a.wasmThreads !== undefined ? { wasmThreads: a.wasmThreads } : {}),
      ...(a.inputs !== undefined ? { inputs: a.inputs } : {}),
      ...(a.preprocess !== undefined ? { preprocess: a.preprocess } : {}),
      ...(a.samples !== undefined ? { samples: a.samples } : {}),
      ...(a.warmup !== undefined ? { warmup: a.warmup } : {}),
      ...(a.runs !== undefined ? { runs: a.runs } : {}),
      session: { ...(a.threads ? { intraOpNumThreads: a.threads } : {}), ...(a.spinning !== undefined ? { allowSpinning: a.spinning } : {}) },
    };
    const bar = new ProgressBar({ label: 'bench', ...(a.json ? { enabled: false } : {}) });
    const onProgress = (done: number, total: number) => bar.update(done, total);
    try {
      const report =
        a.sandbox === false
          ? await benchmark(opts, onProgress)
          : await benchmarkInSandbox(opts, { timeoutMs: (a.timeout ?? 600) * 1000, maxMemoryBytes: (a.maxMemory ?? 8192) * 1024 ** 2, onProgress });
      bar.done();
      process.stdout.write(a.json ? `${toJson(report)}\n` : `${renderBench(report)}\n`);
    } finally {
      bar.done();
    }
  },
};
