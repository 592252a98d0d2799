/**
 * Activation ranges from calibration statistics. Per tensor the collector keeps a {@link TensorStats}
 * (exact min/max, a moving-average min/max, and a histogram when the method needs one); this file
 * turns those into the [lo, hi] range a quantizer uses:
 *
 * - `minmax`: [min, max] over every sample, or with `movingAverage` c the exponential average
 *   m <- m + c (m_sample - m) of the per-sample extremes (the first sample initializes it);
 * - `percentile` p: [quantile(1 - p/100), quantile(p/100)] of the merged histogram;
 * - `entropy`: the KL-divergence threshold T on |x| (see `entropyThreshold`), range [max(min, -T), min(max, T)];
 * - `auto`: per tensor, the candidate of {@link AUTO_CANDIDATES} (minmax, percentile at three levels,
 *   entropy) whose range quantizes the tensor's calibration values with the least error
 *   (`Histogram.quantError`: rounding inside the range plus clipping outside it, on the merged
 *   histogram, clipped values weighted by `clipWeight`). Minmax never clips but rounds coarsely when a
 *   few outliers stretch the range; the clipping methods round finely but cut the tail; the error
 *   weighs both on the tensor's own values. Which weight serves a model best is measured on its
 *   outputs by the caller (passes/quantize-static.ts).
 *
 * `symmetric` widens the result to [-m, m] with m = max(|lo|, |hi|). Every method keeps 0 inside the
 * range (so zero is exactly representable, as ONNX zero points require).
 */
import { inputError } from '../core/errors.js';
import { entropyThreshold, Histogram } from './histogram.js';

export type CalibrationMethod = 'minmax' | 'percentile' | 'entropy' | 'auto';

export interface RangeOptions {
  method: CalibrationMethod;
  /** For minmax: constant of the exponential moving average in (0, 1]; absent = plain min/max. */
  movingAverage?: number;
  /** For percentile: the percentile kept, e.g. 99.999. */
  percentile?: number;
  /** Quantized levels of |x| for the entropy method (255 for non-negative tensors, else 128). */
  entropyLevels?: number;
  symmetric?: boolean;
  /** For auto: weight of a clipped value's squared error against a rounded one's (default 1; Infinity: never clip). */
  clipWeight?: number;
}

/** Distinct shapes a tensor's statistics remember (for the border terms of bias correction). */
export const MAX_SHAPES = 64;

/** Streaming statistics of one tensor over the calibration set. */
export class TensorStats {
  min = Infinity;
  max = -Infinity;
  avgMin = NaN;
  avgMax = NaN;
  samples = 0;
  elements = 0;
  readonly histogram?: Histogram;

  constructor(
    readonly name: string,
    withHistogram: boolean,
    private readonly movingAverage?: number,
  ) {
    if (withHistogram) this.histogram = new Histogram();
  }

  /**
   * Per-channel sums of the values, for the channel means bias correction needs: along axis 1 of a
   * tensor of rank >= 3 (NCHW convolution inputs) and along the last axis of a tensor of rank >= 2
   * (MatMul/Gemm inputs), with the number of values each channel summed.
   */
  channels?: { axis1?: { sum: Float64Array; count: number }; last?: { sum: Float64Array; count: number } };

  /** The distinct shapes seen (rank >= 3, at most {@link MAX_SHAPES}) with how many samples had each. */
  shapes?: Array<{ dims: number[]; count: number }>;

  /** Adds one sample's values (already checked finite by the caller, which passes their extremes and, for channel means, their shape). */
  add(values: ArrayLike<number>, mn: number, mx: number, dims?: readonly number[]): void {
    this.addExtremes(mn, mx, values.length);
    this.histogram?.add(values, { min: mn, max: mx });
    if (dims) {
      this.addChannels(values, dims);
      if (dims.length >= 3) this.addShape(dims);
    }
  }

  private addShape(dims: readonly number[]): void {
    if (this.shapes === undefined) this.shapes = [];
    const same = this.shapes.find((x) => x.dims.length === dims.length && x.dims.every((d, i) => d === dims[i]));
    if (same) same.count++;
    else if (this.shapes.length < MAX_SHAPES) this.shapes.push({ dims: [...dims], count: 1 });
  }

  private addChannels(values: ArrayLike<number>, dims: readonly number[]): void {
    const r = dims.length;
    if (r < 2) return;
    const acc = (key: 'axis1' | 'last', axis: number) => {
      const c = dims[axis]!;
      let inner = 1;
      for (let d = axis + 1; d < r; d++) inner *= dims[d]!;
      this.channels ??= {};
      let e = this.channels[key];
      if (!e || e.sum.length !== c) {
        // a channel count that changes between samples is not a channel axis: drop it
        if (e) return void delete this.channels[key];
        if (this.samples > 1) return;
        e = this.channels[key] = { sum: new Float64Array(c), count: 0 };
      }
      const n = values.length;
      const sum = e.sum;
      for (let base = 0, ch = 0; base < n; base += inner, ch = ch + 1 === c ? 0 : ch + 1) {
        let t = 0;
        for (let i = base; i < base + inner; i++) t += values[i]!;
        sum[ch] += t;
      }
      e.count += n / c;
    };
    if (r >= 3) acc('axis1', 1);
    acc('last', r - 1);
  }

  /** Mean of each channel along axis 1 ('axis1') or the last axis ('last'), when collected. */
  channelMeans(axis: 'axis1' | 'last'): Float64Array | undefined {
    const e = this.channels?.[axis];
    if (!e || e.count === 0) return undefined;
    return e.sum.map((x) => x / e.count);
  }

  /** Adds one sample known only by its extremes (min/max calibration reduced in the graph). */
  addExtremes(mn: number, mx: number, elements = 0): void {
    if (mn < this.min) this.min = mn;
    if (mx > this.max) this.max = mx;
    if (this.samples === 0) {
      this.avgMin = mn;
      this.avgMax = mx;
    } else if (this.movingAverage !== undefined) {
      const c = this.movingAverage;
      this.avgMin += c * (mn - this.avgMin);
      this.avgMax += c * (mx - this.avgMax);
    }
    this.samples++;
    this.elements += elements;
  }
}

export interface TensorRange {
  lo: number;
  hi: number;
  /** With method 'auto': the candidate chosen (e.g. 'minmax', 'percentile 99.99', 'entropy'). */
  chosen?: string;
}

/** The candidates method 'auto' chooses from, in order of preference on equal error. */
export const AUTO_CANDIDATES: ReadonlyArray<{ label: string; options: RangeOptions }> = [
  { label: 'minmax', options: { method: 'minmax' } },
  { label: 'percentile 99.999', options: { method: 'percentile', percentile: 99.999 } },
  { label: 'percentile 99.99', options: { method: 'percentile', percentile: 99.99 } },
  { label: 'percentile 99.9', options: { method: 'percentile', percentile: 99.9 } },
  { label: 'entropy', options: { method: 'entropy' } },
];

export function validateRangeOptions(o: RangeOptions): void {
  if (!['minmax', 'percentile', 'entropy', 'auto'].includes(o.method)) throw inputError('CALIB_BAD_METHOD', `calibration method must be auto, minmax, percentile or entropy, got '${o.method}'`);
  if (o.movingAverage !== undefined && !(o.movingAverage > 0 && o.movingAverage <= 1)) {
    throw inputError('CALIB_BAD_OPTION', `the moving-average constant must be in (0, 1], got ${o.movingAverage}`);
  }
  if (o.clipWeight !== undefined && !(o.clipWeight > 0)) throw inputError('CALIB_BAD_OPTION', `the clip weight must be a positive number, got ${o.clipWeight}`);
  if (o.percentile !== undefined && !(o.percentile > 50 && o.percentile <= 100)) {
    throw inputError('CALIB_BAD_OPTION', `the percentile must be in (50, 100], got ${o.percentile}`);
  }
}

/** Whether the method needs histograms. */
export function needsHistogram(method: CalibrationMethod): boolean {
  return method !== 'minmax';
}

/** The calibrated range of one tensor. Always contains 0. */
export function computeRange(s: TensorStats, o: RangeOptions): TensorRange {
  if (s.samples === 0) throw inputError('CALIB_NO_SAMPLES', `tensor '${s.name}' received no calibration samples`, { tensor: s.name });
  if (o.method === 'auto') return autoRange(s, o);
  let lo: number;
  let hi: number;
  switch (o.method) {
    case 'minmax':
      lo = o.movingAverage !== undefined ? s.avgMin : s.min;
      hi = o.movingAverage !== undefined ? s.avgMax : s.max;
      break;
    case 'percentile': {
      const h = s.histogram!;
      const p = (o.percentile ?? 99.999) / 100;
      lo = s.min >= 0 ? s.min : h.quantile(1 - p);
      hi = s.max <= 0 ? s.max : h.quantile(p);
      break;
    }
    case 'entropy': {
      // uint8 gives 255 levels over [0, T] for a non-negative tensor, about 128 per side otherwise
      const t = entropyThreshold(s.histogram!, o.entropyLevels ?? (s.min >= 0 ? 255 : 128));
      lo = Math.max(s.min, -t);
      hi = Math.min(s.max, t);
      break;
    }
  }
  lo = Math.min(lo, 0);
  hi = Math.max(hi, 0);
  if (o.symmetric) {
    const m = Math.max(-lo, hi);
    lo = -m;
    hi = m;
  }
  return { lo, hi };
}

/** Method 'auto': the candidate range with the least quantization error on the tensor's histogram. */
function autoRange(s: TensorStats, o: RangeOptions): TensorRange {
  const h = s.histogram;
  if (!h) throw inputError('CALIB_NO_HISTOGRAM', `tensor '${s.name}': method auto needs a histogram of the calibration values`, { tensor: s.name });
  let best: TensorRange | undefined;
  let bestErr = Infinity;
  for (const c of AUTO_CANDIDATES) {
    const r = computeRange(s, { ...c.options, ...(o.symmetric ? { symmetric: true } : {}) });
    const e = h.quantError(r.lo, r.hi, 255, o.clipWeight ?? 1);
    // an infinite clip weight makes any clipping infinitely costly (0 x Infinity is NaN: no clipping)
    const err = Number.isNaN(e) ? Infinity : e;
    if (!best || err < bestErr) {
      bestErr = err;
      best = { ...r, chosen: c.label };
    }
  }
  return best!;
}
