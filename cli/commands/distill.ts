/**
 * `onnxforge distill --teacher t.onnx (--student s.onnx | --prune-channels R) --data SPEC -o out.onnx`:
 * parses the flags, runs the distill workflow (workflows/distill.ts: training, checks, agreement, size,
 * latency, accuracy) and renders its report (report/distill.ts); `--report FILE` writes it as .json,
 * .md or .html.
 */
import type { CommandModule } from 'yargs';
import { parseShapeArg } from '../../data/generate.js';
import distillPass, { DistillPassOptions } from '../../passes/distill/distill.js';
import pruneChannelsPass from '../../passes/prune/prune-channels.js';
import { renderDistillReport } from '../../report/distill.js';
import { writeReport } from '../../report/files.js';
import { toJson } from '../../report/json.js';
import { distillWorkflow } from '../../workflows/distill.js';
import { saveOptionsFrom, stderrLogger, writeOptions, WriteArgs } from '../options.js';
import { addPassFlags, passFlag, PassFlagRow, passFlagKeys, passOptionsFrom } from '../schema-options.js';

interface Args extends WriteArgs {
  teacher: string;
  student?: string;
  pruneChannels?: number;
  pruneOptions?: string;
  data: string;
  preprocess?: string;
  shape?: string[];
  output: string;
  labels?: string;
  eval?: string;
  evalPreprocess?: string;
  metric?: string[];
  report?: string;
  threads: number;
  latencyRuns: number;
  json: boolean;
  /** Pass options by their yargs keys (see PASS_FLAGS). */
  [flag: string]: unknown;
}

/** The distill pass's flags, in help order; every default comes from the pass schema. */
const PASS_FLAGS: readonly PassFlagRow<DistillPassOptions>[] = [
  ['epochs', 'epochs'],
  ['lr', 'lr'],
  ['temperature', 'temperature'],
  ['alpha', 'alpha'],
  ['batch', 'batch'],
  ['memory', 'memory'],
  ['features', 'features', { describe: 'matched intermediate tensors teacher:student (comma-separated or repeated), each adding an MSE term' }],
  ['feature-weight', 'featureWeight'],
  ['kept-features', 'keptFeatures', { describe: "with --prune-channels: match the input of every n-th full Conv to the teacher's kept channels (MSE); 0 turns it off" }],
  ...(['augment', 'online', 'flip', 'shift', 'crop', 'brightness', 'contrast', 'mixup'] as const).map((k) => [k, k] as const),
  ['weight-decay', 'weightDecay'],
  ['holdout', 'holdout', { describe: 'fraction of --data held out (not trained on) for the per-epoch agreement with the teacher; --eval SPEC measures it on other data instead' }],
  ['optimizer', 'optimizer'],
  ['schedule', 'schedule'],
  ['seed', 'seed'],
  ['optimize', 'optimize', { describe: 'run the default preset on the distilled student (folds BatchNormalization; --no-optimize keeps the graph as trained)' }],
  ['adapt-bn', 'adaptBatchNorm'],
  ['output-name', 'output'],
];

export const distillCommand: CommandModule<object, Args> = {
  command: 'distill',
  describe: 'Knowledge distillation: train a student (or the teacher pruned) to match a teacher, with an agreement/size/latency/accuracy report',
  builder: (y) =>
    writeOptions(
      addPassFlags(
        y
          .option('teacher', { type: 'string', demandOption: true, describe: 'the teacher .onnx model' })
          .option('student', { type: 'string', describe: 'the student .onnx model (or use --prune-channels)' })
          .option('prune-channels', passFlag(pruneChannelsPass, 'ratio', { noDefault: true, describe: 'student = the teacher with this fraction of its channels removed (prune-channels with its defaults, as `onnxforge prune --channels`)' }))
          .option('prune-options', { type: 'string', describe: 'more prune-channels options in pipeline syntax, e.g. "scope=layer;roundTo=1" (small models: groups of at most roundTo channels stay whole)' })
          .option('data', { type: 'string', demandOption: true, describe: 'training inputs: a folder or file of .npy/.npz, .pb, .json, .png (with --preprocess), or random[:count[:seed]]' })
          .option('preprocess', { type: 'string', describe: 'image preprocessing file (JSON) for .png data' })
          .option('shape', { type: 'string', array: true, describe: 'symbolic dims for random data: input=1,3,224,224 or dimname=N' })
          .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'where to write the distilled student' })
          .option('labels', { type: 'string', describe: 'label field giving the class (number or boolean) for a cross-entropy term, e.g. rotate180' }),
        distillPass,
        PASS_FLAGS,
      )
        .option('eval', { type: 'string', describe: 'held-out evaluation data (agreement after each epoch, accuracy with --metric)' })
        .option('eval-preprocess', { type: 'string', describe: 'preprocessing for --eval images (default: --preprocess)' })
        .option('metric', { type: 'string', array: true, describe: 'task metric module path[#export] evaluated on --eval (repeatable)' })
        .option('report', { type: 'string', describe: 'write the report here (.json, .md or .html)' })
        .option('threads', { type: 'number', default: 0, describe: 'intra-op threads for training (0: onnxruntime default); latency uses 1' })
        .option('latency-runs', { type: 'number', default: 50, describe: 'timed runs per model (interleaved)' })
        .option('json', { type: 'boolean', default: false, describe: 'print the JSON report instead of tables' }),
    ) as never,
  handler: async (a) => {
    const opt = <K extends keyof Args>(k: K) => (a[k] !== undefined ? { [k]: a[k] } : {});
    const { report, document } = await distillWorkflow({
      teacher: a.teacher,
      data: a.data,
      output: a.output,
      save: saveOptionsFrom(a),
      shapes: Object.fromEntries((a.shape ?? []).map(parseShapeArg)),
      pass: passOptionsFrom(distillPass, a, passFlagKeys(PASS_FLAGS)),
      threads: a.threads,
      latencyRuns: a.latencyRuns,
      progress: !a.json,
      logger: stderrLogger,
      ...opt('student'),
      ...opt('pruneChannels'),
      ...opt('pruneOptions'),
      ...opt('preprocess'),
      ...opt('labels'),
      ...opt('eval'),
      ...opt('evalPreprocess'),
      ...(a.metric !== undefined ? { metrics: a.metric } : {}),
    });
    if (a.report) await writeReport(document, a.report);
    process.stdout.write(a.json ? `${toJson(report)}\n` : `${renderDistillReport(report)}\n`);
  },
};
