/** Options shared by the commands that run models (bench, compare). */
import type { Argv } from 'yargs';
import { parseShapeArg } from '../../data/generate.js';
import { inputError } from '../../core/errors.js';
import { parseBackends, type Backend } from '../../runtime/backend.js';

export interface RunArgs {
  inputs?: string;
  preprocess?: string;
  shape?: string[];
  threads?: number;
  json?: boolean;
}

export function runOptions<T>(y: Argv<T>): Argv<T & RunArgs> {
  return y
    .option('inputs', { type: 'string', describe: 'input data: random[:count[:seed]], a folder or file of .npy/.npz, test_data_set_N/*.pb, .json or .png (default random)' })
    .option('preprocess', { type: 'string', describe: 'image preprocessing file (JSON), needed for .png inputs' })
    .option('shape', { type: 'string', array: true, describe: 'size of symbolic dims for generated inputs: input=1,3,224,224 or dimname=N (repeatable)' })
    .option('threads', { type: 'number', describe: 'intra-op threads (default: onnxruntime chooses)' })
    .option('json', { type: 'boolean', describe: 'print the report as JSON' }) as unknown as Argv<T & RunArgs>;
}

export function shapesFrom(a: RunArgs): Record<string, number[]> {
  return Object.fromEntries((a.shape ?? []).map(parseShapeArg));
}

export function checkCount(name: string, v: number | undefined, min: number): void {
  if (v !== undefined && (!Number.isInteger(v) || v < min)) throw inputError('USAGE_BAD_VALUE', `--${name} must be an integer of at least ${min}, got ${v}`);
}

export interface BackendArgs {
  backend?: string[];
  wasmThreads?: number;
}

/** --backend node|wasm (a comma-separated list or repeated) and --wasm-threads. */
export function backendOptions<T>(y: Argv<T>, describe: string): Argv<T & BackendArgs> {
  return y
    .option('backend', { type: 'string', array: true, describe: `${describe} (node: onnxruntime-node; wasm: onnxruntime-web's WASM backend, as in a browser)`, defaultDescription: 'node' })
    .option('wasm-threads', { type: 'number', describe: "WASM threads (default 1: what a page gets unless it is cross-origin isolated); --threads is onnxruntime-node's" }) as unknown as Argv<T & BackendArgs>;
}

export function backendsFrom(a: BackendArgs): Backend[] {
  checkCount('wasm-threads', a.wasmThreads, 1);
  return parseBackends(a.backend);
}
