/**
 * External tensor data: parsing `external_data` entries, validating them, and reading them lazily
 * and safely.
 *
 * A `location` is accepted only when it is a relative path that stays inside the model's folder:
 * no absolute, UNC or drive paths, no `..` components, no NUL, not empty, not onnxruntime's
 * in-memory marker. Every component on the way is checked with lstat so a symlink (final or parent)
 * cannot lead outside; the target must be a regular file (not a folder, FIFO or device) with a single
 * link (a hard link can point anywhere). The file is opened with O_NOFOLLOW | O_NONBLOCK and its
 * fstat identity (device, inode) must equal what lstat saw, so swapping a component between the
 * check and the open is detected. `offset` and `length` must be non-negative decimal integers
 * (`offset` defaults to 0 and `length` to dims x dtype, as the ONNX spec says), the range must lie
 * inside the file, and `length` must equal dims x dtype.
 *
 * `validateExternalData()` runs all of these checks for every external tensor when a model is loaded
 * (lstat/fstat only, nothing is read), so a bad location fails the load, naming the tensor. Reads
 * then use `pread` on a cached descriptor, so only the requested bytes are ever in memory, and
 * `copyTo()` streams a tensor into another file in bounded chunks (saving never holds a whole data
 * file in memory). Descriptors are cached per data file (at most {@link MAX_OPEN_DATA_FILES}) and
 * closed by `close()`, `releaseModel()` or when the source is garbage collected; a descriptor keeps
 * reading the file it validated even if that path is replaced later (e.g. saving over the input).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inputError, InputErrorCode } from '../core/errors.js';
import { byteLengthOf, DataType, dtypeInfo } from '../core/dtype.js';
import type { Graph, Model, Attribute, SparseTensor } from '../ir/ir.js';
import { ExternalData, ExternalDataSource, Tensor } from '../core/tensor.js';
import { tensorLabel } from './external-entries.js';

export { parseExternalData } from './external-entries.js';

/** onnxruntime's marker for tensors that live in memory it owns: never a file. */
export const ORT_MEM_ADDR_MARKER = '*/_ORT_MEM_ADDR_/*';

/** Data files kept open at once per model; more are reopened (and re-verified) on demand. */
export const MAX_OPEN_DATA_FILES = 64;

/** Chunk size used when streaming external data from one file to another. */
export const COPY_CHUNK_BYTES = 8 << 20;

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

/**
 * Bytes that dims x dtype need, computed exactly (BigInt) so hostile dims cannot overflow. Throws
 * naming the tensor when dims are negative or not integers, the type is unknown or holds strings.
 */
export function expectedByteLength(t: Tensor, file?: string): number {
  const info = dtypeInfo(t.dataType);
  if (!info) throw inputError('TENSOR_BAD_DTYPE', `${tensorLabel(t)} has unknown data type ${t.dataType}`, { tensor: t.name, file });
  if (info.type === DataType.STRING) throw inputError('EXTERNAL_BAD_DTYPE', `${tensorLabel(t)}: string tensors cannot be stored as external data`, { tensor: t.name, file });
  let count = 1n;
  for (const d of t.dims) {
    if (!Number.isSafeInteger(d) || d < 0) throw inputError('TENSOR_BAD_DIMS', `${tensorLabel(t)} has invalid dim ${d} in [${t.dims.join(',')}]`, { tensor: t.name, file });
    count *= BigInt(d);
  }
  if (count > BigInt(Number.MAX_SAFE_INTEGER)) throw inputError('TENSOR_TOO_LARGE', `${tensorLabel(t)} claims ${count} elements`, { tensor: t.name, file });
  return byteLengthOf(t.dataType, Number(count));
}

/** What identifies a data file: device and inode, plus size and change time (inodes get reused). */
interface Identity {
  dev: number;
  ino: number;
  size: number;
  ctimeMs: number;
}

/** Resolved and checked external data of one tensor (nothing read). */
export interface ExternalRange {
  rel: string;
  offset: number;
  length: number;
  fileSize: number;
}

const finalizer = new FinalizationRegistry<Map<string, number>>((fds) => {
  for (const fd of fds.values()) {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed */
    }
  }
});

/**
 * Reads external data for tensors of models loaded from `baseDir`. One descriptor per data file,
 * opened on first use after the checks described in this file's header.
 */
export class FileExternalSource implements ExternalDataSource {
  readonly baseDir: string;
  private realBaseCache: string | undefined;
  /** Open descriptors by relative path, least recently used first. */
  private readonly fds = new Map<string, number>();
  /** The identity each data file had when it was first validated. */
  private readonly identities = new Map<string, Identity>();

  constructor(baseDir: string, readonly file?: string) {
    this.baseDir = path.resolve(baseDir);
    finalizer.register(this, this.fds, this);
  }

  /** The model folder with symlinks resolved (the folder itself may be reached through links). */
  private realBase(t: Tensor): string {
    if (this.realBaseCache === undefined) {
      try {
        this.realBaseCache = fs.realpathSync(this.baseDir);
      } catch {
        throw inputError('EXTERNAL_MISSING', `${tensorLabel(t)}: the folder ${this.baseDir} its external data is relative to does not exist`, { tensor: t.name, file: this.file });
      }
    }
    return this.realBaseCache;
  }

  private fail(code: InputErrorCode, rel: string, t: Tensor, why: string): never {
    throw inputError(code, `${tensorLabel(t)}: external data file "${rel}" ${why}`, { tensor: t.name, file: this.file });
  }

  /** Walks `rel` below the model folder with lstat, opens it and verifies what was opened. */
  private openChecked(rel: string, t: Tensor): number {
    let cur = this.realBase(t);
    const parts = rel.split('/');
    let last: fs.Stats | undefined;
    for (let i = 0; i < parts.length; i++) {
      cur = path.join(cur, parts[i]!);
      try {
        last = fs.lstatSync(cur);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') this.fail('EXTERNAL_MISSING', rel, t, 'does not exist');
        this.fail('EXTERNAL_UNREADABLE', rel, t, `cannot be examined (${code ?? 'error'})`);
      }
      if (last.isSymbolicLink()) this.fail('EXTERNAL_SYMLINK', rel, t, `goes through a symbolic link (${parts.slice(0, i + 1).join('/')})`);
      if (i < parts.length - 1 && !last.isDirectory()) this.fail('EXTERNAL_BAD_LOCATION', rel, t, 'has a parent that is not a folder');
    }
    // checked before open(): opening a FIFO could block and opening a device could have effects
    if (!last!.isFile()) this.fail('EXTERNAL_NOT_FILE', rel, t, `is not a regular file (${last!.isDirectory() ? 'a folder' : 'a device, FIFO or socket'})`);
    if (last!.nlink > 1) this.fail('EXTERNAL_HARDLINK', rel, t, `has ${last!.nlink} hard links (a hard link can point outside the model folder)`);
    let fd: number;
    try {
      fd = fs.openSync(cur, fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0) | (fs.constants.O_NONBLOCK ?? 0));
    } catch (e) {
      this.fail('EXTERNAL_UNREADABLE', rel, t, `cannot be opened (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    const st = fs.fstatSync(fd);
    const known = this.identities.get(rel);
    const swapped = st.dev !== last!.dev || st.ino !== last!.ino || !st.isFile();
    const changed = known !== undefined && (known.dev !== st.dev || known.ino !== st.ino || known.size !== st.size || known.ctimeMs !== st.ctimeMs);
    if (swapped || changed) {
      fs.closeSync(fd);
      this.fail('EXTERNAL_CHANGED', rel, t, 'was replaced while the model was loaded');
    }
    if (!known) this.identities.set(rel, { dev: st.dev, ino: st.ino, size: st.size, ctimeMs: st.ctimeMs });
    return fd;
  }

  private fd(rel: string, t: Tensor): number {
    const cached = this.fds.get(rel);
    if (cached !== undefined) {
      // move to the most recently used end
      this.fds.delete(rel);
      this.fds.set(rel, cached);
      return cached;
    }
    const fd = this.openChecked(rel, t);
    if (this.fds.size >= MAX_OPEN_DATA_FILES) {
      const [oldRel, oldFd] = this.fds.entries().next().value as [string, number];
      this.fds.delete(oldRel);
      fs.closeSync(oldFd);
    }
    this.fds.set(rel, fd);
    return fd;
  }

  /** Checks location, file, offset and length of a tensor's data without reading it. */
  locate(t: Tensor, ext: ExternalData): ExternalRange {
    const rel = checkLocation(ext.location, t, this.file);
    const expected = expectedByteLength(t, this.file);
    if (ext.length !== undefined && ext.length !== expected) {
      throw inputError('EXTERNAL_BAD_LENGTH', `${tensorLabel(t)}: external_data length ${ext.length} differs from the ${expected} bytes its dims [${t.dims.join(',')}] x ${t.dtype} need`, { tensor: t.name, file: this.file });
    }
    this.fd(rel, t);
    const size = this.identities.get(rel)!.size;
    if (ext.offset + expected > size) {
      throw inputError('EXTERNAL_OUT_OF_FILE', `${tensorLabel(t)}: external data [${ext.offset}, ${ext.offset + expected}) lies beyond the end of "${rel}" (${size} bytes)`, { tensor: t.name, file: this.file, offset: ext.offset });
    }
    return { rel, offset: ext.offset, length: expected, fileSize: size };
  }

  private pread(rel: string, t: Tensor, buf: Uint8Array, at: number, n: number, pos: number): void {
    const fd = this.fd(rel, t);
    let done = 0;
    while (done < n) {
      let got: number;
      try {
        got = fs.readSync(fd, buf, at + done, n - done, pos + done);
      } catch (e) {
        this.fail('EXTERNAL_UNREADABLE', rel, t, `could not be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
      }
      if (got <= 0) this.fail('EXTERNAL_SHORT_READ', rel, t, `ended at byte ${pos + done} while reading the tensor's data`);
      done += got;
    }
  }

  read(t: Tensor, ext: ExternalData): Uint8Array {
    const { rel, offset, length } = this.locate(t, ext);
    const out = new Uint8Array(length);
    this.pread(rel, t, out, 0, length, offset);
    return out;
  }

  /** {@link locate}, and bytes [from, from + length) checked to lie within the tensor's data. */
  private locateRange(t: Tensor, ext: ExternalData, from: number, length: number): ExternalRange {
    const r = this.locate(t, ext);
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(length) || from < 0 || length < 0 || from + length > r.length) {
      throw inputError('EXTERNAL_OUT_OF_FILE', `${tensorLabel(t)}: range [${from}, ${from + length}) is outside its ${r.length} bytes`, { tensor: t.name, file: this.file });
    }
    return r;
  }

  /** Reads bytes [from, from + length) of a tensor's data (a part of a large tensor; streaming passes). */
  readRange(t: Tensor, ext: ExternalData, from: number, length: number, into?: Uint8Array): Uint8Array {
    const r = this.locateRange(t, ext, from, length);
    const out = into ?? new Uint8Array(length);
    this.pread(r.rel, t, out, 0, length, r.offset + from);
    return out;
  }

  /**
   * The open descriptor and file position of bytes [from, from + length) of a tensor's data, checked
   * as {@link readRange} checks them, for a reader on another thread (streamed int4's read-ahead).
   * The descriptor stays valid until another data file of this source is opened.
   */
  span(t: Tensor, ext: ExternalData, from: number, length: number): { fd: number; position: number } {
    const r = this.locateRange(t, ext, from, length);
    return { fd: this.fd(r.rel, t), position: r.offset + from };
  }

  /**
   * Streams a tensor's data into `outFd` at `outPos` in chunks of {@link COPY_CHUNK_BYTES}, so that
   * copying never holds more than one chunk in memory. Returns the bytes written.
   */
  copyTo(t: Tensor, ext: ExternalData, outFd: number, outPos: number, scratch?: Uint8Array): number {
    const { rel, offset, length } = this.locate(t, ext);
    const buf = scratch ?? new Uint8Array(Math.min(COPY_CHUNK_BYTES, Math.max(length, 1)));
    let done = 0;
    while (done < length) {
      const n = Math.min(buf.length, length - done);
      this.pread(rel, t, buf, 0, n, offset + done);
      let w = 0;
      while (w < n) w += fs.writeSync(outFd, buf, w, n - w, outPos + done + w);
      done += n;
    }
    return length;
  }

  /** Closes every descriptor (reads afterwards reopen and re-verify the files). */
  close(): void {
    for (const fd of this.fds.values()) {
      try {
        fs.closeSync(fd);
      } catch {
        /* already closed */
      }
    }
    this.fds.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// Walking every tensor of a model

function sparseTensors(s: SparseTensor | undefined, fn: (t: Tensor) => void): void {
  if (s?.values) fn(s.values);
  if (s?.indices) fn(s.indices);
}

// no closure per attribute: under tsx (esbuild keepNames) each one cost a defineProperty per call
function attributeTensors(a: Attribute, fn: (t: Tensor) => void): void {
  if (a.t) fn(a.t);
  for (const t of a.tensors ?? []) fn(t);
  sparseTensors(a.sparseTensor, fn);
  for (const s of a.sparseTensors ?? []) sparseTensors(s, fn);
}

function graphTensors(g: Graph, fn: (t: Tensor) => void): void {
  for (const v of [...g.initializers.values(), ...g.duplicateInitializers]) {
    const t = g.initializerTensor(v);
    if (t) fn(t);
  }
  for (const s of g.sparseInitializers) {
    if (s.tensor.values) fn(s.tensor.values);
    if (s.tensor.indices) fn(s.tensor.indices);
  }
  for (const n of g.nodes) {
    for (const a of n.attributes) attributeTensors(a, fn);
  }
}

/** Calls `fn` for every tensor of the model: initializers, attributes, subgraphs, functions, training graphs. */
export function forEachTensor(model: Model, fn: (t: Tensor) => void): void {
  const graphs: Graph[] = [];
  if (!model.graphUnset) graphs.push(model.graph);
  for (const f of model.functions) {
    graphs.push(f.body);
    for (const a of f.attributeProtos) attributeTensors(a, fn);
  }
  for (const ti of model.trainingInfo) {
    if (ti.initialization) graphs.push(ti.initialization);
    if (ti.algorithm) graphs.push(ti.algorithm);
  }
  // iterative: subgraph depth is bounded by the decoder, but no recursion is needed here
  while (graphs.length) {
    const g = graphs.pop()!;
    graphTensors(g, fn);
    for (const n of g.nodes) for (const sub of n.subgraphs()) graphs.push(sub);
  }
}

/**
 * Validates every external tensor of a freshly loaded model: location, dims and dtype, offset and
 * length against the file (lstat/fstat only, no data is read). Without a source (a model loaded from
 * bytes with no folder) only the lexical checks run. Throws the first problem, naming the tensor.
 */
export function validateExternalData(model: Model, source: FileExternalSource | undefined, file?: string): number {
  let count = 0;
  forEachTensor(model, (t) => {
    if (t.dataLocation !== 1) return;
    count++;
    if (!t.external || !t.external.entries.some((e) => e.key === 'location')) {
      throw inputError('EXTERNAL_BAD_LOCATION', `${tensorLabel(t)} is marked external but has no location`, { tensor: t.name, file });
    }
    if (source) source.locate(t, t.external);
    else {
      checkLocation(t.external.location, t, file);
      const expected = expectedByteLength(t, file);
      if (t.external.length !== undefined && t.external.length !== expected) {
        throw inputError('EXTERNAL_BAD_LENGTH', `${tensorLabel(t)}: external_data length ${t.external.length} differs from the ${expected} bytes its dims [${t.dims.join(',')}] x ${t.dtype} need`, { tensor: t.name, file });
      }
    }
  });
  return count;
}

/** Closes the data files a model reads its external tensors from (reads afterwards reopen them). */
export function releaseModel(model: Model): void {
  const seen = new Set<FileExternalSource>();
  forEachTensor(model, (t) => {
    const s = t.external?.source;
    if (s instanceof FileExternalSource && !seen.has(s)) {
      seen.add(s);
      s.close();
    }
  });
}
