/**
 * Second moments of layer inputs on calibration data: for each named float tensor X whose last axis
 * has K elements, H = sum over every row x (all leading axes flattened) of x x^T, a K x K matrix.
 * GPTQ uses H as the Hessian of a layer's squared output error; tr(D H D^T) is the squared output
 * error of a weight change D on the same data.
 *
 * onnxruntime computes them: the model is run once per feed with, for each tensor, Reshape(X, [-1, K])
 * -> Gemm(X, X, transA = 1) added as an extra output (wide inputs: the lower blocks X_i^T X_j of
 * column parts, H being symmetric), so each feed returns one K x K matrix per tensor
 * (computed by MLAS at the speed of the model's own MatMuls, not row by row in JS); the sums over feeds
 * are taken in float64. The same run returns the model's own float outputs, the reference the int4
 * pass measures its candidates against (no second float pass), and, when asked, the min and max of
 * further tensors (q4f16: the float16 plan's activation ranges): ReduceMin/ReduceMax outputs as the
 * calibration augmenter builds them, reduced over all axes of the stacked feeds, so the min of a run
 * is the min over its feeds.
 */
import { DataType } from '../../../core/dtype.js';
import { inputError } from '../../../core/errors.js';
import type { Feed } from '../../../core/host-tensor.js';
import { Tensor } from '../../../core/tensor.js';
import { Attribute, Model, Node, Value } from '../../../ir/ir.js';
import { cloneModel, serializeModel } from '../../../onnx/codec.js';
import { addRangeOutput, RANGE_OUTPUT, widenRanges } from '../../../calibration/augment.js';
import type { Runner } from '../../../runtime/runner-types.js';

export interface InputMoments {
  K: number;
  /** [K, K], symmetric. */
  hessian: Float64Array;
}

export interface MomentsRun {
  moments: Map<string, InputMoments>;
  /** The model's float32 outputs per feed (feeds in order). */
  outputs: Array<Record<string, Float32Array>>;
  /**
   * Min and max of each tensor asked for over every feed (NaN: the widest range; infinities kept),
   * as float16/ranges.ts measureRanges measures them. Absent when none were asked for, and when a
   * feed's float inputs or the model's float outputs among those tensors are not finite on some feed:
   * measureRanges skips such a sample (or refuses its inputs), which a stacked run cannot do, so the
   * caller measures on its own then.
   */
  ranges?: Map<string, { min: number; max: number }>;
  /** Sum of squares over every feed of each tensor asked for (float64 sum of the runs' float32 sums). */
  energies?: Map<string, number>;
}

/** What {@link collectInputMoments} measures beside the moments. */
export interface MomentsExtras {
  tick?: () => void;
  /** Tensors whose min and max the run also measures ({@link MomentsRun.ranges}). */
  rangeTensors?: readonly string[];
  /** Tensors whose sum of squares the run also measures ({@link MomentsRun.energies}): a layer's output X W is its output energy tr(W H W^T). */
  energyTensors?: readonly string[];
  /** The Hessians in shared memory (a SharedArrayBuffer each): helper threads' GPTQ jobs then read them in place, with no copy. */
  sharedHessians?: boolean;
  /** Called once the moments' session is open, before its runs (a caller's cue to start a helper thread on other work). */
  opened?: () => void;
}

/** One block of a moment: rows i*size.., columns j*size.. of H (and, mirrored, the block (j, i)). */
interface MomentBlock {
  /** The packed output that holds the block ({@link MomentsOutputs}), and where the block starts in it (elements). */
  output: number;
  offset: number;
  i: number;
  j: number;
  size: number;
}

/**
 * Column parts of a layer input: X^T X is symmetric, so with X = [X_1 .. X_P] only the blocks
 * X_i^T X_j with i >= j are computed (P (P + 1) / 2 of P^2: 10/16 of the multiply-adds at P = 4).
 * Wide inputs only (an FFN's down projection, K = 4 d, costs most): small blocks cost more in
 * per-node overhead than they save.
 */
function partsOf(K: number): number {
  if (K >= 512 && K % 4 === 0) return 4;
  if (K >= 256 && K % 2 === 0) return 2;
  return 1;
}

/** What {@link momentsModel} adds: the packed outputs' names and where each tensor's parts are in them. */
interface MomentsOutputs {
  /** The blocks of every moment, one packed output per block size, each [blocks x size, size]: the blocks one after the other. */
  packed: string[];
  /** A layer input whose blocks each packed output holds (the first: named when the output is not float32). */
  packedFrom: string[];
  blocks: Map<string, MomentBlock[]>;
  /** The energies, one element each in the order of `energyOf` ('' when there are none: then no output). */
  energies: string;
  energyOf: string[];
}

/**
 * `model` with extra outputs: the blocks X_i^T X_j (i >= j) of each tensor's X flattened to [rows, K],
 * concatenated into one output per block size (not one output per block: the trained LM's 40 blocks,
 * all 128 x 128, cost 40 tensors handed back and freed each run); the sums of squares of `energies`,
 * in one output too; and the min, max and sum of each of `extremes` ({@link RANGE_OUTPUT}) when there are any.
 */
function momentsModel(model: Model, tensors: ReadonlyMap<string, number>, extremes: readonly string[], energies: readonly string[] = [], weightsAsInputs = false): { model: Model; outputs: MomentsOutputs; weights: Feed } {
  const copy = cloneModel(model);
  const weights = weightsAsInputs ? weightsToInputs(copy) : {};
  const g = copy.graph;
  const byName = new Map<string, Value>();
  for (const v of g.inputs) byName.set(v.name, v);
  for (const n of g.nodes) for (const o of n.outputs) byName.set(o.name, o);
  const names = copy.names;
  const outputs: MomentsOutputs = { packed: [], packedFrom: [], blocks: new Map(), energies: '', energyOf: [] };
  const int64 = (name: string, values: number[]) => g.addInitializer(Tensor.from(DataType.INT64, [values.length], BigInt64Array.from(values, BigInt)), names.fresh(name));
  const node = (op: string, inputs: Value[], out: Value): Node => {
    const n = new Node(op, inputs, [out]);
    n.name = out.name;
    g.insertNode(n);
    return n;
  };
  // values of one shape [rows, cols] concatenated on axis 0 into one graph output (all blocks of one size, or the energies flattened)
  const pack = (values: Value[], name: string, dims: number[]): string => {
    const out = new Value(names.fresh(name));
    out.setTensorType(DataType.FLOAT, dims);
    node('Concat', values, out).setAttr(Attribute.int('axis', 0));
    g.addOutput(out);
    return out.name;
  };
  // block size -> its packed output's index and blocks so far
  const bySize = new Map<number, { output: number; gemms: Value[]; from: string }>();
  for (const [t, K] of tensors) {
    const x = byName.get(t);
    if (!x) throw inputError('INT4_CALIB_SHAPE', `layer input '${t}' is not a node output or graph input of the prepared model`, { tensor: t });
    const rows = new Value(names.fresh(`${t}__rows`));
    node('Reshape', [x, int64(`${t}__rows_shape`, [-1, K])], rows);
    const P = partsOf(K);
    const size = K / P;
    const parts: Value[] = [];
    if (P === 1) parts.push(rows);
    else {
      const axes = int64(`${t}__axes`, [1]);
      for (let i = 0; i < P; i++) {
        const part = new Value(names.fresh(`${t}__part${i}`));
        node('Slice', [rows, int64(`${t}__from${i}`, [i * size]), int64(`${t}__to${i}`, [(i + 1) * size]), axes], part);
        parts.push(part);
      }
    }
    const blocks: MomentBlock[] = [];
    for (let i = 0; i < P; i++) {
      for (let j = 0; j <= i; j++) {
        const out = new Value(names.fresh(`${t}__moment${P > 1 ? `${i}${j}` : ''}`));
        node('Gemm', [parts[i]!, parts[j]!], out).setAttr(Attribute.int('transA', 1));
        let group = bySize.get(size);
        if (!group) bySize.set(size, (group = { output: bySize.size, gemms: [], from: t }));
        blocks.push({ output: group.output, offset: group.gemms.length * size * size, i, j, size });
        group.gemms.push(out);
      }
    }
    outputs.blocks.set(t, blocks);
  }
  outputs.packed = [...bySize].map(([size, { gemms }]) => pack(gemms, `__moments${size}`, [gemms.length * size, size]));
  outputs.packedFrom = [...bySize.values()].map((g) => g.from);
  const sums: Value[] = [];
  let shape1: Value | undefined;
  for (const t of energies) {
    const x = byName.get(t);
    if (!x) throw inputError('INT4_CALIB_SHAPE', `layer output '${t}' is not a node output of the prepared model`, { tensor: t });
    const sum = new Value(names.fresh(`${t}__energy`));
    node('ReduceSumSquare', [x], sum).setAttr(Attribute.int('keepdims', 0));
    const one = new Value(names.fresh(`${t}__energy1`));
    node('Reshape', [sum, (shape1 ??= int64('__one', [1]))], one);
    sums.push(one);
    outputs.energyOf.push(t);
  }
  if (sums.length > 0) outputs.energies = pack(sums, '__energies', [sums.length]);
  // last: the range output's node order wants it to be the graph's last leaf (calibration/augment.ts)
  if (extremes.length > 0) addRangeOutput(copy, extremes);
  return { model: copy, outputs, weights };
}

/**
 * The float initializers of `model`'s main graph of at least `min` elements turned into graph inputs
 * (in place; `model` is a copy), and the feed that gives them their values: a session that runs a few
 * times is created without serializing, parsing and pre-packing the weights.
 */
function weightsToInputs(model: Model, min = 1024): Feed {
  const g = model.graph;
  const feed: Feed = {};
  for (const v of [...g.initializers.values()]) {
    const t = g.initializerTensor(v);
    if (!t || t.dataType !== DataType.FLOAT || t.size < min || t.external || g.inputs.includes(v)) continue;
    const data = t.toFloat32();
    g.removeInitializer(v);
    v.setTensorType(DataType.FLOAT, [...t.dims]);
    g.addInput(v);
    feed[v.name] = { type: 'float32', dims: [...t.dims], data };
  }
  return feed;
}

/**
 * Adds the block X_i^T X_j at (i, j) of h (K x K) from the packed moments of one run `d`, or two runs
 * `d` and `e` in turn (h + d + e, the same sums as one call per run, in one pass over h);
 * {@link mirrorBlocks} fills (j, i) at the end. `fresh`: h is still all zeros (the first call), so its
 * values are not read (0 + d + e, the same values): reading a fresh page before writing it faulted
 * it in twice.
 */
function addBlocks(h: Float64Array, K: number, b: MomentBlock, d: Float32Array, e: Float32Array | undefined, fresh: boolean): void {
  const { i, j, size, offset } = b;
  for (let r = 0; r < size; r++) {
    const at = (i * size + r) * K + j * size;
    const from = offset + r * size;
    if (e) {
      if (fresh) addFresh2(h, at, d, e, from, size);
      else add2(h, at, d, e, from, size);
    } else if (fresh) addFresh1(h, at, d, from, size);
    else add1(h, at, d, from, size);
  }
}

function add2(h: Float64Array, at: number, d: Float32Array, e: Float32Array, from: number, n: number): void {
  for (let c = 0; c < n; c++) h[at + c] = h[at + c]! + d[from + c]! + e[from + c]!;
}

function addFresh2(h: Float64Array, at: number, d: Float32Array, e: Float32Array, from: number, n: number): void {
  for (let c = 0; c < n; c++) h[at + c] = 0 + d[from + c]! + e[from + c]!;
}

function add1(h: Float64Array, at: number, d: Float32Array, from: number, n: number): void {
  for (let c = 0; c < n; c++) h[at + c]! += d[from + c]!;
}

function addFresh1(h: Float64Array, at: number, d: Float32Array, from: number, n: number): void {
  for (let c = 0; c < n; c++) h[at + c] = 0 + d[from + c]!;
}

/** A run's packed moments ({@link MomentsOutputs}), checked to be float32 (layer inputs of another float type are not). */
function packedMoments(res: Feed, outputs: MomentsOutputs): Float32Array[] {
  return outputs.packed.map((name, k) => {
    const t = res[name];
    const tensor = outputs.packedFrom[k]!;
    if (!t || !(t.data instanceof Float32Array)) throw inputError('INT4_CALIB_NOT_FLOAT', `layer input '${tensor}' is not a float32 tensor on the calibration data`, { tensor });
    return t.data;
  });
}

/**
 * The upper blocks of h from the lower ones (h symmetric), once after every run is summed: in tiles
 * of {@link MIRROR_TILE} x {@link MIRROR_TILE}, so that the writes, which go down columns of h, stay
 * in a few cache lines and pages (a 512-wide moment: 0.2 ms instead of 0.6 element by element).
 */
function mirrorBlocks(h: Float64Array, K: number, blocks: readonly MomentBlock[]): void {
  for (const { i, j, size } of blocks) {
    if (i === j) continue;
    for (let r0 = 0; r0 < size; r0 += MIRROR_TILE) {
      for (let c0 = 0; c0 < size; c0 += MIRROR_TILE) mirrorTile(h, K, i * size + r0, j * size + c0, Math.min(MIRROR_TILE, size - r0), Math.min(MIRROR_TILE, size - c0));
    }
  }
}

const MIRROR_TILE = 16;

/** h[C + c][R + r] = h[R + r][C + c] for r < rows, c < cols. */
function mirrorTile(h: Float64Array, K: number, R: number, C: number, rows: number, cols: number): void {
  for (let c = 0; c < cols; c++) {
    const to = (C + c) * K + R;
    for (let r = 0; r < rows; r++) h[to + r] = h[(R + r) * K + C + c]!;
  }
}

/** Feeds per run when they can be stacked on the batch axis. */
const STACK = 8;

/**
 * The moments' session options: onnxruntime's default intra-op threads (one session on this thread:
 * against two sessions, one here and one in a helper thread taking half the runs, the trained LM's q4
 * cost 0.96-1.00x the wall time and 0.86-0.95x the CPU time, paired over 30-40 rounds in three runs,
 * and one open less), not spinning between ops: on the shared
 * 2-core machine spinning threads fought the other processes (the trained LM's 32 windows: 250-470 ms
 * with spinning, 190-205 ms without, the same moments bit for bit). Graph optimization level
 * disabled when the weights are fed as inputs (the int4 pass: its model is the prepared one, with
 * nothing left to fold and no weights to pre-pack): opening the trained LM's took ~4-5 ms against
 * ~6-10 at basic, its runs no longer, the moments the same; basic otherwise (the streamed GPTQ's
 * parts of a model as exported). Neither onnxruntime's memory pattern nor its CPU memory arena: a
 * session runs a few times, and the pattern's planning made the second run of the trained LM's
 * moments model 2-4x as long as the ones after it (q4 cost 0.92x paired without it over 20 rounds),
 * and the arena's first chunks cost more than they saved (0.93-0.95x paired without it, the moments
 * ~43 ms instead of ~54); the same outputs.
 */
function momentsSession(weightsAsInputs: boolean) {
  return { graphOptimizationLevel: weightsAsInputs ? 'disabled' : 'basic', allowSpinning: false, enableMemPattern: false, enableCpuMemArena: false } as const;
}

/**
 * `feeds` stacked in groups of up to `stack` ({@link STACK}) along axis 0 when that is safe: every graph input's
 * first dimension is symbolic and every feed has the same inputs with the same dims (batch 1 windows of
 * one length, as calibration sets are). Otherwise one group per feed.
 */
export function stackFeeds(model: Model, feeds: readonly Feed[], stack = STACK): Feed[][] {
  const single = feeds.map((f) => [f]);
  const first = feeds[0];
  if (!first) return single;
  const dynamicBatch = model.graph.inputs.filter((v) => !model.graph.initializers.has(v.name)).every((v) => {
    const d = v.shape?.[0];
    return d === undefined || typeof d === 'string';
  });
  const sig = (f: Feed) => Object.keys(f).sort().map((k) => `${k}:${f[k]!.type}:${f[k]!.dims.join('x')}`).join('|');
  if (!dynamicBatch || !feeds.every((f) => sig(f) === sig(first))) return single;
  const groups: Feed[][] = [];
  for (let i = 0; i < feeds.length; i += stack) groups.push(feeds.slice(i, i + stack));
  return groups;
}

export function concatFeeds(group: readonly Feed[]): Feed {
  if (group.length === 1) return group[0]!;
  const out: Feed = {};
  for (const k of Object.keys(group[0]!)) {
    const parts = group.map((f) => f[k]!);
    const t = parts[0]!;
    const data = new (t.data.constructor as { new (n: number): typeof t.data })(parts.reduce((a, p) => a + p.data.length, 0));
    let at = 0;
    for (const p of parts) {
      (data as Float32Array).set(p.data as Float32Array, at);
      at += p.data.length;
    }
    out[k] = { type: t.type, dims: [parts.reduce((a, p) => a + p.dims[0]!, 0), ...t.dims.slice(1)], data };
  }
  return out;
}

/** True when every element of a float tensor's data is finite (other types: true). */
function allFinite(data: Feed[string]['data']): boolean {
  if (!(data instanceof Float32Array || data instanceof Float64Array)) return true;
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) return false;
  return true;
}

/**
 * H for each tensor in `tensors` (name -> K) over `feeds`, running the model on groups of feeds
 * stacked on the batch axis where that is safe (one run per feed otherwise); with `rangeTensors`, also
 * their min and max over the feeds ({@link MomentsRun.ranges}), from the same runs.
 */
export async function collectInputMoments(model: Model, tensors: ReadonlyMap<string, number>, feeds: readonly Feed[], runner: Runner, extras: MomentsExtras = {}): Promise<MomentsRun> {
  const { tick, rangeTensors, energyTensors, sharedHessians, opened } = extras;
  const result: MomentsRun = { moments: new Map(), outputs: [] };
  if (feeds.length === 0) {
    for (const [name, K] of tensors) result.moments.set(name, { K, hessian: new Float64Array(K * K) });
    return result;
  }
  // two groups at least (the default 8 samples: two runs of 4): the groups the moments were first
  // taken on (one per thread), kept so that the sums, and the quantized weights, stay the same
  const groups = stackFeeds(model, feeds, Math.max(1, Math.min(STACK, Math.ceil(feeds.length / 2))));
  const modelOutputs = model.graph.outputs.map((o) => o.name);
  const extremes = rangeTensors ?? [];
  let ranges = rangeTensors ? new Map(extremes.map((t) => [t, { min: Infinity, max: -Infinity }])) : undefined;
  // measureRanges refuses non-finite inputs and skips a sample whose float outputs (among the tensors) are not finite
  if (ranges && !feeds.every((f) => Object.values(f).every((t) => allFinite(t.data)))) ranges = undefined;
  const checked = new Set(extremes);
  const outputsChecked = modelOutputs.filter((o) => checked.has(o));
  const energies = energyTensors?.length ? new Map(energyTensors.map((t) => [t, 0])) : undefined;
  result.moments = await accumulateInputMoments(model, tensors, groups.length, (i) => concatFeeds(groups[i]!), runner, modelOutputs, (i, res) => {
    const group = groups[i]!;
    if (ranges && extremes.length > 0) {
      if (outputsChecked.every((o) => allFinite(res[o]!.data))) widenRanges(ranges, extremes, res[RANGE_OUTPUT]!.data as Float32Array);
      else ranges = undefined;
    }
    // the model's own outputs, split back per feed (rows of the batch axis)
    for (let j = 0; j < group.length; j++) {
      const outs: Record<string, Float32Array> = {};
      for (const o of modelOutputs) {
        const t = res[o];
        if (!t || !(t.data instanceof Float32Array)) continue;
        if (group.length === 1) outs[o] = t.data;
        else if (t.dims[0] === group.length) {
          const per = t.data.length / group.length;
          outs[o] = t.data.slice(j * per, (j + 1) * per);
        }
      }
      result.outputs.push(outs);
    }
    for (let j = 0; j < group.length; j++) tick?.();
  }, extremes, energies, true, sharedHessians, opened);
  if (ranges) result.ranges = ranges;
  if (energies) result.energies = energies;
  return result;
}

/**
 * H for each tensor in `tensors` (name -> K) over `runs` runs of `model`, the feed of run i from
 * `feedOf(i)` (feeds already stacked as {@link stackFeeds} groups them), summed in float64 in run order.
 * `keep` names further outputs of each run handed to `onRun` (the streamed GPTQ keeps the activations a
 * later part of the model reads). `extremes`: tensors whose min, max and sum ({@link RANGE_OUTPUT}) each
 * run also returns to `onRun`; `energies`: tensor -> running sum of squares, each run's added;
 * `weightsAsInputs`: the model's float weights fed with every run rather than held by the session
 * ({@link weightsToInputs}; in memory only: the streamed GPTQ's weights stay in their files);
 * `sharedHessians` and `opened`: see {@link MomentsExtras}. One session ({@link momentsSession}) for every run.
 */
export async function accumulateInputMoments(
  model: Model,
  tensors: ReadonlyMap<string, number>,
  runs: number,
  feedOf: (i: number) => Feed | Promise<Feed>,
  runner: Runner,
  keep: readonly string[],
  onRun: (i: number, res: Feed) => void | Promise<void>,
  extremes: readonly string[] = [],
  energies?: Map<string, number>,
  weightsAsInputs = false,
  sharedHessians = false,
  opened?: () => void,
): Promise<Map<string, InputMoments>> {
  const moments = new Map<string, InputMoments>();
  for (const [name, K] of tensors) moments.set(name, { K, hessian: sharedHessians ? new Float64Array(new SharedArrayBuffer(8 * K * K)) : new Float64Array(K * K) });
  const { model: augmented, outputs, weights } = momentsModel(model, tensors, extremes, [...(energies?.keys() ?? [])], weightsAsInputs);
  const wanted = [...keep, ...(extremes.length > 0 ? [RANGE_OUTPUT] : []), ...outputs.packed, ...(outputs.energies ? [outputs.energies] : [])];
  const session = await runner.open(serializeModel(augmented), momentsSession(weightsAsInputs), '(model with layer input moments)');
  opened?.();
  try {
    // each run's moments summed into the Hessians in run order, two runs at a time (one pass over each
    // H for both), the last alone when the count is odd
    let held: Feed | undefined;
    const sum = async (batch: Feed[], first: number): Promise<void> => {
      const packed = moments.size > 0 ? batch.map((res) => packedMoments(res, outputs)) : [];
      for (const [name, m] of moments) for (const b of outputs.blocks.get(name)!) addBlocks(m.hessian, m.K, b, packed[0]![b.output]!, packed[1]?.[b.output], first === 0);
      for (const [k, res] of batch.entries()) {
        if (energies) outputs.energyOf.forEach((t, e) => energies.set(t, energies.get(t)! + (res[outputs.energies]!.data as Float32Array)[e]!));
        await onRun(first + k, res);
      }
    };
    for (let i = 0; i < runs; i++) {
      const res = await session.run({ ...(await feedOf(i)), ...weights }, wanted);
      if (held) {
        await sum([held, res], i - 1);
        held = undefined;
      } else if (i === runs - 1) await sum([res], i);
      else held = res;
    }
  } finally {
    await session.dispose();
  }
  for (const [name, m] of moments) mirrorBlocks(m.hessian, m.K, outputs.blocks.get(name)!);
  return moments;
}
