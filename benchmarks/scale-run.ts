/**
 * Runs one streaming workflow in this process, as the CLI calls it on its defaults, and prints its
 * JSON report: `node --import tsx benchmarks/scale-run.ts int4|convert <in.onnx> <out.onnx> [--resume]
 * [--max-data-file-size SIZE]`. The scale benchmark and the resume test start it as a child process
 * whose peak memory they read from outside and which they can kill mid-run.
 */
import { toJson } from '../report/json.js';
import { convertWorkflow, streamOptionsFrom } from '../workflows/stream.js';
import { streamInt4Workflow } from '../workflows/stream-int4.js';

const [mode, input, output, ...rest] = process.argv.slice(2);
const flags: Record<string, unknown> = { stream: true };
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === '--resume') flags.resume = true;
  else if (rest[i] === '--max-data-file-size') flags.maxDataFileSize = rest[++i];
  else throw new Error(`unknown argument ${rest[i]}`);
}
if (!input || !output || (mode !== 'int4' && mode !== 'convert')) throw new Error('usage: scale-run.ts int4|convert <in.onnx> <out.onnx> [--resume] [--max-data-file-size SIZE]');
const options = streamOptionsFrom(flags);
const report = mode === 'int4' ? await streamInt4Workflow({ model: input, output, ...options }) : await convertWorkflow({ model: input, output, ...options });
process.stdout.write(`${toJson(report)}\n`);
