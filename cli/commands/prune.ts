/**
 * `onnxforge prune in.onnx -o out.onnx (--channels R | --magnitude S)`: parses the flags, runs the prune
 * workflow (workflows/prune.ts: prune-channels or prune-magnitude through the pass manager, then
 * FLOPs, parameters, latency, sizes and accuracy) and renders its report (report/prune.ts).
 */
import type { CommandModule } from 'yargs';
import { parseShapeArg } from '../../data/index.js';
import pruneChannelsPass from '../../passes/prune/prune-channels.js';
import pruneMagnitudePass from '../../passes/prune/prune-magnitude.js';
import { renderPruneReport } from '../../report/prune.js';
import { pruneWorkflow } from '../../workflows/prune.js';
import { progressBars, saveOptionsFrom, stderrLogger, writeOptions, WriteArgs } from '../options.js';
import { passFlag, passOptionsFrom } from '../schema-options.js';

interface Args extends WriteArgs {
  model: string;
  output: string;
  channels?: number;
  magnitude?: number;
  optimize: boolean;
  storage: 'dense' | 'sparse';
  shape?: string[];
  inputs?: string;
  calibration?: string;
  preprocess?: string;
  eval?: string;
  metric?: string;
  runs: number;
  latency: boolean;
  explain?: boolean;
  json?: boolean;
}

/** Help text for a flag both passes take: their default, said once when they agree. */
function sharedDefault(key: 'scope'): string {
  const c = String(pruneChannelsPass.options[key]!.default);
  const m = String(pruneMagnitudePass.options[key]!.default);
  return c === m ? c : `${c} with --channels, ${m} with --magnitude`;
}

const CHANNEL_FLAGS = { ratio: 'channels', criterion: 'criterion', scope: 'scope', exclude: 'exclude', layers: 'layers', cost: 'cost', maxRatio: 'maxRatio', roundTo: 'roundTo' } as const;
const MAGNITUDE_FLAGS = { sparsity: 'magnitude', scope: 'scope', exclude: 'exclude' } as const;

export const pruneCommand: CommandModule<object, Args> = {
  command: 'prune <model>',
  describe: 'Remove channels (structured) or zero small weights (unstructured); report FLOPs, latency, sizes and accuracy',
  builder: (y) =>
    writeOptions(
      y
        .positional('model', { type: 'string', demandOption: true, describe: 'the .onnx file' })
        .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'where to write the pruned model' })
        .option('channels', passFlag(pruneChannelsPass, 'ratio', { noDefault: true, describe: 'remove this fraction of the channels (structured; prune-channels ratio), in (0, 1)' }))
        .option('magnitude', passFlag(pruneMagnitudePass, 'sparsity', { noDefault: true, describe: 'zero this fraction of the Conv/Gemm/MatMul weights (unstructured; prune-magnitude sparsity), in (0, 1)' }))
        .option('criterion', passFlag(pruneChannelsPass, 'criterion'))
        .option('scope', passFlag(pruneChannelsPass, 'scope', { noDefault: true, describe: 'one ranking over all channels / weights (global) or the same fraction of each group / tensor (layer)', defaultDescription: sharedDefault('scope') }))
        .option('exclude', passFlag(pruneChannelsPass, 'exclude', { describe: 'node, weight or output names to leave alone (* wildcards)' }))
        .option('layers', passFlag(pruneChannelsPass, 'layers', { describe: 'per-layer channel ratios: name=ratio' }))
        .option('cost', passFlag(pruneChannelsPass, 'cost'))
        .option('max-ratio', passFlag(pruneChannelsPass, 'maxRatio'))
        .option('round-to', passFlag(pruneChannelsPass, 'roundTo'))
        .option('storage', { choices: ['dense', 'sparse'], default: 'dense', describe: 'write pruned tensors as ONNX sparse initializers where smaller, when onnxruntime loads that file with identical outputs (measured; else dense with a warning)' })
        .option('optimize', { type: 'boolean', default: true, describe: 'run the lossless default preset after pruning (folds BatchNormalization into the pruned weights, zeros stay zero); --no-optimize writes the graph as pruned' })
        .option('shape', { type: 'string', array: true, describe: 'size of symbolic input dims: name=1,3,224,224' })
        .option('inputs', { type: 'string', describe: 'inputs for FLOPs, latency and the sparse-storage check (data spec; default: --eval, else --calibration, else random when every input dim is known)' })
        .option('calibration', { type: 'string', describe: 'data spec for bias compensation of removed channels (--channels)' })
        .option('preprocess', { type: 'string', describe: 'image preprocessing JSON for --inputs/--eval' })
        .option('eval', { type: 'string', describe: 'evaluation data spec' })
        .option('metric', { type: 'string', describe: 'metric module (path[#export]) for --eval' })
        .option('runs', { type: 'number', default: 30, describe: 'interleaved latency runs' })
        .option('latency', { type: 'boolean', default: true, describe: 'measure latency (--no-latency to skip)' })
        .option('explain', { type: 'boolean', describe: 'say why channels were kept' })
        .option('json', { type: 'boolean', describe: 'print the report as JSON (schema onnxforge.prune/1)' }),
    ) as never,
  handler: async (a) => {
    const save = saveOptionsFrom(a);
    const r = await pruneWorkflow({
      model: a.model,
      output: a.output,
      save,
      ...(a.channels !== undefined ? { channels: passOptionsFrom(pruneChannelsPass, a, CHANNEL_FLAGS) } : {}),
      ...(a.magnitude !== undefined ? { magnitude: passOptionsFrom(pruneMagnitudePass, a, MAGNITUDE_FLAGS) } : {}),
      optimize: a.optimize,
      storage: a.storage,
      shapes: Object.fromEntries((a.shape ?? []).map(parseShapeArg)),
      ...(a.inputs !== undefined ? { inputs: a.inputs } : {}),
      ...(a.calibration !== undefined ? { calibration: a.calibration } : {}),
      ...(a.preprocess !== undefined ? { preprocess: a.preprocess } : {}),
      ...(a.eval !== undefined ? { eval: a.eval } : {}),
      ...(a.metric !== undefined ? { metric: a.metric } : {}),
      runs: a.runs,
      latency: a.latency,
      explain: !!a.explain,
      logger: stderrLogger,
      progress: progressBars(a.json),
    });
    process.stdout.write(a.json ? `${JSON.stringify(r, null, 2)}\n` : `${renderPruneReport(r)}\nwrote ${a.output}\n`);
  },
};
