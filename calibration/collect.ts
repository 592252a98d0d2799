/**
 * Range collection: runs an augmented copy of the model in onnxruntime-node over a data source and
 * reduces every sample at once to streaming statistics, dropping the arrays. For min/max the copy
 * computes ReduceMin/ReduceMax of each tensor in the graph (two scalars per tensor leave the
 * runtime); for histograms (percentile, entropy) the tensors themselves become extra graph outputs
 * and are binned in a re-binning histogram.
 *
 * Memory stays bounded: at most `tensorsPerRun` extra outputs are requested per session run (all by
 * default), and if the first sample shows that the requested outputs of one run exceed
 * `memoryBudgetBytes`, the remaining work is split into groups that fit, each group re-reading the
 * data source (which streams). Samples may differ in their dynamic dimensions: statistics merge
 * across shapes because no per-shape state is kept.
 *
 * Bad data stops collection with a message naming the sample and the tensor: an empty set, a NaN or
 * infinite input value, or a NaN/infinite activation.
 */
import { cloneModel } from '../onnx/index.js';
import { checkError, inputError } from '../core/errors.js';
import { Attribute, Model, Node, Value } from '../ir/ir.js';
import { DataType } from '../core/dtype.js';
import { Tensor } from '../core/tensor.js';
import type { Sample } from '../data/index.js';
import type { Feed } from '../core/host-tensor.js';
import { nodeRunner, type ModelSession, type Runner, type SessionOptions } from '../runtime/runner.js';
import { CalibrationMethod, needsHistogram, TensorStats } from './ranges.js';

export interface CollectOptions {
  method: CalibrationMethod;
  movingAverage?: number;
  /** Most extra outputs per run (default: all of them). */
  tensorsPerRun?: number;
  /** Bytes of requested outputs one run may hold (default 512 MiB). */
  memoryBudgetBytes?: number;
  sessionOptions?: SessionOptions;
  /** How onnxruntime is reached (default onnxruntime-node's; a pass gives its `ctx.runner`). */
  runner?: Runner;
  /** Called after each sample of each group: (done, total) where total = samples x groups once known. */
  onProgress?: (done: number, total: number | undefined) => void;
}

export interface CollectResult {
  stats: Map<string, TensorStats>;
  samples: number;
  /** Number of passes over the data (1 unless the outputs had to be split). */
  groups: number;
  /** Bytes of the requested outputs of the first sample (all tensors). */
  firstSampleBytes: number;
  ms: number;
}

const DEFAULT_BUDGET = 512 * 2 ** 20;

/** The main graph's inputs and node outputs by name. */
function valuesByName(g: Model['graph']): Map<string, Value> {
  const byName = new Map<string, Value>();
  for (const v of g.inputs) byName.set(v.name, v);
  for (const n of g.nodes) for (const o of n.outputs) byName.set(o.name, o);
  return byName;
}

/** The value of a tensor to calibrate, or an error naming it: it must exist and be float32. */
function calibrationTarget(byName: Map<string, Value>, t: string): Value {
  const v = byName.get(t);
  if (!v) throw inputError('CALIB_UNKNOWN_TENSOR', `cannot calibrate '${t}': no node of the main graph produces it`, { tensor: t });
  if (v.elemType !== undefined && v.elemType !== DataType.FLOAT) throw inputError('CALIB_NOT_FLOAT', `cannot calibrate '${t}': it is not a float32 tensor`, { tensor: t });
  return v;
}

/** Builds the augmented model: a copy whose graph outputs are the original outputs plus `tensors`. */
export function augmentModel(model: Model, tensors: readonly string[]): Model {
  const copy = cloneModel(model);
  const g = copy.graph;
  const byName = valuesByName(g);
  const present = new Set(g.outputs.map((o) => o.name));
  for (const t of tensors) {
    if (present.has(t)) continue;
    const v = calibrationTarget(byName, t);
    if (!v.type) v.setTensorType(DataType.FLOAT);
    g.addOutput(v);
    present.add(t);
  }
  return copy;
}

/** Graph outputs of the reduced augmented model: every tensor's min, and every tensor's max, in order. */
export const EXTREME_OUTPUTS: [string, string] = ['__onnxforge_calib_min', '__onnxforge_calib_max'];

/**
 * The augmented model for min/max calibration: ReduceMin and ReduceMax (all axes, keepdims 1) of each
 * tensor, reshaped to [1] and concatenated into two [T] graph outputs, so onnxruntime returns two
 * small tensors per sample whatever the number of tensors (per-output overhead dominates otherwise).
 * Min and max propagate NaN and infinity, which the caller then rejects.
 */
export function augmentModelReduced(model: Model, tensors: readonly string[]): Model {
  const copy = cloneModel(model);
  const g = copy.graph;
  const byName = valuesByName(g);
  const fresh = (base: string) => copy.names.fresh(base);
  const one = g.addInitializer(Tensor.from(DataType.INT64, [1], BigInt64Array.of(1n)), fresh('__onnxforge_calib_shape1'));
  const add = (op: string, inputs: Value[], name: string, attrs: Attribute[] = []): Value => {
    const out = new Value(fresh(name));
    const node = new Node(op, inputs, [out]);
    node.name = out.name;
    for (const a of attrs) node.setAttr(a);
    g.insertNode(node);
    return out;
  };
  const parts: [Value[], Value[]] = [[], []];
  for (const t of tensors) {
    const v = calibrationTarget(byName, t);
    ['ReduceMin', 'ReduceMax'].forEach((op, i) => {
      const r = add(op, [v], `${t}__calib_${op}`, [Attribute.int('keepdims', 1)]);
      parts[i]!.push(add('Reshape', [r, one], `${t}__calib_${op}_1`));
    });
  }
  EXTREME_OUTPUTS.forEach((name, i) => {
    const out = new Value(name);
    out.setTensorType(DataType.FLOAT, [tensors.length]);
    const node = new Node('Concat', parts[i]!, [out]);
    node.name = name;
    node.setAttr(Attribute.int('axis', 0));
    g.insertNode(node);
    g.addOutput(out);
  });
  return copy;
}

/** Rejects NaN and infinite values in a sample's float inputs, naming the sample and the input. */
export function checkFiniteFeed(feed: Feed, id: string): void {
  for (const [name, t] of Object.entries(feed)) {
    if (t.type !== 'float32' && t.type !== 'float64') continue;
    const d = t.data as Float32Array | Float64Array;
    for (let i = 0; i < d.length; i++) {
      if (!Number.isFinite(d[i]!)) {
        throw inputError('CALIB_NONFINITE_INPUT', `${id}: input '${name}' holds ${d[i]} at element ${i}; calibration data must be finite`, { file: id, tensor: name });
      }
    }
  }
}

/** Min and max of a float tensor, throwing on NaN or infinity (one pass). */
function extremes(d: Float32Array, tensor: string, id: string): { mn: number; mx: number } {
  let mn = Infinity;
  let mx = -Infinity;
  let nan = false;
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    if (v < mn) mn = v;
    if (v > mx) mx = v;
    if (v !== v) nan = true;
  }
  if (d.length === 0) return { mn: 0, mx: 0 };
  if (nan || !Number.isFinite(mn) || !Number.isFinite(mx)) {
    throw checkError('CALIB_NONFINITE_ACTIVATION', `${id}: tensor '${tensor}' holds non-finite values (${nan ? 'NaN' : 'infinity'}) on this sample; the model overflows or the input is out of its domain`, { file: id, tensor });
  }
  return { mn, mx };
}

/**
 * Collects statistics of `tensors` over the samples of `source()` (called once per pass over the
 * data; it must yield the same samples each time).
 */
export async function collectStats(model: Model, tensors: readonly string[], source: () => AsyncIterable<Sample>, options: CollectOptions): Promise<CollectResult> {
  const t0 = performance.now();
  const withHist = needsHistogram(options.method);
  const stats = new Map<string, TensorStats>(tensors.map((t) => [t, new TensorStats(t, withHist, options.movingAverage)]));
  const budget = options.memoryBudgetBytes ?? DEFAULT_BUDGET;
  const perRun = Math.max(1, options.tensorsPerRun ?? tensors.length);
  let groups = chunk(tensors, perRun);
  let samples = 0;
  let firstBytes = 0;
  let done = 0;
  let total: number | undefined;

  const reduce = (out: Feed, names: readonly string[], id: string): number => {
    let bytes = 0;
    for (const name of names) {
      const t = out[name];
      if (!t) throw checkError('CALIB_MISSING_OUTPUT', `${id}: onnxruntime returned no value for '${name}'`, { tensor: name });
      if (t.type !== 'float32') throw inputError('CALIB_NOT_FLOAT', `cannot calibrate '${name}': it is ${t.type}, not float32`, { tensor: name });
      const d = t.data as Float32Array;
      bytes += d.byteLength;
      const { mn, mx } = extremes(d, name, id);
      stats.get(name)!.add(d, mn, mx, t.dims);
    }
    return bytes;
  };

  if (tensors.length === 0) {
    // nothing to calibrate, but the data must still be valid and non-empty
    for await (const s of source()) {
      checkFiniteFeed(s.feed, s.id);
      samples++;
    }
    if (samples === 0) throw inputError('CALIB_EMPTY', 'the calibration set is empty: the data source gave no samples');
    return { stats, samples, groups: 0, firstSampleBytes: 0, ms: performance.now() - t0 };
  }

  if (!withHist) {
    // min/max only: reduced in the graph, two scalars per tensor per sample
    const session = await (options.runner ?? nodeRunner).open(augmentModelReduced(model, tensors), { graphOptimizationLevel: 'all', ...options.sessionOptions }, '(calibration model)');
    try {
      for await (const s of source()) {
        checkFiniteFeed(s.feed, s.id);
        const out = await session.run(s.feed, EXTREME_OUTPUTS);
        const mins = out[EXTREME_OUTPUTS[0]]!.data as Float32Array;
        const maxs = out[EXTREME_OUTPUTS[1]]!.data as Float32Array;
        for (let k = 0; k < tensors.length; k++) {
          const t = tensors[k]!;
          const mn = mins[k]!;
          const mx = maxs[k]!;
          if (!Number.isFinite(mn) || !Number.isFinite(mx)) {
            throw checkError('CALIB_NONFINITE_ACTIVATION', `${s.id}: tensor '${t}' holds non-finite values (min ${mn}, max ${mx}) on this sample; the model overflows or the input is out of its domain`, { file: s.id, tensor: t });
          }
          stats.get(t)!.addExtremes(mn, mx);
        }
        samples++;
        options.onProgress?.(samples, undefined);
      }
    } finally {
      await session.dispose().catch(() => undefined);
    }
    if (samples === 0) throw inputError('CALIB_EMPTY', 'the calibration set is empty: the data source gave no samples');
    return { stats, samples, groups: 1, firstSampleBytes: 8 * tensors.length, ms: performance.now() - t0 };
  }

  for (let gi = 0; gi < groups.length; gi++) {
    const names = groups[gi]!;
    const session = await openSession(model, names, options);
    try {
      let k = 0;
      for await (const s of source()) {
        if (gi === 0) checkFiniteFeed(s.feed, s.id);
        const out = await session.run(s.feed, names);
        const bytes = reduce(out, names, s.id);
        k++;
        if (gi === 0) samples++;
        if (gi === 0 && k === 1) {
          firstBytes = bytes;
          if (bytes > budget && names.length > 1 && groups.length === 1) {
            // too much per run: finish this pass with the first group only, then the rest
            const perGroup = Math.max(1, Math.floor((names.length * budget) / bytes));
            groups = chunk(tensors, perGroup);
            await session.dispose();
            return continueSplit();
          }
        }
        done++;
        options.onProgress?.(done, total);
      }
      if (gi === 0) {
        if (samples === 0) throw inputError('CALIB_EMPTY', 'the calibration set is empty: the data source gave no samples');
        total = samples * groups.length;
      }
    } finally {
      await session.dispose().catch(() => undefined);
    }
  }
  return { stats, samples, groups: groups.length, firstSampleBytes: firstBytes, ms: performance.now() - t0 };

  // Runs every group of `groups` over the whole data (the first sample is already reduced).
  async function continueSplit(): Promise<CollectResult> {
    done = 1;
    for (let gi = 0; gi < groups.length; gi++) {
      const names = groups[gi]!;
      const session = await openSession(model, names, options);
      try {
        let k = 0;
        for await (const s of source()) {
          if (k++ === 0) continue;
          if (gi === 0) {
            checkFiniteFeed(s.feed, s.id);
            samples++;
          }
          reduce(await session.run(s.feed, names), names, s.id);
          done++;
          options.onProgress?.(done, total);
        }
        if (gi === 0) total = 1 + (samples - 1) * groups.length;
      } finally {
        await session.dispose().catch(() => undefined);
      }
    }
    return { stats, samples, groups: groups.length, firstSampleBytes: firstBytes, ms: performance.now() - t0 };
  }
}

function chunk(xs: readonly string[], n: number): string[][] {
  const out: string[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

async function openSession(model: Model, names: readonly string[], options: CollectOptions): Promise<ModelSession> {
  return (options.runner ?? nodeRunner).open(augmentModel(model, names), { graphOptimizationLevel: 'all', ...options.sessionOptions }, '(calibration model)');
}
