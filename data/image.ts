/**
 * Image preprocessing for vision models, driven by a JSON file (`--preprocess prep.json`):
 *
 *   resize  -> bilinear (half-pixel centres, as OpenCV's INTER_LINEAR without antialiasing) to
 *              a fixed size, to a height keeping the aspect ratio (width = ceil(h' * w / h), capped at
 *              maxWidth), or to the nearest multiples of N (optionally limiting the longer side);
 *   rotate  -> optional 180 degrees, always or when the sample's label says `rotate180: true`;
 *   values  -> x * scale, then (x - mean[c]) / std[c], per channel in the chosen order (RGB/BGR/gray);
 *   pad     -> right/bottom with a value (in normalized units) to a fixed size, or to
 *              max(min, size) rounded up to a multiple;
 *   layout  -> NCHW or NHWC, batch of one, float32.
 *
 * Example (PaddleOCR recognizer): resize to height 48, width padded to max(320, w') rounded up to 8:
 *   {"inputs": {"x": {"resize": {"mode": "height", "height": 48}, "scale": 0.00392156862745098,
 *    "mean": [0.5,0.5,0.5], "std": [0.5,0.5,0.5], "pad": {"width": {"min": 320, "multiple": 8}}}}}
 */
import { readFileSync } from 'node:fs';
import { PNG } from 'pngjs';
import { inputError } from '../core/errors.js';
import { HostTensor } from '../core/host-tensor.js';

export type ResizeSpec =
  | { mode: 'none' }
  | { mode: 'fixed'; width: number; height: number }
  | { mode: 'height'; height: number; maxWidth?: number }
  | { mode: 'multiple'; multiple: number; limitSideLen?: number };

export type PadDim = number | { min?: number; multiple?: number };

export interface ImagePreprocess {
  /** Channel order of the tensor (default 'rgb'). */
  color?: 'rgb' | 'bgr' | 'gray';
  resize?: ResizeSpec;
  /** Round resized pixels to 0..255 integers, as resizing a uint8 image does (default false). */
  roundResized?: boolean;
  /** `true`: always; `'label'`: when the sample's label has `rotate180: true`. */
  rotate180?: boolean | 'label';
  /** Multiplier applied to 0..255 values first (default 1/255). */
  scale?: number;
  mean?: number[];
  std?: number[];
  pad?: { width?: PadDim; height?: PadDim; value?: number };
  layout?: 'NCHW' | 'NHWC';
}

export interface PreprocessConfig {
  /** Preprocessing per model input name. */
  inputs: Record<string, ImagePreprocess>;
}

export interface RgbImage {
  width: number;
  height: number;
  /** Interleaved RGB, float32 0..255. */
  data: Float32Array;
}

export function decodePng(bytes: Uint8Array, file: string): RgbImage {
  let png: { width: number; height: number; data: Buffer };
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (e) {
    throw inputError('IMAGE_BAD_PNG', `${file}: not a readable PNG (${(e as Error).message})`, { file });
  }
  const { width, height } = png;
  const out = new Float32Array(width * height * 3);
  const src = png.data;
  for (let i = 0, j = 0; i < width * height; i++, j += 4) {
    // composite over white where transparent
    const a = src[j + 3]! / 255;
    out[i * 3] = src[j]! * a + 255 * (1 - a);
    out[i * 3 + 1] = src[j + 1]! * a + 255 * (1 - a);
    out[i * 3 + 2] = src[j + 2]! * a + 255 * (1 - a);
  }
  return { width, height, data: out };
}

/** Bilinear resize with half-pixel centres (align_corners = false), clamped at the borders. */
export function resizeBilinear(img: RgbImage, width: number, height: number): RgbImage {
  if (width === img.width && height === img.height) return img;
  const out = new Float32Array(width * height * 3);
  const sx = img.width / width;
  const sy = img.height / height;
  const x0s = new Int32Array(width);
  const x1s = new Int32Array(width);
  const fxs = new Float32Array(width);
  for (let x = 0; x < width; x++) {
    const fx = Math.max(0, (x + 0.5) * sx - 0.5);
    const x0 = Math.min(Math.floor(fx), img.width - 1);
    x0s[x] = x0;
    x1s[x] = Math.min(x0 + 1, img.width - 1);
    fxs[x] = fx - x0;
  }
  const src = img.data;
  const rowLen = img.width * 3;
  for (let y = 0; y < height; y++) {
    const fy = Math.max(0, (y + 0.5) * sy - 0.5);
    const y0 = Math.min(Math.floor(fy), img.height - 1);
    const y1 = Math.min(y0 + 1, img.height - 1);
    const wy = fy - y0;
    for (let x = 0; x < width; x++) {
      const wx = fxs[x]!;
      const a = y0 * rowLen + x0s[x]! * 3;
      const b = y0 * rowLen + x1s[x]! * 3;
      const c = y1 * rowLen + x0s[x]! * 3;
      const d = y1 * rowLen + x1s[x]! * 3;
      const o = (y * width + x) * 3;
      for (let ch = 0; ch < 3; ch++) {
        const top = src[a + ch]! + (src[b + ch]! - src[a + ch]!) * wx;
        const bot = src[c + ch]! + (src[d + ch]! - src[c + ch]!) * wx;
        out[o + ch] = top + (bot - top) * wy;
      }
    }
  }
  return { width, height, data: out };
}

export function rotate180(img: RgbImage): RgbImage {
  const n = img.width * img.height;
  const out = new Float32Array(n * 3);
  for (let i = 0; i < n; i++) {
    const j = n - 1 - i;
    out[i * 3] = img.data[j * 3]!;
    out[i * 3 + 1] = img.data[j * 3 + 1]!;
    out[i * 3 + 2] = img.data[j * 3 + 2]!;
  }
  return { width: img.width, height: img.height, data: out };
}

/** Target size of the resized image (before padding). */
export function resizedSize(w: number, h: number, r: ResizeSpec | undefined): [number, number] {
  if (!r || r.mode === 'none') return [w, h];
  if (r.mode === 'fixed') return [r.width, r.height];
  if (r.mode === 'height') {
    const rw = Math.max(1, Math.ceil((r.height * w) / h));
    return [r.maxWidth !== undefined ? Math.min(rw, r.maxWidth) : rw, r.height];
  }
  let ratio = 1;
  if (r.limitSideLen !== undefined && Math.max(w, h) > r.limitSideLen) ratio = r.limitSideLen / Math.max(w, h);
  const m = r.multiple;
  return [Math.max(m, Math.round((w * ratio) / m) * m), Math.max(m, Math.round((h * ratio) / m) * m)];
}

function padTo(size: number, p: PadDim | undefined): number {
  if (p === undefined) return size;
  if (typeof p === 'number') return Math.max(size, p);
  let s = Math.max(size, p.min ?? 0);
  if (p.multiple) s = Math.ceil(s / p.multiple) * p.multiple;
  return s;
}

/** Applies one input's preprocessing to a decoded image. */
export function preprocessImage(src: RgbImage, p: ImagePreprocess, label: unknown, file: string): HostTensor {
  const [rw, rh] = resizedSize(src.width, src.height, p.resize);
  let img = resizeBilinear(src, rw, rh);
  if (p.roundResized) {
    if (img === src) img = { ...src, data: new Float32Array(src.data) };
    const d = img.data;
    for (let i = 0; i < d.length; i++) d[i] = Math.min(255, Math.max(0, Math.round(d[i]!)));
  }
  const rot = p.rotate180 === true || (p.rotate180 === 'label' && isRotated(label, file));
  if (rot) img = rotate180(img);
  const color = p.color ?? 'rgb';
  const channels = color === 'gray' ? 1 : 3;
  const scale = p.scale ?? 1 / 255;
  const mean = p.mean ?? new Array<number>(channels).fill(0);
  const std = p.std ?? new Array<number>(channels).fill(1);
  if (mean.length !== channels || std.length !== channels) {
    throw inputError('PREPROCESS_BAD_CONFIG', `preprocess: mean and std need ${channels} values for color '${color}'`, { file });
  }
  const outW = padTo(img.width, p.pad?.width);
  const outH = padTo(img.height, p.pad?.height);
  const padValue = p.pad?.value ?? 0;
  const nchw = (p.layout ?? 'NCHW') === 'NCHW';
  const out = new Float32Array(channels * outW * outH).fill(padValue);
  const order = color === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const s = (y * img.width + x) * 3;
      for (let c = 0; c < channels; c++) {
        const v = color === 'gray' ? 0.299 * img.data[s]! + 0.587 * img.data[s + 1]! + 0.114 * img.data[s + 2]! : img.data[s + order[c]!]!;
        const o = nchw ? (c * outH + y) * outW + x : (y * outW + x) * channels + c;
        out[o] = (v * scale - mean[c]!) / std[c]!;
      }
    }
  }
  return { type: 'float32', dims: nchw ? [1, channels, outH, outW] : [1, outH, outW, channels], data: out };
}

function isRotated(label: unknown, file: string): boolean {
  if (label && typeof label === 'object' && 'rotate180' in label) return (label as { rotate180: unknown }).rotate180 === true;
  throw inputError('PREPROCESS_NO_LABEL', `${file}: rotate180 is driven by labels, but the image has no label with a rotate180 field`, { file });
}

/** Reads and validates a preprocessing file. */
export function loadPreprocess(path: string): PreprocessConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw inputError('PREPROCESS_UNREADABLE', `cannot read preprocessing file ${path}: ${(e as Error).message}`, { file: path });
  }
  return validatePreprocess(raw, path);
}

export function validatePreprocess(raw: unknown, file = 'preprocess'): PreprocessConfig {
  const fail = (msg: string) => inputError('PREPROCESS_BAD_CONFIG', `${file}: ${msg}`, { file });
  if (!raw || typeof raw !== 'object' || !('inputs' in raw) || typeof (raw as { inputs: unknown }).inputs !== 'object') {
    throw fail('expected an object {"inputs": {"<input name>": {...}}}');
  }
  const inputs = (raw as PreprocessConfig).inputs;
  for (const [name, p] of Object.entries(inputs)) {
    if (!p || typeof p !== 'object') throw fail(`input '${name}': expected an object`);
    if (p.color && !['rgb', 'bgr', 'gray'].includes(p.color)) throw fail(`input '${name}': color must be rgb, bgr or gray`);
    if (p.layout && !['NCHW', 'NHWC'].includes(p.layout)) throw fail(`input '${name}': layout must be NCHW or NHWC`);
    const r = p.resize;
    if (r && !['none', 'fixed', 'height', 'multiple'].includes(r.mode)) throw fail(`input '${name}': resize.mode must be none, fixed, height or multiple`);
    const pos = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v > 0;
    if (r?.mode === 'fixed' && !(pos(r.width) && pos(r.height))) throw fail(`input '${name}': resize 'fixed' needs positive integer width and height`);
    if (r?.mode === 'height' && (!pos(r.height) || (r.maxWidth !== undefined && !pos(r.maxWidth)))) throw fail(`input '${name}': resize 'height' needs a positive integer height (and maxWidth if given)`);
    if (r?.mode === 'multiple' && !pos(r.multiple)) throw fail(`input '${name}': resize 'multiple' needs a positive integer multiple`);
    if (p.std && p.std.some((s) => s === 0)) throw fail(`input '${name}': std must not contain 0`);
  }
  return raw as PreprocessConfig;
}
