/**
 * The quantize modes the `quantize` command offers: one entry per mode with its workflow, the flags
 * only it reads (declared here, from the pass's option schema), how its parsed flags become the
 * workflow's options, and how its report renders. A new mode is a workflow file in
 * workflows/quantize/ plus one entry here. Flags that several modes read are declared once in
 * SHARED_FLAGS (their help says which modes use them).
 */
import type { Options } from 'yargs';
import { inputError } from '../core/errors.js';
import { ProgressBar } from '../core/progress.js';
import staticPass from '../passes/quantize/quantize-static.js';
import weightsPass from '../passes/quantize/quantize-weights.js';
import dynamicPass from '../passes/quantize/quantize-dynamic.js';
import { renderQuantizeModeReport, renderQuantizeReport } from '../report/quantize.js';
import type { QuantizeWorkflowOptions } from '../workflows/quantize/common.js';
import { quantizeStaticWorkflow } from '../workflows/quantize/static.js';
import { quantizeWeightsWorkflow } from '../workflows/quantize/weights.js';
import { quantizeDynamicWorkflow } from '../workflows/quantize/dynamic.js';
import convertFloat16Pass from '../passes/convert/convert-float16.js';
import { renderFp16Report } from '../report/fp16.js';
import { quantizeFp16Workflow } from '../workflows/quantize/fp16.js';
import { quantizeQ4f16Workflow } from '../workflows/quantize/q4f16.js';
import int4Pass, { type QuantizeInt4Options } from '../passes/quantize/quantize-int4.js';
import { renderInt4Report } from '../report/quantize-int4.js';
import { quantizeInt4Workflow } from '../workflows/quantize/int4.js';
import { renderStreamInt4Report, renderStreamWeightsReport, type StreamInt4Report, type StreamWeightsReport } from '../report/stream.js';
import { shouldStream, streamOptionsFrom, type StreamOptions } from '../workflows/stream.js';
import { streamInt4Workflow } from '../workflows/stream-int4.js';
import { streamWeightsWorkflow } from '../workflows/stream-weights.js';
import { passFlag, passOptionsFrom } from './schema-options.js';

/** The parsed arguments (yargs camelCase), flags of every mode included. */
export type QuantizeArgs = Record<string, unknown> & { json: boolean };

export interface QuantizeModeEntry<R = unknown> {
  /** One line for the --mode help. */
  describe: string;
  /** Flags only this mode reads (kebab-case name -> yargs option). */
  flags: Record<string, Options>;
  /** Runs the mode's workflow on the parsed arguments and the options every mode shares. */
  run(a: QuantizeArgs, common: QuantizeWorkflowOptions): Promise<R>;
  render(report: R): string;
}

/** Comma-separated or repeated list options ('a,b' --x c) -> ['a', 'b', 'c']. */
export const list = (v: unknown): string[] | undefined =>
  v === undefined ? undefined : (Array.isArray(v) ? v : [v]).flatMap((x) => String(x).split(',')).map((s) => s.trim()).filter(Boolean);

/** Flags read by more than one mode. */
export const SHARED_FLAGS: Record<string, Options> = {
  'min-elements': { type: 'number', describe: 'weights/dynamic: smallest weight tensor (elements) that is quantized', defaultDescription: `${weightsPass.options.minElements!.default} for weights, ${dynamicPass.options.minElements!.default} for dynamic` },
  'per-channel': passFlag(staticPass, 'perChannel', { describe: 'one weight scale per output channel (--no-per-channel for per-tensor)', noDefault: true, defaultDescription: 'true' }),
  'reduce-range': passFlag(staticPass, 'reduceRange', { describe: 'int8 weights limited to [-64, 64] (avoids the saturation of AVX2 u8 x s8 pair sums; --no-reduce-range for full range)', noDefault: true, defaultDescription: `${staticPass.options.reduceRange!.default} (static), ${dynamicPass.options.reduceRange!.default} (dynamic)` }),
  'exclude-nodes': passFlag(staticPass, 'excludeNodes', { describe: 'node names left in float (comma-separated or repeated)' }),
  stream: { type: 'boolean', describe: 'int4/weights/fp16 modes: convert tensor by tensor, for models larger than memory (no onnxruntime measurements; int4 RTN); --no-stream never', defaultDescription: 'when the external data is over 2 GiB' },
  resume: { type: 'boolean', describe: 'streaming: continue an interrupted run from its last finished tensor when the input is unchanged (size and modification time)' },
  'max-data-file-size': { type: 'string', describe: 'streaming: split the external data into files of at most this size (bytes, or 1500M, 2GiB, ...)', defaultDescription: 'one file' },
};

/** The streaming options of the parsed flags, with a progress bar of the bytes written (ONNXFORGE_FREE_BYTES injects a free-space figure, for tests). */
export function streamingFrom(a: QuantizeArgs, label: string): { options: StreamOptions; bar: ProgressBar } {
  const free = process.env.ONNXFORGE_FREE_BYTES;
  const options = streamOptionsFrom(a, free !== undefined && free !== '' ? Number(free) : undefined);
  const bar = new ProgressBar({ label, unit: 'bytes', ...(a.json ? { enabled: false } : {}) });
  options.onProgress = (done, total) => bar.update(done, total);
  return { options, bar };
}

/** quantize-static options and the argument that carries each; the rest take the schema default. */
const STATIC_FLAGS = {
  method: 'method',
  percentile: 'percentile',
  movingAverage: 'movingAverage',
  perChannel: 'perChannel',
  reduceRange: 'reduceRange',
  symmetricActivations: 'symmetricActivations',
  excludeNodes: 'excludeNodes',
  excludeOps: 'excludeOps',
  onlyOps: 'onlyOps',
  activationMatMul: 'activationMatMul',
  weightOnlyNodes: 'weightOnlyNodes',
  names: 'names',
  latencyAware: 'latencyAware',
  decisions: 'decisions',
  updateDecisions: 'updateDecisions',
  prefer: 'prefer',
  fidelity: 'fidelity',
  fidelityMinGain: 'fidelityMinGain',
  biasCorrection: 'biasCorrection',
} as const;

const staticMode: QuantizeModeEntry<Awaited<ReturnType<typeof quantizeStaticWorkflow>>> = {
  describe: 'static (calibrated QDQ)',
  flags: {
    format: { type: 'string', choices: ['qdq', 'qop', 'msft'], defaultDescription: 'qdq (static), msft (int4)', describe: 'static mode: QDQ or QOperator (QLinearConv, QLinearMatMul, ...) emission; int4 mode: msft (com.microsoft MatMulNBits) or qdq (opset-21 int4 DequantizeLinear with block_size)' },
    calibration: { type: 'string', describe: 'calibration data (static mode, required): a folder or file of .npy/.npz, .pb, .json, .png (with --preprocess), or random[:count[:seed]]' },
    method: passFlag(staticPass, 'method', { describe: 'activation range estimation' }),
    percentile: passFlag(staticPass, 'percentile', { describe: 'percentile kept by --method percentile' }),
    'moving-average': passFlag(staticPass, 'movingAverage'),
    'symmetric-activations': passFlag(staticPass, 'symmetricActivations'),
    'latency-aware': passFlag(staticPass, 'latencyAware', { describe: 'profile int8 and float layers in onnxruntime and keep in float what is slower in int8 (off: quantize everything quantizable)' }),
    decisions: passFlag(staticPass, 'decisions', { describe: 'replay the latency-aware decisions recorded in FILE (onnxforge.quantize-decisions/1) instead of profiling: the same model bytes every time (commit it for CI)', noDefault: true }),
    'update-decisions': passFlag(staticPass, 'updateDecisions', { describe: 'with --decisions FILE: profile anyway and rewrite FILE (atomically, after the model)' }),
    prefer: passFlag(staticPass, 'prefer', { describe: 'layers kept float for latency keep float weights (speed) or int8 weights behind a DequantizeLinear (size, slower)' }),
    fidelity: passFlag(staticPass, 'fidelity', { describe: 'label-free fidelity budget: layers return to float until every output has at least this SQNR (dB) vs the float model on the calibration samples (0: off)' }),
    'fidelity-min-gain': passFlag(staticPass, 'fidelityMinGain'),
    'bias-correction': passFlag(staticPass, 'biasCorrection', { describe: 'correct biases for the mean output shift of rounded weights (--no-bias-correction to skip)' }),
    'max-accuracy-drop': { type: 'number', describe: 'accuracy budget: return the most sensitive layers to float until FP32 score - INT8 score <= this (needs --eval and --metric)' },
    'budget-rank': { type: 'string', choices: ['output', 'sqnr'], default: 'output', describe: 'how the budget ranks layers: output SQNR each recovers alone in float (measured), or the SQNR each loses itself (cheaper)' },
    'budget-key': { type: 'string', describe: 'metric field the budget applies to (default: the first field; key:min for lower-is-better fields such as cer:min)' },
    'exclude-ops': passFlag(staticPass, 'excludeOps', { describe: 'op types left in float' }),
    'only-ops': passFlag(staticPass, 'onlyOps', { describe: 'quantize only these op types' }),
    'activation-matmul': passFlag(staticPass, 'activationMatMul', { describe: 'also quantize MatMul of two activations (attention)' }),
    'weight-only-nodes': passFlag(staticPass, 'weightOnlyNodes', { describe: 'node names whose weights are int8 but activations stay float' }),
    'descriptive-names': { type: 'boolean', default: staticPass.options.names!.default === 'descriptive', describe: 'name new tensors after the originals (default: short ids, smaller files)' },
    'debug-layers': { type: 'boolean', default: false, describe: 'per-layer SQNR of float vs quantized activations' },
    target: { type: 'string', choices: ['node', 'wasm'], default: 'node', describe: "static mode: the backend the model is for: latency-aware decisions profile there, and the model is checked to load, use only fast integer kernels and match FP32 there (wasm: onnxruntime-web's WASM backend, 1 thread)" },
  },
  async run(a, common) {
    const flags = { ...a, excludeNodes: list(a.excludeNodes), excludeOps: list(a.excludeOps), onlyOps: list(a.onlyOps), weightOnlyNodes: list(a.weightOnlyNodes), names: a.descriptiveNames ? 'descriptive' : 'compact' };
    const bar = new ProgressBar({ label: 'calibrating', ...(a.json ? { enabled: false } : {}) });
    let ticks = 0;
    try {
      return await quantizeStaticWorkflow({
        ...common,
        calibration: a.calibration as string,
        pass: passOptionsFrom(staticPass, flags, STATIC_FLAGS),
        format: (a.format ?? 'qdq') as 'qdq' | 'qop',
        ...(a.maxAccuracyDrop !== undefined ? { maxAccuracyDrop: a.maxAccuracyDrop as number } : {}),
        ...(a.budgetKey !== undefined ? { budgetKey: a.budgetKey as string } : {}),
        budgetRank: a.budgetRank as 'output' | 'sqnr',
        debugLayers: a.debugLayers as boolean,
        target: a.target as 'node' | 'wasm',
        progress: () => ({ tick: () => bar.update(++ticks), done: () => bar.done() }),
      });
    } finally {
      bar.done();
    }
  },
  render: renderQuantizeReport,
};

/** weights and fp16 modes, streamed when the model is larger than memory (or --stream). */
async function streamedWeights(a: QuantizeArgs, common: QuantizeWorkflowOptions, mode: 'weights' | 'fp16'): Promise<StreamWeightsReport | undefined> {
  const streaming = streamingFrom(a, `${mode} (streamed)`);
  if (!(await shouldStream(common.model, streaming.options))) return undefined;
  return streamWeightsWorkflow({
    model: common.model,
    output: common.output,
    mode,
    ...streaming.options,
    ...(typeof a.minElements === 'number' ? { minElements: a.minElements } : {}),
    ...(a.perChannel === false ? { perChannel: false } : {}),
  }).finally(() => streaming.bar.done());
}

const isStreamed = (r: { schema?: string }): r is StreamWeightsReport => r.schema === 'onnxforge.quantize-stream/1';

const weightsMode: QuantizeModeEntry<Awaited<ReturnType<typeof quantizeWeightsWorkflow>> | StreamWeightsReport> = {
  describe: 'weights (int8 weights + DequantizeLinear, float activations, tagged)',
  flags: {},
  run: async (a, common) => (await streamedWeights(a, common, 'weights')) ?? quantizeWeightsWorkflow({ ...common, pass: passOptionsFrom(weightsPass, a, { perChannel: 'perChannel', minElements: 'minElements' }) }),
  render: (r) => (isStreamed(r) ? renderStreamWeightsReport(r) : renderQuantizeModeReport(r)),
};

const dynamicMode: QuantizeModeEntry<Awaited<ReturnType<typeof quantizeDynamicWorkflow>>> = {
  describe: 'dynamic (MatMul/Gemm/Gather/LSTM int8, activations quantized at run time)',
  flags: {},
  run: (a, common) => {
    if (a.stream === true || a.resume === true || a.maxDataFileSize !== undefined) throw inputError('USAGE_CONFLICT', '--mode dynamic is not streamed (--stream, --resume and --max-data-file-size apply to int4, weights and fp16)');
    return quantizeDynamicWorkflow({ ...common, pass: passOptionsFrom(dynamicPass, { ...a, excludeNodes: list(a.excludeNodes) }, { reduceRange: 'reduceRange', excludeNodes: 'excludeNodes', minElements: 'minElements' }) });
  },
  render: renderQuantizeModeReport,
};

/** convert-float16 options and the argument that carries each. */
const FP16_FLAGS = { bf16: 'bf16', target: 'fp16Target', keepIoTypes: 'keepIoTypes', headroom: 'headroom', excludeOps: 'excludeOps', excludeNodes: 'excludeNodes' } as const;

const fp16Mode: QuantizeModeEntry<Awaited<ReturnType<typeof quantizeFp16Workflow>> | StreamWeightsReport> = {
  describe: 'fp16 (float16, or bfloat16 with --bf16; mixed precision where float16 overflows or onnxruntime has no float16 kernel)',
  flags: {
    bf16: passFlag(convertFloat16Pass, 'bf16', { describe: 'fp16 mode: bfloat16 instead of float16' }),
    'fp16-target': passFlag(convertFloat16Pass, 'target', { describe: 'fp16/q4f16 modes: cpu = float16 weights, float32 compute (what onnxruntime\'s CPU/WASM providers run fastest, measured); any = float16 compute wherever ONNX allows it (GPU/WebGPU)' }),
    'keep-io-types': passFlag(convertFloat16Pass, 'keepIoTypes', { describe: 'fp16 mode: float32 graph inputs and outputs (--no-keep-io-types for float16 ones)' }),
    headroom: passFlag(convertFloat16Pass, 'headroom', { describe: 'fp16 mode: a tensor stays float32 when its measured max |x| times this exceeds 65504' }),
    'fuse-transformer': { type: 'boolean', describe: 'fp16/int4/q4f16 modes: run the transformer fusion preset first when it fuses something (default on; --no-fuse-transformer to skip)' },
  },
  run: async (a, common) => {
    const streamed = await streamedWeights(a, common, 'fp16');
    if (streamed) return streamed;
    const bar = new ProgressBar({ label: 'measuring ranges', ...(a.json ? { enabled: false } : {}) });
    let ticks = 0;
    return quantizeFp16Workflow({
      ...common,
      ...(a.fuseTransformer === false ? { fuseTransformer: false } : {}),
      ...(a.calibration !== undefined ? { calibration: a.calibration as string } : {}),
      pass: passOptionsFrom(convertFloat16Pass, { ...a, excludeOps: list(a.excludeOps), excludeNodes: list(a.excludeNodes) }, FP16_FLAGS),
      progress: () => ({ tick: () => bar.update(++ticks), done: () => bar.done() }),
    }).finally(() => bar.done());
  },
  render: (r) => (isStreamed(r) ? renderStreamWeightsReport(r) : renderFp16Report(r)),
};

/** quantize-int4 options and the argument that carries each. */
const INT4_FLAGS = { blockSize: 'blockSize', method: 'int4Method', symmetric: 'symmetric', format: 'format', accuracyLevel: 'accuracyLevel', embeddings: 'embeddings', keepInt8: 'keepInt8', kernel: 'int4Kernel' } as const;

const int4Mode: QuantizeModeEntry<Awaited<ReturnType<typeof quantizeInt4Workflow>> | StreamInt4Report> = {
  describe: 'int4 (weight-only: MatMul/Gemm as MatMulNBits, embeddings as GatherBlockQuantized; RTN, or GPTQ with --calibration)',
  flags: {
    'block-size': passFlag(int4Pass, 'blockSize', { describe: 'int4 mode: weights per block (a power of two from 16 to 256 dividing K)' }),
    'int4-method': passFlag(int4Pass, 'method', { describe: 'int4 mode: rtn, gptq (needs --calibration), or auto (gptq with --calibration, rtn without)' }),
    symmetric: passFlag(int4Pass, 'symmetric', { describe: 'int4 mode: no zero points' }),
    'accuracy-level': passFlag(int4Pass, 'accuracyLevel', { describe: 'int4 mode: MatMulNBits accuracy_level; auto (from the kernel table measured on this CPU: 4 where it is faster, nothing timed) or measure (timed now, on this CPU)' }),
    embeddings: passFlag(int4Pass, 'embeddings', { describe: 'int4 mode: embedding tables as int4 GatherBlockQuantized, int8, or float' }),
    'keep-int8': passFlag(int4Pass, 'keepInt8', { describe: 'int4 mode: auto keeps the first/last layer at 8 bits when measured to pay; none' }),
    'int4-kernel': passFlag(int4Pass, 'kernel', { describe: 'int4 mode: nbits (MatMulNBits), unpack (int4 in the file, unpacked to float32 weights at load), auto (the kernel table measured on this CPU: MatMulNBits from K = 768, else unpack; nothing timed) or measure (timed per weight shape now at sequence lengths 1 and 128); q4f16 mode: nbits' }),
  },
  run: async (a, common) => {
    const bar = new ProgressBar({ label: 'int4', ...(a.json ? { enabled: false } : {}) });
    let ticks = 0;
    const flags = { ...a, format: a.format ?? 'msft' };
    if (flags.format !== 'msft' && flags.format !== 'qdq') throw inputError('USAGE_BAD_VALUE', `--format ${String(flags.format)}: int4 mode writes msft or qdq`, { field: 'format' });
    const streaming = streamingFrom(a, 'int4 (streamed)');
    if (await shouldStream(common.model, streaming.options)) {
      const log = a.json ? undefined : (line: string) => void process.stderr.write(`${line}\n`);
      return streamInt4Workflow({ model: common.model, output: common.output, ...streaming.options, ...(a.calibration !== undefined ? { calibration: a.calibration as string } : {}), ...(log ? { log } : {}), pass: passOptionsFrom(int4Pass, flags, INT4_FLAGS) as Partial<QuantizeInt4Options> }).finally(() => streaming.bar.done());
    }
    return quantizeInt4Workflow({
      ...common,
      ...(a.fuseTransformer === false ? { fuseTransformer: false } : {}),
      ...(a.calibration !== undefined ? { calibration: a.calibration as string } : {}),
      pass: passOptionsFrom(int4Pass, flags, INT4_FLAGS) as Partial<QuantizeInt4Options>,
      progress: () => ({ tick: () => bar.update(++ticks), done: () => bar.done() }),
    }).finally(() => bar.done());
  },
  render: (r) => (r.schema === 'onnxforge.quantize-stream/1' ? renderStreamInt4Report(r) : renderInt4Report(r)),
};

const q4f16Mode: QuantizeModeEntry<Awaited<ReturnType<typeof quantizeQ4f16Workflow>>> = {
  describe: 'q4f16 (int4 MatMulNBits weights as in int4 mode, then the fp16 conversion: float16 scales and activations)',
  flags: {},
  run: (a, common) => {
    const bar = new ProgressBar({ label: 'q4f16', ...(a.json ? { enabled: false } : {}) });
    let ticks = 0;
    return quantizeQ4f16Workflow({
      ...common,
      ...(a.fuseTransformer === false ? { fuseTransformer: false } : {}),
      ...(a.calibration !== undefined ? { calibration: a.calibration as string } : {}),
      pass: passOptionsFrom(convertFloat16Pass, { ...a, excludeOps: list(a.excludeOps), excludeNodes: list(a.excludeNodes) }, FP16_FLAGS),
      int4: passOptionsFrom(int4Pass, { ...a, format: 'msft', int4Kernel: a.int4Kernel === undefined || a.int4Kernel === 'auto' ? 'nbits' : a.int4Kernel }, INT4_FLAGS) as Partial<QuantizeInt4Options>,
      progress: () => ({ tick: () => bar.update(++ticks), done: () => bar.done() }),
    }).finally(() => bar.done());
  },
  render: renderFp16Report,
};

/** The modes, the first being the default. */
export const QUANTIZE_MODES: Record<string, QuantizeModeEntry<any>> = { static: staticMode, weights: weightsMode, dynamic: dynamicMode, fp16: fp16Mode, int4: int4Mode, q4f16: q4f16Mode };
