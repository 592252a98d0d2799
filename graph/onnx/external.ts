/**
 * External tensor data: parsing `external_data` entries and reading them lazily and safely.
 *
 * A `location` is accepted only when it is a relative path that stays inside the model's folder:
 * no absolute or drive paths, no `..` components, no NUL, not empty; every component on the way is
 * checked with lstat so a symlink (final or parent) cannot lead outside; the target must be a regular
 * file with a single link. `offset` and `length` must be non-negative integers within the file, and
 * `length` must equal dims x dtype. Reads use one file descriptor per data file and `pread`, so only
 * the requested bytes are in memory (never the whole data file twice).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inputError } from '../errors.js';
import { ExternalData, ExternalDataSource, Entry, Tensor } from '../tensor.js';

/** onnxruntime's marker for tensors that live in memory it owns: never a file. */
export const ORT_MEM_ADDR_MARKER = '*/_ORT_MEM_ADDR_/*';

function tensorLabel(t: Tensor): string {
  return t.name ? `tensor ${t.name}` : 'an unnamed tensor';
}

function parseNonNegativeInt(raw: string, key: string, t: Tensor, file?: string): number {
  if (!/^[0-9]{1,16}$/.test(raw)) {
    throw inputError('EXTERNAL_BAD_NUMBER', `${tensorLabel(t)}: external_data ${key} "${raw.slice(0, 40)}" is not a non-negative integer`, { tensor: t.name, file });
  }
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw inputError('EXTERNAL_BAD_NUMBER', `${tensorLabel(t)}: external_data ${key} ${raw} is too large`, { tensor: t.name, file });
  return n;
}

/** Parses the entries of `external_data` (kept verbatim for lossless output). */
export function parseExternalData(entries: Entry[], t: Tensor, file?: string): ExternalData {
  // a null-prototype record: keys like __proto__ cannot reach Object.prototype
  const kv: Record<string, string> = Object.create(null);
  for (const e of entries) {
    const key = e.key ?? '';
    if (key in kv) throw inputError('EXTERNAL_DUPLICATE_KEY', `${tensorLabel(t)}: external_data key "${key}" appears twice`, { tensor: t.name, file });
    kv[key] = e.value ?? '';
  }
  const location = kv['location'];
  const ext: ExternalData = { entries, location: location ?? '', offset: 0 };
  if (location === undefined) {
    // Checked when the data is read or the model is checked: the entry list itself is kept as is.
    return ext;
  }
  if (kv['offset'] !== undefined) ext.offset = parseNonNegativeInt(kv['offset'], 'offset', t, file);
  if (kv['length'] !== undefined) ext.length = parseNonNegativeInt(kv['length'], 'length', t, file);
  return ext;
}

/**
 * Validates a `location` string lexically. Returns the normalized relative path (with '/' separators).
 */
export function checkLocation(location: string, t: Tensor, file?: string): string {
  const bad = (why: string): never => {
    throw inputError('EXTERNAL_BAD_LOCATION', `${tensorLabel(t)}: external data location "${location.replace(/\0/g, '\\0').slice(0, 200)}" ${why}`, { tensor: t.name, file });
  };
  if (location === '') bad('is empty');
  if (location === ORT_MEM_ADDR_MARKER || location.includes('_ORT_MEM_ADDR_')) bad("is onnxruntime's in-memory marker, not a file");
  if (location.includes('\0')) bad('contains a NUL character');
  if (location.startsWith('/') || location.startsWith('\\')) bad('is an absolute path');
  if (/^[a-zA-Z]:/.test(location)) bad('is a drive path');
  const parts = location.split(/[\\/]+/);
  for (const p of parts) {
    if (p === '..') bad('leaves the model folder (..)');
  }
  const clean = parts.filter((p) => p !== '' && p !== '.');
  if (clean.length === 0) bad('names no file');
  return clean.join('/');
}

interface OpenFile {
  fd: number;
  size: number;
}

/**
 * Reads external data for tensors of models loaded from `baseDir`. Files are opened on first use and
 * closed by `close()` (the loader closes them when the model is saved or dropped is not tracked: fds
 * are few and closed at exit).
 */
export class FileExternalSource implements ExternalDataSource {
  readonly baseDir: string;
  private readonly files = new Map<string, OpenFile>();
  private readonly realBase: string;

  constructor(baseDir: string, readonly file?: string) {
    this.baseDir = path.resolve(baseDir);
    this.realBase = fs.realpathSync(this.baseDir);
  }

  private open(rel: string, t: Tensor): OpenFile {
    const cached = this.files.get(rel);
    if (cached) return cached;
    const bad = (code: string, why: string): never => {
      throw inputError(code, `${tensorLabel(t)}: external data file "${rel}" ${why}`, { tensor: t.name, file: this.file });
    };
    // walk every component with lstat: no symlinks anywhere below the model folder
    let cur = this.realBase;
    const parts = rel.split('/');
    for (let i = 0; i < parts.length; i++) {
      cur = path.join(cur, parts[i]!);
      let st: fs.Stats;
      try {
        st = fs.lstatSync(cur);
      } catch {
        return bad('EXTERNAL_MISSING', 'does not exist');
      }
      if (st.isSymbolicLink()) bad('EXTERNAL_SYMLINK', `goes through a symbolic link (${parts.slice(0, i + 1).join('/')})`);
      if (i < parts.length - 1 && !st.isDirectory()) bad('EXTERNAL_BAD_LOCATION', 'has a parent that is not a folder');
    }
    const fd = fs.openSync(cur, fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0));
    const st = fs.fstatSync(fd);
    if (!st.isFile()) {
      fs.closeSync(fd);
      bad('EXTERNAL_NOT_FILE', 'is not a regular file');
    }
    if (st.nlink > 1) {
      fs.closeSync(fd);
      bad('EXTERNAL_HARDLINK', `has ${st.nlink} hard links (a hard link can point outside the model folder)`);
    }
    const of = { fd, size: st.size };
    this.files.set(rel, of);
    return of;
  }

  /** Size and checks of the data of a tensor without reading it. */
  locate(t: Tensor, ext: ExternalData): { rel: string; offset: number; length: number; fileSize: number } {
    const rel = checkLocation(ext.location, t, this.file);
    const f = this.open(rel, t);
    const expected = t.byteLength;
    const length = ext.length ?? expected;
    if (ext.length !== undefined && ext.length !== expected && t.dataType !== 8) {
      throw inputError('EXTERNAL_BAD_LENGTH', `${tensorLabel(t)}: external_data length ${ext.length} differs from the ${expected} bytes its dims [${t.dims.join(',')}] x ${t.dtype} need`, { tensor: t.name, file: this.file });
    }
    if (ext.offset + length > f.size) {
      throw inputError('EXTERNAL_OUT_OF_FILE', `${tensorLabel(t)}: external data [${ext.offset}, ${ext.offset + length}) lies beyond the end of "${rel}" (${f.size} bytes)`, { tensor: t.name, file: this.file });
    }
    return { rel, offset: ext.offset, length, fileSize: f.size };
  }

  read(t: Tensor, ext: ExternalData): Uint8Array {
    const { rel, offset, length } = this.locate(t, ext);
    const f = this.files.get(rel)!;
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(f.fd, out, done, length - done, offset + done);
      if (n <= 0) throw inputError('EXTERNAL_SHORT_READ', `${tensorLabel(t)}: "${rel}" ended while reading its data`, { tensor: t.name, file: this.file });
      done += n;
    }
    return out;
  }

  close(): void {
    for (const f of this.files.values()) fs.closeSync(f.fd);
    this.files.clear();
  }
}
