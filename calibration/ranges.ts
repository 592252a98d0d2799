/**
 * Activation ranges from calibration statistics. Per tensor the collector keeps a {@link TensorStats}
 * (exact min/max, a moving-average min/max, and a histogram when the method needs one); this file
 * turns those into the [lo, hi] range a quantizer uses:
 *
 * - `minmax`: [min, max] over every sample, or with `movingAverage` c the exponential average
 *   m <- m + c (m_sample - m) of the per-sample extremes (the first sample initializes it);
 * - `percentile` p: [quantile(1 - p/100), quantile(p/100)] of the merged histogram;
 * - `entropy`: the KL-divergence threshold T on |x| (see `entropyThreshold`), range [max(min, -T), min(max, T)].
 *
 * `symmetric` widens the result to [-m, m] with m = max(|lo|, |hi|). Every method keeps 0 inside the
 * range (so zero is exactly representable, as ONNX zero points require).
 */
import { inputError } from '../graph/errors.js';
import { entropyThreshold, Histogram } from './histogram.js';

export type CalibrationMethod = 'minmax' | 'percentile' | 'entropy';

export interface RangeOptions {
  method: CalibrationMethod;
  /** For minmax: constant of the exponential moving average in (0, 1]; absent = plain min/max. */
  movingAverage?: number;
  /** For percentile: the percentile kept, e.g. 99.999. */
  percentile?: number;
  /** Quantized levels of |x| for the entropy method (255 for non-negative tensors, else 128). */
  entropyLevels?: number;
  symmetric?: boolean;
}

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

  /** Adds one sample's values (already checked finite by the caller, which passes their extremes). */
  add(values: ArrayLike<number>, mn: number, mx: number): void {
    this.addExtremes(mn, mx, values.length);
    this.histogram?.add(values, { min: mn, max: mx });
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
}

export function validateRangeOptions(o: RangeOptions): void {
  if (!['minmax', 'percentile', 'entropy'].includes(o.method)) throw inputError('CALIB_BAD_METHOD', `calibration method must be minmax, percentile or entropy, got '${o.method}'`);
  if (o.movingAverage !== undefined && !(o.movingAverage > 0 && o.movingAverage <= 1)) {
    throw inputError('CALIB_BAD_OPTION', `the moving-average constant must be in (0, 1], got ${o.movingAverage}`);
  }
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
