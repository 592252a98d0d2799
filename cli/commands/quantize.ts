/**
 * `onnxforge quantize in.onnx -o out.onnx [--mode static|weights|dynamic] [...]`: parses the flags,
 * runs the mode's workflow (workflows/quantize/, listed in cli/quantize-modes.ts) and renders its
 * report: a terminal table, or the JSON with `--json`; `--report FILE` writes the JSON too. The
 * workflow writes the model last, only when it passes the checker and loads in onnxruntime.
 */
import type { Argv, CommandModule, Options } from 'yargs';
import { inputError } from '../../core/errors.js';
import { writeFileAtomic } from '../../core/files.js';
import { parseShapeArg } from '../../data/generate.js';
import { toJson } from '../../report/json.js';
import type { QuantizeWorkflowOptions } from '../../workflows/quantize/common.js';
import { saveOptionsFrom, writeOptions, WriteArgs } from '../options.js';
import { QUANTIZE_MODES, QuantizeArgs, SHARED_FLAGS } from '../quantize-modes.js';

interface Args extends WriteArgs {
  model: string;
  output: string;
  mode: string;
  format?: string;
  preprocess?: string;
  shape?: string[];
  eval?: string;
  evalPreprocess?: string;
  metric?: string[];
  limit?: number;
  report?: string;
  threads: number;
  latencyRuns: number;
  json: boolean;
}

const modeNames = Object.keys(QUANTIZE_MODES);
const modeHelp = Object.values(QUANTIZE_MODES).map((m) => m.describe);

/** Every mode's flags, each name once (SHARED_FLAGS first). */
function modeFlags(): [string, Options][] {
  const seen = new Map<string, Options>(Object.entries(SHARED_FLAGS));
  for (const m of Object.values(QUANTIZE_MODES)) for (const [name, o] of Object.entries(m.flags)) if (!seen.has(name)) seen.set(name, o);
  return [...seen];
}

export const quantizeCommand: CommandModule<object, Args> = {
  command: 'quantize <model>',
  describe: 'Static INT8 quantization (QDQ) calibrated on a data set, with a size/latency/accuracy report',
  builder: (y) => {
    let b: Argv = y
      .positional('model', { type: 'string', demandOption: true, describe: 'the FP32 .onnx file' })
      .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'where to write the quantized model' })
      .option('mode', { type: 'string', choices: modeNames, default: modeNames[0], describe: `${modeHelp.slice(0, -1).join(', ')} or ${modeHelp.at(-1)}` });
    for (const [name, o] of modeFlags()) b = b.option(name, o);
    return writeOptions(
      b
        .option('preprocess', { type: 'string', describe: 'image preprocessing file (JSON) for .png data' })
        .option('shape', { type: 'string', array: true, describe: 'symbolic dims for random data: input=1,3,224,224 or dimname=N' })
        .option('eval', { type: 'string', describe: 'evaluation data for the report (default: the calibration data)' })
        .option('eval-preprocess', { type: 'string', describe: 'preprocessing for --eval images (default: --preprocess)' })
        .option('metric', { type: 'string', array: true, describe: 'task metric module path[#export] evaluated on --eval (repeatable)' })
        .option('limit', { type: 'number', describe: 'evaluate on at most this many samples' })
        .option('report', { type: 'string', describe: 'write the JSON report here' })
        .option('threads', { type: 'number', default: 1, describe: 'intra-op threads for latency and evaluation' })
        .option('latency-runs', { type: 'number', default: 20, describe: 'timed runs per model (interleaved)' })
        .option('json', { type: 'boolean', default: false, describe: 'print the JSON report instead of tables' }),
    ) as never;
  },
  handler: async (a) => {
    const mode = QUANTIZE_MODES[a.mode];
    if (!mode) throw inputError('USAGE_BAD_VALUE', `--mode ${a.mode}: expected ${modeNames.join(', ')}`);
    if (a.mode !== 'static' && a.mode !== 'int4' && a.format !== undefined) throw inputError('USAGE_BAD_VALUE', `--format ${a.format} applies to --mode static and int4 only`);
    if (a.mode === 'static' && a.format === 'msft') throw inputError('USAGE_BAD_VALUE', '--format msft applies to --mode int4 only (static: qdq or qop)');
    const common: QuantizeWorkflowOptions = {
      model: a.model,
      output: a.output,
      save: saveOptionsFrom(a),
      shapes: Object.fromEntries((a.shape ?? []).map(parseShapeArg)),
      threads: a.threads,
      latencyRuns: a.latencyRuns,
      ...(a.eval !== undefined ? { eval: a.eval } : {}),
      ...(a.preprocess !== undefined ? { preprocess: a.preprocess } : {}),
      ...(a.evalPreprocess !== undefined ? { evalPreprocess: a.evalPreprocess } : {}),
      ...(a.metric !== undefined ? { metrics: a.metric } : {}),
      ...(a.limit !== undefined ? { limit: a.limit } : {}),
    };
    const report = await mode.run(a as unknown as QuantizeArgs, common);
    if (a.report) writeFileAtomic(a.report, `${toJson(report)}\n`);
    process.stdout.write(a.json ? `${toJson(report)}\n` : `${mode.render(report)}\n`);
  },
};
