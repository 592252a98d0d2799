/** Options shared by every command that writes a model. */
import type { Argv } from 'yargs';
import { inputError } from '../core/errors.js';
import type { SaveOptions } from '../onnx/index.js';
import { ProgressBar } from '../core/progress.js';
import type { Logger } from '../passes/pass.js';
import type { ProgressFactory } from '../workflows/progress.js';

export interface WriteArgs {
  externalData?: boolean | string;
  threshold?: number;
  inlineData?: boolean;
}

export function writeOptions<T>(y: Argv<T>): Argv<T & WriteArgs> {
  return y
    .option('external-data', { describe: 'store tensors in a data file beside the model (optionally its name)', type: 'string', coerce: (v: unknown) => (v === '' || v === true || v === 'true' ? true : v) })
    .option('threshold', { type: 'number', describe: 'with --external-data: tensors of at least this many bytes go to the data file (default 1024)' })
    .option('inline-data', { type: 'boolean', describe: 'store every tensor inside the .onnx file' }) as unknown as Argv<T & WriteArgs>;
}

export function saveOptionsFrom(a: WriteArgs): SaveOptions {
  if (a.externalData && a.inlineData) throw inputError('USAGE_CONFLICT', '--external-data and --inline-data cannot be used together');
  if (a.threshold !== undefined && (!Number.isFinite(a.threshold) || a.threshold < 0)) throw inputError('USAGE_BAD_VALUE', `--threshold must be a non-negative number of bytes, got ${a.threshold}`);
  const o: SaveOptions = {};
  if (a.externalData) o.externalData = a.externalData;
  if (a.threshold !== undefined) o.threshold = a.threshold;
  if (a.inlineData) o.inlineData = true;
  return o;
}

/** Warnings on stderr as `warning: ...`; info and debug stay quiet. */
export const stderrLogger: Logger = { info() {}, warn: (m) => process.stderr.write(`warning: ${m}\n`), debug() {} };

/** Progress bars on stderr for a workflow (none with --json, or when stderr is not a terminal). */
export function progressBars(json: boolean | undefined): ProgressFactory {
  return (label, total) => new ProgressBar({ label, ...(total !== undefined ? { total } : {}), ...(json ? { enabled: false } : {}) });
}
