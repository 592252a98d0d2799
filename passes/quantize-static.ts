/**
 * Static INT8 quantization with a calibration set, in QDQ form for onnxruntime's CPU EP.
 *
 *   prepare (presets default + fuse, upgrade to opset 13)  ->  place Q/DQ (passes/quant/placement.ts)
 *   ->  collect ranges of the placed tensors on the calibration data (calibration/collect.ts)
 *   ->  uint8 asymmetric activations, int8 symmetric per-channel weights, int32 biases
 *       (passes/quant/scales.ts)  ->  emit (passes/quant/emit.ts)
 *
 * Activation x = s (q - zp), q in [0, 255]; weight w_c = s_c q, q in [-127, 127] (or [-64, 64] with
 * reduce-range); bias b_c = (s_x s_c) q, q int32. A tensor whose calibrated range is zero (constant
 * 0) cannot get a valid scale: the nodes around it stay float and the report says so.
 *
 * The algorithm is the plain function {@link quantizeStatic}; the pass reads the calibration data
 * from `ctx.data.calibration` (a function returning an async iterable of samples, or an iterable).
 */
import { inputError } from '../graph/errors.js';
import type { Model, Node, Value } from '../graph/ir.js';
import type { Sample } from '../calibration/data/index.js';
import type { Feed } from '../runtime/host-tensor.js';
import type { SessionOptions } from '../runtime/session.js';
import { collectStats } from '../calibration/collect.js';
import { CalibrationMethod, computeRange, RangeOptions, TensorRange, validateRangeOptions } from '../calibration/ranges.js';
import { definePass, PassContext } from './pass.js';
import { emitQdq, EmitStats } from './quant/emit.js';
import { Placement, placeQdq, PlacementOptions } from './quant/placement.js';
import { prepareForQuantization, PrepareReport } from './quant/prepare.js';
import { ActivationParams, activationParams } from './quant/scales.js';

export interface QuantizeStaticOptions {
  method?: CalibrationMethod;
  percentile?: number;
  movingAverage?: number;
  symmetricActivations?: boolean;
  perChannel?: boolean;
  reduceRange?: boolean;
  excludeNodes?: string[];
  excludeOps?: string[];
  onlyOps?: string[];
  /** Quantize MatMul of two activations (default false). */
  activationMatMul?: boolean;
  /** Node names whose weights are int8 but activations float (sensitive layers that must stay small). */
  weightOnlyNodes?: string[];
  /** How new values are named (see EmitOptions.names; default 'compact'). */
  names?: 'compact' | 'descriptive';
  /** Run the default/fuse presets and the opset upgrade first (default true). */
  prepare?: boolean;
  /** Presets run before quantizing (default 'default,fuse'). */
  presets?: string;
  tensorsPerRun?: number;
  memoryBudgetBytes?: number;
  /** onnxruntime options of the calibration sessions (default: optimization 'all', ORT's thread count). */
  sessionOptions?: SessionOptions;
  /** Called with the prepared float model just before Q/DQ placement (e.g. to keep a copy). */
  onPrepared?: (model: Model) => void;
}

export type SampleSource = () => AsyncIterable<Sample>;

export interface FloatNode {
  node: string;
  op: string;
  reason: string;
}

export interface QuantizeStaticReport {
  prepare?: PrepareReport;
  method: CalibrationMethod;
  samples: number;
  calibrationMs: number;
  calibratedTensors: number;
  calibrationGroups: number;
  int8Nodes: number;
  quantizedOps: Record<string, number>;
  /** Every op type still running in float, with counts (Q/DQ and Constant not counted). */
  floatOps: Record<string, number>;
  /** Quantizable nodes (Conv, MatMul, Gemm, ...) left in float, with the reason. */
  float: FloatNode[];
  emit: EmitStats;
  warnings: string[];
  /** Calibrated ranges by tensor name (in the prepared model). */
  ranges: Record<string, TensorRange>;
  /** Calibrated tensor name -> the DequantizeLinear output carrying it in the quantized model. */
  dequantized: Record<string, string>;
}

/** Quantizes `model` in place. */
export async function quantizeStatic(model: Model, source: SampleSource, options: QuantizeStaticOptions = {}, ctx?: PassContext): Promise<QuantizeStaticReport> {
  const method = options.method ?? 'minmax';
  const rangeOpts: RangeOptions = { method, symmetric: options.symmetricActivations ?? false };
  if (options.percentile !== undefined) rangeOpts.percentile = options.percentile;
  if (options.movingAverage !== undefined) rangeOpts.movingAverage = options.movingAverage;
  validateRangeOptions(rangeOpts);
  const warnings: string[] = [];
  let prepare: PrepareReport | undefined;
  if (options.prepare ?? true) {
    prepare = await prepareForQuantization(model, ctx ?? silentContext(), options.presets !== undefined ? { presets: options.presets } : {});
    if (prepare.skipped.length) warnings.push(`not available, skipped before quantizing: ${prepare.skipped.join(', ')}`);
  }
  if ((model.opset('') ?? 1) < 13) throw inputError('QUANT_OPSET_TOO_OLD', `QDQ quantization needs opset 13 or later; the model has opset ${model.opset('')}`);

  options.onPrepared?.(model);
  const names = new Set(options.weightOnlyNodes ?? []);
  const weightOnly = new Set<Node>([...model.graph.nodes].filter((n) => n.name !== undefined && names.has(n.name)));
  const placeOpts: PlacementOptions = {
    perChannel: options.perChannel ?? true,
    activationMatMul: options.activationMatMul ?? false,
    weightOnly,
  };
  if (options.excludeNodes) placeOpts.excludeNodes = options.excludeNodes;
  if (options.excludeOps) placeOpts.excludeOps = options.excludeOps;
  if (options.onlyOps) placeOpts.onlyOps = options.onlyOps;
  checkNodeNames(model, [...(options.excludeNodes ?? []), ...names]);

  let placement = placeQdq(model, placeOpts);
  const toCalibrate = calibratedTensors(placement);
  const progress = ctx?.progress?.('calibrating', 0);
  const collected = await collectStats(
    model,
    toCalibrate.map((v) => v.name),
    source,
    {
      method,
      ...(options.movingAverage !== undefined ? { movingAverage: options.movingAverage } : {}),
      ...(options.tensorsPerRun !== undefined ? { tensorsPerRun: options.tensorsPerRun } : {}),
      ...(options.memoryBudgetBytes !== undefined ? { memoryBudgetBytes: options.memoryBudgetBytes } : {}),
      ...(options.sessionOptions ? { sessionOptions: options.sessionOptions } : {}),
      onProgress: () => progress?.tick(),
    },
  );
  progress?.done();

  // ranges; zero-range tensors force their int8 neighbours to float, then placement is redone
  const ranges: Record<string, TensorRange> = {};
  const params = new Map<Value, ActivationParams>();
  const forced = new Map<Node, string>();
  for (const v of toCalibrate) {
    const r = computeRange(collected.stats.get(v.name)!, rangeOpts);
    ranges[v.name] = r;
    if (r.hi - r.lo > 0) {
      params.set(v, activationParams(r.lo, r.hi, v.name));
      continue;
    }
    const reason = `tensor '${v.name}' is constant 0 on every calibration sample (zero range), so it gets no valid scale`;
    warnings.push(`${reason}; the nodes around it stay float`);
    if (v.producer && placement.int8.has(v.producer)) forced.set(v.producer, reason);
    for (const c of v.consumers()) if (placement.int8.has(c)) forced.set(c, reason);
  }
  if (forced.size > 0) {
    // movement nodes inherit, so also force the nodes whose inherited root was dropped
    for (let round = 0; round < 4; round++) {
      placement = placeQdq(model, { ...placeOpts, forceFloat: forced });
      const missing = placement.tensors.filter((t) => !params.has(t.inheritFrom ?? t.value));
      if (missing.length === 0) break;
      for (const t of missing) {
        const reason = `tensor '${t.value.name}' has no calibrated range`;
        if (t.value.producer && placement.int8.has(t.value.producer)) forced.set(t.value.producer, reason);
        for (const c of t.value.consumers()) if (placement.int8.has(c)) forced.set(c, reason);
      }
    }
  }

  const emitted = emitQdq(model, placement, params, { reduceRange: options.reduceRange ?? false, names: options.names ?? 'compact' });
  const emit = emitted.stats;
  if (emit.clampedBias > 0) warnings.push(`${emit.clampedBias} bias values exceeded the int32 range at scale s_x * s_w and were clamped`);
  const quantizedOps: Record<string, number> = {};
  for (const n of placement.int8) quantizedOps[n.opType] = (quantizedOps[n.opType] ?? 0) + 1;
  const floatOps: Record<string, number> = {};
  for (const n of model.graph.nodes) {
    if (placement.int8.has(n) || n.opType === 'Constant' || n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear') continue;
    floatOps[n.opType] = (floatOps[n.opType] ?? 0) + 1;
  }
  const report: QuantizeStaticReport = {
    method,
    samples: collected.samples,
    calibrationMs: collected.ms,
    calibratedTensors: toCalibrate.length,
    calibrationGroups: collected.groups,
    int8Nodes: placement.int8.size,
    quantizedOps,
    floatOps,
    float: placement.float.map((f) => ({ node: f.node.name ?? f.node.label, op: f.node.opType, reason: f.reason })),
    emit,
    warnings,
    ranges,
    dequantized: Object.fromEntries(emitted.dequantized),
  };
  if (prepare) report.prepare = prepare;
  return report;
}

/** The tensors whose range must be measured: placed tensors that do not inherit, plus inherited roots. */
export function calibratedTensors(p: Placement): Value[] {
  const out: Value[] = [];
  const seen = new Set<Value>();
  for (const t of p.tensors) {
    const v = t.inheritFrom ?? t.value;
    if (!seen.has(v)) {
      seen.add(v);
      out.push(v);
    }
  }
  return out;
}

function checkNodeNames(model: Model, names: readonly string[]): void {
  if (names.length === 0) return;
  const known = new Set<string>();
  for (const n of model.graph.allNodes()) if (n.name) known.add(n.name);
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length) {
    throw inputError('QUANT_UNKNOWN_NODE', `no node named ${unknown.map((n) => `'${n}'`).join(', ')} in the model (after preparation; names are listed by 'onnxforge inspect')`, { node: unknown[0] });
  }
}

function silentContext(): PassContext {
  return {
    logger: { info() {}, warn() {}, debug() {} },
    explain() {},
    explaining: false,
    data: {},
    shared: new Map(),
  };
}

/** Normalizes what a pipeline passes as data into a re-openable source. */
export function toSampleSource(data: unknown): SampleSource {
  if (typeof data === 'function') return data as SampleSource;
  if (data && typeof (data as Iterable<unknown>)[Symbol.iterator] === 'function') {
    const items = [...(data as Iterable<Sample | Feed>)];
    return async function* () {
      let i = 0;
      for (const x of items) yield asSample(x, i++);
    };
  }
  if (data && typeof (data as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
    // a one-shot async iterable: read it once, then replay from memory
    let cache: Sample[] | undefined;
    return async function* () {
      if (!cache) {
        cache = [];
        let i = 0;
        for await (const x of data as AsyncIterable<Sample | Feed>) cache.push(asSample(x, i++));
      }
      yield* cache;
    };
  }
  throw inputError('QUANT_NO_CALIBRATION', 'quantize-static needs calibration data (ctx.data.calibration, or --calibration SPEC on the command line)');
}

function asSample(x: Sample | Feed, i: number): Sample {
  const s = x as Sample;
  if (typeof s.id === 'string' && s.feed && typeof s.feed === 'object') return s;
  return { id: `sample#${i}`, feed: x as Feed };
}

const pass = definePass<{
  method: string;
  percentile: number;
  perChannel: boolean;
  reduceRange: boolean;
  symmetricActivations: boolean;
  excludeNodes: string[];
  excludeOps: string[];
  onlyOps: string[];
  activationMatMul: boolean;
  prepare: boolean;
}>({
  name: 'quantize-static',
  description: 'Static INT8 quantization (QDQ, uint8 activations, int8 per-channel weights, int32 biases) calibrated on ctx.data.calibration.',
  idempotent: false,
  options: {
    method: { type: 'enum', values: ['minmax', 'percentile', 'entropy'], default: 'minmax', description: 'How activation ranges are estimated.' },
    percentile: { type: 'number', default: 99.999, min: 50, max: 100, exclusiveMin: true, description: 'Percentile kept by the percentile method.' },
    perChannel: { type: 'boolean', default: true, description: 'One weight scale per output channel.' },
    reduceRange: { type: 'boolean', default: false, description: 'Weights in [-64, 64] (avoids AVX2 int16 saturation).' },
    symmetricActivations: { type: 'boolean', default: false, description: 'Symmetric activation ranges (zero point 128).' },
    excludeNodes: { type: 'string[]', default: [], description: 'Node names left in float.' },
    excludeOps: { type: 'string[]', default: [], description: 'Op types left in float.' },
    onlyOps: { type: 'string[]', default: [], description: 'When not empty, only these op types run in int8.' },
    activationMatMul: { type: 'boolean', default: false, description: 'Also quantize MatMul of two activations.' },
    prepare: { type: 'boolean', default: true, description: 'Run the default and fuse presets and upgrade to opset 13 first.' },
  },
  async run(model, o, ctx) {
    const source = toSampleSource(ctx.data.calibration);
    const opts: QuantizeStaticOptions = {
      method: o.method as CalibrationMethod,
      percentile: o.percentile,
      perChannel: o.perChannel,
      reduceRange: o.reduceRange,
      symmetricActivations: o.symmetricActivations,
      excludeNodes: o.excludeNodes,
      excludeOps: o.excludeOps,
      activationMatMul: o.activationMatMul,
      prepare: o.prepare,
    };
    if (o.onlyOps.length) opts.onlyOps = o.onlyOps;
    const r = await quantizeStatic(model, source, opts, ctx);
    ctx.shared.set('quantize-static', r);
    for (const w of r.warnings) ctx.logger.warn(w);
    return {
      changed: r.int8Nodes > 0 || r.emit.weights > 0,
      stats: { int8Nodes: r.int8Nodes, qdqPairs: r.emit.qdqPairs, weights: r.emit.weights, biases: r.emit.biases, floatNodes: r.float.length, samples: r.samples },
    };
  },
});

export default pass;
