/**
 * Checks a sample against the model's declared inputs: every input present, no unknown names, the
 * declared element type, the declared rank, and every fixed dimension. Errors name the file and input.
 */
import { inputError } from '../core/errors.js';
import { Feed, formatDims, HostTensor } from '../core/host-tensor.js';
import type { ValueInfo } from '../runtime/session.js';

export function checkFeed(feed: Feed, inputs: readonly ValueInfo[], file: string): Feed {
  const names = new Set(inputs.map((i) => i.name));
  for (const k of Object.keys(feed)) {
    if (!names.has(k)) {
      throw inputError('DATA_UNKNOWN_INPUT', `${file}: the sample has an input named '${k}', but the model's inputs are ${[...names].map((n) => `'${n}'`).join(', ')}`, { file, tensor: k });
    }
  }
  for (const info of inputs) {
    const t = feed[info.name];
    if (!t) throw inputError('DATA_MISSING_INPUT', `${file}: the sample has no data for the model input '${info.name}'`, { file, tensor: info.name });
    checkTensor(t, info, file);
  }
  return feed;
}

export function checkTensor(t: HostTensor, info: ValueInfo, file: string): void {
  if (t.type !== info.type) {
    throw inputError('DATA_DTYPE_MISMATCH', `${file}: input '${info.name}' is ${t.type}, but the model expects ${info.type}`, { file, tensor: info.name });
  }
  if (info.shape.length > 0 || t.dims.length === 0) {
    const ok = t.dims.length === info.shape.length && info.shape.every((d, i) => typeof d !== 'number' || d === t.dims[i]);
    if (!ok) {
      throw inputError('DATA_SHAPE_MISMATCH', `${file}: input '${info.name}' has shape ${formatDims(t.dims)}, but the model expects ${formatDims(info.shape.map((d) => (d === '' ? '?' : d)))}`, {
        file,
        tensor: info.name,
      });
    }
  }
  let n = 1;
  for (const d of t.dims) n *= d;
  if (t.data.length !== n) {
    throw inputError('DATA_BAD_LENGTH', `${file}: input '${info.name}' has ${t.data.length} elements for shape ${formatDims(t.dims)} (${n} expected)`, { file, tensor: info.name });
  }
}
