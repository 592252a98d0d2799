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
 * The default recipe needs nothing but the calibration data (no labels), and every choice in it is
 * measured on the model's own outputs against the float model on the first calibration samples:
 * 1. ranges (method 'auto'): per tensor, the range method with the least quantization error on its
 *    calibration values, clipped values weighted by a clip weight; the weight is chosen per model
 *    among a few (passes/quant/auto-range.ts);
 * 2. bias correction: each layer's bias absorbs the mean output shift of its rounded weights (always
 *    for layers left with float activations; for int8 layers when the outputs improve);
 * 3. fidelity budget: int8 layers that alone cost the outputs the most SQNR return to float (int8
 *    weights kept) until every output is within `fidelity` dB, layer by layer in the report
 *    (passes/quant/budget.ts).
 * `method` forces a range method; `fidelity: 0` and `biasCorrection: false` turn steps off; a
 * labelled accuracy budget (`accuracy`) replaces the fidelity budget.
 *
 * The algorithm is the plain function {@link quantizeStatic}; the pass reads the calibration data
 * from `ctx.data.calibration` (a function returning an async iterable of samples, or an iterable).
 */
import { inputError } from '../../core/errors.js';
import { writeFileAtomic } from '../../core/files.js';
import { constantOf, Model, Node, Value } from '../../ir/ir.js';
import { cloneModel } from '../../onnx/index.js';
import { nodeRunner, type OpProfileRow, type Runner, type SessionOptions } from '../../runtime/runner.js';
import { toSampleSource } from './sample-source.js';
import { AccuracyBudgetOptions, AccuracyReport, accuracySearch, Build, Builder, FIDELITY_SAMPLES, FidelityOptions, FidelityReport, fidelitySearch, firstSamples, OutputScorer, outputScorer, SampleSource, SCORER_BYTES } from './budget.js';
import { AUTO_CLIP_WEIGHTS, chooseRecipe, Recipe, RecipeReport } from './auto-range.js';
import { attributeProfiles, UnitTiming } from './search.js';
import { checkDecisions, decideLayer, floorOf, formatDecisions, parseDecisions, DECISION_DEFAULTS, DecisionsDocument, DECISIONS_METADATA_KEY, DECISIONS_SCHEMA, decisionsMetadata, LayerDecision, layerListHash, readDecisions } from './decisions.js';
import { contentionProbe, relativeSpread, type Contention } from '../../runtime/timer.js';
import type { Sample } from '../../data/index.js';
import type { Feed } from '../../core/host-tensor.js';
import { collectStats } from '../../calibration/collect.js';
import { CalibrationMethod, computeRange, RangeOptions, TensorRange, TensorStats, validateRangeOptions } from '../../calibration/ranges.js';
import { definePass, OptionsSchema, PassContext } from '../pass.js';
import { EmitResult, emitQdq, EmitStats, InputMeans } from './emit.js';
import { COMPUTE_OPS, Placement, placeQdq, PlacementOptions } from './placement.js';
import { prepareForQuantization, PrepareReport } from './prepare.js';
import { ActivationParams, activationParams } from './scales.js';

export type { AccuracyBudgetOptions, AccuracyReport, FidelityOptions, FidelityReport, RecipeReport, SampleSource };
export { toSampleSource };

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
  /**
   * 'on': profile the float and int8 models in onnxruntime and return compute layers that are slower
   * in int8 to float (see passes/quant/search.ts). Default 'off' here (deterministic); the CLI defaults to 'on'.
   */
  latencyAware?: 'on' | 'off';
  /** Layers the latency search returns to float keep float weights ('speed', default) or int8 weights behind a DequantizeLinear ('size'). */
  prefer?: 'speed' | 'size';
  /**
   * Profiling of the latency-aware choice: `trials` int8/float profile pairs per round (default 12),
   * each of `runs` passes over `feeds` calibration samples; a layer goes to float only when its paired
   * int8/float ratio exceeds 1 + max(`margin`, its noise) (default margin 0.3) and the slowdown is
   * worth it per run: at least `minUs` (default 5 µs) and `minShare` of the float model's time per run
   * (default 0.001); a round in which some clearly slower layer's slowdown sits near that floor takes
   * `extraTrials` more pairs (default 24) before deciding; see passes/quantize/decisions.ts.
   */
  latency?: {
    feeds?: number;
    runs?: number;
    rounds?: number;
    trials?: number;
    margin?: number;
    minUs?: number;
    minShare?: number;
    extraTrials?: number;
    nearWorth?: number;
    profiler?: Profiler;
    /** Called after each round with every live layer's per-trial float and int8 times (µs), for analysis. */
    onTrials?: (round: number, trials: Map<string, { floatUs: number[]; int8Us: number[] }>) => void;
  };
  /**
   * Replay recorded latency-aware decisions instead of profiling: a decisions file path or a parsed
   * document (schema onnxforge.quantize-decisions/1). With `updateDecisions`, measure instead; the
   * caller writes the new document (`report.latency.document`) to the file after the model.
   */
  decisions?: string | DecisionsDocument;
  /** Measure the latency-aware decisions even though `decisions` names a file (to rewrite it). */
  updateDecisions?: boolean;
  /** Accuracy budget: the most sensitive layers return to float (int8 weights kept) until the drop holds. */
  accuracy?: AccuracyBudgetOptions;
  /**
   * Label-free fidelity budget: the layers that cost the most output SQNR vs float on the calibration
   * samples return to float (int8 weights kept) until every output's SQNR is at least `minSqnrDb`;
   * only layers worth `minGainDb` alone are candidates. Default: the schema's `fidelity` and
   * `fidelityMinGain`; a number sets the bar, 0 or 'off' turns it off. Not applied when an accuracy
   * budget is given (that one decides).
   */
  fidelity?: number | 'off' | Partial<FidelityOptions>;
  /** Least gain (dB) of a fidelity candidate (default: the schema's `fidelityMinGain`). */
  fidelityMinGain?: number;
  /**
   * Correct each layer's bias for the mean output shift its rounded weights cause, from the channel
   * means of its input on the calibration data (default: the schema's; needs a histogram method).
   */
  biasCorrection?: boolean;
}

/** Profiles a model on feeds (`runs` passes over them): one row per onnxruntime kernel. */
export type Profiler = (model: Model, feeds: Feed[], runs: number) => Promise<OpProfileRow[]>;

export interface LatencyReport {
  /** measured: profiled on this machine now; replayed: read from a decisions file (no profiling). */
  source: 'measured' | 'replayed';
  /** The decisions file replayed (or to be rewritten), when one was given. */
  file?: string;
  rounds: number;
  /** int8/float profile pairs per round. */
  trials: number;
  /** Rounds that took `extraTrials` more pairs because a clearly slower layer sat near the worth floor. */
  extendedRounds?: number;
  extraTrials?: number;
  prefer: 'speed' | 'size';
  /** Per layer: choice, float µs, int8 µs, noise, why (the recorded ones when replayed). */
  decisions: LayerDecision[];
  /** How contended the machine was while profiling (measured only). */
  contention?: Contention;
  /** Seconds spent profiling. */
  seconds: number;
  /** The decisions document of this run (what --update-decisions writes; the quantize command's report leaves it out). */
  document?: DecisionsDocument;
  /** Layers returned to float, with their profiled times per run (µs). */
  floated: Array<{ node: string; op: string; floatUs: number; int8Us: number; weights: 'float' | 'int8'; extraBytes: number }>;
  /** Bytes the float weights of those layers add over int8 (0 with prefer 'size'). */
  extraBytes: number;
  /** Units kept in int8 with their last profiled times per run (µs). */
  kept: Array<{ node: string; floatUs: number; int8Us: number }>;
}

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
  prefer: 'speed' | 'size';
  latency?: LatencyReport;
  accuracy?: AccuracyReport;
  /** The label-free fidelity budget (default), layer by layer. */
  fidelity?: FidelityReport;
  /** With method 'auto': how many calibrated tensors each candidate range method was chosen for. */
  rangeMethods?: Record<string, number>;
  /** The recipe measured on the model's outputs: clip weight (method 'auto') and int8 bias correction. */
  recipe?: RecipeReport;
}

/**
 * Default of the fidelity budget (dB): the lowest SQNR any model output may have against the float
 * model on the calibration samples. One generic value, chosen on calibration data only (see
 * benchmarks/quantize.ts for the measurements behind it).
 */
export const DEFAULT_FIDELITY_DB = 20;

/** Default least gain (dB) of the lowest output SQNR a layer must bring alone in float to be returned. */
export const DEFAULT_FIDELITY_GAIN_DB = 0.5;

/** The pass's options with their defaults: the one place defaults live (the function below reads them too). */
export const OPTIONS = {
  method: { type: 'enum', values: ['auto', 'minmax', 'percentile', 'entropy'], default: 'auto', description: 'How activation ranges are estimated: auto picks per tensor the method (minmax, percentile 99.9/99.99/99.999, entropy) with the least quantization error on the calibration values.' },
  percentile: { type: 'number', default: 99.999, min: 50, max: 100, exclusiveMin: true, description: 'Percentile kept by the percentile method.' },
  perChannel: { type: 'boolean', default: true, description: 'One weight scale per output channel.' },
  movingAverage: { type: 'number', min: 0, max: 1, exclusiveMin: true, description: 'minmax with an exponential moving average of per-sample extremes (constant in (0, 1]); unset: plain extremes.' },
  reduceRange: { type: 'boolean', default: true, description: 'Weights in [-64, 64] (avoids the saturation of AVX2 u8 x s8 pair sums).' },
  symmetricActivations: { type: 'boolean', default: false, description: 'Symmetric activation ranges (zero point 128).' },
  excludeNodes: { type: 'string[]', default: [], description: 'Node names left in float.' },
  excludeOps: { type: 'string[]', default: [], description: 'Op types left in float.' },
  onlyOps: { type: 'string[]', default: [], description: 'When not empty, only these op types run in int8.' },
  activationMatMul: { type: 'boolean', default: false, description: 'Also quantize MatMul of two activations.' },
  weightOnlyNodes: { type: 'string[]', default: [], description: 'Node names whose weights are int8 but whose activations stay float.' },
  names: { type: 'enum', values: ['compact', 'descriptive'], default: 'compact', description: 'New tensors get short ids (compact, smaller files) or names after the originals (descriptive).' },
  prepare: { type: 'boolean', default: true, description: 'Run the default and fuse presets and upgrade to opset 13 first.' },
  latencyAware: { type: 'enum', values: ['on', 'off'], default: 'on', description: 'Profile int8 and float layers in onnxruntime and keep in float what is slower in int8 beyond the measured noise (uncertain layers stay int8).' },
  decisions: { type: 'string', default: '', description: 'Latency-aware decisions file (onnxforge.quantize-decisions/1) to replay instead of profiling: the same model bytes every time; empty: measure.' },
  updateDecisions: { type: 'boolean', default: false, description: 'Measure the latency-aware decisions and rewrite the decisions file (atomically, after the model).' },
  prefer: { type: 'enum', values: ['speed', 'size'], default: 'speed', description: 'Layers kept float for latency keep float weights (speed) or int8 weights behind a DequantizeLinear (size).' },
  fidelity: { type: 'number', default: DEFAULT_FIDELITY_DB, min: 0, max: 200, description: 'Label-free fidelity budget: layers return to float (int8 weights kept) until every output has at least this SQNR (dB) against the float model on the calibration samples; 0 turns it off.' },
  biasCorrection: { type: 'boolean', default: true, description: 'Correct each layer\'s bias for the mean output shift of its rounded weights (channel means of its input on the calibration data; methods other than minmax).' },
  fidelityMinGain: { type: 'number', default: DEFAULT_FIDELITY_GAIN_DB, min: 0, max: 200, description: 'Fidelity budget: only layers that alone in float raise the lowest output SQNR by at least this (dB) return to float.' },
} satisfies OptionsSchema;

/** Quantizes `model` in place. */
export async function quantizeStatic(model: Model, source: SampleSource, options: QuantizeStaticOptions = {}, ctx?: PassContext): Promise<QuantizeStaticReport> {
  const method = options.method ?? (OPTIONS.method.default as CalibrationMethod);
  const rangeOpts: RangeOptions = { method, symmetric: options.symmetricActivations ?? false };
  if (options.percentile !== undefined) rangeOpts.percentile = options.percentile;
  if (options.movingAverage !== undefined) rangeOpts.movingAverage = options.movingAverage;
  validateRangeOptions(rangeOpts);
  validateSearchOptions(options);
  const fidelityOpts = options.accuracy ? undefined : fidelityOptions(options.fidelity, options.fidelityMinGain);
  const runner = ctx?.runner ?? nodeRunner;
  const warnings: string[] = [];
  let prepare: PrepareReport | undefined;
  if (options.prepare ?? true) {
    prepare = await prepareForQuantization(model, ctx, options.presets !== undefined ? { presets: options.presets } : {});
    if (prepare.skipped.length) warnings.push(`not available, skipped before quantizing: ${prepare.skipped.join(', ')}`);
  }
  if ((model.opset('') ?? 1) < 13) throw inputError('QUANT_OPSET_TOO_OLD', `QDQ quantization needs opset 13 or later; the model has opset ${model.opset('')}`);

  options.onPrepared?.(model);
  const userWeightOnly = new Set(options.weightOnlyNodes ?? []);
  checkNodeNames(model, [...(options.excludeNodes ?? []), ...userWeightOnly]);
  const latencyAware = (options.latencyAware ?? 'off') === 'on';
  const biasCorrection = options.biasCorrection ?? OPTIONS.biasCorrection.default;
  const prefer = options.prefer ?? 'speed';
  if (latencyAware) nameUnnamedComputeNodes(model);
  const prepared = model;
  // a decisions file to replay is checked against the prepared model before anything is measured
  const replay = latencyAware && options.decisions && !options.updateDecisions ? replayedDecisions(options.decisions, prepared) : undefined;

  const baseOpts: PlacementOptions = {
    perChannel: options.perChannel ?? true,
    activationMatMul: options.activationMatMul ?? false,
  };
  if (options.excludeNodes) baseOpts.excludeNodes = options.excludeNodes;
  if (options.excludeOps) baseOpts.excludeOps = options.excludeOps;
  if (options.onlyOps) baseOpts.onlyOps = options.onlyOps;

  // calibration of every tensor the unrestricted placement needs (later builds reuse the ranges)
  const first = placeQdq(cloneModel(prepared), baseOpts);
  const toCalibrate = calibratedTensors(first).map((v) => v.name);
  const ranges: Record<string, TensorRange> = {};
  const collectOpts = {
    method,
    ...(options.movingAverage !== undefined ? { movingAverage: options.movingAverage } : {}),
    ...(options.tensorsPerRun !== undefined ? { tensorsPerRun: options.tensorsPerRun } : {}),
    ...(options.memoryBudgetBytes !== undefined ? { memoryBudgetBytes: options.memoryBudgetBytes } : {}),
    ...(options.sessionOptions ? { sessionOptions: options.sessionOptions } : {}),
    runner,
  };
  const progress = ctx?.progress?.('calibrating', 0);
  const collected = await collectStats(prepared, toCalibrate, source, { ...collectOpts, onProgress: () => progress?.tick() });
  progress?.done();
  let calibrationMs = collected.ms;
  const zeroWarned = new Set<string>();
  const allStats = new Map<string, TensorStats>();
  const addRanges = (stats: Map<string, TensorStats>) => {
    for (const [name, st] of stats) {
      allStats.set(name, st);
      const r = computeRange(st, rangeOpts);
      ranges[name] = r;
      if (!(r.hi - r.lo > 0) && !zeroWarned.has(name)) {
        zeroWarned.add(name);
        warnings.push(`tensor '${name}' is constant 0 on every calibration sample (zero range), so it gets no valid scale; the nodes around it stay float`);
      }
    }
  };
  addRanges(collected.stats);
  const ensureRanges = async (names: string[]) => {
    const missing = names.filter((n) => !(n in ranges));
    if (!missing.length) return;
    const extra = await collectStats(prepared, missing, source, collectOpts);
    calibrationMs += extra.ms;
    addRanges(extra.stats);
  };

  // bias correction of weight-only units always (float activations: the analytic shift is exact),
  // of int8 units when the model's outputs say it helps (decided with the recipe below)
  let int8BiasCorrection = false;
  const build = async (floats: ReadonlyMap<number, string>, weightOnlyIdx: ReadonlySet<number>, names: 'compact' | 'descriptive'): Promise<Build> => {
    const m = cloneModel(prepared);
    const nodes = [...m.graph.nodes];
    const forced = new Map<Node, string>();
    // in node order: the model must not depend on the order in which rounds decided its float layers
    for (const [i, why] of [...floats].sort((a, b) => a[0] - b[0])) forced.set(nodes[i]!, why);
    const weightOnly = new Set<Node>(nodes.filter((n, i) => weightOnlyIdx.has(i) || (n.name !== undefined && userWeightOnly.has(n.name))));
    let placement = placeQdq(m, { ...baseOpts, weightOnly, forceFloat: forced });
    for (let round = 0; round < 6; round++) {
      await ensureRanges(calibratedTensors(placement).map((v) => v.name));
      let changed = false;
      for (const t of placement.tensors) {
        const root = t.inheritFrom ?? t.value;
        const r = ranges[root.name];
        if (r && r.hi - r.lo > 0) continue;
        const reason = r ? `tensor '${root.name}' is constant 0 on every calibration sample (zero range), so it gets no valid scale` : `tensor '${root.name}' has no calibrated range`;
        for (const v of [t.value, root]) {
          if (v.producer && placement.int8.has(v.producer) && !forced.has(v.producer)) (forced.set(v.producer, reason), (changed = true));
          for (const c of v.consumers()) if (placement.int8.has(c) && !forced.has(c)) (forced.set(c, reason), (changed = true));
        }
      }
      if (!changed) break;
      placement = placeQdq(m, { ...baseOpts, weightOnly, forceFloat: forced });
    }
    const params = new Map<Value, ActivationParams>();
    for (const t of placement.tensors) {
      const root = t.inheritFrom ?? t.value;
      const r = ranges[root.name]!;
      params.set(root, activationParams(r.lo, r.hi, root.name));
      if (t.value !== root) params.set(t.value, params.get(root)!);
    }
    const int8Idx = new Set<number>();
    nodes.forEach((n, i) => placement.int8.has(n) && int8Idx.add(i));
    const unitIdx = placement.units.map((u) => nodes.indexOf(u.node));
    const inputMeans = biasCorrection ? unitInputMeans(placement, allStats, int8BiasCorrection) : undefined;
    const emitted = emitQdq(m, placement, params, { reduceRange: options.reduceRange ?? false, names, ...(inputMeans ? { inputMeans } : {}) });
    return { model: m, placement, int8Idx, unitIdx, emitted };
  };

  // the float outputs of the first calibration samples, shared by the auto method and the fidelity budget
  let scorer: OutputScorer | undefined;
  const getScorer = async () => (scorer ??= await outputScorer(prepared, await firstSamples(source, fidelityOpts?.samples ?? FIDELITY_SAMPLES), SCORER_BYTES, runner));

  // the recipe that serves this model's outputs best: the clip weight of the per-tensor range choice
  // (method auto) and whether int8 layers take bias correction (channel means need histograms)
  let recipe: RecipeReport | undefined;
  const tryBias = biasCorrection && method !== 'minmax';
  if (method === 'auto' || tryBias) {
    const apply = (r: Recipe) => {
      int8BiasCorrection = r.int8BiasCorrection;
      if (r.clipWeight === undefined) return undefined;
      rangeOpts.clipWeight = r.clipWeight;
      for (const [name, st] of allStats) ranges[name] = computeRange(st, rangeOpts);
      return chosenMethods(ranges);
    };
    recipe = await chooseRecipe(method === 'auto' ? AUTO_CLIP_WEIGHTS : [undefined], tryBias, apply, async () => (await build(new Map(), new Set(), 'compact')).model, await getScorer());
  }

  const floats = new Map<number, string>();
  const weightOnlyIdx = new Set<number>();
  const preparedNodes = [...prepared.graph.nodes];
  const nodeLabelAt = (i: number) => preparedNodes[i]!.name ?? preparedNodes[i]!.label;

  // latency-aware choice: profile float and int8, return slower units to float, rebuild, repeat
  let latency: LatencyReport | undefined;
  if (latencyAware) {
    latency = replay
      ? replayLatency(replay, preparedNodes, floats, weightOnlyIdx, prefer)
      : await latencySearch(prepared, preparedNodes, source, { ...options, latency: { profiler: runnerProfiler(runner), ...options.latency } }, floats, weightOnlyIdx, prefer, build);
    if (typeof options.decisions === 'string' && options.decisions) latency.file = options.decisions;
  }

  // accuracy budget: most sensitive units back to float (int8 weights kept) until the metric holds;
  // without one, the label-free fidelity budget does the same until the outputs' SQNR holds
  let accuracy: AccuracyReport | undefined;
  let fidelity: FidelityReport | undefined;
  if (options.accuracy) {
    accuracy = await accuracySearch(prepared, preparedNodes, source, { runner, ...options.accuracy }, floats, weightOnlyIdx, build);
  } else if (fidelityOpts) {
    // the returned layers keep int8 weights, as with the accuracy budget (float weights in latency-aware
    // mode measured no faster on rec: 0.68-0.72x FP32 latency at 0.69-0.89x size, against 0.73x at 0.58x)
    fidelity = await fidelitySearch(prepared, preparedNodes, source, { ...fidelityOpts, runner }, floats, weightOnlyIdx, build, await getScorer());
  }

  const final = await build(floats, weightOnlyIdx, options.names ?? 'compact');
  model.graph = final.model.graph;
  model.graph.model = model;
  const placement = final.placement;
  if (latency) {
    const int8Layers = [...placement.int8].filter((n) => n.name && COMPUTE_OPS.has(n.opType)).map((n) => n.name!);
    model.setMetadata(DECISIONS_METADATA_KEY, decisionsMetadata(latency.document!.layers, latency.document!.float, int8Layers));
  }
  const emit = final.emitted.stats;
  if (emit.clampedBias > 0) warnings.push(`${emit.clampedBias} bias values exceeded the int32 range at scale s_x * s_w and were clamped`);
  const quantizedOps: Record<string, number> = {};
  for (const n of placement.int8) quantizedOps[n.opType] = (quantizedOps[n.opType] ?? 0) + 1;
  const floatOps: Record<string, number> = {};
  for (const n of model.graph.nodes) {
    if (placement.int8.has(n) || n.opType === 'Constant' || n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear') continue;
    floatOps[n.opType] = (floatOps[n.opType] ?? 0) + 1;
  }
  const usedRanges: Record<string, TensorRange> = {};
  for (const v of calibratedTensors(placement)) if (ranges[v.name]) usedRanges[v.name] = ranges[v.name]!;
  const report: QuantizeStaticReport = {
    method,
    samples: collected.samples,
    calibrationMs,
    calibratedTensors: Object.keys(ranges).length,
    calibrationGroups: collected.groups,
    int8Nodes: placement.int8.size,
    quantizedOps,
    floatOps,
    float: placement.float.map((f) => ({ node: f.node.name ?? f.node.label, op: f.node.opType, reason: f.reason })),
    emit,
    warnings,
    ranges: usedRanges,
    dequantized: Object.fromEntries(final.emitted.dequantized),
    prefer,
  };
  if (latency) report.latency = latency;
  if (accuracy) report.accuracy = accuracy;
  if (fidelity) report.fidelity = fidelity;
  if (method === 'auto') report.rangeMethods = chosenMethods(usedRanges);
  if (recipe) report.recipe = recipe;
  void nodeLabelAt;
  if (prepare) report.prepare = prepare;
  return report;
}

/** Writes a decisions document atomically (what --update-decisions does once the model is written). */
export function writeDecisions(file: string, doc: DecisionsDocument): void {
  writeFileAtomic(file, formatDecisions(doc));
}

/** Gives unnamed Conv/MatMul/Gemm nodes a name (`conv_0`, `matmul_0`, ...), so profile rows can be traced back to them. */
function nameUnnamedComputeNodes(model: Model): void {
  for (const n of model.graph.nodes) if (!n.name && COMPUTE_OPS.has(n.opType)) n.name = model.names.numbered(`${n.opType.toLowerCase()}_`);
}

async function firstFeeds(source: SampleSource, n: number): Promise<Feed[]> {
  const out: Feed[] = [];
  for await (const s of source()) {
    out.push(s.feed);
    if (out.length >= n) break;
  }
  return out;
}

/** onnxruntime's profile of a model on `feeds` through `runner` (1 thread, optimization 'all', no spinning). */
export function runnerProfiler(runner: Runner): Profiler {
  return async (m, feeds, runs) => (await runner.profile(m, feeds, { intraOpNumThreads: 1, graphOptimizationLevel: 'all', allowSpinning: false, runs, warmup: 1 })).nodes;
}

/** {@link runnerProfiler} of onnxruntime-node. */
export const defaultProfiler: Profiler = runnerProfiler(nodeRunner);

function weightBytes(n: Node): number {
  const w = constantOf(n.inputs[1]);
  return w ? w.size : 0;
}

/**
 * Per-call cost of each profiled node: its fastest call (`minUs`), or the mean where a profiler gives
 * only totals. Machine load only adds time, so the minimum is the stable estimate (as in the gate).
 */
function perCall(rows: readonly OpProfileRow[]): OpProfileRow[] {
  return rows.map((r) => ({ ...r, totalUs: r.minUs !== undefined && Number.isFinite(r.minUs) ? r.minUs : r.totalUs / Math.max(1, r.calls), calls: 1 }));
}

/**
 * The latency-aware choice, measured: each round profiles the current int8 build and the float model
 * in `trials` pairs (alternating which goes first, so both see the same load), charges every kernel to
 * its compute layer per trial, and decides each layer from the median of its paired int8/float
 * trial ratios with a noise margin (passes/quantize/decisions.ts: float only when int8 is slower
 * beyond the noise and the margin; uncertain layers stay int8; more trials when a clearly slower
 * layer sits near the worth floor). Layers returned to float move Q/DQ boundaries onto
 * their neighbours, so the next round profiles the new build, until no layer changes.
 */
async function latencySearch(prepared: Model, nodes: Node[], source: SampleSource, options: QuantizeStaticOptions, floats: Map<number, string>, weightOnly: Set<number>, prefer: 'speed' | 'size', build: Builder): Promise<LatencyReport> {
  const lo = options.latency ?? {};
  const profiler = lo.profiler ?? defaultProfiler;
  const runs = lo.runs ?? 3;
  const trials = lo.trials ?? DECISION_DEFAULTS.trials;
  const margin = lo.margin ?? DECISION_DEFAULTS.margin;
  const minUs = lo.minUs ?? DECISION_DEFAULTS.minUs;
  const minShare = lo.minShare ?? DECISION_DEFAULTS.minShare;
  const extraTrials = lo.extraTrials ?? DECISION_DEFAULTS.extraTrials;
  const nearWorth = lo.nearWorth ?? DECISION_DEFAULTS.nearWorth;
  if (!Number.isInteger(extraTrials) || extraTrials < 0) throw inputError('QUANT_BAD_OPTION', `latency extraTrials must be a non-negative integer, got ${extraTrials}`);
  if (!Number.isInteger(trials) || trials < 1) throw inputError('QUANT_BAD_OPTION', `latency trials must be a positive integer, got ${trials}`);
  const feeds = await firstFeeds(source, lo.feeds ?? 2);
  const label = (i: number) => nodes[i]!.name ?? nodes[i]!.label;
  const floated: LatencyReport['floated'] = [];
  const floatedIdx: number[] = [];
  const decisions = new Map<number, LayerDecision>();
  const unitMap = new Map<Node, number>();
  const probe = contentionProbe();
  const t0 = performance.now();
  let profiles = 0;
  let preempted = 0;
  const floatTotals: number[] = [];
  // one profile, timed by wall and CPU time like a slot of the timer (preempted: CPU < 90% of wall)
  const timedProfile = async (m: Model): Promise<OpProfileRow[]> => {
    const w0 = performance.now();
    const c0 = process.cpuUsage();
    const rows = perCall(await profiler(m, feeds, runs));
    const c = process.cpuUsage(c0);
    profiles++;
    if ((c.user + c.system) / 1000 < 0.9 * (performance.now() - w0)) preempted++;
    return rows;
  };
  let rounds = 0;
  let extendedRounds = 0;
  for (; rounds < (lo.rounds ?? 3); ) {
    const b = await build(floats, weightOnly, 'descriptive');
    const live = new Set<number>();
    unitMap.clear();
    b.placement.units.forEach((u, k) => {
      const i = b.unitIdx[k]!;
      unitMap.set(nodes[i]!, i);
      if (!u.weightOnly) live.add(i);
    });
    if (live.size === 0) break;
    rounds++;
    const int8 = new Set<Node>([...b.int8Idx].map((i) => nodes[i]!));
    const perUnit = new Map<number, { f: number[]; q: number[] }>();
    const decide = () => {
      // the float model's time per run (the gate's estimator over every trial so far: the float model is the same each round)
      const modelUs = floorOf(floatTotals).value;
      return [...perUnit].sort((x, y) => x[0] - y[0]).map(([i, e]): [number, LayerDecision] => [i, { node: label(i), op: nodes[i]!.opType, ...decideLayer(e.f, e.q, { margin, minUs, minShare, modelUs, nearWorth }), round: rounds }]);
    };
    const profileTrials = async (from: number, to: number) => {
      for (let k = from; k < to; k++) {
        const quantFirst = k % 2 === 0;
        const first = await timedProfile(quantFirst ? b.model : prepared);
        const second = await timedProfile(quantFirst ? prepared : b.model);
        const [quantRows, floatRows] = quantFirst ? [first, second] : [second, first];
        floatTotals.push(floatRows.reduce((a, r) => a + r.totalUs, 0));
        for (const t of attributeProfiles(prepared, unitMap, floatRows, quantRows, int8)) {
          if (!live.has(t.index)) continue;
          const e = perUnit.get(t.index) ?? { f: [], q: [] };
          e.f.push(t.floatUs);
          e.q.push(t.int8Us);
          perUnit.set(t.index, e);
        }
      }
    };
    await profileTrials(0, trials);
    let decided = decide();
    // a layer near the worth floor: the same builds, more trials, and every layer decided on all of them
    if (extraTrials > 0 && decided.some(([, d]) => d.nearWorth)) {
      await profileTrials(trials, trials + extraTrials);
      extendedRounds++;
      decided = decide();
    }
    lo.onTrials?.(rounds, new Map([...perUnit].map(([i, e]) => [label(i), { floatUs: e.f, int8Us: e.q }])));
    let changed = false;
    for (const [i, d] of decided) {
      decisions.set(i, d);
      if (d.choice !== 'float' || floats.has(i)) continue;
      changed = true;
      floatedIdx.push(i);
      floats.set(i, `latency-aware: ${d.why}`);
      if (prefer === 'size') weightOnly.add(i);
      floated.push({ node: d.node, op: d.op, floatUs: d.floatUs, int8Us: d.int8Us, weights: prefer === 'size' ? 'int8' : 'float', extraBytes: prefer === 'size' ? 0 : weightBytes(nodes[i]!) * 3 });
    }
    if (!changed) break;
  }
  const spread = relativeSpread(floatTotals);
  const contention = probe.stop(Number.isFinite(spread) ? spread : 0, profiles ? preempted / profiles : 0);
  const seconds = (performance.now() - t0) / 1000;
  const all = [...decisions.entries()].sort((x, y) => x[0] - y[0]).map(([, d]) => d);
  const document: DecisionsDocument = {
    schema: DECISIONS_SCHEMA,
    layers: layerListHash(prepared),
    float: [...floatedIdx].sort((a, b) => a - b).map(label),
    decisions: all,
    measured: { trials, extraTrials, extendedRounds, rounds, margin, minUs, minShare, modelUs: Number(floorOf(floatTotals).value.toFixed(1)), seconds, contention },
    recordedAt: new Date().toISOString(),
  };
  return {
    source: 'measured',
    rounds,
    trials,
    extendedRounds,
    extraTrials,
    prefer,
    decisions: all,
    contention,
    seconds,
    document,
    floated,
    extraBytes: floated.reduce((a, d) => a + d.extraBytes, 0),
    kept: all.filter((d) => d.choice === 'int8').map((d) => ({ node: d.node, floatUs: d.floatUs, int8Us: d.int8Us })),
  };
}

/** A decisions file (or document) to replay, checked against the prepared model. */
function replayedDecisions(d: string | DecisionsDocument, prepared: Model): DecisionsDocument {
  const file = typeof d === 'string' ? d : '(decisions document)';
  const doc = typeof d === 'string' ? readDecisions(d) : parseDecisions(d, file);
  checkDecisions(doc, prepared, file);
  return doc;
}

/** The latency-aware choice replayed from a checked decisions document: no profiling. */
function replayLatency(doc: DecisionsDocument, nodes: Node[], floats: Map<number, string>, weightOnly: Set<number>, prefer: 'speed' | 'size'): LatencyReport {
  const index = new Map<string, number>();
  nodes.forEach((n, i) => n.name && index.set(n.name, i));
  const recorded = new Map((doc.decisions ?? []).map((d) => [d.node, d]));
  const floated: LatencyReport['floated'] = [];
  for (const name of doc.float) {
    const i = index.get(name)!;
    const r = recorded.get(name);
    floats.set(i, `latency-aware (replayed): ${r?.why ?? 'float in the decisions file'}`);
    if (prefer === 'size') weightOnly.add(i);
    floated.push({ node: name, op: nodes[i]!.opType, floatUs: r?.floatUs ?? NaN, int8Us: r?.int8Us ?? NaN, weights: prefer === 'size' ? 'int8' : 'float', extraBytes: prefer === 'size' ? 0 : weightBytes(nodes[i]!) * 3 });
  }
  const decisions = doc.decisions ?? [];
  const floatSet = new Set(doc.float);
  return {
    source: 'replayed',
    rounds: 0,
    trials: 0,
    prefer,
    decisions,
    seconds: 0,
    document: doc,
    floated,
    extraBytes: floated.reduce((a, d) => a + d.extraBytes, 0),
    kept: decisions.filter((d) => !floatSet.has(d.node)).map((d) => ({ node: d.node, floatUs: d.floatUs, int8Us: d.int8Us })),
  };
}

/** The fidelity budget's options (defaults from the schema), or undefined when it is off. */
function fidelityOptions(f: QuantizeStaticOptions['fidelity'], minGain: number | undefined): FidelityOptions | undefined {
  const v = f ?? OPTIONS.fidelity.default;
  if (v === 'off') return undefined;
  const given = typeof v === 'number' ? { minSqnrDb: v } : v;
  const o: FidelityOptions = { ...given, minSqnrDb: given.minSqnrDb ?? OPTIONS.fidelity.default, minGainDb: given.minGainDb ?? minGain ?? OPTIONS.fidelityMinGain.default };
  if (!(o.minSqnrDb >= 0 && o.minSqnrDb <= 200)) throw inputError('QUANT_BAD_OPTION', `the fidelity budget must be an SQNR in dB between 0 and 200 (0 turns it off), got ${o.minSqnrDb}`);
  if (!(o.minGainDb >= 0)) throw inputError('QUANT_BAD_OPTION', `the fidelity budget's least layer gain must be a non-negative number of dB, got ${o.minGainDb}`);
  return o.minSqnrDb > 0 ? o : undefined;
}

/** Per compute unit, the channel means of its activation input (Conv: axis 1; Gemm/MatMul: last axis), where collected. */
function unitInputMeans(p: Placement, stats: ReadonlyMap<string, TensorStats>, int8Units: boolean): Map<Node, InputMeans> {
  const out = new Map<Node, InputMeans>();
  for (const u of p.units) {
    if (u.weightIndex < 0 || (!u.weightOnly && !int8Units)) continue;
    const v = u.node.inputs[u.activationInputs[0]!];
    const st = v ? stats.get(v.name) : undefined;
    const mean = st?.channelMeans(u.node.opType === 'Conv' ? 'axis1' : 'last');
    if (mean) out.set(u.node, st!.shapes ? { mean, shapes: st!.shapes } : { mean });
  }
  return out;
}

/** Counts of the range methods 'auto' chose, over the tensors the model uses. */
function chosenMethods(ranges: Record<string, TensorRange>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of Object.values(ranges)) if (r.chosen) out[r.chosen] = (out[r.chosen] ?? 0) + 1;
  return out;
}

function validateSearchOptions(o: QuantizeStaticOptions): void {
  if (o.latencyAware !== undefined && o.latencyAware !== 'on' && o.latencyAware !== 'off') throw inputError('QUANT_BAD_OPTION', `latencyAware must be 'on' or 'off', got '${String(o.latencyAware)}'`);
  if (o.prefer !== undefined && o.prefer !== 'speed' && o.prefer !== 'size') throw inputError('QUANT_BAD_OPTION', `prefer must be 'speed' or 'size', got '${String(o.prefer)}'`);
  if (o.updateDecisions && !o.decisions) throw inputError('QUANT_BAD_OPTION', 'updateDecisions (--update-decisions) needs a decisions file to write (--decisions FILE)');
  if (o.decisions && (o.latencyAware ?? 'off') !== 'on') throw inputError('QUANT_BAD_OPTION', 'a decisions file (--decisions) holds latency-aware decisions: it needs latencyAware on (--latency-aware on)');
  if (o.accuracy && !(o.accuracy.maxDrop >= 0)) throw inputError('QUANT_BAD_OPTION', `the accuracy budget (max drop) must be a non-negative number, got ${o.accuracy.maxDrop}`);
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


/** The pass's options as its schema resolves them (every key present; movingAverage may be unset). */
export interface QuantizeStaticPassOptions extends Record<string, unknown> {
  method: string;
  percentile: number;
  movingAverage?: number;
  perChannel: boolean;
  reduceRange: boolean;
  symmetricActivations: boolean;
  excludeNodes: string[];
  excludeOps: string[];
  onlyOps: string[];
  activationMatMul: boolean;
  weightOnlyNodes: string[];
  names: string;
  prepare: boolean;
  latencyAware: string;
  decisions: string;
  updateDecisions: boolean;
  prefer: string;
  fidelity: number;
  fidelityMinGain: number;
  biasCorrection: boolean;
}

/** The {@link quantizeStatic} options that resolved pass options stand for (the pass and the CLI both use this). */
export function staticOptionsFromPass(o: QuantizeStaticPassOptions): QuantizeStaticOptions {
  const opts: QuantizeStaticOptions = {
    method: o.method as CalibrationMethod,
    percentile: o.percentile,
    perChannel: o.perChannel,
    reduceRange: o.reduceRange,
    symmetricActivations: o.symmetricActivations,
    excludeNodes: o.excludeNodes,
    excludeOps: o.excludeOps,
    activationMatMul: o.activationMatMul,
    weightOnlyNodes: o.weightOnlyNodes,
    names: o.names as 'compact' | 'descriptive',
    prepare: o.prepare,
    latencyAware: o.latencyAware as 'on' | 'off',
    prefer: o.prefer as 'speed' | 'size',
    fidelity: o.fidelity,
    fidelityMinGain: o.fidelityMinGain,
    biasCorrection: o.biasCorrection,
  };
  if (o.movingAverage !== undefined) opts.movingAverage = o.movingAverage;
  if (o.onlyOps.length) opts.onlyOps = o.onlyOps;
  if (o.decisions) opts.decisions = o.decisions;
  if (o.updateDecisions) opts.updateDecisions = true;
  return opts;
}

const pass = definePass<QuantizeStaticPassOptions, QuantizeStaticReport>({
  name: 'quantize-static',
  description: 'Static INT8 quantization (QDQ, uint8 activations, int8 per-channel weights, int32 biases) calibrated on ctx.data.calibration.',
  idempotent: false,
  options: OPTIONS,
  async run(model, o, ctx) {
    const source = toSampleSource(ctx.data.calibration);
    const r = await quantizeStatic(model, source, staticOptionsFromPass(o), ctx);
    for (const w of r.warnings) ctx.logger.warn(w);
    if (o.updateDecisions && r.latency?.document) writeDecisions(o.decisions, r.latency.document);
    return {
      report: r,
      changed: r.int8Nodes > 0 || r.emit.weights > 0,
      stats: { int8Nodes: r.int8Nodes, qdqPairs: r.emit.qdqPairs, weights: r.emit.weights, biases: r.emit.biases, floatNodes: r.float.length, samples: r.samples },
    };
  },
});

export default pass;
