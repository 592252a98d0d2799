/**
 * The `external_data` entries of a TensorProto, parsed (no file is touched): the part of external data
 * handling the decoder needs, kept free of Node's file APIs so the codec also builds for the browser.
 * Locating, validating and reading the files is external.ts's job.
 */
import { inputError } from '../core/errors.js';
import type { Entry, ExternalData, Tensor } from '../core/tensor.js';

/** How messages name a tensor. */
export function tensorLabel(t: Tensor): string {
  return t.name ? `tensor ${t.name}` : 'an unnamed tensor';
}

function parseNonNegativeInt(raw: string, key: string, t: Tensor, file?: string): number {
  if (!/^[0-9]{1,16}$/.test(raw)) {
    const shown = raw === '' ? 'an empty string' : `"${raw.replace(/\0/g, '\\0').slice(0, 40)}"`;
    throw inputError('EXTERNAL_BAD_NUMBER', `${tensorLabel(t)}: external_data ${key} ${shown} is not a non-negative integer`, { tensor: t.name, file, field: key });
  }
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw inputError('EXTERNAL_BAD_NUMBER', `${tensorLabel(t)}: external_data ${key} ${raw} is too large`, { tensor: t.name, file, field: key });
  return n;
}

/** Parses the entries of `external_data` (kept verbatim for lossless output). */
export function parseExternalData(entries: Entry[], t: Tensor, file?: string): ExternalData {
  // a null-prototype record: keys like __proto__ cannot reach Object.prototype
  const kv: Record<string, string> = Object.create(null);
  for (const e of entries) {
    const key = e.key ?? '';
    if (key in kv) throw inputError('EXTERNAL_DUPLICATE_KEY', `${tensorLabel(t)}: external_data key "${key.slice(0, 40)}" appears twice`, { tensor: t.name, file });
    kv[key] = e.value ?? '';
  }
  const location = kv['location'];
  const ext: ExternalData = { entries, location: location ?? '', offset: 0 };
  if (location === undefined) {
    // Reported by validateExternalData() when the tensor is marked external; kept as is otherwise.
    return ext;
  }
  if (kv['offset'] !== undefined) ext.offset = parseNonNegativeInt(kv['offset'], 'offset', t, file);
  if (kv['length'] !== undefined) ext.length = parseNonNegativeInt(kv['length'], 'length', t, file);
  return ext;
}
