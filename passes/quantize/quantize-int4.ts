/**
 * quantize-int4: weight-only block quantization for transformers. Every MatMul whose B is a constant
 * [K, N] float matrix, and every Gemm with a constant B (transA 0; alpha folded into the weight, a
 * constant [N] C times beta as the bias), becomes com.microsoft MatMulNBits: B in blocks of
 * `blockSize` inputs, 4 bits per weight with one float scale (and, unless `symmetric`, one 4-bit
 * zero point) per block, Y = A x dequant(B) (+ bias). The packed Q/K/V weight [H, 3H] of a fused
 * com.microsoft Attention is block-quantized the same way and always unpacked (constants onnxruntime
 * folds into the float32 weight at load; Attention has no int4 form). Embedding tables (Gather on axis 0 of a
 * constant [V, D]) become com.microsoft GatherBlockQuantized, at 8 bits by default (int4 tables cost the
 * trained LM most of its bits-per-byte loss). Layouts: int4/blocks.ts.
 *
 * Methods (`auto`, the default: gptq with calibration data, rtn without): `rtn` rounds each block to nearest; `gptq` (int4/gptq.ts) quantizes the inputs of a weight
 * one by one and spreads each rounding error over the rest using the second moments of the layer's
 * input on the calibration data, which minimises the layer's output error on that data.
 *
 * Measured choices (on the calibration feeds, against the float model):
 * - the first and last layers (the weights read first and last in the graph) stay at 8 bits
 *   (MatMulNBits bits 8) when 8 bits there cut the model's output error by at least `keepGain`
 *   (relative) — the accuracy cliff of int4 at the ends of a network; each decision is reported;
 * - `accuracyLevel auto` / `kernel auto`: MatMulNBits accuracy_level 0 (float), 1 (fp32) and 4 (int8
 *   activations) against float32, from the kernel table measured on this CPU (int4/kernels.ts: a
 *   rule, so nothing is timed at quantize time and the choice does not move with the machine's
 *   load); `measure` times them interleaved on this CPU instead and takes the fastest among those
 *   whose output SQNR is within `levelToleranceDb` (0.5 dB) of the best; the figures are reported.
 *
 * `format qdq` writes the standard ONNX form instead (opset 21): an int4 (symmetric) or uint4
 * DequantizeLinear with `block_size` feeding a plain MatMul; embeddings and 8-bit layers as int8
 * per-row DequantizeLinear. Block size: a power of two in 16..256 that divides K of every weight
 * quantized (weights with fewer than `minElements` values stay float).
 */
import { DataType } from '../../core/dtype.js';
import { inputError } from '../../core/errors.js';
import type { Feed } from '../../core/host-tensor.js';
import { Tensor } from '../../core/tensor.js';
import { Attribute, constantOf, Model, Node, Value } from '../../ir/ir.js';
import { definePass, PassContext, withSchemaDefaults } from '../pass.js';
import { prepareForQuantization, PrepareReport } from './prepare.js';
import { evenlySpaced, firstSamples, toSampleSource } from './sample-source.js';
import { addWeightDq, quantizeInt8 } from './weights-int8.js';
import type { NameAuthority } from '../../ir/names.js';
import { collectInputMoments, InputMoments } from './int4/activations.js';
import { Bits, BlockQuantized, defaultZeroPoints, dequantizeRows, quantizeRtn, rowsOfKN, storedBytes, zeroPointBytes } from './int4/blocks.js';
import { emitGatherBlockQuantized, emitMatMulNBits, emitQdqMatMul, MS_DOMAIN, replaceNode, UnpackConstants, unpackedWeight } from './int4/emit.js';
import { compactConstants, type CompactedConstant } from './int4/constants.js';
import { classKey, KernelClass, kernelByRule, KernelTiming, measureKernels, nbitsByRule, RULE_LEVEL4_ERROR } from './int4/kernels.js';
import { outputErrors, type GptqResult } from './int4/gptq.js';
import { GPTQ_TASK, gptqJobCost, gptqWork, runGptqJob, type GptqJob } from './int4/gptq-job.js';
import { cancelFlag, raiseFlag, shareLarge, shareWork, threadsUp, type WorkHelpers } from '../../core/share-work.js';
import { KEEP_MODEL } from '../../runtime/thread-tasks.js';
import type { Threads } from '../../runtime/runner-types.js';
import { sharedLinalg } from './int4/linalg.js';
import { disposeEndTrials, dropUnread, prepareEndTrials, reference, Reference, referenceOf, runEndTrials, sqnrDb, type WeightSlot } from './int4/probe.js';

export type Int4Method = 'rtn' | 'gptq';

/** Data the pass reads: calibration feeds (GPTQ), and feeds for its measurements (default: the same). */
export interface Int4Data {
  calibration: readonly Feed[];
  /** Inputs for the sensitivity and accuracy_level measurements (random inputs when no calibration is given). */
  probe?: readonly Feed[];
  /**
   * Float tensors whose min and max the moments run (GPTQ) also measures, handed to `onRanges` with the
   * number of samples they were measured on (q4f16: the float16 plan's activation ranges, from the
   * float model, without a pass of its own). Not called when there is no moments run (RTN).
   */
  ranges?: { tensors: readonly string[]; onRanges(ranges: ReadonlyMap<string, { min: number; max: number }>, samples: number): void };
}
export type Int4Format = 'msft' | 'qdq';

export interface QuantizeInt4Options {
  blockSize?: number;
  /** 'auto': gptq when calibration data is given, rtn otherwise. */
  method?: Int4Method | 'auto';
  symmetric?: boolean;
  format?: Int4Format;
  /**
   * How a 4-bit or 8-bit MatMul/Gemm weight runs (format msft): 'nbits' as MatMulNBits; 'unpack' as
   * constants that onnxruntime folds into a float32 weight at load (int4 in the file, float32 speed);
   * 'auto' (default) follows the kernel table measured on this CPU (int4/kernels.ts kernelByRule:
   * MatMulNBits accuracy_level 4 from K = 768 on, else unpacked), the same choice on every run;
   * 'measure' times both per weight shape on this CPU at sequence lengths 1 and 128 and takes
   * MatMulNBits only where it is at least 5% faster than the float32 MatMul at both (KERNEL_MARGIN). Embeddings: 'nbits'
   * GatherBlockQuantized, otherwise unpacked.
   */
  kernel?: 'auto' | 'measure' | 'nbits' | 'unpack';
  /** 'auto' (measured) or a MatMulNBits accuracy_level. */
  accuracyLevel?: 'auto' | 'measure' | '0' | '1' | '2' | '3' | '4';
  /** Embedding tables: block-quantized like the weights ('int4'), int8 per row, or left float. */
  embeddings?: 'int4' | 'int8' | 'float';
  /** 'auto': first/last layers measured and kept at 8 bits where that pays; 'none': all 4 bits. */
  keepInt8?: 'auto' | 'none';
  /** Relative cut of the model's output error that keeps a first/last layer at 8 bits. */
  keepGain?: number;
  /** Weights with fewer values stay float. */
  minElements?: number;
  /** Other float constants of at least minElements values with few distinct values (masks) stored as uint8 codes, losslessly. */
  compactConstants?: boolean;
  /** With GPTQ, also measure RTN's layer-output error beside GPTQ's (the report's RTN column). */
  compareRtn?: boolean;
  /** Calibration samples read (GPTQ moments, sensitivity, accuracy level). */
  calibrationSamples?: number;
  /** GPTQ's layer-input moments are taken on at most this many of them, evenly spaced (see the option's description). */
  momentSamples?: number;
  /** GPTQ damping (fraction of the mean Hessian diagonal). */
  damp?: number;
  /** accuracy_level auto: levels whose output SQNR is within this many dB of the best compete on latency. */
  levelToleranceDb?: number;
  /** Timed rounds per candidate when measuring accuracy_level. */
  latencyRuns?: number;
  prepare?: boolean;
  presets?: string;
}

export interface Int4WeightReport {
  /** The weight tensor's name and the node that read it. */
  tensor: string;
  node: string;
  op: 'MatMul' | 'Gemm' | 'Gather' | 'Attention';
  K: number;
  N: number;
  /** 4 or 8 bits, or 0 when left float. */
  bits: number;
  method: Int4Method | 'int8' | 'float';
  blockSize: number;
  /** The operator that runs it: MatMulNBits, GatherBlockQuantized, unpacked (folded to float32 at load), DequantizeLinear (qdq). */
  kernel?: 'MatMulNBits' | 'GatherBlockQuantized' | 'unpacked' | 'DequantizeLinear';
  /** Why the weight is not at 4 bits (8-bit layers, float weights). */
  reason?: string;
  /** Relative squared weight error ||W - Wq||^2 / ||W||^2. */
  weightError: number;
  /** Relative squared layer-output error on the calibration inputs (GPTQ's objective), when measured. */
  outputError?: number;
  /** The same for RTN (beside GPTQ, to show the gain; with compareRtn). */
  rtnOutputError?: number;
  floatBytes: number;
  bytes: number;
}

export interface AccuracyLevelFigure {
  level: number;
  ms: number;
  relativeError: number;
  sqnrDb: number;
}

/** The kernel chosen for one weight shape class, from its timings. */
export interface KernelDecision {
  /** K x N / bits / block size (s: symmetric). */
  shape: string;
  weights: number;
  timings: KernelTiming[];
  /** accuracy_level -> relative output error of its activation quantization (Gaussian inputs). */
  levelError: Record<number, number>;
  /** 'unpacked' or the MatMulNBits accuracy_level. */
  chosen: 'unpacked' | number;
  reason: string;
}

export interface KeepDecision {
  tensor: string;
  position: 'first' | 'last';
  /** Model output error (relative) all 4-bit, and with this layer at 8 bits. */
  errorAll4: number;
  errorWith8: number;
  gain: number;
  kept: boolean;
}

export interface QuantizeInt4Report {
  prepare?: PrepareReport;
  format: Int4Format;
  method: Int4Method;
  blockSize: number;
  symmetric: boolean;
  weights: Int4WeightReport[];
  floatBytes: number;
  quantizedBytes: number;
  accuracyLevel: { chosen: number; measured: AccuracyLevelFigure[]; reason: string };
  keepInt8: KeepDecision[];
  /** Per weight shape class (format msft, kernel auto): MatMulNBits or unpacked, from timings on this CPU. */
  kernels: KernelDecision[];
  /** Float constants stored losslessly as uint8 codes (compactConstants). */
  constants: CompactedConstant[];
  calibrationSamples: number;
  /** Calibration samples GPTQ's layer-input moments were taken on (evenly spaced over them; 0 without GPTQ). */
  momentSamples: number;
  /** Samples the first/last-layer trials ran on (evenly spaced over the probe data; the moments' own samples when both come from the calibration data). */
  probeSamples: number;
  /** Milliseconds per phase. */
  ms: { prepare: number; moments: number; quantize: number; sensitivity: number; accuracyLevel: number; total: number };
}

interface Candidate {
  index: number;
  node: Node;
  op: 'MatMul' | 'Gemm' | 'Gather' | 'Attention';
  weight: Value;
  tensor: string;
  /** The activation (A of MatMul/Gemm, ids of Gather). */
  input: Value;
  /** The weight as rows [N, K] (made from `kn` on first use). */
  readonly rows: Float32Array;
  /** The weight as MatMul's B [K, N] when the model stores it so (what GPTQ works on). */
  kn?: Float32Array;
  K: number;
  N: number;
  bias?: Float32Array;
  q4?: BlockQuantized;
  /** q4 dequantized (float32 [N, K] rows), computed once for the error figures and the trials. */
  dq4?: Float32Array;
  /** The same as B [K, N] (GPTQ gives it), what a MatMul/Gemm trial reads. */
  dq4kn?: Float32Array;
  q8?: BlockQuantized;
  report: Int4WeightReport;
}

/** Sequence lengths (batch 1) at which kernel auto times MatMulNBits against float32: the issue's two. */
const KERNEL_SEQS = [1, 128];
/**
 * kernel auto keeps MatMulNBits only when it runs at most this fraction of the float32 MatMul's time
 * at every length: a clear win. Timings of single 20-300 us kernels on a shared 2-core machine move by
 * several percent between runs, and a layer wrongly kept as MatMulNBits costs latency while an
 * unpacked one costs nothing but run-time memory.
 */
const KERNEL_MARGIN = 0.95;

/**
 * Samples the first/last-layer trials run on, evenly spaced over the probe data (three passes of the
 * model over them: all 4-bit, first layer at 8, last layer at 8). With calibration data they are among
 * the moments' samples (the same spacing), so the moments' run gives their float reference. 4: on
 * the trained LM the gains of 8 bits were 0.29 / 0.30 (first / last) against 0.30 / 0.30 with 8
 * samples, both layers kept either way (RTN: 0.37 / 0.25 against 0.35 / 0.25), for half the passes' time.
 */
const PROBE_SAMPLES = 4;

/** Default weights per block, in memory and when streaming (see the option's description). */
export const DEFAULT_BLOCK_SIZE = 64;
const BLOCK_MIN = 16;
const BLOCK_MAX = 256;

/**
 * Whether a fused com.microsoft Attention whose packed Q/K/V weight is `weight` ([K, N] = [hidden,
 * 3 x hidden]) suits the pass with options `o` (the transformer step keeps it then,
 * passes/transformer-step.ts attentionWeights). Format msft with kernel auto (the default) or measure
 * stores the packed weight as int4 codes that onnxruntime unpacks to float32 at load, so the quantized
 * model runs the fp32 model's fused attention: with kernel auto, where the kernel table would unpack
 * the Q/K/V projections anyway (K < RULE_NBITS_MIN_K: the trained LM's unfused attention cost q4 1.19x /
 * 1.06x of fp32 at seq 1 / 128), not where it would run them as MatMulNBits (at hidden 768 and 1024, unfused
 * attention with MatMulNBits Q/K/V measured 0.15-0.30x fp32 at seq 1 against 0.31-0.42x fused, and
 * 0.69-0.83x against 0.76-0.84x at 128, and less memory after load: benchmarks/int4-attention.ts); kernel measure keeps it at
 * every width (its timings need the unfused model; not measured). A kernel given explicitly keeps
 * every linear weight a MatMul of its own: nbits (Attention takes only a float weight, so Q, K and V
 * could not be MatMulNBits) and unpack (MatMuls on unpacked constants). Without `weight`: whether
 * the pass can take a packed weight at all.
 */
export function quantizesPackedAttention(o: Pick<QuantizeInt4Options, 'format' | 'kernel'>, weight?: { K: number; N: number }): boolean {
  const kernel = o.kernel ?? 'auto';
  if ((o.format ?? 'msft') !== 'msft' || kernel === 'nbits' || kernel === 'unpack') return false;
  return weight === undefined || kernel === 'measure' || !nbitsByRule(weight.K);
}

/** Checks --block-size: a power of two in 16..256. */
export function checkBlockSize(b: number): void {
  if (!Number.isInteger(b) || b < BLOCK_MIN || b > BLOCK_MAX || (b & (b - 1)) !== 0) {
    throw inputError('INT4_BAD_BLOCK_SIZE', `--block-size must be a power of two from ${BLOCK_MIN} to ${BLOCK_MAX} (MatMulNBits and GatherBlockQuantized need it), got ${b}`, { field: 'block-size' });
  }
}

function labelOf(n: Node): string {
  return n.name ?? n.label;
}

/** The weights of `model` that can be block-quantized, with the reason for each that cannot. */
function findCandidates(model: Model, o: Required<Pick<QuantizeInt4Options, 'blockSize' | 'minElements' | 'embeddings' | 'format'>>, skipped: Int4WeightReport[]): Candidate[] {
  const g = model.graph;
  const out: Candidate[] = [];
  const skip = (node: Node, op: Candidate['op'], tensor: string, t: Tensor | undefined, reason: string) =>
    skipped.push({ tensor, node: labelOf(node), op, K: t?.dims[0] ?? 0, N: t?.dims[1] ?? 0, bits: 0, method: 'float', blockSize: 0, reason, weightError: 0, floatBytes: t?.byteLength ?? 0, bytes: t?.byteLength ?? 0 });
  g.nodes.forEach((node, index) => {
    // com.microsoft Attention (the transformer preset's fusion): its packed Q/K/V weight [H, 3H] is input 1
    const attention = node.opDomain === MS_DOMAIN && node.opType === 'Attention';
    if (node.opDomain !== '' && !attention) return;
    const op = attention ? 'Attention' : node.opType;
    if (op !== 'MatMul' && op !== 'Gemm' && op !== 'Gather' && op !== 'Attention') return;
    const wIndex = op === 'Gather' ? 0 : 1;
    let weight = node.inputs[wIndex];
    let t = constantOf(weight);
    // MatMul(A, Transpose(C)) with a constant C [N, K] (a tied LM head reads the embedding table so)
    let transposed = false;
    const tr = weight?.producer;
    if (!t && op === 'MatMul' && tr && tr.opType === 'Transpose' && tr.opDomain === '' && (tr.getInts('perm') ?? [1, 0]).join() === '1,0') {
      const ct = constantOf(tr.inputs[0]);
      if (ct && ct.dims.length === 2) {
        weight = tr.inputs[0]!;
        t = ct;
        transposed = true;
      }
    }
    if (!weight || !t || t.dataType !== DataType.FLOAT) return;
    if (op === 'Attention' && o.format !== 'msft') return skip(node, 'Attention', weight.name, t, "format qdq: com.microsoft Attention's packed Q/K/V weight stays float (the standard form quantizes MatMul weights)");
    const input = node.inputs[op === 'Gather' ? 1 : 0]!;
    if (t.dims.length !== 2) return skip(node, op as Candidate['op'], weight.name, t, `weight has rank ${t.dims.length} (2-D only)`);
    if (t.size < o.minElements) return skip(node, op as Candidate['op'], weight.name, t, `fewer than ${o.minElements} values`);
    const w = t.toFloat32();
    let rows: Float32Array | undefined;
    let kn: Float32Array | undefined;
    let K: number;
    let N: number;
    let bias: Float32Array | undefined;
    if (op === 'Gather') {
      if ((node.getInt('axis', 0) ?? 0) !== 0) return skip(node, 'Gather', weight.name, t, 'Gather on an axis other than 0');
      if (o.embeddings === 'float') return skip(node, 'Gather', weight.name, t, 'embeddings left float (--embeddings float)');
      [N, K] = t.dims as [number, number];
      rows = w;
      if (K % o.blockSize !== 0 && o.format === 'msft') return skip(node, 'Gather', weight.name, t, `row length ${K} is not a multiple of block size ${o.blockSize}`);
    } else if (op === 'MatMul' && transposed) {
      [N, K] = t.dims as [number, number];
      rows = w;
    } else if (op === 'MatMul' || op === 'Attention') {
      [K, N] = t.dims as [number, number];
      kn = w;
    } else {
      if ((node.getInt('transA', 0) ?? 0) !== 0) return skip(node, 'Gemm', weight.name, t, 'Gemm with transA');
      const transB = (node.getInt('transB', 0) ?? 0) !== 0;
      K = t.dims[transB ? 1 : 0]!;
      N = t.dims[transB ? 0 : 1]!;
      rows = transB ? Float32Array.from(w) : rowsOfKN(w, K, N);
      const alpha = node.getFloat('alpha', 1) ?? 1;
      if (alpha !== 1) for (let i = 0; i < rows.length; i++) rows[i] = Math.fround(rows[i]! * alpha);
      const c = node.inputs[2];
      if (c) {
        const ct = constantOf(c);
        if (!ct || ct.dataType !== DataType.FLOAT || ct.size !== N || (ct.dims.length === 2 && ct.dims[0] !== 1) || ct.dims.length > 2) return skip(node, 'Gemm', weight.name, t, 'Gemm bias C is not a constant [N] vector');
        const beta = node.getFloat('beta', 1) ?? 1;
        bias = Float32Array.from(ct.toFloat32(), (x) => Math.fround(x * beta));
      }
    }
    if (op !== 'Gather' && K % o.blockSize !== 0) {
      throw inputError('INT4_BLOCK_NOT_DIVIDING', `--block-size ${o.blockSize} does not divide K = ${K} of weight '${weight.name}' (node ${labelOf(node)}); use a power of two that divides every K, e.g. ${largestDividing(K)}`, { tensor: weight.name, node: labelOf(node), field: 'block-size' });
    }
    let made = rows;
    const cand: Candidate = {
      index,
      node,
      op: op as Candidate['op'],
      weight,
      tensor: weight.name,
      input,
      get rows() {
        return (made ??= rowsOfKN(kn!, K, N));
      },
      ...(kn ? { kn } : {}),
      K,
      N,
      report: { tensor: weight.name, node: labelOf(node), op: op as Candidate['op'], K, N, bits: 4, method: 'rtn', blockSize: o.blockSize, weightError: 0, floatBytes: t.byteLength, bytes: 0 },
    };
    if (bias) cand.bias = bias;
    out.push(cand);
  });
  return out;
}

function largestDividing(K: number): number {
  for (let b = BLOCK_MAX; b >= BLOCK_MIN; b /= 2) if (K % b === 0) return b;
  return BLOCK_MIN;
}

/** Relative squared error of the dequantized rows `dq` against `rows`. */
function relWeightError(rows: Float32Array, dq: Float32Array): number {
  let sse = 0;
  let e = 0;
  for (let i = 0; i < rows.length; i++) {
    sse += (rows[i]! - dq[i]!) ** 2;
    e += rows[i]! ** 2;
  }
  return e > 0 ? sse / e : 0;
}

interface Plan {
  /** Candidate index -> bits (absent: 4). */
  bits: Map<number, Bits>;
  /** MatMulNBits accuracy_level where `kernel` says nothing. */
  level: number;
  /** Candidate index -> 'unpack' or the MatMulNBits accuracy_level (format msft; absent: nbits at `level`). */
  kernel: Map<number, 'unpack' | number>;
}

/** Writes the quantized weights of `cands` into `model` (the prepared float model or a clone of it). */
function apply(model: Model, cands: readonly Candidate[], plan: Plan, format: Int4Format, embeddings: 'int4' | 'int8' | 'float'): void {
  const g = model.graph;
  const names = model.names;
  const shared = new UnpackConstants(g);
  const nodes = [...g.nodes];
  const weights = new Set<Value>();
  for (const c of cands) {
    const node = nodes[c.index]!;
    const bits = plan.bits.get(c.index) ?? 4;
    const q = bits === 8 ? c.q8! : c.q4!;
    const input = node.inputs[c.op === 'Gather' ? 1 : 0]!;
    weights.add(node.inputs[c.op === 'Gather' ? 0 : 1]!);
    const bias = c.op === 'Gemm' && node.inputs[2] ? node.inputs[2] : undefined;
    if (bias && !(format === 'msft' && plan.kernel.get(c.index) === 'unpack')) weights.add(bias);
    const stem = names.numbered('q');
    const kernel = plan.kernel.get(c.index) ?? plan.level;
    if (c.op === 'Gather') {
      const table = embeddings === 'int8' ? c.q8! : q;
      if (format === 'msft' && kernel === 'unpack') node.setInput(0, unpackedWeight(g, shared, table, stem, 'nk'));
      else if (format === 'msft') emitGatherBlockQuantized(g, names, node, input, table, stem);
      else int8Gather(model, names, node, c, stem);
    } else if (format === 'msft' && kernel === 'unpack') {
      node.setInput(1, unpackedWeight(g, shared, q, stem, 'kn'));
      if (c.op === 'Gemm') {
        node.setAttr(Attribute.int('transB', 0));
        node.setAttr(Attribute.float('alpha', 1));
      }
    } else if (format === 'msft') emitMatMulNBits(g, names, node, input, q, stem, kernel === 'unpack' ? plan.level : kernel, c.bias);
    else if (bits === 8) int8MatMul(model, names, node, input, c, stem);
    else emitQdqMatMul(g, names, node, input, q, stem, c.bias);
  }
  // the float weights nothing reads any more (and Transposes / Constants that produced them)
  dropUnread(model, [...weights]);
  if (format === 'msft') model.setOpset(MS_DOMAIN, model.opset(MS_DOMAIN) ?? 1);
  g.toposort();
}

/** Gather on an int8 per-row table behind DequantizeLinear (qdq format, or --embeddings int8). */
function int8Gather(model: Model, names: NameAuthority, node: Node, c: Candidate, stem: string): void {
  const w = quantizeInt8(Tensor.from(DataType.FLOAT, [c.N, c.K], c.rows), 0);
  const { out } = addWeightDq(model.graph, names, w, stem);
  node.setInput(0, out);
}

/** The qdq form of an 8-bit layer: int8 per-column DequantizeLinear into the MatMul (+ bias). */
function int8MatMul(model: Model, names: NameAuthority, node: Node, input: Value, c: Candidate, stem: string): void {
  const kn = new Float32Array(c.K * c.N);
  for (let n = 0; n < c.N; n++) for (let k = 0; k < c.K; k++) kn[k * c.N + n] = c.rows[n * c.K + k]!;
  const w = quantizeInt8(Tensor.from(DataType.FLOAT, [c.K, c.N], kn), 1);
  const g = model.graph;
  const { out } = addWeightDq(g, names, w, stem);
  const mm = new Node('MatMul', [input, out], []);
  if (c.bias) {
    const mid = new Value(names.fresh(`${stem}_mm`));
    mm.appendOutput(mid);
    mm.name = names.fresh(`${stem}_MatMul`);
    g.insertBefore(node, mm);
    const add = new Node('Add', [mid, g.addInitializer(Tensor.from(DataType.FLOAT, [c.N], c.bias), names.fresh(`${stem}_bias`))], []);
    replaceNode(g, node, add);
  } else replaceNode(g, node, mm);
}

/** GPTQ runs of int4 passes in this process (see {@link helperThreads}). */
let gptqPasses = 0;

/**
 * GPTQ work (multiply-adds, {@link gptqJobCost}) from which helper threads pay in a pass of their own:
 * starting one (a thread that loads its modules and onnxruntime and compiles GPTQ's code) cost a cold
 * CLI run on the trained LM (~2.4e8 of this work, ~60 ms warm) ~65 ms, and handing it jobs while it
 * was cold ~60 ms more, against ~30 ms saved per pass once warm.
 */
const OWN_THREADS_WORK = 2e9;

/**
 * The helper threads this pass uses: the context's, from the second GPTQ pass in a process on (a
 * process that quantizes once, like one CLI command on a small model, would spend more starting them
 * than they save; one that quantizes again, like `variants` or a server, has them up and warm by
 * then), or at once when the GPTQ work is large enough to pay for their start.
 */
function helperThreads(ctx: PassContext, layerInputs: ReadonlyMap<string, readonly Candidate[]>): Threads | undefined {
  gptqPasses += 1;
  if (!ctx.threads || ctx.threads.size === 0) return undefined;
  const work = [...layerInputs.values()].reduce((a, group) => a + gptqWork(group[0]!.K, group.map((c) => c.N)), 0);
  return gptqPasses > 1 || work >= OWN_THREADS_WORK ? ctx.threads : undefined;
}

/** The MatMul/Gemm candidates by the layer input they read (q, k and v share one): GPTQ's jobs. */
function byLayerInput(cands: readonly Candidate[]): Map<string, Candidate[]> {
  const groups = new Map<string, Candidate[]>();
  for (const c of cands) {
    if (c.op === 'Gather') continue;
    const group = groups.get(c.input.name);
    if (group) group.push(c);
    else groups.set(c.input.name, [c]);
  }
  return groups;
}

/** Weight-only int4 quantization of `model` in place; `feeds` are the calibration inputs (may be empty). */
export async function quantizeInt4(model: Model, data: Int4Data, options: QuantizeInt4Options = {}, ctx: PassContext): Promise<QuantizeInt4Report> {
  const t0 = performance.now();
  const o = withSchemaDefaults(pass.options, options) as Required<QuantizeInt4Options>;
  checkBlockSize(o.blockSize);
  const feeds = data.calibration;
  const method: Int4Method = o.method === 'auto' ? (feeds.length > 0 ? 'gptq' : 'rtn') : o.method;
  if (method === 'gptq' && feeds.length === 0) throw inputError('INT4_GPTQ_NEEDS_DATA', '--method gptq needs calibration data (--calibration SPEC)', { field: 'calibration' });
  for (const n of model.graph.allNodes()) {
    if (n.opType === 'MatMulNBits' || n.opType === 'DequantizeLinear' || n.opType === 'QuantizeLinear' || n.opType === 'DynamicQuantizeLinear') {
      throw inputError('INT4_ALREADY_QUANTIZED', `the model is already quantized (node ${n.label} is ${n.opType}); quantize the float model`, { node: labelOf(n) });
    }
  }
  const ms = { prepare: 0, moments: 0, quantize: 0, sensitivity: 0, accuracyLevel: 0, total: 0 };
  let prepare: PrepareReport | undefined;
  if (o.prepare) prepare = await prepareForQuantization(model, ctx, { presets: o.presets, minOpset: o.format === 'qdq' ? 21 : 13 });
  ms.prepare = performance.now() - t0;

  const skipped: Int4WeightReport[] = [];
  const cands = findCandidates(model, o, skipped);
  if (!cands.some((c) => c.op !== 'Gather')) {
    const why = skipped.filter((s) => s.op !== 'Gather').map((s) => `${s.tensor}: ${s.reason}`);
    throw inputError('INT4_NO_WEIGHTS', `no MatMul or Gemm with a constant 2-D float weight to quantize${why.length ? ` (${why.slice(0, 3).join('; ')})` : ''}`);
  }

  // helper threads (GPTQ, trials) where they pay: see helperThreads
  const layerInputs = byLayerInput(cands);
  const threads = method === 'gptq' ? helperThreads(ctx, layerInputs) : undefined;
  threads?.start();

  // second moments of the layer inputs (GPTQ's Hessians; also the per-layer output errors)
  let t = performance.now();
  let moments = new Map<string, InputMoments>();
  let energies = new Map<string, number>();
  const probeFeeds = evenlySpaced(data.probe ?? feeds, PROBE_SAMPLES);
  // the first/last-layer trials (below) need only the weights' values from GPTQ: their model is built
  // now, and a helper thread that is up opens its session of it while this thread runs the moments
  // (once this thread's moments session is open: two sessions opened at once took onnxruntime
  // several times as long each)
  const layers = cands.filter((c) => c.op !== 'Gather');
  const ends: Array<[Candidate, 'first' | 'last']> = o.keepInt8 === 'auto' && probeFeeds.length > 0 && layers.length >= 3 ? [[layers[0]!, 'first'], [layers[layers.length - 1]!, 'last']] : [];
  const slot = (c: Candidate): WeightSlot => ({ node: c.index, input: c.op === 'Gather' ? 0 : 1, dims: c.op === 'Gather' ? [c.N, c.K] : [c.K, c.N] });
  const fixedSlots = cands.filter((c) => !ends.some(([e]) => e === c));
  const trials = ends.length > 0 ? prepareEndTrials(model, fixedSlots.map(slot), slot(ends[0]![0]), slot(ends[1]![0]), ctx.runner) : undefined;
  const helperOpensTrials = trials && threads && (await threadsUp(threads)) ? () => {
    void threads.run(KEEP_MODEL, trials.helperModel).catch(() => undefined);
    trials.helperOpens = true;
  } : undefined;
  const momentFeeds = method === 'gptq' ? evenlySpaced(feeds, o.momentSamples) : [];
  let ref: Reference | undefined;
  if (momentFeeds.length > 0) {
    const wanted = new Map([...layerInputs].map(([name, group]) => [name, group[0]!.K]));
    // a plain MatMul's output is X W: its sum of squares is the layer's output energy tr(W H W^T)
    const energyTensors = cands.filter((c) => c.op === 'MatMul').map((c) => c.node.outputs[0]!.name);
    // on this thread, with onnxruntime's own threads; the Hessians shared when helpers take GPTQ jobs
    const run = await collectInputMoments(model, wanted, momentFeeds, ctx.runner, { ...(data.ranges ? { rangeTensors: data.ranges.tensors } : {}), energyTensors, sharedHessians: threads !== undefined, ...(helperOpensTrials ? { opened: helperOpensTrials } : {}) }).catch(async (e: unknown) => {
      if (trials) await disposeEndTrials(trials);
      throw e;
    });
    moments = run.moments;
    energies = run.energies ?? energies;
    if (data.ranges && run.ranges) data.ranges.onRanges(run.ranges, momentFeeds.length);
    // probe samples among the moments' samples (the default with calibration data): that run gave the float reference
    const at = new Map(momentFeeds.map((f, i) => [f, i]));
    if (probeFeeds.every((f) => at.has(f))) ref = referenceOf(probeFeeds, probeFeeds.map((f) => run.outputs[at.get(f)!]!));
  }
  ms.moments = performance.now() - t;

  const levelAuto = o.accuracyLevel === 'auto' || o.accuracyLevel === 'measure';
  const plan: Plan = { bits: new Map(), level: levelAuto ? 0 : Number(o.accuracyLevel), kernel: new Map() };
  const levelReport: QuantizeInt4Report['accuracyLevel'] = { chosen: plan.level, measured: [], reason: levelAuto ? '' : 'given (--accuracy-level)' };
  const keep: KeepDecision[] = [];
  // 8-bit weights (embeddings, kept first/last layers) as they are written: one scale per row unless
  // they run as MatMulNBits / GatherBlockQuantized (kernel nbits), which need blocks; the trials measure those values
  const rowScaled8 = !(o.format === 'msft' && o.kernel === 'nbits');
  const q8 = (c: Candidate): BlockQuantized => (c.q8 ??= quantizeRtn(c.rows, c.N, c.K, 8, rowScaled8 ? c.K : o.blockSize, o.symmetric));

  // one Cholesky factor per layer input (q, k and v read the same one), the GPTQ updates, the output
  // errors and the first/last-layer trials' products: onnxruntime's Gemms, in a few small sessions kept for later calls
  const linalg = sharedLinalg(ctx.runner);
  try {
    // GPTQ: one job per layer input (its factor, then every weight reading it), longest first, shared
    // with the helper threads when there are any (the same codes wherever a job runs); out of jobs,
    // this thread also runs the ones a helper still holds and keeps the first result (a helper in a
    // cold process, still compiling GPTQ's code, took several times as long as this thread); a helper
    // whose job this thread finished first stops at its next step: its copy had run on into the
    // trials, on the core they use (the trained LM's q4 cost 0.964x wall, 0.946x CPU paired over 40
    // rounds; waiting before the backup, half again as long as this thread's pace said the job takes,
    // gave that back: 1.005x)
    t = performance.now();
    const bar = ctx.progress?.('quantizing weights', cands.length);
    const jobs = [...layerInputs].filter(([name]) => moments.has(name)).map(([name, group]) => {
      const m = moments.get(name)!;
      const job: GptqJob = { K: m.K, hessian: m.hessian, damp: o.damp, weights: group.map((c) => ({ weight: c.kn ? { kn: c.kn } : { rows: c.rows }, N: c.N })), bits: 4, blockSize: o.blockSize, symmetric: o.symmetric, ...(threads ? { cancel: cancelFlag() } : {}) };
      return { group, job, cost: gptqJobCost(job) };
    });
    jobs.sort((a, b) => b.cost - a.cost);
    const helpers: WorkHelpers<GptqJob, GptqResult[]> | undefined = threads && { size: threads.size, ready: () => threads.ready(), run: (job) => threads.run(GPTQ_TASK, shareLarge(job)), cancel: (i) => raiseFlag(jobs[i]!.job.cancel!) };
    const done = await shareWork(jobs.map((j) => j.job), (job, _i, signal) => runGptqJob(job, linalg, signal), helpers, { onDone: (i) => bar?.tick(jobs[i]!.group.length), backup: true });
    const gptqOf = new Map<Candidate, GptqResult>();
    jobs.forEach((j, i) => j.group.forEach((c, k) => gptqOf.set(c, done[i]![k]!)));

    for (const c of cands) {
      const m = c.op === 'Gather' ? undefined : moments.get(c.input.name);
      // moments exist only for GPTQ (and never for a Gather): GPTQ's own output error comes from its run
      const gptq = gptqOf.get(c);
      const rtn = gptq && !o.compareRtn ? undefined : quantizeRtn(c.rows, c.N, c.K, 4, o.blockSize, o.symmetric);
      c.q4 = gptq ? gptq.q : rtn!;
      c.report.method = method;
      if (gptq) {
        c.dq4kn = gptq.dequantized;
        c.report.weightError = gptq.weightError;
        // the output energy from the moments run (a plain MatMul's output), else as a quadratic form; RTN's error beside GPTQ's when asked
        const measured = energies.get(c.node.outputs[0]!.name);
        const approximations = [...(measured === undefined ? (['zero'] as const) : []), ...(rtn ? [dequantizeRows(rtn)] : [])];
        const forms = approximations.length > 0 ? await outputErrors(linalg, c.rows, approximations, c.N, c.K, m!.hessian) : [];
        const energy = measured ?? forms.shift()!;
        c.report.outputError = gptq.outputError / (energy || 1);
        if (rtn) c.report.rtnOutputError = forms[0]! / (energy || 1);
      } else {
        c.dq4 = dequantizeRows(c.q4);
        c.report.weightError = relWeightError(c.rows, c.dq4);
      }
      if (c.op === 'Gather' && (o.format === 'qdq' || o.embeddings === 'int8')) {
        if (o.format === 'msft') q8(c);
        c.report.bits = 8;
        c.report.method = 'int8';
        c.report.reason = o.format === 'qdq' ? 'embedding as int8 per-row DequantizeLinear (no standard blocked Gather)' : 'embeddings at 8 bits (GatherBlockQuantized bits 8; the default: int4 tables cost the trained LM 5.5% bits per byte, 8 bits 0.8%)';
      }
      if (!gptq) bar?.tick();
    }
    bar?.done();
    ms.quantize = performance.now() - t;

    // first/last layers at 8 bits where that pays, measured on the model's outputs: one session, the two
    // end weights fed as inputs (all 4-bit, first at 8, last at 8), every other weight at its quantized value
    t = performance.now();
    if (trials) {
      ref ??= await reference(model, probeFeeds, ctx.runner);
      // the float32 weight onnxruntime computes with: table rows for a Gather, [K, N] for MatMul/Gemm
      const value = (c: Candidate, q: BlockQuantized): Float32Array => {
        if (q === c.q4 && c.dq4kn && c.op !== 'Gather') return c.dq4kn;
        const dq = q === c.q4 && c.dq4 ? c.dq4 : dequantizeRows(q);
        if (q === c.q4) c.dq4 = undefined; // read once here: not held beside the trial's copy
        return c.op === 'Gather' ? dq : rowsOfKN(dq, c.N, c.K);
      };
      const fixed = fixedSlots.map((c) => value(c, c.op === 'Gather' && (o.format === 'qdq' || o.embeddings === 'int8') ? q8(c) : c.q4!));
      const [first, last] = ends.map(([c]) => [value(c, c.q4!), value(c, q8(c))]) as [[Float32Array, Float32Array], [Float32Array, Float32Array]];
      const [errorAll4, ...with8] = await runEndTrials(trials, fixed, first, last, ref, linalg, threads);
      ends.forEach(([c, position], i) => {
        const errorWith8 = with8[i]!;
        const gain = errorAll4! > 0 ? (errorAll4! - errorWith8) / errorAll4! : 0;
        const kept = gain >= o.keepGain;
        keep.push({ tensor: c.tensor, position, errorAll4: errorAll4!, errorWith8, gain, kept });
        if (kept) plan.bits.set(c.index, 8);
      });
    }
    for (const c of layers) {
      if (plan.bits.get(c.index) === 8) {
        const d = keep.find((k) => k.tensor === c.tensor)!;
        c.report.bits = 8;
        c.report.method = 'int8';
        c.report.reason = `${d.position} layer: 8 bits cut the model's output error by ${(100 * d.gain).toFixed(0)}% (>= ${(100 * o.keepGain).toFixed(0)}%)`;
        c.report.weightError = relWeightError(c.rows, dequantizeRows(q8(c)));
      }
    }
    for (const c of cands) c.dq4 = c.dq4kn = undefined;
    ms.sensitivity = performance.now() - t;
  } finally {
    if (trials) await disposeEndTrials(trials);
  }

  // kernels and accuracy_level per weight shape class: the rule from the kernel table (int4/kernels.ts), or timed on this CPU (measure)
  t = performance.now();
  const kernels: KernelDecision[] = [];
  if (o.format === 'msft') {
    const levels = o.accuracyLevel === 'auto' || o.accuracyLevel === 'measure' ? [0, 1, 4] : [Number(o.accuracyLevel)];
    const unpackAll = o.kernel === 'unpack';
    for (const c of cands) {
      // embeddings and 8-bit layers: unpacked unless MatMulNBits/GatherBlockQuantized is asked for;
      // Attention's packed weight always (the operator takes a float weight: no MatMulNBits form)
      if (unpackAll || c.op === 'Attention' || ((o.kernel === 'auto' || o.kernel === 'measure') && (c.op === 'Gather' || plan.bits.get(c.index) === 8))) plan.kernel.set(c.index, 'unpack');
    }
    const classes = new Map<string, { cls: KernelClass; members: Candidate[] }>();
    for (const c of layers) {
      if (plan.kernel.get(c.index) === 'unpack') continue;
      const cls: KernelClass = { K: c.K, N: c.N, bits: plan.bits.get(c.index) ?? 4, blockSize: o.blockSize, symmetric: o.symmetric };
      const key = classKey(cls);
      if (!classes.has(key)) classes.set(key, { cls, members: [] });
      classes.get(key)!.members.push(c);
    }
    const timed = o.kernel === 'measure' || o.accuracyLevel === 'measure';
    if (classes.size > 0 && timed) {
      const measured = await measureKernels([...classes.values()].map((x) => x.cls), levels, KERNEL_SEQS, ctx.runner, o.latencyRuns);
      for (const [i, { cls, members }] of [...classes.values()].entries()) {
        const m = measured[i]!;
        // a level is allowed when its activation quantization adds at most levelToleranceDb to the error of the weights' own quantization
        const weightError = members.reduce((a, c) => a + c.report.weightError, 0) / members.length;
        const allowed = levels.filter((l) => 10 * Math.log10((weightError + (m.levelError[l] ?? 0)) / (weightError || 1e-12)) <= o.levelToleranceDb);
        const worst = (l: number) => Math.max(...m.timings.map((t) => t.levelMs[l]! / t.fp32Ms));
        const best = (allowed.length ? allowed : [levels[0]!]).reduce((a, b) => (worst(b) < worst(a) ? b : a));
        const ratios = m.timings.map((t) => `${(t.levelMs[best]! / t.fp32Ms).toFixed(2)}x at ${t.seq}`).join(', ');
        const nbits = o.kernel === 'nbits' || (o.kernel !== 'unpack' && worst(best) <= KERNEL_MARGIN);
        kernels.push({
          shape: classKey(cls),
          weights: members.length,
          timings: m.timings,
          levelError: m.levelError,
          chosen: nbits ? best : 'unpacked',
          reason: nbits
            ? `MatMulNBits accuracy_level ${best}: ${ratios} of the float32 MatMul${o.kernel === 'nbits' ? ' (--kernel nbits)' : ''}`
            : `unpacked to float32 at load: MatMulNBits (best: accuracy_level ${best}) ran ${ratios} of the float32 MatMul`,
        });
        for (const c of members) plan.kernel.set(c.index, nbits ? best : 'unpack');
      }
    } else if (classes.size > 0) {
      // the rule from the kernel table measured on this CPU (int4/kernels.ts): no timing at quantize time
      for (const { cls, members } of classes.values()) {
        const weightError = members.reduce((a, c) => a + c.report.weightError, 0) / members.length;
        const level4 = levels.includes(4) && 10 * Math.log10((weightError + RULE_LEVEL4_ERROR) / (weightError || 1e-12)) <= o.levelToleranceDb;
        const given = o.accuracyLevel === 'auto' ? undefined : Number(o.accuracyLevel);
        const rule = kernelByRule(cls, o.kernel === 'nbits', level4);
        const chosen = given !== undefined && rule.chosen !== 'unpacked' ? given : rule.chosen;
        kernels.push({ shape: classKey(cls), weights: members.length, timings: [], levelError: level4 ? { 4: RULE_LEVEL4_ERROR } : {}, chosen, reason: given !== undefined && rule.chosen !== 'unpacked' ? `MatMulNBits accuracy_level ${given} (--accuracy-level)` : rule.reason });
        for (const c of members) plan.kernel.set(c.index, chosen === 'unpacked' ? 'unpack' : chosen);
      }
    }
    const used = layers.map((c) => plan.kernel.get(c.index)).filter((k): k is number => typeof k === 'number');
    if (!levelAuto) {
      levelReport.reason = 'given (--accuracy-level)';
    } else if (used.length) {
      const counts = new Map<number, number>();
      for (const l of used) counts.set(l, (counts.get(l) ?? 0) + 1);
      plan.level = [...counts].reduce((a, b) => (b[1] > a[1] ? b : a))[0];
      levelReport.chosen = plan.level;
      levelReport.reason = `${o.kernel === 'measure' || o.accuracyLevel === 'measure' ? `fastest on this CPU per weight shape (timed: 1 thread, interleaved, sequence lengths ${KERNEL_SEQS.join(' and ')})` : 'fastest per weight shape in the kernel table measured on this CPU (int4/kernels.ts; --accuracy-level measure times it)'} among the levels whose activation quantization costs at most ${o.levelToleranceDb} dB; the level of most MatMulNBits layers`;
    } else {
      levelReport.reason = 'no layer runs as MatMulNBits (unpacked to float32 at load: see kernels)';
    }
    for (const l of [0, 1, 4]) {
      const per = kernels.filter((k) => k.timings.length > 0 && k.timings.every((t) => t.levelMs[l] !== undefined));
      if (!per.length) continue;
      const ms = per.reduce((a, k) => a + k.timings[k.timings.length - 1]!.levelMs[l]! * k.weights, 0);
      const err = Math.max(...per.map((k) => k.levelError[l] ?? 0));
      levelReport.measured.push({ level: l, ms, relativeError: err, sqnrDb: sqnrDb(err) });
    }
    for (const c of cands) c.report.kernel = c.op === 'Gather' ? (plan.kernel.get(c.index) === 'unpack' ? 'unpacked' : 'GatherBlockQuantized') : plan.kernel.get(c.index) === 'unpack' ? 'unpacked' : 'MatMulNBits';
    // 8-bit weights that are unpacked need no power-of-two blocks: one scale per row (output or table row)
    for (const c of cands) {
      if (plan.kernel.get(c.index) !== 'unpack' || !(c.report.bits === 8 || plan.bits.get(c.index) === 8)) continue;
      if (c.q8?.blockSize !== c.K) c.q8 = quantizeRtn(c.rows, c.N, c.K, 8, c.K, o.symmetric);
      c.report.blockSize = c.K;
      c.report.weightError = relWeightError(c.rows, dequantizeRows(c.q8));
    }
  } else for (const c of cands) c.report.kernel = 'DequantizeLinear';
  ms.accuracyLevel = performance.now() - t;

  apply(model, cands, plan, o.format, o.embeddings);
  const constants = o.compactConstants ? compactConstants(model, o.minElements) : [];
  const weights = [...cands.map((c) => c.report), ...skipped];
  for (const c of cands) {
    const q = c.report.bits === 8 ? c.q8! : c.q4!;
    if (c.report.bits === 8 && o.format === 'qdq') c.report.bytes = c.K * c.N + 4 * c.N;
    else if (c.report.kernel === 'unpacked') c.report.bytes = storedBytes(q) + (defaultZeroPoints(q) ? 0 : q.N * q.kBlocks - zeroPointBytes(q));
    else c.report.bytes = storedBytes(q);
  }
  ms.total = performance.now() - t0;
  const report: QuantizeInt4Report = {
    format: o.format,
    method,
    blockSize: o.blockSize,
    symmetric: o.symmetric,
    weights,
    floatBytes: weights.reduce((a, w) => a + w.floatBytes, 0) + constants.reduce((a, c) => a + c.floatBytes, 0),
    quantizedBytes: weights.reduce((a, w) => a + w.bytes, 0) + constants.reduce((a, c) => a + c.bytes, 0),
    accuracyLevel: levelReport,
    keepInt8: keep,
    kernels,
    constants,
    calibrationSamples: feeds.length,
    momentSamples: momentFeeds.length,
    probeSamples: probeFeeds.length,
    ms,
  };
  if (prepare) report.prepare = prepare;
  return report;
}

const pass = definePass<
  { blockSize: number; method: string; symmetric: boolean; format: string; kernel: string; accuracyLevel: string; embeddings: string; keepInt8: string; keepGain: number; minElements: number; compactConstants: boolean; compareRtn: boolean; calibrationSamples: number; momentSamples: number; damp: number; levelToleranceDb: number; latencyRuns: number; prepare: boolean; presets: string },
  QuantizeInt4Report
>({
  name: 'quantize-int4',
  description: 'Weight-only int4: MatMul/Gemm weights as com.microsoft MatMulNBits (or blocked int4 DequantizeLinear), embeddings as GatherBlockQuantized; RTN or GPTQ on ctx.data.calibration.',
  idempotent: false,
  options: {
    blockSize: { type: 'integer', default: DEFAULT_BLOCK_SIZE, description: 'Weights per block (one scale, and zero point, per block): a power of two from 16 to 256 dividing K. Default 64: on the trained LM it keeps the file under 0.18x of float32 at +0.11% bits per byte (32: 0.195x, +0.08%).' },
    method: { type: 'enum', values: ['auto', 'rtn', 'gptq'], default: 'auto', description: 'rtn: round each block to nearest; gptq: spread rounding errors using the calibration inputs of each layer (needs calibration data); auto: gptq with calibration data, rtn without.' },
    symmetric: { type: 'boolean', default: false, description: 'No zero points (blocks centred on 0); default: a 4-bit zero point per block.' },
    format: { type: 'enum', values: ['msft', 'qdq'], default: 'msft', description: 'msft: com.microsoft MatMulNBits/GatherBlockQuantized; qdq: ONNX opset 21 int4 DequantizeLinear with block_size feeding MatMul.' },
    kernel: { type: 'enum', values: ['auto', 'measure', 'nbits', 'unpack'], default: 'auto', description: 'format msft: nbits runs MatMul weights as MatMulNBits (embeddings as GatherBlockQuantized); unpack stores the codes as constants onnxruntime folds into float32 weights at load (small file, float32 speed); auto follows the kernel table measured on this CPU (int4/kernels.ts: MatMulNBits accuracy_level 4 where K >= 768, else unpacked; nothing timed, the same choice on every run); measure times both per weight shape on this CPU at sequence lengths 1 and 128 and uses MatMulNBits where it is at least 5% faster at both (8-bit layers and embeddings unpacked).' },
    accuracyLevel: { type: 'enum', values: ['auto', 'measure', '0', '1', '2', '3', '4'], default: 'auto', description: 'MatMulNBits accuracy_level; auto takes the fastest per weight shape in the kernel table measured on this CPU (4 from K >= 512, else 1) when its activation error is within levelToleranceDb; measure times 0, 1 and 4 on this CPU instead.' },
    embeddings: { type: 'enum', values: ['int4', 'int8', 'float'], default: 'int8', description: 'Embedding tables (Gather on a constant): GatherBlockQuantized at 4 or 8 bits (qdq format: int8 per row behind DequantizeLinear), or float. Default int8: measured on the trained LM, int4 tables cost 5.5% bits per byte, int8 0.8%.' },
    keepInt8: { type: 'enum', values: ['auto', 'none'], default: 'auto', description: 'auto: the first and last layers stay at 8 bits when that cuts the output error by keepGain (measured on calibration data).' },
    keepGain: { type: 'number', default: 0.2, min: 0, max: 1, description: 'Relative cut of the model output error that keeps a first/last layer at 8 bits.' },
    minElements: { type: 'integer', default: 1024, min: 1, description: 'Weights with fewer values stay float.' },
    compactConstants: { type: 'boolean', default: true, description: 'Other float constants of at least minElements values that hold few distinct values (attention masks) stored as uint8 codes rebuilt exactly at load.' },
    compareRtn: { type: 'boolean', default: false, description: "With GPTQ, also measure round-to-nearest's layer-output error on the calibration data beside GPTQ's (the report's RTN column): one more quadratic form per weight, about a tenth of the pass's time on the trained LM." },
    calibrationSamples: { type: 'integer', default: 32, min: 1, description: 'Calibration samples read.' },
    momentSamples: { type: 'integer', default: 8, min: 1, description: "GPTQ takes its layer-input second moments on at most this many of the calibration samples, evenly spaced over them (sample floor(i n / m) of n); the first/last-layer trials run on 4 of these. Default 8: on the trained LM (32 windows of 128 bytes) 8 gave held-out bits per byte +0.27% over fp32 against +0.43% with all 32 (RTN +0.68%), at a quarter of the moments' forward pass." },
    damp: { type: 'number', default: 0.01, min: 0, exclusiveMin: true, max: 1, description: 'GPTQ damping, a fraction of the mean Hessian diagonal.' },
    levelToleranceDb: { type: 'number', default: 0.5, min: 0, description: 'accuracy_level auto: levels whose output SQNR is within this many dB of the best compete on latency.' },
    latencyRuns: { type: 'integer', default: 20, min: 1, description: 'Timed rounds per accuracy_level candidate (kernel or accuracyLevel measure).' },
    prepare: { type: 'boolean', default: true, description: 'Run the default preset first (folds constant transposes of weights).' },
    presets: { type: 'string', default: 'default', description: 'Presets run first (comma-separated; missing ones are skipped).' },
  },
  async run(model, o, ctx) {
    const feeds = ctx.data.calibration === undefined ? [] : (await firstSamples(toSampleSource(ctx.data.calibration), o.calibrationSamples)).map((s) => s.feed);
    const r = await quantizeInt4(model, { calibration: feeds }, o as QuantizeInt4Options, ctx);
    const q = r.weights.filter((w) => w.bits > 0);
    return { report: r, changed: q.length > 0, stats: { weights: q.length, int8: q.filter((w) => w.bits === 8).length, float: r.weights.length - q.length, floatBytes: r.floatBytes, quantizedBytes: r.quantizedBytes, accuracyLevel: r.accuracyLevel.chosen } };
  },
});

export default pass;
