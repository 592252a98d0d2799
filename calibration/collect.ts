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
import { checkError, inputError } from '../core/errors.js';
import type { Model } from '../ir/ir.js';
import type { Sample } from '../data/index.js';
import { augmentModel, augmentModelReduced, checkFiniteFeed, EXTREME_OUTPUTS } from './augment.js';
import type { Feed } from '../core/host-tensor.js';
import { nodeRunner, type ModelSession, type Runner, type SessionOptions } from '../runtime/runner.js';
import { CalibrationMethod, needsHistogram, TensorStats } from './ranges.js';

export { augmentModel, augmentModelReduced, checkFiniteFeed, EXTREME_OUTPUTS };

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
