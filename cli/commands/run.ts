import type { CommandModule } from 'yargs';
import { assertJobPassed, runJob } from '../../workflows/job.js';
import { readPipelineFile } from '../../passes/pipeline-file.js';
import { renderMarkdown } from '../../report/markdown.js';

interface Args {
  file: string;
  json?: boolean;
  target?: 'node' | 'wasm';
}

export const runCommand: CommandModule<object, Args> = {
  command: 'run <file>',
  describe: 'Run a pipeline file (.yaml or .json): model, passes, data, metric, outputs, reports and budgets',
  builder: (y) =>
    y
      .positional('file', { type: 'string', demandOption: true, describe: 'the pipeline file (see onnxforge init)' })
      .option('json', { type: 'boolean', describe: 'print the report as JSON instead of a summary' })
      .option('target', { choices: ['node', 'wasm'] as const, describe: "the backend the model is for (overrides the file's target; default node): wasm profiles the deploy preset's latency-aware quantization and measures latency and accuracy in onnxruntime-web's WASM backend (1 thread)" }) as never,
  handler: async (args) => {
    const pf = readPipelineFile(args.file);
    if (args.target) pf.target = args.target;
    const result = await runJob(pf, { onPass: (p) => process.stderr.isTTY && !process.env.CI && process.stderr.write(`\r  running ${p}...        `) });
    if (process.stderr.isTTY && !process.env.CI) process.stderr.write('\r\x1b[K');
    process.stdout.write(args.json ? `${JSON.stringify(result.report, null, 2)}\n` : renderMarkdown(result.report));
    if (result.wrote) process.stdout.write(`\nwrote ${result.wrote}\n`);
    for (const r of pf.reports) process.stdout.write(`report: ${r}\n`);
    assertJobPassed(result, args.file);
  },
};
