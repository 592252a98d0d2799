import type { CommandModule } from 'yargs';
import { ProgressBar } from '../../core/progress.js';
import { toJson } from '../../report/json.js';
import { renderConvertReport } from '../../report/stream.js';
import { convertWorkflow, streamOptionsFrom } from '../../workflows/stream.js';
import { saveOptionsFrom, writeOptions, WriteArgs } from '../options.js';

interface Args extends WriteArgs {
  model: string;
  output: string;
  stream?: boolean;
  resume?: boolean;
  maxDataFileSize?: string;
  json: boolean;
}

export const convertCommand: CommandModule<object, Args> = {
  command: 'convert <model>',
  describe: 'Load, check and save a model (re-encoding, moving weights to/from external data, splitting the data files); streams models larger than memory',
  builder: (y) =>
    writeOptions(
      y
        .positional('model', { type: 'string', demandOption: true, describe: 'the .onnx file' })
        .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'where to write the model' })
        .option('stream', { type: 'boolean', describe: 'write tensor by tensor with the streaming writer (disk-space guard, resumable); --no-stream never', defaultDescription: 'when the external data is over 2 GiB, or with --resume / --max-data-file-size' })
        .option('resume', { type: 'boolean', describe: 'continue an interrupted run from its last finished tensor when the input is unchanged (size and modification time)' })
        .option('max-data-file-size', { type: 'string', describe: 'split the external data into files of at most this size (bytes, or 1500M, 2GiB, ...)', defaultDescription: 'one file' })
        .option('json', { type: 'boolean', default: false, describe: 'print the JSON report' }),
    ) as never,
  handler: async (args) => {
    const free = process.env.ONNXFORGE_FREE_BYTES;
    const stream = streamOptionsFrom(args as unknown as Record<string, unknown>, free !== undefined && free !== '' ? Number(free) : undefined);
    const bar = new ProgressBar({ label: 'writing', unit: 'bytes', ...(args.json ? { enabled: false } : {}) });
    stream.onProgress = (done, total) => bar.update(done, total);
    const save = saveOptionsFrom(args);
    try {
      const report = await convertWorkflow({ model: args.model, output: args.output, save, ...stream, ...(save.threshold !== undefined ? { threshold: save.threshold } : {}) });
      process.stdout.write(args.json ? `${toJson(report)}\n` : `${renderConvertReport(report)}\n`);
    } finally {
      bar.done();
    }
  },
};
