/**
 * The onnxforge command line: a thin yargs layer over the same API the tests use. Each command lives
 * in `cli/commands/<name>.ts`; this file only registers them and maps errors to exit codes
 * (0 ok, 1 a check/gate/budget failed, 2 bad input or usage).
 */
import yargs, { CommandModule } from 'yargs';
import { exitCodeFor, inputError, isOnnxForgeError } from '../core/errors.js';
import { inspectCommand } from './commands/inspect.js';
import { benchCommand } from './commands/bench.js';
import { compareCommand } from './commands/compare.js';
import { convertCommand } from './commands/convert.js';
import { gateCommand } from './commands/gate.js';
import { pruneCommand } from './commands/prune.js';
import { reportCommand } from './commands/report.js';
import { runCommand } from './commands/run.js';
import { initCommand } from './commands/init.js';
import { quantizeCommand } from './commands/quantize.js';
import { optimizeCommand } from './commands/optimize.js';
import { distillCommand } from './commands/distill.js';
import { variantsCommand } from './commands/variants.js';
import { tuneCommand } from './commands/tune.js';
import { workerCommand } from './commands/worker.js';

export const commands: CommandModule<object, any>[] = [inspectCommand, convertCommand, gateCommand, quantizeCommand, optimizeCommand, reportCommand, runCommand, initCommand, pruneCommand, benchCommand, compareCommand, distillCommand, variantsCommand, workerCommand, tuneCommand];

/** Runs the CLI with `argv` (without node and script) and resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  let usageError: string | undefined;
  process.exitCode = 0;
  const parser = yargs(argv)
    .scriptName('onnxforge')
    .usage('$0 <command> [options]\n\nMake ONNX models smaller and faster without breaking them.')
    .strict()
    .demandCommand(1, 'Name a command (see --help).')
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version()
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      if (err) throw err;
      usageError = msg;
      // yargs keeps going (and runs the command handler) when this returns: stop here
      throw inputError('USAGE', msg);
    });
  for (const c of commands) parser.command(c);
  try {
    await parser.parseAsync();
  } catch (e) {
    if (isOnnxForgeError(e)) {
      process.stderr.write(`${e.format()}\n`);
      return exitCodeFor(e);
    }
    process.stderr.write(`internal error: ${(e as Error).stack ?? String(e)}\n`);
    return 70;
  }
  if (usageError) {
    process.stderr.write(`error[USAGE] ${usageError}\n`);
    return 2;
  }
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}
