/**
 * Runs one streaming workflow in this process, as the CLI calls it on its defaults, and prints its
 * JSON report: `node --import tsx benchmarks/scale-run.ts int4|convert <in.onnx> <out.onnx> [--resume]
 * [--max-data-file-size SIZE] [--calibration SPEC] [--int4-method rtn|gptq] [--activation-bytes SIZE]
 * [--segment-bytes SIZE]` (the last two: streamed GPTQ's budgets); progress lines go to stderr. The scale benchmark and the resume test start it as a child process
 * whose peak memory they read from outside and which they can kill mid-run.
 */
import { toJson } from '../report/json.js';
import { convertWorkflow, parseByteSize, streamOptionsFrom } from '../workflows/stream.js';
import { streamInt4Workflow } from '../workflows/stream-int4.js';

const [mode, input, output, ...rest] = process.argv.slice(2);
const flags: Record<string, unknown> = { stream: true };
const int4: { calibration?: string; pass?: { method: 'rtn' | 'gptq' }; gptq?: { activationBytes?: number; segmentBytes?: number } } = {};
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === '--resume') flags.resume = true;
  else if (rest[i] === '--max-data-file-size') flags.maxDataFileSize = rest[++i];
  else if (rest[i] === '--calibration') int4.calibration = rest[++i]!;
  else if (rest[i] === '--int4-method') int4.pass = { method: rest[++i] === 'gptq' ? 'gptq' : 'rtn' };
  else if (rest[i] === '--activation-bytes') int4.gptq = { ...int4.gptq, activationBytes: parseByteSize(rest[++i], '--activation-bytes') };
  else if (rest[i] === '--segment-bytes') int4.gptq = { ...int4.gptq, segmentBytes: parseByteSize(rest[++i], '--segment-bytes') };
  else throw new Error(`unknown argument ${rest[i]}`);
}
if (!input || !output || (mode !== 'int4' && mode !== 'convert')) {
  throw new Error('usage: scale-run.ts int4|convert <in.onnx> <out.onnx> [--resume] [--max-data-file-size SIZE] [--calibration SPEC] [--int4-method rtn|gptq] [--activation-bytes SIZE] [--segment-bytes SIZE]');
}
const options = streamOptionsFrom(flags);
const log = (line: string) => void process.stderr.write(`${line}\n`);
const report = mode === 'int4' ? await streamInt4Workflow({ model: input, output, ...options, ...int4, log }) : await convertWorkflow({ model: input, output, ...options });
process.stdout.write(`${toJson(report)}\n`);
