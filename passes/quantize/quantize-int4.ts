/**
 * quantize-int4: weight-only block quantization for transformers. Every MatMul whose B is a constant
 * [K, N] float matrix, and every Gemm with a constant B (transA 0; alpha folded into the weight, a
 * constant [N] C times beta as the bias), becomes com.microsoft MatMulNBits: B in blocks of
 * `blockSize` inputs, 4 bits per weight with one float scale (and, unless `symmetric`, one 4-bit
 * zero point) per block, Y = A x dequant(B) (+ bias). Embedding tables (Gather on axis 0 of a
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
 * - `accuracyLevel auto`: MatMulNBits accuracy_level 0 (float), 1 (fp32) and 4 (int8 activations)
 *   are timed interleaved on this CPU and the fastest is taken among those whose output SQNR is
 *   within `levelToleranceDb` (0.5 dB) of the best; the figures are reported.
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
import { constantOf, Model, Node, Value } from '../../ir/ir.js';
import { cloneModel } from '../../onnx/index.js';
import { definePass, PassContext, withSchemaDefaults } from '../pass.js';
import { bareContext } from '../bare-context.js';
import { prepareForQuantization, PrepareReport } from './prepare.js';
import { firstSamples } from './budget.js';
import { toSampleSource } from './quantize-static.js';
import { addWeightDq, FreshNames, quantizeInt8 } from './weights-int8.js';
import type { NameAuthority } from '../../ir/names.js';
import { collectInputMoments, InputMoments } from './int4/activations.js';
import { Bits, BlockQuantized, dequantizeRows, quantizeRtn, rowsOfKN, storedBytes } from './int4/blocks.js';
import { emitGatherBlockQuantized, emitMatMulNBits, emitQdqMatMul, MS_DOMAIN, replaceNode } from './int4/emit.js';
import { outputError, quantizeGptq } from './int4/gptq.js';
import { measureCandidates, reference, Reference, relativeError, sqnrDb } from './int4/probe.js';

export type Int4Method = 'rtn' | 'gptq';

/** Data the pass reads: calibration feeds (GPTQ), and feeds for its measurements (default: the same). */
export interface Int4Data {
  calibration: readonly Feed[];
  /** Inputs for the sensitivity and accuracy_level measurements (random inputs when no calibration is given). */
  probe?: readonly Feed[];
}
export type Int4Format = 'msft' | 'qdq';

export interface QuantizeInt4Options {
  blockSize?: number;
  /** 'auto': gptq when calibration data is given, rtn otherwise. */
  method?: Int4Method | 'auto';
  symmetric?: boolean;
  format?: Int4Format;
  /** 'auto' (measured) or a MatMulNBits accuracy_level. */
  accuracyLevel?: 'auto' | '0' | '1' | '2' | '3' | '4';
  /** Embedding tables: block-quantized like the weights ('int4'), int8 per row, or left float. */
  embeddings?: 'int4' | 'int8' | 'float';
  /** 'auto': first/last layers measured and kept at 8 bits where that pays; 'none': all 4 bits. */
  keepInt8?: 'auto' | 'none';
  /** Relative cut of the model's output error that keeps a first/last layer at 8 bits. */
  keepGain?: number;
  /** Weights with fewer values stay float. */
  minElements?: number;
  /** Calibration samples read (GPTQ moments, sensitivity, accuracy level). */
  calibrationSamples?: number;
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
  op: 'MatMul' | 'Gemm' | 'Gather';
  K: number;
  N: number;
  /** 4 or 8 bits, or 0 when left float. */
  bits: number;
  method: Int4Method | 'int8' | 'float';
  blockSize: number;
  /** Why the weight is not at 4 bits (8-bit layers, float weights). */
  reason?: string;
  /** Relative squared weight error ||W - Wq||^2 / ||W||^2. */
  weightError: number;
  /** Relative squared layer-output error on the calibration inputs (GPTQ's objective), when measured. */
  outputError?: number;
  /** The same for RTN (beside GPTQ, to show the gain). */
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
  calibrationSamples: number;
  /** Milliseconds per phase. */
  ms: { prepare: number; moments: number; quantize: number; sensitivity: number; accuracyLevel: number; total: number };
}

interface Candidate {
  index: number;
  node: Node;
  op: 'MatMul' | 'Gemm' | 'Gather';
  weight: Value;
  tensor: string;
  /** The activation (A of MatMul/Gemm, ids of Gather). */
  input: Value;
  rows: Float32Array;
  K: number;
  N: number;
  bias?: Float32Array;
  q4?: BlockQuantized;
  q8?: BlockQuantized;
  report: Int4WeightReport;
}

const BLOCK_MIN = 16;
const BLOCK_MAX = 256;

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
    if (node.opDomain !== '') return;
    const op = node.opType;
    if (op !== 'MatMul' && op !== 'Gemm' && op !== 'Gather') return;
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
    const input = node.inputs[op === 'Gather' ? 1 : 0]!;
    if (t.dims.length !== 2) return skip(node, op as Candidate['op'], weight.name, t, `weight has rank ${t.dims.length} (2-D only)`);
    if (t.size < o.minElements) return skip(node, op as Candidate['op'], weight.name, t, `fewer than ${o.minElements} values`);
    const w = t.toFloat32();
    let rows: Float32Array;
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
    } else if (op === 'MatMul') {
      [K, N] = t.dims as [number, number];
      rows = rowsOfKN(w, K, N);
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
    const cand: Candidate = {
      index,
      node,
      op: op as Candidate['op'],
      weight,
      tensor: weight.name,
      input,
      rows,
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

function relWeightError(rows: Float32Array, q: BlockQuantized): number {
  const dq = dequantizeRows(q);
  let sse = 0;
  let e = 0;
  for (let i = 0; i < rows.length; i++) {
    sse += (rows[i]! - dq[i]!) ** 2;
    e += rows[i]! ** 2;
  }
  return e > 0 ? sse / e : 0;
}

/** Layer output energy tr(W H W^T) for relative output errors. */
function outputEnergy(rows: Float32Array, N: number, K: number, h: Float64Array): number {
  return outputError(rows, new Float32Array(rows.length), N, K, h);
}

interface Plan {
  /** Candidate index -> bits (absent: 4). */
  bits: Map<number, Bits>;
  level: number;
}

/** Writes the quantized weights of `cands` into `model` (the prepared float model or a clone of it). */
function apply(model: Model, cands: readonly Candidate[], plan: Plan, format: Int4Format, embeddings: 'int4' | 'int8' | 'float'): void {
  const g = model.graph;
  const names = model.names;
  const nodes = [...g.nodes];
  const weights = new Set<Value>();
  for (const c of cands) {
    const node = nodes[c.index]!;
    const bits = plan.bits.get(c.index) ?? 4;
    const q = bits === 8 ? c.q8! : c.q4!;
    const input = node.inputs[c.op === 'Gather' ? 1 : 0]!;
    weights.add(node.inputs[c.op === 'Gather' ? 0 : 1]!);
    const bias = c.op === 'Gemm' && node.inputs[2] ? node.inputs[2] : undefined;
    if (bias) weights.add(bias);
    const stem = names.numbered('q');
    if (c.op === 'Gather') {
      if (format === 'msft') emitGatherBlockQuantized(g, names, node, input, embeddings === 'int8' ? c.q8! : q, stem);
      else int8Gather(model, names, node, c, stem);
    } else if (format === 'msft') emitMatMulNBits(g, names, node, input, q, stem, plan.level, c.bias);
    else if (bits === 8) int8MatMul(model, names, node, input, c, stem);
    else emitQdqMatMul(g, names, node, input, q, stem, c.bias);
  }
  // the float weights nothing reads any more (and Transposes / Constants that produced them)
  const pending = [...weights];
  while (pending.length) {
    const v = pending.pop()!;
    if (v.uses.length > 0 || v.isGraphOutput || g.inputs.includes(v)) continue;
    if (v.producer) {
      const p = v.producer;
      if (p.outputs.some((x) => x.uses.length > 0 || x.isGraphOutput)) continue;
      const ins = p.inputs.filter((x): x is Value => x !== null);
      g.removeNode(p);
      pending.push(...ins);
    } else if (g.initializers.get(v.name) === v) g.removeInitializer(v);
  }
  if (format === 'msft') model.setOpset(MS_DOMAIN, model.opset(MS_DOMAIN) ?? 1);
  g.toposort();
}

/** Gather on an int8 per-row table behind DequantizeLinear (qdq format, or --embeddings int8). */
function int8Gather(model: Model, names: NameAuthority, node: Node, c: Candidate, stem: string): void {
  const w = quantizeInt8(Tensor.from(DataType.FLOAT, [c.N, c.K], c.rows), 0);
  const { out } = addWeightDq(model.graph, new FreshNames(model.graph), w, stem);
  node.setInput(0, out);
}

/** The qdq form of an 8-bit layer: int8 per-column DequantizeLinear into the MatMul (+ bias). */
function int8MatMul(model: Model, names: NameAuthority, node: Node, input: Value, c: Candidate, stem: string): void {
  const kn = new Float32Array(c.K * c.N);
  for (let n = 0; n < c.N; n++) for (let k = 0; k < c.K; k++) kn[k * c.N + n] = c.rows[n * c.K + k]!;
  const w = quantizeInt8(Tensor.from(DataType.FLOAT, [c.K, c.N], kn), 1);
  const g = model.graph;
  const { out } = addWeightDq(g, new FreshNames(g), w, stem);
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

/** Weight-only int4 quantization of `model` in place; `feeds` are the calibration inputs (may be empty). */
export async function quantizeInt4(model: Model, data: Int4Data, options: QuantizeInt4Options = {}, ctx: PassContext = bareContext()): Promise<QuantizeInt4Report> {
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

  // second moments of the layer inputs (GPTQ's Hessians; also the per-layer output errors)
  let t = performance.now();
  let moments = new Map<string, InputMoments>();
  if (method === 'gptq') {
    const wanted = new Map<string, number>();
    for (const c of cands) if (c.op !== 'Gather') wanted.set(c.input.name, c.K);
    moments = await collectInputMoments(model, wanted, feeds, ctx.runner);
  }
  ms.moments = performance.now() - t;

  t = performance.now();
  const bar = ctx.progress?.('quantizing weights', cands.length);
  for (const c of cands) {
    const m = c.op === 'Gather' ? undefined : moments.get(c.input.name);
    const rtn = quantizeRtn(c.rows, c.N, c.K, 4, o.blockSize, o.symmetric);
    c.q4 = method === 'gptq' && m ? quantizeGptq(c.rows, c.N, c.K, m.hessian, 4, o.blockSize, o.symmetric, o.damp) : rtn;
    c.report.method = method;
    c.report.weightError = relWeightError(c.rows, c.q4);
    if (m) {
      const energy = outputEnergy(c.rows, c.N, c.K, m.hessian) || 1;
      c.report.outputError = outputError(c.rows, dequantizeRows(c.q4), c.N, c.K, m.hessian) / energy;
      c.report.rtnOutputError = outputError(c.rows, dequantizeRows(rtn), c.N, c.K, m.hessian) / energy;
    }
    if (c.op === 'Gather' && (o.format === 'qdq' || o.embeddings === 'int8')) {
      if (o.format === 'msft') c.q8 = quantizeRtn(c.rows, c.N, c.K, 8, o.blockSize, o.symmetric);
      c.report.bits = 8;
      c.report.method = 'int8';
      c.report.reason = o.format === 'qdq' ? 'embedding as int8 per-row DequantizeLinear (no standard blocked Gather)' : 'embeddings at 8 bits (GatherBlockQuantized bits 8; the default: int4 tables cost the trained LM 5.5% bits per byte, 8 bits 0.8%)';
    }
    bar?.tick();
  }
  bar?.done();
  ms.quantize = performance.now() - t;

  const plan: Plan = { bits: new Map(), level: o.accuracyLevel === 'auto' ? 0 : Number(o.accuracyLevel) };
  const levelReport: QuantizeInt4Report['accuracyLevel'] = { chosen: plan.level, measured: [], reason: o.accuracyLevel === 'auto' ? '' : 'given (--accuracy-level)' };
  const keep: KeepDecision[] = [];
  let ref: Reference | undefined;
  const probeFeeds = (data.probe ?? feeds).slice(0, 8);
  const q8 = (c: Candidate): BlockQuantized => (c.q8 ??= quantizeRtn(c.rows, c.N, c.K, 8, o.blockSize, o.symmetric));
  const variant = (p: Plan): Model => {
    const m = cloneModel(model);
    apply(m, cands, p, o.format, o.embeddings);
    return m;
  };

  // first/last layers at 8 bits where that pays, measured on the model's outputs
  t = performance.now();
  const layers = cands.filter((c) => c.op !== 'Gather');
  if (o.keepInt8 === 'auto' && probeFeeds.length > 0 && layers.length >= 3) {
    ref = await reference(model, probeFeeds, ctx.runner);
    const ends: Array<[Candidate, 'first' | 'last']> = [[layers[0]!, 'first'], [layers[layers.length - 1]!, 'last']];
    for (const [c] of ends) q8(c);
    const errorAll4 = await relativeError(variant(plan), ref, ctx.runner);
    for (const [c, position] of ends) {
      const errorWith8 = await relativeError(variant({ ...plan, bits: new Map([[c.index, 8]]) }), ref, ctx.runner);
      const gain = errorAll4 > 0 ? (errorAll4 - errorWith8) / errorAll4 : 0;
      const kept = gain >= o.keepGain;
      keep.push({ tensor: c.tensor, position, errorAll4, errorWith8, gain, kept });
      if (kept) plan.bits.set(c.index, 8);
    }
  }
  for (const c of layers) {
    if (plan.bits.get(c.index) === 8) {
      const d = keep.find((k) => k.tensor === c.tensor)!;
      c.report.bits = 8;
      c.report.method = 'int8';
      c.report.reason = `${d.position} layer: 8 bits cut the model's output error by ${(100 * d.gain).toFixed(0)}% (>= ${(100 * o.keepGain).toFixed(0)}%)`;
      c.report.weightError = relWeightError(c.rows, q8(c));
    }
  }
  ms.sensitivity = performance.now() - t;

  // accuracy_level, timed on this CPU
  t = performance.now();
  if (o.format === 'msft' && o.accuracyLevel === 'auto') {
    if (probeFeeds.length === 0) {
      levelReport.reason = 'no calibration data to measure on: accuracy_level 0 (float)';
    } else {
      ref ??= await reference(model, probeFeeds, ctx.runner);
      const levels = [0, 1, 4];
      const measured = await measureCandidates(levels.map((level) => variant({ ...plan, level })), ref, ctx.runner, o.latencyRuns);
      levelReport.measured = measured.map((m, i) => ({ level: levels[i]!, ms: m.ms, relativeError: m.error, sqnrDb: sqnrDb(m.error) }));
      const best = Math.min(...measured.map((m) => m.error));
      const ok = levelReport.measured.filter((m) => m.sqnrDb >= sqnrDb(best) - o.levelToleranceDb);
      const pick = ok.reduce((a, b) => (b.ms < a.ms ? b : a));
      plan.level = pick.level;
      levelReport.chosen = pick.level;
      levelReport.reason = `fastest on this CPU (${pick.ms.toFixed(3)} ms, 1 thread, interleaved) among the levels whose output SQNR is within ${o.levelToleranceDb} dB of the best`;
    }
  }
  ms.accuracyLevel = performance.now() - t;

  apply(model, cands, plan, o.format, o.embeddings);
  const weights = [...cands.map((c) => c.report), ...skipped];
  for (const c of cands) c.report.bytes = c.report.bits === 8 && (o.format === 'qdq') ? c.K * c.N + 4 * c.N : storedBytes(c.report.bits === 8 ? c.q8! : c.q4!);
  ms.total = performance.now() - t0;
  const report: QuantizeInt4Report = {
    format: o.format,
    method,
    blockSize: o.blockSize,
    symmetric: o.symmetric,
    weights,
    floatBytes: weights.reduce((a, w) => a + w.floatBytes, 0),
    quantizedBytes: weights.reduce((a, w) => a + w.bytes, 0),
    accuracyLevel: levelReport,
    keepInt8: keep,
    calibrationSamples: feeds.length,
    ms,
  };
  if (prepare) report.prepare = prepare;
  return report;
}

const pass = definePass<
  { blockSize: number; method: string; symmetric: boolean; format: string; accuracyLevel: string; embeddings: string; keepInt8: string; keepGain: number; minElements: number; calibrationSamples: number; damp: number; levelToleranceDb: number; latencyRuns: number; prepare: boolean; presets: string },
  QuantizeInt4Report
>({
  name: 'quantize-int4',
  description: 'Weight-only int4: MatMul/Gemm weights as com.microsoft MatMulNBits (or blocked int4 DequantizeLinear), embeddings as GatherBlockQuantized; RTN or GPTQ on ctx.data.calibration.',
  idempotent: false,
  options: {
    blockSize: { type: 'integer', default: 32, description: 'Weights per block (one scale, and zero point, per block): a power of two from 16 to 256 dividing K.' },
    method: { type: 'enum', values: ['auto', 'rtn', 'gptq'], default: 'auto', description: 'rtn: round each block to nearest; gptq: spread rounding errors using the calibration inputs of each layer (needs calibration data); auto: gptq with calibration data, rtn without.' },
    symmetric: { type: 'boolean', default: false, description: 'No zero points (blocks centred on 0); default: a 4-bit zero point per block.' },
    format: { type: 'enum', values: ['msft', 'qdq'], default: 'msft', description: 'msft: com.microsoft MatMulNBits/GatherBlockQuantized; qdq: ONNX opset 21 int4 DequantizeLinear with block_size feeding MatMul.' },
    accuracyLevel: { type: 'enum', values: ['auto', '0', '1', '2', '3', '4'], default: 'auto', description: 'MatMulNBits accuracy_level; auto times 0, 1 and 4 on this CPU and keeps the fastest whose output SQNR is within levelToleranceDb of the best.' },
    embeddings: { type: 'enum', values: ['int4', 'int8', 'float'], default: 'int8', description: 'Embedding tables (Gather on a constant): GatherBlockQuantized at 4 or 8 bits (qdq format: int8 per row behind DequantizeLinear), or float. Default int8: measured on the trained LM, int4 tables cost 5.5% bits per byte, int8 0.8%.' },
    keepInt8: { type: 'enum', values: ['auto', 'none'], default: 'auto', description: 'auto: the first and last layers stay at 8 bits when that cuts the output error by keepGain (measured on calibration data).' },
    keepGain: { type: 'number', default: 0.2, min: 0, max: 1, description: 'Relative cut of the model output error that keeps a first/last layer at 8 bits.' },
    minElements: { type: 'integer', default: 1024, min: 1, description: 'Weights with fewer values stay float.' },
    calibrationSamples: { type: 'integer', default: 32, min: 1, description: 'Calibration samples read.' },
    damp: { type: 'number', default: 0.01, min: 0, exclusiveMin: true, max: 1, description: 'GPTQ damping, a fraction of the mean Hessian diagonal.' },
    levelToleranceDb: { type: 'number', default: 0.5, min: 0, description: 'accuracy_level auto: levels whose output SQNR is within this many dB of the best compete on latency.' },
    latencyRuns: { type: 'integer', default: 20, min: 1, description: 'Timed rounds per accuracy_level candidate.' },
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
