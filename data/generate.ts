/**
 * Random inputs generated from the model's declared input types and shapes, with a seeded generator
 * (mulberry32), so two runs see the same data. Symbolic dimensions come from `shapes`: either the full
 * dims of an input by its name, or a value per symbolic dimension name (`batch=1`).
 * Ranges: floats uniform in [0, 1); uint8 in [0, 255]; int8 in [-128, 127]; other integers in [0, 10)
 * (safe as indices and lengths); bool 0 or 1.
 */
import { inputError } from '../core/errors.js';
import { elementCount, Feed, formatDims, float32ToFloat16Bits, HostTensor, isHostDType, zeros } from '../core/host-tensor.js';
import type { ValueInfo } from '../runtime/runner-types.js';

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Parses `name=1,3,224,224` (also `name=1x3x224x224`) into an entry of a shapes record. */
export function parseShapeArg(arg: string): [string, number[]] {
  const eq = arg.lastIndexOf('=');
  if (eq <= 0) throw inputError('DATA_BAD_SHAPE_ARG', `--shape ${arg}: expected name=dims, e.g. x=1,3,224,224`);
  const name = arg.slice(0, eq);
  const text = arg.slice(eq + 1).trim().replace(/^\[|\]$/g, '');
  const dims = text === '' ? [] : text.split(/[,x]/).map((s) => Number(s.trim()));
  if (dims.some((d) => !Number.isInteger(d) || d < 0)) throw inputError('DATA_BAD_SHAPE_ARG', `--shape ${arg}: dimensions must be non-negative integers`);
  return [name, dims];
}

/** Concrete dims of an input: its declared shape with symbolic dims resolved from `shapes`. */
export function resolveShape(info: ValueInfo, shapes: Record<string, number[]>): number[] {
  const full = shapes[info.name];
  if (full) {
    if (info.shape.length > 0 && full.length !== info.shape.length) {
      throw inputError('DATA_SHAPE_MISMATCH', `--shape ${info.name}=${full.join(',')}: the model declares rank ${info.shape.length} ${formatDims(info.shape)}`, { tensor: info.name });
    }
    info.shape.forEach((d, i) => {
      if (typeof d === 'number' && d !== full[i]) {
        throw inputError('DATA_SHAPE_MISMATCH', `--shape ${info.name}=${full.join(',')}: dimension ${i} is fixed to ${d} by the model`, { tensor: info.name });
      }
    });
    return [...full];
  }
  return info.shape.map((d, i) => {
    if (typeof d === 'number') return d;
    const v = d !== '' ? shapes[d] : undefined;
    if (v && v.length === 1) return v[0]!;
    throw inputError(
      'DATA_SYMBOLIC_DIM',
      `input '${info.name}' has symbolic dimension ${i} ('${d || 'unnamed'}') in ${formatDims(info.shape.map((x) => (x === '' ? '?' : x)))}; give its size with --shape ${info.name}=${info.shape.map((x) => (typeof x === 'number' ? x : 'N')).join(',')}${d ? ` or --shape ${d}=N` : ''}`,
      { tensor: info.name },
    );
  });
}

export function randomTensor(info: ValueInfo, dims: number[], rand: () => number): HostTensor {
  if (!isHostDType(info.type) || info.type === 'string') {
    throw inputError('DATA_UNSUPPORTED_TYPE', `cannot generate data for input '${info.name}' of type ${info.type}`, { tensor: info.name });
  }
  elementCount(dims, info.name);
  const t = zeros(info.type, dims);
  const d = t.data;
  const n = d.length;
  switch (info.type) {
    case 'float32':
    case 'float64':
      for (let i = 0; i < n; i++) (d as Float32Array)[i] = rand();
      break;
    case 'float16':
      for (let i = 0; i < n; i++) (d as Uint16Array)[i] = float32ToFloat16Bits(rand());
      break;
    case 'uint8':
      for (let i = 0; i < n; i++) (d as Uint8Array)[i] = Math.floor(rand() * 256);
      break;
    case 'int8':
      for (let i = 0; i < n; i++) (d as Int8Array)[i] = Math.floor(rand() * 256) - 128;
      break;
    case 'bool':
      for (let i = 0; i < n; i++) (d as Uint8Array)[i] = rand() < 0.5 ? 0 : 1;
      break;
    case 'int64':
    case 'uint64':
      for (let i = 0; i < n; i++) (d as BigInt64Array)[i] = BigInt(Math.floor(rand() * 10));
      break;
    default:
      for (let i = 0; i < n; i++) (d as Int32Array)[i] = Math.floor(rand() * 10);
  }
  return t;
}

/** `count` random samples for the model's inputs. */
export async function* generateFeeds(inputs: readonly ValueInfo[], count: number, seed: number, shapes: Record<string, number[]>): AsyncGenerator<Feed> {
  const dims = inputs.map((i) => resolveShape(i, shapes));
  const rand = mulberry32(seed);
  for (let s = 0; s < count; s++) {
    const feed: Feed = {};
    inputs.forEach((info, i) => (feed[info.name] = randomTensor(info, dims[i]!, rand)));
    yield feed;
  }
}
