import type { CommandModule } from 'yargs';
import { inputError } from '../../core/errors.js';
import { startTuneWorker } from '../../workflows/tune/worker.js';

interface Args {
  queue: string;
  store?: string;
  cache?: string;
  concurrency: number;
  'lock-duration': number;
  'stalled-interval': number;
}

export const workerCommand: CommandModule<object, Args> = {
  command: 'worker',
  describe: 'Take tune trials from a Redis queue (onnxforge tune --queue) and post their results',
  builder: (y) =>
    y
      .option('queue', { type: 'string', demandOption: true, describe: 'the queue: redis://HOST:PORT[/DB][?queue=NAME]' })
      .option('store', { type: 'string', describe: 'the content store to read inputs from and write candidates to (folder or file:// URL; default: the one each job names)' })
      .option('cache', { type: 'string', describe: 'folder for fetched inputs (default: inside the store)' })
      .option('concurrency', { type: 'number', default: 1, describe: 'trials run at once (they time one at a time per host; building and evaluating share the cores)' })
      .option('lock-duration', { type: 'number', default: 60, describe: 'seconds a trial lock lasts unrenewed: a dead worker\'s trial is retried after about this' })
      .option('stalled-interval', { type: 'number', default: 30, describe: 'seconds between checks for trials of dead workers' }) as never,
  handler: async (args) => {
    if (!Number.isInteger(args.concurrency) || args.concurrency < 1) throw inputError('USAGE_BAD_VALUE', `--concurrency ${args.concurrency}: expected a whole number of at least 1`);
    for (const k of ['lock-duration', 'stalled-interval'] as const) {
      if (!(args[k] > 0)) throw inputError('USAGE_BAD_VALUE', `--${k} ${args[k]}: expected a positive number of seconds`);
    }
    const log = (line: string) => process.stderr.write(`worker: ${line}\n`);
    const worker = await startTuneWorker({
      queue: args.queue,
      ...(args.store ? { store: args.store } : {}),
      ...(args.cache ? { cacheDir: args.cache } : {}),
      concurrency: args.concurrency,
      timings: { lockDuration: args['lock-duration'] * 1000, stalledInterval: args['stalled-interval'] * 1000 },
      onEvent: (e) => log(`${e.kind}${e.id ? ` trial ${e.id}` : ''}${e.detail ? `: ${e.detail}` : ''}`),
    });
    await new Promise<void>((resolve) => {
      let stopping = false;
      const stop = () => {
        const force = stopping;
        stopping = true;
        worker.close(force).then(resolve, (e: Error) => {
          log(`close failed: ${e.message}`);
          resolve();
        });
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    log('stopped');
  },
};
