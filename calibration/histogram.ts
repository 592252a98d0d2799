/**
 * A streaming histogram of a tensor's values that merges across samples of different shapes without
 * keeping any sample. Bins have a fixed width `w` and sit on a grid anchored at zero: bin k covers
 * [(k - H) w, (k - H + 1) w) for k in [0, 2H), i.e. the histogram spans [-H w, H w). When a sample
 * holds a value outside the span, the width doubles (pairs of neighbouring bins merge: bin boundaries
 * of the coarse grid are boundaries of the fine grid, so no count moves across a value it did not
 * cover) until every value fits. Counts are therefore exact with respect to the final grid.
 *
 * From the histogram come the range estimates of `ranges.ts`: percentiles (linear inside a bin) and the
 * KL-divergence (entropy) threshold.
 */
import { inputError } from '../core/errors.js';

/** Default bins per side of zero (2 x 1024 = 2048 bins, as the common percentile calibrators use). */
export const DEFAULT_HALF_BINS = 1024;

export class Histogram {
  /** Bin width; 0 until the first non-zero value arrives. */
  width = 0;
  readonly half: number;
  readonly counts: Float64Array;
  /** Exact extremes seen (not rounded to bins). */
  min = Infinity;
  max = -Infinity;
  total = 0;

  constructor(half = DEFAULT_HALF_BINS) {
    if (!Number.isInteger(half) || half < 2 || half % 2 !== 0) throw inputError('CALIB_BAD_BINS', `histogram bins per side must be an even integer >= 2, got ${half}`);
    this.half = half;
    this.counts = new Float64Array(2 * half);
  }

  /** Lower edge of the span. */
  get lo(): number {
    return -this.half * this.width;
  }

  /** Upper edge of the span. */
  get hi(): number {
    return this.half * this.width;
  }

  /**
   * Adds values. `absMax` and the extremes may be passed when the caller already computed them (one
   * pass over the data is then saved). Non-finite values must have been rejected by the caller.
   */
  add(values: ArrayLike<number>, extremes?: { min: number; max: number }): void {
    const n = values.length;
    if (n === 0) return;
    let mn = extremes?.min ?? Infinity;
    let mx = extremes?.max ?? -Infinity;
    if (!extremes) {
      for (let i = 0; i < n; i++) {
        const v = values[i]!;
        if (v < mn) mn = v;
        if (v > mx) mx = v;
      }
    }
    if (mn < this.min) this.min = mn;
    if (mx > this.max) this.max = mx;
    const absMax = Math.max(Math.abs(mn), Math.abs(mx));
    if (this.width === 0) {
      if (absMax === 0) {
        // all zeros so far: they fall in the bin just above zero whatever the width becomes
        this.pendingZeros += n;
        this.total += n;
        return;
      }
      // a little headroom so a slightly larger next sample does not force an immediate merge
      this.width = (absMax * 1.0001) / this.half;
      if (this.pendingZeros > 0) {
        this.counts[this.half] += this.pendingZeros;
        this.pendingZeros = 0;
      }
    }
    while (absMax >= this.hi) this.grow();
    const inv = 1 / this.width;
    const h = this.half;
    const last = 2 * h - 1;
    const c = this.counts;
    for (let i = 0; i < n; i++) {
      // t >= 0 after the clamp, so truncation is floor
      const t = values[i]! * inv + h;
      const k = t <= 0 ? 0 : t >= last ? last : t | 0;
      c[k]++;
    }
    this.total += n;
  }

  private pendingZeros = 0;

  /** Doubles the bin width, merging pairs of bins symmetric about zero. */
  private grow(): void {
    const h = this.half;
    const c = this.counts;
    const merged = new Float64Array(2 * h);
    // new bin j (relative to zero, j in [-h/2, h/2)) = old bins 2j and 2j+1
    for (let j = -h / 2; j < h / 2; j++) merged[j + h] = c[2 * j + h]! + c[2 * j + 1 + h]!;
    c.set(merged);
    this.width *= 2;
  }

  /** The value below which a fraction `q` of the counts lie (linear inside a bin), clamped to [min, max]. */
  quantile(q: number): number {
    if (this.total === 0) return NaN;
    if (this.width === 0) return 0;
    const target = Math.min(Math.max(q, 0), 1) * this.total;
    let acc = 0;
    const c = this.counts;
    for (let k = 0; k < c.length; k++) {
      const n = c[k]!;
      if (n > 0 && acc + n >= target) {
        const frac = (target - acc) / n;
        const v = (k - this.half + frac) * this.width;
        return Math.min(Math.max(v, this.min), this.max);
      }
      acc += n;
    }
    return this.max;
  }

  /**
   * Squared error of quantizing the histogram's values to the uint8 grid of [lo, hi] (lo <= 0 <= hi;
   * step s = (hi - lo) / levels, zero point round(-lo / s), so 0 is exact), per value: a bin's values
   * sit at its centre (clamped to the seen extremes) and round to the grid, or clip to the nearest end
   * when outside [lo, hi]; a bin wider than a step spreads its values over several steps and costs
   * s^2 / 12 each. Clipped values count `clipWeight` times their squared error (1: plain mean squared
   * error). Computed from the counts alone, so every candidate range of a tensor is judged on the same
   * data without another pass over the calibration set.
   */
  quantError(lo: number, hi: number, levels = 255, clipWeight = 1): number {
    if (this.total === 0) return 0;
    const c = this.counts;
    let sq = 0;
    if (!(hi > lo)) {
      // every value collapses to 0
      for (let k = 0; k < c.length; k++) if (c[k]! > 0) sq += clipWeight * c[k]! * this.centre(k) ** 2;
      return sq / this.total;
    }
    const s = (hi - lo) / levels;
    const zp = Math.min(levels, Math.max(0, Math.round(-lo / s)));
    const qlo = -zp * s;
    const qhi = (levels - zp) * s;
    const wide = this.width > s;
    for (let k = 0; k < c.length; k++) {
      const n = c[k]!;
      if (n === 0) continue;
      const x = this.centre(k);
      let e: number;
      if (x < qlo) e = clipWeight * (x - qlo) ** 2;
      else if (x > qhi) e = clipWeight * (x - qhi) ** 2;
      else if (wide) e = (s * s) / 12;
      else e = (x - (Math.round(x / s + zp) - zp) * s) ** 2;
      sq += n * e;
    }
    return sq / this.total;
  }

  /** Centre of bin k, clamped to the exact extremes seen (the outer bins may be mostly empty space). */
  private centre(k: number): number {
    if (this.width === 0) return 0;
    const x = (k - this.half + 0.5) * this.width;
    return Math.min(Math.max(x, this.min), this.max);
  }

  /** Counts of |x| on bins of the same width: bin k covers [k w, (k + 1) w), k in [0, half). */
  absCounts(): Float64Array {
    const h = this.half;
    const out = new Float64Array(h);
    for (let k = 0; k < h; k++) out[k] = this.counts[h + k]! + this.counts[h - 1 - k]!;
    return out;
  }
}

/**
 * The KL-divergence threshold on |x| (the TensorRT entropy calibration): for each candidate
 * threshold bin i, P is the histogram clipped at i (outliers added to the last kept bin), Q is P
 * quantized into `levels` bins and expanded back over P's non-zero bins; the threshold minimizing
 * KL(P || Q) wins. Candidates are tried every `step` bins to bound the cost (the result is the upper
 * edge of the chosen bin).
 */
export function entropyThreshold(h: Histogram, levels = 128, step = 4): number {
  if (h.width === 0 || h.total === 0) return 0;
  const abs = h.absCounts();
  let top = abs.length;
  while (top > 0 && abs[top - 1] === 0) top--;
  if (top <= levels) return top * h.width;
  let bestI = top;
  let bestKl = Infinity;
  const p = new Float64Array(top);
  const q = new Float64Array(top);
  for (let i = levels; i <= top; i += step) {
    // reference distribution P: first i bins, outliers folded into the last
    let outliers = 0;
    for (let k = i; k < top; k++) outliers += abs[k]!;
    for (let k = 0; k < i; k++) p[k] = abs[k]!;
    p[i - 1] += outliers;
    // candidate Q: merge the i bins into `levels` groups, spread each group's mass over its non-zero bins
    const perLevel = i / levels;
    for (let l = 0; l < levels; l++) {
      const start = Math.floor(l * perLevel);
      const end = l === levels - 1 ? i : Math.floor((l + 1) * perLevel);
      let sum = 0;
      let nonZero = 0;
      for (let k = start; k < end; k++) {
        sum += abs[k]!;
        if (abs[k]! !== 0) nonZero++;
      }
      const v = nonZero > 0 ? sum / nonZero : 0;
      for (let k = start; k < end; k++) q[k] = abs[k]! !== 0 ? v : 0;
    }
    const kl = klDivergence(p, q, i);
    if (kl < bestKl) {
      bestKl = kl;
      bestI = i;
    }
  }
  return bestI * h.width;
}

/** KL(P || Q) over the first n entries, both normalized; bins where Q is 0 but P is not get a small floor. */
function klDivergence(p: Float64Array, q: Float64Array, n: number): number {
  let ps = 0;
  let qs = 0;
  for (let k = 0; k < n; k++) {
    ps += p[k]!;
    qs += q[k]!;
  }
  if (ps === 0 || qs === 0) return Infinity;
  let kl = 0;
  for (let k = 0; k < n; k++) {
    const a = p[k]! / ps;
    if (a === 0) continue;
    const b = Math.max(q[k]! / qs, 1e-12);
    kl += a * Math.log(a / b);
  }
  return kl;
}
