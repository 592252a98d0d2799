import * as fs from 'node:fs';
import type { CommandModule } from 'yargs';
import { inputError } from '../../core/errors.js';
import { starterPipeline } from '../../passes/pipeline-file.js';
import { writeFileAtomic } from '../../core/files.js';

interface Args {
  file: string;
  model: string;
  force?: boolean;
}

export const initCommand: CommandModule<object, Args> = {
  command: 'init [file]',
  describe: 'Write a commented YAML pipeline file to start from',
  builder: (y) =>
    y
      .positional('file', { type: 'string', default: 'pipeline.yaml', describe: 'where to write it' })
      .option('model', { type: 'string', default: 'model.onnx', describe: 'the model the pipeline starts from' })
      .option('force', { type: 'boolean', describe: 'overwrite an existing file' }) as never,
  handler: async (args) => {
    if (fs.existsSync(args.file) && !args.force) throw inputError('FILE_EXISTS', `${args.file} already exists (use --force to overwrite)`, { file: args.file });
    writeFileAtomic(args.file, starterPipeline(args.model));
    process.stdout.write(`wrote ${args.file}: edit it, then run: npx onnxforge run ${args.file}\n`);
  },
};
