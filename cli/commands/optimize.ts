/**
 * `onnxforge optimize in.onnx -o out.onnx [--passes P | --preset NAME] [--verify] [--inputs SPEC]
 * [--report out.json|out.md] [--explain]`: parses the flags, runs the optimize workflow
 * (workflows/optimize.ts) and prints size and node counts before and after with a per-pass table
 * (report/optimize.ts). With --verify, a pass that makes outputs drift past the tolerance stops the run
 * (exit 1) and nothing is written.
 */
import { extname } from 'node:path';
import type { CommandModule } from 'yargs';
import { inputError } from '../../core/errors.js';
import { parseShapeArg } from '../../data/index.js';
import type { FusionTarget } from '../../passes/fusion/transformer-target.js';
import { PRESETS } from '../../passes/registry.js';
import { writeReport } from '../../report/files.js';
import { renderOptimizeExplanations, renderOptimizeSummary } from '../../report/optimize.js';
import { optimizeWorkflow } from '../../workflows/optimize.js';
import { saveOptionsFrom, writeOptions, WriteArgs } from '../options.js';

interface Args extends WriteArgs {
  model: string;
  output: string;
  passes?: string;
  preset?: string;
  verify?: boolean;
  inputs?: string;
  shape?: string[];
  rtol?: number;
  atol?: number;
  report?: string;
  explain?: boolean;
  'max-iterations'?: number;
  target?: FusionTarget;
}

export const optimizeCommand: CommandModule<object, Args> = {
  command: 'optimize <model>',
  describe: 'Run a pass pipeline (default: the lossless `default` preset) and write the optimized model',
  builder: (y) =>
    writeOptions(
      y
        .positional('model', { type: 'string', demandOption: true, describe: 'the .onnx file' })
        .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'where to write the optimized model' })
        .option('passes', { type: 'string', describe: 'pipeline text, e.g. fold-constants,eliminate-dead or name<key=value;flag>' })
        .option('preset', { type: 'string', describe: `a named pipeline (${Object.keys(PRESETS).join(', ')}); default: default` })
        .option('verify', { type: 'boolean', describe: 'run the model before and after each pass and stop when outputs drift' })
        .option('inputs', { type: 'string', describe: 'inputs for --verify: a data spec (folder, file, random[:count[:seed]]); default random:2' })
        .option('shape', { type: 'string', array: true, describe: 'sizes of symbolic input dims for generated inputs: name=1,3,224,224 or dim=N' })
        .option('rtol', { type: 'number', default: 1e-3, describe: 'relative tolerance for --verify' })
        .option('atol', { type: 'number', default: 1e-5, describe: 'absolute tolerance for --verify' })
        .option('report', { type: 'string', describe: 'write the report (schema onnxforge.report/1) as .json, .md or .html' })
        .option('explain', { type: 'boolean', describe: 'print why passes did not apply where they looked' })
        .option('target', { choices: ['microsoft', 'generic'] as const, describe: 'operators the transformer fusions write: onnxruntime com.microsoft, or standard ONNX (opset 23)' })
        .option('max-iterations', { type: 'number', describe: 'rounds of the pipeline before giving up on a fixed point (default 10)' }),
    ) as never,
  handler: async (args) => {
    if (args.passes && args.preset) throw inputError('USAGE_CONFLICT', '--passes and --preset cannot be used together');
    if (args.report && !['.json', '.md', '.html'].includes(extname(args.report).toLowerCase())) throw inputError('USAGE_BAD_VALUE', `--report ${args.report}: the file must end in .json, .md or .html`);
    const r = await optimizeWorkflow({
      model: args.model,
      output: args.output,
      save: saveOptionsFrom(args),
      ...(args.passes !== undefined ? { passes: args.passes } : {}),
      ...(args.preset !== undefined ? { preset: args.preset } : {}),
      ...(args.target ? { target: args.target } : {}),
      ...(args.verify ? { verify: true, shapes: Object.fromEntries((args.shape ?? []).map(parseShapeArg)), ...(args.inputs !== undefined ? { inputs: args.inputs } : {}) } : {}),
      ...(args.rtol !== undefined ? { rtol: args.rtol } : {}),
      ...(args.atol !== undefined ? { atol: args.atol } : {}),
      explain: !!args.explain,
      ...(args['max-iterations'] !== undefined ? { maxIterations: args['max-iterations'] } : {}),
      document: !!args.report,
    });
    process.stdout.write(renderOptimizeSummary(r.report, r.sizeBefore, r.sizeAfter) + '\n');
    if (args.explain) process.stdout.write(renderOptimizeExplanations(r.report) + '\n');
    process.stdout.write(`wrote ${r.path}${r.dataPath ? ` (+ ${r.dataPath})` : ''}\n`);
    if (args.report && r.document) await writeReport(r.document, args.report);
  },
};
