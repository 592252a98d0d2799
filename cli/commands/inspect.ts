import * as fs from 'node:fs';
import type { CommandModule } from 'yargs';
import { assertValid } from '../../ir/checker.js';
import { loadModel } from '../../onnx/index.js';
import { renderSummary, summarize } from '../../report/inspect.js';

interface Args {
  model: string;
  json?: boolean;
}

export const inspectCommand: CommandModule<object, Args> = {
  command: 'inspect <model>',
  describe: 'Show what a model is: IR version, opsets, inputs/outputs, op counts, parameters by dtype and op type, largest tensors',
  builder: (y) =>
    y
      .positional('model', { type: 'string', demandOption: true, describe: 'the .onnx file' })
      .option('json', { type: 'boolean', describe: 'print the summary as JSON (schema onnxforge.inspect/1)' }) as never,
  handler: async (args) => {
    const model = await loadModel(args.model);
    const s = summarize(model, args.model, fs.statSync(args.model).size);
    process.stdout.write(args.json ? `${JSON.stringify(s, null, 2)}\n` : `${renderSummary(s)}\n`);
    // The summary is shown even for a broken model (it helps find the problem); the exit code says
    // the model is not valid (2), with the checker's first problem as the error line.
    assertValid(model, args.model);
  },
};
