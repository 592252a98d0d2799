/**
 * Derived tensors: a tensor whose bytes are a recipe over other (usually lazy, external) data,
 * computed only when something reads them and never kept. A pass or workflow that transforms weights
 * can emit derived tensors instead of computed ones; saving (onnx/ `saveModel`, or the streaming writer
 * in onnx/stream.ts) then computes them one at a time as it writes them, so a model whose weights do
 * not fit in memory is transformed tensor by tensor: each source read, transformed, written, dropped.
 *
 * A derived tensor is stored as external data whose source runs the recipe (`bytes()` works as for
 * any tensor; the save code writes it to the output's data file like an unchanged external tensor).
 * Several tensors computed together (int4 codes, scales and zero points of one weight) share one
 * computation through {@link sharedParts}: it is computed once, each part handed out once, and
 * dropped when every part was taken.
 */
import { byteLengthOf } from './dtype.js';
import { inputError } from './errors.js';
import { ExternalData, ExternalDataSource, Tensor } from './tensor.js';

/** The location derived tensors carry until they are saved (never a file: saving replaces it). */
export const DERIVED_LOCATION = '(derived: computed when saved)';

/** The source of one derived tensor: runs its recipe on every read. */
export class DerivedSource implements ExternalDataSource {
  readonly baseDir = '';
  constructor(private readonly recipe: () => Uint8Array) {}

  read(t: Tensor, ext: ExternalData): Uint8Array {
    const bytes = this.recipe();
    if (ext.length !== undefined && bytes.length !== ext.length) {
      throw inputError('TENSOR_BAD_LENGTH', `derived tensor ${t.name ?? '(unnamed)'}: its recipe gave ${bytes.length} bytes, dims [${t.dims.join(',')}] x ${t.dtype} need ${ext.length}`, { tensor: t.name });
    }
    return bytes;
  }
}

/** A tensor of `dataType` and `dims` whose little-endian bytes `recipe` computes when read. */
export function derivedTensor(dataType: number, dims: readonly number[], recipe: () => Uint8Array, name?: string): Tensor {
  const t = new Tensor(dataType, [...dims], name);
  t.dataLocation = 1;
  t.external = { entries: [], location: DERIVED_LOCATION, offset: 0, length: byteLengthOf(dataType, t.size), source: new DerivedSource(recipe) };
  return t;
}

/** Whether `t`'s data is a recipe (not yet computed). */
export function isDerived(t: Tensor): boolean {
  return t.dataLocation === 1 && t.external?.source instanceof DerivedSource;
}

/**
 * One computation shared by several derived tensors: `part(k)` returns part k of `compute()`'s result,
 * computing it on the first request and dropping it once every part was handed out (a part asked for
 * again later is recomputed). Memory: one result at a time.
 */
export function sharedParts<K extends string>(compute: () => Record<K, Uint8Array>): (key: K) => Uint8Array {
  let cached: Record<K, Uint8Array> | undefined;
  let taken = new Set<K>();
  return (key) => {
    if (!cached || taken.has(key)) {
      cached = compute();
      taken = new Set();
    }
    const out = cached[key];
    taken.add(key);
    if (taken.size === Object.keys(cached).length) cached = undefined;
    return out;
  };
}
