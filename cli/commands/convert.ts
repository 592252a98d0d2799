import type { CommandModule } from 'yargs';
import { assertValid } from '../../ir/checker.js';
import { loadModel, saveModel } from '../../onnx/index.js';
import { saveOptionsFrom, writeOptions, WriteArgs } from '../options.js';

interface Args extends WriteArgs {
  model: string;
  output: string;
}

export const convertCommand: CommandModule<object, Args> = {
  command: 'convert <model>',
  describe: 'Load, check and save a model (re-encoding, or moving weights to/from external data)',
  builder: (y) =>
    writeOptions(
      y
        .positional('model', { type: 'string', demandOption: true, describe: 'the .onnx file' })
        .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'where to write the model' }),
    ) as never,
  handler: async (args) => {
    const model = await loadModel(args.model);
    assertValid(model, args.model);
    const res = await saveModel(model, args.output, saveOptionsFrom(args));
    process.stdout.write(`wrote ${res.path} (${res.bytes} bytes${res.dataPath ? `; ${res.externalTensors} tensors, ${res.dataBytes} bytes in ${res.dataPath}` : ''})\n`);
  },
};
