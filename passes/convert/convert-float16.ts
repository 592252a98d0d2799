/**
 * convert-float16: float32 tensors and ops to float16 (or bfloat16), mixed precision where float16
 * cannot hold the values or onnxruntime has no float16 kernel.
 *
 *   types inferred -> activation ranges (calibration samples, else random inputs) -> precision plan
 *   (float16/plan.ts: which nodes compute in half and why each other node stays float32) -> rewrite
 *   (float16/rewrite.ts: constants converted at conversion time, one Cast per value and precision at
 *   region boundaries, graph inputs/outputs float32 with keepIoTypes) -> topological order.
 *
 * Half precision: float16 has 10 mantissa bits (relative rounding 2^-11 = 4.9e-4) and range
 * [6.1e-5, 65504] for normal values; bfloat16 has float32's range and 7 mantissa bits (2^-8 = 3.9e-3).
 *
 * Target `cpu` (default) is what onnxruntime's CPU and WASM providers run best, measured (see
 * float16/kernels.ts and float16/plan.ts): they have native float16 kernels only for data movement,
 * the LayerNormalization family, MatMulNBits, RotaryEmbedding and a few selections, and a float16
 * island among float32 ops costs more in Casts than it saves; so on CPU the model is a float32
 * computation with float16 storage for its large weights (`halfWeights`, one Cast each that
 * onnxruntime folds into a float32 initializer at load): half the file, float32 speed. Target `any` converts every op ONNX allows in
 * float16 (for GPU and WebGPU deployments; on CPU, onnxruntime then wraps most nodes in Casts itself).
 *
 * The model must be float32: a model that already holds float16 or bfloat16 tensors is refused
 * (FP16_ALREADY_HALF). If/Loop/Scan nodes and their bodies stay float32 and are reported.
 */
import { inputError } from '../../core/errors.js';
import { DataType, dtypeName } from '../../core/dtype.js';
import type { Feed } from '../../core/host-tensor.js';
import { constantOf, Model, Value } from '../../ir/ir.js';
import type { Sample } from '../../data/sample.js';
import { generateFeeds, mulberry32 } from '../../data/generate.js';
import type { ValueInfo } from '../../runtime/runner-types.js';
import { definePass, PassContext, withSchemaDefaults } from '../pass.js';
import { toSampleSource } from '../quantize/sample-source.js';
import { HalfType, inferTypes, isFloat32, KeepReason, planConversion, type PlanOptions, TensorRange } from './float16/plan.js';
import { applyPlan, RewriteStats } from './float16/rewrite.js';
import { constantRanges, measureRanges } from './float16/ranges.js';

export interface ConvertFloat16Options {
  /** bfloat16 instead of float16. */
  bf16?: boolean;
  target?: 'cpu' | 'any';
  keepIoTypes?: boolean;
  headroom?: number;
  halfWeights?: boolean;
  minWeightElements?: number;
  excludeOps?: string[];
  excludeNodes?: string[];
  /** Samples the activation ranges are measured on (a re-openable source, as quantize-static takes). */
  calibration?: unknown;
  /** Random samples when no calibration is given (0: no ranges, constants only). */
  randomSamples?: number;
  /** Dims of symbolic input dimensions for random samples, by input or dim name (default 8 each). */
  shapes?: Record<string, number[]>;
  /** Ranges measured elsewhere (skips measuring; reported as source 'given'). */
  ranges?: ReadonlyMap<string, TensorRange>;
  /** Ranges measured on the data before the conversion was called, with what they were measured on (skips measuring). */
  measuredRanges?: MeasuredRanges;
}

/** Activation ranges measured before the conversion (q4f16: in the int4 step's moments run), and on what. */
export interface MeasuredRanges {
  ranges: ReadonlyMap<string, TensorRange>;
  source: 'calibration' | 'random';
  samples: number;
  /** On which model and in which run, for the report (e.g. "the float32 model, in the int4 step's moments run"). */
  on: string;
}

export interface KeptFloatEntry {
  node: string;
  op: string;
  reason: KeepReason;
  detail?: string;
}

export interface ConvertFloat16Report {
  half: 'float16' | 'bfloat16';
  target: 'cpu' | 'any';
  keepIoTypes: boolean;
  /** Where activation ranges came from. */
  ranges: {
    source: 'calibration' | 'random' | 'given' | 'none';
    samples: number;
    tensors: number;
    /** Samples skipped: the float32 model's outputs were not finite on them. */
    skipped?: number;
    /** Measured before the conversion: on which model, in which run. */
    on?: string;
    /**
     * Ranges measured before the conversion: tensors of the model converted that they do not name
     * (the int4 step's rebuilt constants), filled here: computed from constants only and evaluated
     * exactly, or measured on the data (`measured`, on `samples` samples).
     */
    filled?: { evaluated: string[]; measured: string[]; samples?: number };
    /** Float32 activations without any range (the plan sees no range problem in them). */
    unmeasured?: string[];
    /** Not measured: no node could compute in half whatever the ranges (rangeTensorsFor), so none can change the plan. */
    notNeeded?: boolean;
  };
  /** Nodes computing in half, by op type. */
  halfOps: Record<string, number>;
  halfNodes: number;
  /** Nodes that read or write float32 and stay float32, with the reason. */
  keptFloat: KeptFloatEntry[];
  /** keptFloat counted by reason. */
  keptByReason: Partial<Record<KeepReason, number>>;
  rewrite: RewriteStats;
  /** Sentences on what the conversion left alone (subgraphs). */
  notes: string[];
}

const DEFAULT_DIM = 8;

/** Refuses a model that already holds half tensors (converting it again would be meaningless). */
function checkNotHalf(model: Model): void {
  const isHalf = (t: number | undefined) => t === DataType.FLOAT16 || t === DataType.BFLOAT16;
  for (const g of model.graph.allGraphs()) {
    for (const v of [...g.inputs, ...g.outputs]) {
      if (isHalf(v.elemType)) throw inputError('FP16_ALREADY_HALF', `the model already has ${dtypeName(v.elemType!)} ${g.inputs.includes(v) ? 'input' : 'output'} '${v.name}'; convert the float32 model instead`, { tensor: v.name });
    }
    for (const v of g.initializers.values()) {
      const t = g.initializerTensor(v);
      if (t && isHalf(t.dataType)) throw inputError('FP16_ALREADY_HALF', `the model already holds ${dtypeName(t.dataType)} initializer '${v.name}'; convert the float32 model instead`, { tensor: v.name });
    }
    for (const n of g.nodes) {
      const c = n.opType === 'Constant' ? constantOf(n.outputs[0]) : undefined;
      if ((n.opType === 'Cast' && isHalf(n.getInt('to'))) || (c && isHalf(c.dataType))) {
        throw inputError('FP16_ALREADY_HALF', `the model already computes in half precision (node ${n.label}); convert the float32 model instead`, { node: n.name ?? n.label });
      }
    }
  }
}

/** Model inputs as onnxruntime would describe them, symbolic dims resolved for random samples. */
export function inputInfos(model: Model): ValueInfo[] {
  const g = model.graph;
  return g.inputs
    .filter((v) => !constantOf(v) && !g.initializers.has(v.name))
    .map((v) => ({ name: v.name, type: dtypeName(v.elemType ?? DataType.FLOAT), shape: (v.shape ?? []).map((d) => (typeof d === 'number' ? d : (d ?? ''))), isTensor: true }));
}

/**
 * Random samples for the range measurement (unknown symbolic dims take {@link DEFAULT_DIM}). Integer
 * inputs get values their readers accept: indices of a Gather draw over the whole table, inputs
 * named like an attention mask are all ones (every position attended); the rest draw in [0, 10) as
 * `random:N` does.
 */
export function randomSamples(model: Model, count: number, shapes: Record<string, number[]>): () => AsyncIterable<Sample> {
  const infos = inputInfos(model);
  const resolved: Record<string, number[]> = { ...shapes };
  for (const i of infos) {
    if (resolved[i.name]) continue;
    resolved[i.name] = i.shape.map((d) => (typeof d === 'number' ? d : (shapes[d]?.[0] ?? DEFAULT_DIM)));
  }
  const g = model.graph;
  const rows = new Map<string, number>();
  for (const v of g.inputs) {
    for (const u of v.uses) {
      const table = u.node.opType === 'Gather' && u.index === 1 && (u.node.getInt('axis') ?? 0) === 0 ? constantOf(u.node.input(0)) : undefined;
      if (table && table.dims.length > 0) rows.set(v.name, Math.min(rows.get(v.name) ?? Infinity, table.dims[0]!));
    }
  }
  const rand = mulberry32(7);
  return async function* () {
    let k = 0;
    for await (const feed of generateFeeds(infos, count, 1, resolved)) {
      for (const [name, t] of Object.entries(feed)) {
        if (t.type !== 'int64' && t.type !== 'int32') continue;
        const n = rows.get(name);
        const d = t.data as BigInt64Array | Int32Array;
        if (n !== undefined) for (let i = 0; i < d.length; i++) d[i] = (t.type === 'int64' ? BigInt(Math.floor(rand() * n)) : Math.floor(rand() * n)) as never;
        else if (/mask/i.test(name)) for (let i = 0; i < d.length; i++) d[i] = (t.type === 'int64' ? 1n : 1) as never;
      }
      yield { id: `random#${k++}`, feed: feed as Feed };
    }
  };
}

/**
 * The tensors whose activation ranges the plan reads: every float32 graph input and every used
 * float32 node output of the main graph that is not a constant. Element types must be known
 * ({@link inferTypes} first): a value of unknown type is not listed.
 */
export function rangeTensors(model: Model): string[] {
  const g = model.graph;
  const tensors = new Set<string>();
  for (const v of g.inputs) if (isFloat32(v) && !constantOf(v)) tensors.add(v.name);
  for (const n of g.nodes) for (const v of n.outputs) if (isFloat32(v) && !constantOf(v) && (v.uses.length > 0 || v.isGraphOutput)) tensors.add(v.name);
  return [...tensors];
}

type ResolvedOptions = Required<Omit<ConvertFloat16Options, 'calibration' | 'ranges' | 'measuredRanges' | 'excludeOps' | 'excludeNodes' | 'shapes'>> & ConvertFloat16Options;

/** The plan's options from the conversion's (ranges apart). */
function planOptions(o: ResolvedOptions): PlanOptions {
  return {
    half: o.bf16 ? DataType.BFLOAT16 : DataType.FLOAT16,
    target: o.target,
    headroom: o.headroom,
    ...(o.excludeOps ? { excludeOps: o.excludeOps } : {}),
    ...(o.excludeNodes ? { excludeNodes: o.excludeNodes } : {}),
  };
}

/**
 * The tensors whose ranges can change the conversion's plan of `model`: the float32 inputs and
 * outputs of the nodes that compute in half when no range is a problem (a range problem only ever
 * keeps a node float32, and a node kept float32 keeps no other node half, so the nodes outside that
 * plan stay float32 whatever the ranges), and with them the float32 graph outputs (measureRanges
 * skips a sample on which those are not finite). Empty when no node can compute in half whatever the
 * ranges, as with target cpu on most models (each float op stays float32 for its kernel): then there
 * is nothing to measure. The plan's decisions are those of measuring every tensor; a node kept float32
 * for its float32 inputs (data-movement) is reported with that reason even if one of its tensors would
 * also leave float16's range. Element types must be known ({@link inferTypes} first).
 */
export function rangeTensorsFor(model: Model, options: ConvertFloat16Options = {}): string[] {
  const optimistic = planConversion(model, planOptions(withSchemaDefaults(pass.options, options) as ResolvedOptions));
  if (optimistic.half.size === 0) return [];
  const all = rangeTensors(model);
  const want = new Set(model.graph.outputs.map((v) => v.name));
  for (const n of optimistic.half) for (const v of [...n.inputs, ...n.outputs]) if (v) want.add(v.name);
  return all.filter((t) => want.has(t));
}

/** Converts `model` in place; returns what stayed float32 and why. */
export async function convertFloat16(model: Model, options: ConvertFloat16Options = {}, ctx: Partial<Pick<PassContext, 'progress'>> & Pick<PassContext, 'runner'>): Promise<ConvertFloat16Report> {
  const o = withSchemaDefaults(pass.options, options) as ResolvedOptions;
  if (!(o.headroom >= 1)) throw inputError('USAGE_BAD_VALUE', `headroom must be a number >= 1, got ${o.headroom}`);
  checkNotHalf(model);
  const half: HalfType = o.bf16 ? DataType.BFLOAT16 : DataType.FLOAT16;
  inferTypes(model);
  const g = model.graph;

  // activation ranges: of the float32 graph inputs and node outputs the plan can use (rangeTensorsFor)
  const m = o.measuredRanges;
  let ranges = m?.ranges ?? o.ranges;
  let rangeInfo: ConvertFloat16Report['ranges'] = m ? { source: m.source, samples: m.samples, tensors: m.ranges.size, on: m.on } : { source: ranges ? 'given' : 'none', samples: 0, tensors: ranges?.size ?? 0 };
  const canMeasure = o.calibration !== undefined || o.randomSamples > 0;
  const measure = async (tensors: string[]) => {
    const source = o.calibration !== undefined ? toSampleSource(o.calibration) : randomSamples(model, o.randomSamples, o.shapes ?? {});
    const bar = ctx?.progress?.('measuring ranges', 0);
    const r = await measureRanges(model, tensors, source, () => bar?.tick(), ctx.runner);
    bar?.done();
    return r;
  };
  const needed = m || (!ranges && canMeasure) ? rangeTensorsFor(model, o) : [];
  if (m && needed.length === 0) {
    ranges = undefined;
    rangeInfo = { source: 'none', samples: 0, tensors: 0, notNeeded: true };
  } else if (m) {
    // names the earlier measurement does not know: evaluated when computed from constants, else measured here
    const known = new Map(m.ranges);
    const missing = needed.filter((t) => !known.has(t));
    const evaluated = constantRanges(model, missing);
    for (const [t, r] of evaluated) known.set(t, r);
    let rest = missing.filter((t) => !evaluated.has(t));
    const filled: NonNullable<ConvertFloat16Report['ranges']['filled']> = { evaluated: [...evaluated.keys()], measured: [] };
    if (rest.length > 0 && canMeasure) {
      const r = await measure(rest);
      for (const [t, x] of r.ranges) known.set(t, x);
      filled.measured = rest;
      filled.samples = r.samples;
      rest = [];
    }
    ranges = known;
    rangeInfo = { ...rangeInfo, tensors: known.size, ...(missing.length ? { filled } : {}), ...(rest.length ? { unmeasured: rest } : {}) };
  } else if (!ranges && canMeasure) {
    if (needed.length > 0) {
      const r = await measure(needed);
      ranges = r.ranges;
      rangeInfo = { source: o.calibration !== undefined ? 'calibration' : 'random', samples: r.samples, skipped: r.skipped, tensors: r.ranges.size };
    } else rangeInfo = { ...rangeInfo, notNeeded: true };
  }

  const plan = planConversion(model, { ...planOptions(o), ...(ranges ? { ranges } : {}) });
  const halfOps: Record<string, number> = {};
  for (const n of plan.half) halfOps[n.opType] = (halfOps[n.opType] ?? 0) + 1;
  const keptFloat = plan.kept.map((k): KeptFloatEntry => ({ node: k.node.name ?? k.node.label, op: k.node.opType, reason: k.reason, ...(k.detail ? { detail: k.detail } : {}) }));
  const keptByReason: Partial<Record<KeepReason, number>> = {};
  for (const k of keptFloat) keptByReason[k.reason] = (keptByReason[k.reason] ?? 0) + 1;
  const rewrite = applyPlan(g, plan, { half, keepIoTypes: o.keepIoTypes, halfWeights: o.halfWeights, minWeightElements: o.minWeightElements });

  const notes: string[] = [];
  const bodies = [...g.nodes].filter((n) => n.subgraphs().length > 0);
  if (bodies.length) notes.push(`${bodies.length} If/Loop/Scan node(s) (${bodies.map((n) => n.name ?? n.opType).slice(0, 5).join(', ')}) and their bodies stay float32: the conversion works on the main graph`);
  if (plan.half.size === 0) notes.push(o.target === 'cpu' ? 'no op was converted: none of the float32 ops has a native float16 kernel in onnxruntime\'s CPU/WASM providers (target any converts for GPU/WebGPU)' : 'no op was converted');
  return { half: half === DataType.FLOAT16 ? 'float16' : 'bfloat16', target: o.target, keepIoTypes: o.keepIoTypes, ranges: rangeInfo, halfOps, halfNodes: plan.half.size, keptFloat, keptByReason, rewrite, notes };
}

const pass = definePass<
  { bf16: boolean; target: 'cpu' | 'any'; keepIoTypes: boolean; headroom: number; halfWeights: boolean; minWeightElements: number; randomSamples: number; excludeOps: string[]; excludeNodes: string[] },
  ConvertFloat16Report
>({
  name: 'convert-float16',
  description: 'float32 to float16 (or bfloat16) with mixed precision: ops without onnxruntime float16 kernels, shape arithmetic, variance chains and tensors whose range leaves float16 stay float32.',
  idempotent: false,
  options: {
    bf16: { type: 'boolean', default: false, description: 'Convert to bfloat16 instead of float16.' },
    target: { type: 'enum', values: ['cpu', 'any'], default: 'cpu', description: 'cpu: float16 weights, float32 compute (onnxruntime\'s CPU/WASM providers lack float16 kernels for most ops, and float16 islands cost more in Casts than they save, measured); any: float16 compute wherever ONNX allows it (GPU/WebGPU).' },
    keepIoTypes: { type: 'boolean', default: true, description: 'Keep float32 graph inputs and outputs (Casts at the interface).' },
    headroom: { type: 'number', default: 4, min: 1, description: 'Safety factor on measured activation ranges: a tensor stays float32 when max |x| times this exceeds 65504.' },
    halfWeights: { type: 'boolean', default: true, description: 'Store large float32 weights of ops kept float32 in half precision too (one Cast, folded by onnxruntime at load).' },
    minWeightElements: { type: 'integer', default: 1024, min: 1, description: 'Smallest constant (elements) stored in half for a float32 op.' },
    randomSamples: { type: 'integer', default: 8, min: 0, description: 'Random input samples the ranges are measured on when no calibration data is given (0: constants only).' },
    excludeOps: { type: 'string[]', default: [], description: 'Op types left float32.' },
    excludeNodes: { type: 'string[]', default: [], description: 'Node names left float32.' },
  },
  async run(model, opts, ctx) {
    const r = await convertFloat16(model, { ...opts, ...(ctx.data.calibration !== undefined ? { calibration: ctx.data.calibration } : {}) }, ctx);
    return { report: r, changed: r.halfNodes > 0 || r.rewrite.constantsConverted > 0, stats: { halfNodes: r.halfNodes, keptFloat: r.keptFloat.length, casts: r.rewrite.castsAdded, constants: r.rewrite.constantsConverted } };
  },
});

export default pass;
