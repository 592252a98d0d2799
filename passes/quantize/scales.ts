/**
 * Quantization parameters and integer data.
 *
 * - Activations, uint8 asymmetric per tensor: scale = (hi - lo) / 255, zero point
 *   zp = clamp(round(-lo / scale), 0, 255) (lo <= 0 <= hi, so 0 is exact); q = clamp(round(x / s) + zp).
 *   A symmetric range [-m, m] gives zp = 128 and scale = m / 127.5... rounded through the same formula.
 * - Weights, int8 symmetric (zp 0): per channel c along `axis`, s_c = max|w_c| / Q with Q = 127, or 64
 *   with reduce-range (values in [-64, 64], which keeps AVX2's u8 x s8 pair sums below int16
 *   saturation); q = clamp(round(w / s_c), -Q, Q). An all-zero channel gets s_c = 1 (exact). When the
 *   channel has a bias b_c, s_c is raised to at least |b_c| / (s_x (2^31 - 1)) so the bias fits int32.
 * - Bias, int32 (zp 0): s_c = s_x * s_w,c and q = round(b / s_c), clamped to the int32 range (the
 *   number of clamped values is returned so callers can report it; with the weight-scale floor above
 *   none are).
 */
import { inputError } from '../../core/errors.js';

export interface ActivationParams {
  scale: number;
  zeroPoint: number;
}

/** uint8 parameters for a range containing 0 (`lo` < `hi`). */
export function activationParams(lo: number, hi: number, tensor = 'tensor'): ActivationParams {
  if (!(lo <= 0 && hi >= 0) || !Number.isFinite(lo) || !Number.isFinite(hi)) {
    throw inputError('QUANT_BAD_RANGE', `tensor '${tensor}': range [${lo}, ${hi}] must be finite and contain 0`, { tensor });
  }
  if (hi - lo <= 0) throw inputError('QUANT_ZERO_RANGE', `tensor '${tensor}' has a zero range on the calibration set (it is constant 0)`, { tensor });
  const scale = Math.fround((hi - lo) / 255);
  // guard against a float32 scale of 0 for denormal ranges
  if (!(scale > 0)) throw inputError('QUANT_ZERO_RANGE', `tensor '${tensor}' has a range too small for a float32 scale ([${lo}, ${hi}])`, { tensor });
  const zeroPoint = Math.min(255, Math.max(0, Math.round(-lo / scale)));
  return { scale, zeroPoint };
}

/** Smallest weight scale per channel for which bias / (s_x s_w) fits int32 (one entry per bias value). */
export function biasScaleFloor(b: Float32Array, inputScale: number, perChannel: boolean): Float32Array {
  const floor = (x: number) => Math.abs(x) / (inputScale * 2147483000);
  if (perChannel) return b.map(floor);
  let m = 0;
  for (const x of b) m = Math.max(m, floor(x));
  return Float32Array.of(m);
}

/** Quantizes float values with uint8 activation parameters (used by tests and the debug report). */
export function fakeQuantize(x: ArrayLike<number>, p: ActivationParams): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const q = Math.min(255, Math.max(0, roundHalfEven(x[i]! / p.scale) + p.zeroPoint));
    out[i] = (q - p.zeroPoint) * p.scale;
  }
  return out;
}

/** Round half to even, as ONNX QuantizeLinear does. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export interface QuantizedWeight {
  data: Int8Array;
  /** One scale per channel (length = dims[axis]) or one scale. */
  scales: Float32Array;
  axis: number | undefined;
}

/** Symmetric int8 quantization of a weight, per channel along `axis` or per tensor. */
export function quantizeWeight(w: Float32Array, dims: readonly number[], axis: number | undefined, reduceRange: boolean, minScales?: Float32Array): QuantizedWeight {
  const qmax = reduceRange ? 64 : 127;
  const channels = axis === undefined ? 1 : dims[axis]!;
  // element i belongs to channel floor(i / inner) % channels
  let inner = 1;
  if (axis !== undefined) for (let d = axis + 1; d < dims.length; d++) inner *= dims[d]!;
  const absMax = new Float64Array(channels);
  const n = w.length;
  for (let i = 0; i < n; i++) {
    const c = axis === undefined ? 0 : Math.floor(i / inner) % channels;
    const a = Math.abs(w[i]!);
    if (a > absMax[c]!) absMax[c] = a;
  }
  const scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) {
    scales[c] = absMax[c]! > 0 ? absMax[c]! / qmax : 1;
    // a bias that would overflow int32 at s_x * s_w needs a coarser weight scale
    const floor = minScales ? minScales[minScales.length === 1 ? 0 : c]! : 0;
    if (scales[c]! < floor) scales[c] = floor;
  }
  const data = new Int8Array(n);
  for (let i = 0; i < n; i++) {
    const c = axis === undefined ? 0 : Math.floor(i / inner) % channels;
    const q = roundHalfEven(w[i]! / scales[c]!);
    data[i] = q > qmax ? qmax : q < -qmax ? -qmax : q;
  }
  return { data, scales, axis };
}

/** int32 bias with scale s_x * s_w (per channel when `weightScales` has one entry per channel). */
export function quantizeBias(b: Float32Array, inputScale: number, weightScales: Float32Array): { data: Int32Array; scales: Float32Array; clamped: number } {
  const scales = new Float32Array(b.length);
  const data = new Int32Array(b.length);
  let clamped = 0;
  for (let c = 0; c < b.length; c++) {
    const s = Math.fround(inputScale * weightScales[weightScales.length === 1 ? 0 : c]!);
    scales[c] = s;
    let q = Math.round(b[c]! / s);
    if (q > 2147483647) {
      q = 2147483647;
      clamped++;
    } else if (q < -2147483648) {
      q = -2147483648;
      clamped++;
    }
    data[c] = q;
  }
  return { data, scales, clamped };
}
