/**
 * `onnxforge variants model.onnx -o dir/ [--calibration SPEC] [--eval SPEC --metric M] [--min-cosine X]
 * [--max-latency-ratio X] ...`: builds the transformers.js variant set (workflows/variants.ts), prints
 * the table (or the JSON with --json) and writes variants.json, variants.md and variants.html into the
 * folder beside the models. A variant that fails is a row with its error; bad input exits 2.
 */
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { writeFileAtomic } from '../../core/files.js';
import { ProgressBar } from '../../core/progress.js';
import { parseShapeArg } from '../../data/generate.js';
import { toJson } from '../../report/json.js';
import { renderVariantsHtml, renderVariantsMarkdown, renderVariantsTerminal } from '../../report/variants.js';
import { DEFAULT_BUDGET, VARIANT_NAMES, variantsWorkflow, type VariantBudget, type VariantName } from '../../workflows/variants.js';
import { list } from '../quantize-modes.js';

interface Args {
  model: string;
  output: string;
  calibration?: string;
  eval?: string;
  metric?: string[];
  limit?: number;
  shape?: string[];
  variants?: string[];
  logits?: string[];
  minCosine?: number;
  minTop1?: number;
  maxMetricChange?: number;
  maxLatencyRatio?: number;
  maxSizeRatio?: number;
  latencyAt?: string[];
  threads: number;
  target: 'node' | 'wasm';
  latencyRuns: number;
  json: boolean;
}

export const variantsCommand: CommandModule<object, Args> = {
  command: 'variants <model>',
  describe: 'Build every deployment variant (fp32, fp16, q8, int8, uint8, q4, q4f16 under transformers.js file names) and one report: size, latency, fidelity, which to ship',
  builder: (y) =>
    y
      .positional('model', { type: 'string', demandOption: true, describe: 'the float32 .onnx file' })
      .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'output folder (model.onnx, model_fp16.onnx, model_quantized.onnx, ..., variants.json/.md/.html)' })
      .option('calibration', { type: 'string', describe: 'calibration data for the fp16 ranges and int4 (GPTQ); default: their defaults on random inputs' })
      .option('eval', { type: 'string', describe: 'evaluation data fidelity and latency are measured on (default: the calibration data, else in-domain random inputs)' })
      .option('metric', { type: 'string', array: true, describe: 'task metric module path[#export] evaluated on --eval (repeatable)' })
      .option('limit', { type: 'number', describe: 'measure on at most this many samples (default 16 of given data, 4 random)' })
      .option('shape', { type: 'string', array: true, describe: 'symbolic dims for random inputs: input=1,128 or dimname=N' })
      .option('variants', { type: 'string', array: true, describe: `build only these (${VARIANT_NAMES.join(', ')}; comma-separated or repeated)` })
      .option('logits', { type: 'string', array: true, describe: 'outputs scored as logits (KL divergence, top-1 agreement); default: outputs named *logits*' })
      .option('min-cosine', { type: 'number', default: DEFAULT_BUDGET.minCosine, describe: 'budget: lowest cosine to fp32 on every output' })
      .option('min-top1', { type: 'number', default: DEFAULT_BUDGET.minTop1, describe: 'budget: lowest top-1 agreement with fp32 on logits outputs' })
      .option('max-metric-change', { type: 'number', default: DEFAULT_BUDGET.maxMetricChange, describe: 'budget: largest relative change of an --eval metric vs fp32' })
      .option('max-latency-ratio', { type: 'number', describe: 'budget: largest p50 latency ratio to fp32 (default: none)' })
      .option('max-size-ratio', { type: 'number', describe: 'budget: largest size ratio to fp32 (default: none)' })
      .option('latency-at', { type: 'string', array: true, describe: 'also time on random inputs of these dims: label:input=1,128[;dim=N] (repeatable)' })
      .option('threads', { type: 'number', default: 1, describe: 'intra-op threads for latency and evaluation (target node)' })
      .option('target', { type: 'string', choices: ['node', 'wasm'], default: 'node', describe: "the backend the variants are for: fidelity and latency measured there (wasm: onnxruntime-web's WASM backend, 1 thread), int8 variants checked for its fast integer kernels, q4's choices timed there" })
      .option('latency-runs', { type: 'number', default: 20, describe: 'timed rounds per latency setting (interleaved)' })
      .option('json', { type: 'boolean', default: false, describe: 'print the JSON report instead of the table' }) as never,
  handler: async (a) => {
    const budget: VariantBudget = {
      minCosine: a.minCosine ?? DEFAULT_BUDGET.minCosine,
      minTop1: a.minTop1 ?? DEFAULT_BUDGET.minTop1,
      maxMetricChange: a.maxMetricChange ?? DEFAULT_BUDGET.maxMetricChange,
      ...(a.maxLatencyRatio !== undefined ? { maxLatencyRatio: a.maxLatencyRatio } : {}),
      ...(a.maxSizeRatio !== undefined ? { maxSizeRatio: a.maxSizeRatio } : {}),
    };
    const latencyAt = (a.latencyAt ?? []).map((s) => {
      const i = s.indexOf(':');
      return { label: i > 0 ? s.slice(0, i) : s, shapes: Object.fromEntries(s.slice(i + 1).split(';').filter(Boolean).map(parseShapeArg)) };
    });
    const bar = new ProgressBar({ label: 'variants', ...(a.json ? { enabled: false } : {}) });
    const report = await variantsWorkflow({
      model: a.model,
      outDir: a.output,
      shapes: Object.fromEntries((a.shape ?? []).map(parseShapeArg)),
      budget,
      threads: a.threads,
      target: a.target,
      latencyRuns: a.latencyRuns,
      latencyAt,
      ...(a.calibration !== undefined ? { calibration: a.calibration } : {}),
      ...(a.eval !== undefined ? { eval: a.eval } : {}),
      ...(a.metric !== undefined ? { metrics: a.metric } : {}),
      ...(a.limit !== undefined ? { limit: a.limit } : {}),
      ...(a.variants !== undefined ? { variants: list(a.variants) as VariantName[] } : {}),
      ...(a.logits !== undefined ? { logits: list(a.logits)! } : {}),
      progress: (e) => {
        bar.setLabel(`${e.phase} ${e.variant ?? ''}`);
        bar.update(e.done, e.total);
      },
    }).finally(() => bar.done());
    writeFileAtomic(join(a.output, 'variants.json'), `${toJson(report)}\n`);
    writeFileAtomic(join(a.output, 'variants.md'), renderVariantsMarkdown(report));
    writeFileAtomic(join(a.output, 'variants.html'), renderVariantsHtml(report));
    process.stdout.write(a.json ? `${toJson(report)}\n` : `${renderVariantsTerminal(report)}\n`);
  },
};
