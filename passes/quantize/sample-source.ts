/**
 * Calibration data as passes take it: whatever a pipeline puts in `ctx.data.calibration` (a re-openable
 * source, samples, feeds, a one-shot async iterable) normalized into a re-openable source, and its
 * first samples. No Node built-ins and no onnxruntime: int4, fp16 and static quantization share it, and
 * the first two build for the browser (`onnxforge/web`).
 */
import { inputError } from '../../core/errors.js';
import type { Feed } from '../../core/host-tensor.js';
import type { Sample } from '../../data/sample.js';

/** A data source that can be read again from the start: each call yields the same samples. */
export type SampleSource = () => AsyncIterable<Sample>;

/** Normalizes what a pipeline passes as data into a re-openable source. */
export function toSampleSource(data: unknown): SampleSource {
  if (typeof data === 'function') return data as SampleSource;
  if (data && typeof (data as Iterable<unknown>)[Symbol.iterator] === 'function') {
    const items = [...(data as Iterable<Sample | Feed>)];
    return async function* () {
      let i = 0;
      for (const x of items) yield asSample(x, i++);
    };
  }
  if (data && typeof (data as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
    // a one-shot async iterable: read it once, then replay from memory
    let cache: Sample[] | undefined;
    return async function* () {
      if (!cache) {
        cache = [];
        let i = 0;
        for await (const x of data as AsyncIterable<Sample | Feed>) cache.push(asSample(x, i++));
      }
      yield* cache;
    };
  }
  throw inputError('QUANT_NO_CALIBRATION', 'quantize-static needs calibration data (ctx.data.calibration, or --calibration SPEC on the command line)');
}

function asSample(x: Sample | Feed, i: number): Sample {
  const s = x as Sample;
  if (typeof s.id === 'string' && s.feed && typeof s.feed === 'object') return s;
  return { id: `sample#${i}`, feed: x as Feed };
}

/** First `n` samples of a source. */
export async function firstSamples(source: SampleSource, n: number): Promise<Sample[]> {
  const out: Sample[] = [];
  if (n <= 0) return out;
  for await (const s of source()) {
    out.push(s);
    if (out.length >= n) break;
  }
  return out;
}

/**
 * At most `max` of `items`, evenly spaced over them (item floor(i * n / max) for i = 0 .. max - 1, in
 * order), or all of them when there are no more than `max`: a deterministic subset that spans the whole
 * set rather than its start.
 */
export function evenlySpaced<T>(items: readonly T[], max: number): T[] {
  const n = items.length;
  if (n <= max) return [...items];
  return Array.from({ length: Math.max(0, max) }, (_, i) => items[Math.floor((i * n) / max)]!);
}
