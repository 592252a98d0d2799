/**
 * The streaming writer: saves a model whose weights need not fit in memory, tensor by tensor.
 *
 * Every tensor of at least `threshold` bytes goes to external data, in graph order, into one data file
 * or, with `maxDataFileSize`, into several (`<model>.data.1-of-3`, ...: a file holds at most that many
 * bytes unless one tensor alone is larger, then that tensor gets a file of its own). Each tensor is
 * produced and written on its own, then dropped: unchanged external tensors are copied from their
 * source file in chunks, derived tensors (core/derived.ts) run their recipe, in-memory tensors are
 * written as they are. Peak memory is the graph plus the largest single tensor (or recipe).
 *
 * Atomic and resumable: everything is written into a hidden work folder beside the destination
 * (`.<model>.partial/`), with a journal that records, after each finished tensor, how far the data
 * files are complete. The files are renamed into place only when all are complete (data files first,
 * the .onnx last), so an interrupted run (Ctrl-C, killed) leaves nothing half-written at the
 * destination. The next run either resumes from the journal (`resume: true`, when the input files
 * have the same size and modification time and the layout of the output is the same) or removes the
 * work folder and starts over.
 *
 * Before anything is written, the free space of the destination's file system (`fs.statfs`) is
 * checked against the estimated size of what is left to write; too little is OUTPUT_NO_SPACE with
 * the figures.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { inputError, OnnxForgeError } from '../core/errors.js';
import { DataType, dtypeInfo } from '../core/dtype.js';
import { ensureParentDir, writeFileAtomic } from '../core/files.js';
import { Tensor } from '../core/tensor.js';
import type { Model } from '../ir/ir.js';
import { checkLocation, COPY_CHUNK_BYTES, expectedByteLength, FileExternalSource, forEachTensor } from './external.js';
import { modelToProto, ToProtoOptions } from './serde.js';
import { encode, encodeChunks } from './wire.js';

/** Protobuf messages cannot exceed 2 GiB. */
const MAX_PROTO = 2 ** 31 - 1;

export interface StreamSaveOptions {
  /** Tensors of at least this many bytes go to external data (default 1024). */
  threshold?: number;
  /** Alignment of each tensor in its data file (default 64). */
  align?: number;
  /** Split the data into files of at most this many bytes (default: one file). */
  maxDataFileSize?: number;
  /** Continue an interrupted run from its journal when the input and the output layout are unchanged. */
  resume?: boolean;
  /**
   * Free bytes at the destination (default: `fs.statfs` of its folder); tests inject a figure. The
   * output's estimated size must fit, or nothing is written (OUTPUT_NO_SPACE).
   */
  freeBytes?: (dir: string) => number;
  /** Told after each tensor: bytes written (resumed bytes included) of the total. */
  onProgress?: (done: number, total: number, tensor: string) => void;
  /**
   * The files the output is computed from (default: the model's file and the data files its tensors
   * read). A workflow that replaced tensors by derived ones passes what the model read when loaded
   * ({@link inputFilesOf} before the rewrite): never written over, and their size and modification
   * time decide whether a journal is resumed.
   */
  inputFiles?: string[];
  /** Anything else the output depends on (the transformation's options), for the resume check. */
  fingerprint?: string;
  /** fsync the files before renaming them into place (default true). */
  fsync?: boolean;
}

export interface StreamSaveResult {
  path: string;
  /** Bytes of the .onnx file. */
  bytes: number;
  dataFiles: { path: string; bytes: number }[];
  externalTensors: number;
  /** Tensors and bytes taken over from an interrupted run (resume). */
  resumed: { tensors: number; bytes: number };
  /** Why a journal found at the destination was not resumed from (input changed, layout differs, ...). */
  restartReason?: string;
}

interface Placed {
  t: Tensor;
  file: number;
  offset: number;
  length: number;
}

interface Layout {
  placed: Placed[];
  /** Bytes of each data file. */
  sizes: number[];
  names: string[];
  enc: { chunks: Uint8Array[]; size: number };
}

interface Journal {
  version: 1;
  fingerprint: string;
  /** Placed tensors finished, in order. */
  done: number;
}

const JOURNAL = 'journal.json';

/** The work folder of a destination: hidden, beside it, one per output name. */
export function workDirOf(dest: string): string {
  const out = path.resolve(dest);
  return path.join(path.dirname(out), `.${path.basename(out)}.partial`);
}

function dataFileNames(base: string, count: number): string[] {
  if (count <= 1) return [`${base}.data`];
  return Array.from({ length: count }, (_, i) => `${base}.data.${i + 1}-of-${count}`);
}

/** Places the tensors (graph order) in `count` files' worth of names; returns the layout. */
function layout(model: Model, base: string, threshold: number, align: number, maxFile: number | undefined, count: number): Layout {
  const names = dataFileNames(base, count);
  const placed: Placed[] = [];
  const sizes = [0];
  const hook: ToProtoOptions['tensorData'] = (t) => {
    const storable = t.name && t.dataType !== DataType.STRING && dtypeInfo(t.dataType);
    const length = storable ? (t.isExternal ? expectedByteLength(t) : t.byteLength) : 0;
    if (storable && length >= threshold && length > 0) {
      let file = sizes.length - 1;
      let offset = Math.ceil(sizes[file]! / align) * align;
      if (maxFile !== undefined && sizes[file]! > 0 && offset + length > maxFile) {
        sizes.push(0);
        file++;
        offset = 0;
      }
      sizes[file] = offset + length;
      placed.push({ t, file, offset, length });
      const entries: Array<[string, string | number]> = [['location', names[Math.min(file, names.length - 1)]!], ['offset', offset], ['length', length]];
      return { external_data: entries.map(([key, value]) => ({ key, value: String(value) })), data_location: 1 };
    }
    if (t.dataLocation === 1 && t.external) return { raw_data: t.bytes() };
    return undefined;
  };
  const proto = modelToProto(model, { tensorData: hook });
  if (placed.length === 0) sizes.length = 0;
  return { placed, sizes, names, enc: encodeChunks(proto, 'ModelProto') };
}

/** The files a model is read from: its .onnx and the data files of its external tensors. */
export function inputFilesOf(model: Model): string[] {
  const files = new Set<string>();
  if (model.sourcePath) files.add(path.resolve(model.sourcePath));
  forEachTensor(model, (t) => {
    const s = t.external?.source;
    if (t.isExternal && s instanceof FileExternalSource) {
      try {
        files.add(path.join(s.baseDir, checkLocation(t.external!.location, t)));
      } catch {
        /* rejected at load */
      }
    }
  });
  return [...files].sort();
}

/** Size and modification time of the files (what resume checks). */
function inputIdentity(files: readonly string[]): string[] {
  return [...files].sort().map((f) => {
    try {
      const st = fs.statSync(f);
      return `${f}\0${st.size}\0${st.mtimeMs}`;
    } catch {
      return `${f}\0missing`;
    }
  });
}

function fileKey(p: string): string | undefined {
  try {
    const st = fs.statSync(p);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** The free bytes of the file system holding `dir` (its nearest existing folder: outputs may go to one not made yet). */
export function statfsFreeBytes(dir: string): number {
  let d = path.resolve(dir);
  while (!fs.existsSync(d) && path.dirname(d) !== d) d = path.dirname(d);
  const s = fs.statfsSync(d);
  return Number(s.bavail) * Number(s.bsize);
}

function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${n} bytes`;
}

function writeFully(fd: number, bytes: Uint8Array, pos: number): void {
  let off = 0;
  while (off < bytes.length) off += fs.writeSync(fd, bytes, off, bytes.length - off, pos + off);
}

/**
 * Writes one tensor's data at `offset`: an unchanged external tensor copied from its file in chunks,
 * anything else (derived tensors run their recipe here) written from its bytes, then dropped.
 */
function writeTensorAt(t: Tensor, fd: number, offset: number, length: number, dest: string, scratch: { buf?: Uint8Array }): void {
  const ext = t.isExternal ? t.external : undefined;
  if (ext?.source instanceof FileExternalSource) {
    ext.source.copyTo(t, ext, fd, offset, (scratch.buf ??= new Uint8Array(COPY_CHUNK_BYTES)));
    return;
  }
  const data = t.bytes();
  if (data.length !== length) throw inputError('TENSOR_BAD_LENGTH', `tensor ${t.name}: ${data.length} bytes of data, dims [${t.dims.join(',')}] x ${t.dtype} need ${length}`, { tensor: t.name, file: dest });
  writeFully(fd, data, offset);
}

function readJournal(work: string): Journal | undefined {
  try {
    const j = JSON.parse(fs.readFileSync(path.join(work, JOURNAL), 'utf8')) as Journal;
    return j.version === 1 && typeof j.fingerprint === 'string' && Number.isInteger(j.done) ? j : undefined;
  } catch {
    return undefined;
  }
}

function writeJournal(work: string, j: Journal): void {
  const tmp = path.join(work, `${JOURNAL}.tmp`);
  fs.writeFileSync(tmp, JSON.stringify(j));
  fs.renameSync(tmp, path.join(work, JOURNAL));
}

/** Removes a work folder left by an interrupted run (only the files this writer puts there). */
export function removeWorkDir(work: string): void {
  fs.rmSync(work, { recursive: true, force: true });
}

/**
 * Saves `model` to `dest` with its weights streamed into external data (see the file header).
 */
export function saveModelStreaming(model: Model, dest: string, options: StreamSaveOptions = {}): StreamSaveResult {
  const outPath = path.resolve(dest);
  const dir = ensureParentDir(dest);
  const base = path.basename(outPath);
  const threshold = options.threshold ?? 1024;
  const align = options.align ?? 64;
  const maxFile = options.maxDataFileSize;
  if (!Number.isFinite(threshold) || threshold < 0) throw inputError('USAGE_BAD_VALUE', `threshold must be a non-negative number of bytes, got ${threshold}`, { file: dest });
  if (!Number.isInteger(align) || align < 1) throw inputError('USAGE_BAD_VALUE', `align must be a positive integer, got ${align}`, { file: dest });
  if (maxFile !== undefined && (!Number.isSafeInteger(maxFile) || maxFile < 1)) throw inputError('USAGE_BAD_VALUE', `--max-data-file-size must be a positive number of bytes, got ${maxFile}`, { file: dest, field: 'max-data-file-size' });

  // the layout twice when split: once to count the files, once with their final names
  let lay = layout(model, base, threshold, align, maxFile, 1);
  if (lay.sizes.length > 1) lay = layout(model, base, threshold, align, maxFile, lay.sizes.length);
  if (lay.enc.size > MAX_PROTO) throw inputError('ONNX_TOO_LARGE', `${dest}: the model is still ${lay.enc.size} bytes with external data (lower the threshold)`, { file: dest });
  const dataPaths = lay.sizes.map((_, i) => path.join(dir, lay.names[i]!));

  // never write over a file the model reads from
  const inputs = options.inputFiles ?? inputFilesOf(model);
  const reads = new Set(inputs.map(fileKey).filter((k): k is string => k !== undefined));
  for (const target of [outPath, ...dataPaths]) {
    const k = fileKey(target);
    if (k && reads.has(k)) throw inputError('OUTPUT_IS_INPUT', `${dest}: writing ${target} would overwrite a file the model is read from; choose another output path`, { file: dest });
  }

  const hash = createHash('sha256');
  hash.update(JSON.stringify({ inputs: inputIdentity(inputs), extra: options.fingerprint ?? '', threshold, align, maxFile: maxFile ?? null, names: lay.names }));
  for (const p of lay.placed) hash.update(`${p.t.name}\0${p.t.dataType}\0${p.t.dims.join(',')}\0${p.file}\0${p.offset}\0${p.length}\n`);
  for (const c of lay.enc.chunks) hash.update(c);
  const fingerprint = hash.digest('hex');

  // resume or start over
  const work = workDirOf(dest);
  let done = 0;
  let restartReason: string | undefined;
  const journal = fs.existsSync(work) ? readJournal(work) : undefined;
  if (options.resume && journal) {
    if (journal.fingerprint === fingerprint && journal.done <= lay.placed.length) done = journal.done;
    else restartReason = 'the input files (size or modification time), the options or the output layout changed since the interrupted run: started over';
  } else if (options.resume && fs.existsSync(work)) restartReason = 'no usable journal from an interrupted run: started over';
  const resumedBytes = lay.placed.slice(0, done).reduce((n, p) => n + p.length, 0);
  const totalData = lay.placed.reduce((n, p) => n + p.length, 0);

  // the disk-space guard, before anything is written (what the work folder already holds counts)
  const need = lay.sizes.reduce((a, b) => a + b, 0) + lay.enc.size - (done > 0 ? resumedBytes : 0);
  const free = (options.freeBytes ?? statfsFreeBytes)(dir);
  if (need > free) {
    throw inputError('OUTPUT_NO_SPACE', `${dest}: the output needs about ${formatBytes(need)} (${need} bytes${done > 0 ? ', resumed part excluded' : ''}) but ${dir} has ${formatBytes(free)} (${free} bytes) free; nothing written`, { file: dest });
  }
  if (done === 0) removeWorkDir(work);
  fs.mkdirSync(work, { recursive: true });

  const durable = options.fsync !== false;
  const temps = dataPaths.map((p) => path.join(work, path.basename(p)));
  const fds: number[] = [];
  try {
    for (let i = 0; i < temps.length; i++) {
      const fd = fs.openSync(temps[i]!, done > 0 ? 'r+' : 'w+', 0o644);
      fds.push(fd);
    }
    // a resumed file keeps exactly its finished tensors
    if (done > 0) {
      const ends = lay.sizes.map(() => 0);
      for (const p of lay.placed.slice(0, done)) ends[p.file] = p.offset + p.length;
      fds.forEach((fd, i) => fs.ftruncateSync(fd, ends[i]!));
    }
    const ends = lay.sizes.map(() => 0);
    for (const p of lay.placed.slice(0, done)) ends[p.file] = p.offset + p.length;
    let written = resumedBytes;
    const scratch: { buf?: Uint8Array } = {};
    const zeros = new Uint8Array(align);
    for (let i = done; i < lay.placed.length; i++) {
      const { t, file, offset, length } = lay.placed[i]!;
      const fd = fds[file]!;
      if (offset > ends[file]!) writeFully(fd, zeros.subarray(0, offset - ends[file]!), ends[file]!);
      writeTensorAt(t, fd, offset, length, dest, scratch);
      ends[file] = offset + length;
      written += length;
      writeJournal(work, { version: 1, fingerprint, done: i + 1 });
      options.onProgress?.(written, totalData, t.name ?? '');
    }
    if (durable) for (const fd of fds) fs.fsyncSync(fd);
  } catch (e) {
    // the journal keeps what is finished for --resume; the destination is untouched
    if (e instanceof OnnxForgeError) throw e.withFile(dest);
    const err = e as NodeJS.ErrnoException;
    throw inputError('WRITE_FAILED', `${dest}: could not write (${err.code ?? err.message})`, { file: dest });
  } finally {
    for (const fd of fds) fs.closeSync(fd);
  }

  const modelTemp = path.join(work, base);
  try {
    const fd = fs.openSync(modelTemp, 'w', 0o644);
    try {
      let pos = 0;
      for (const c of lay.enc.chunks) {
        writeFully(fd, c, pos);
        pos += c.length;
      }
      if (durable) fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    // data files first, the .onnx last: a reader of the destination never sees a model without its data
    temps.forEach((t, i) => fs.renameSync(t, dataPaths[i]!));
    fs.renameSync(modelTemp, outPath);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw inputError('WRITE_FAILED', `${dest}: could not write (${err.code ?? err.message})`, { file: dest });
  }
  removeWorkDir(work);
  const res: StreamSaveResult = {
    path: outPath,
    bytes: lay.enc.size,
    dataFiles: dataPaths.map((p, i) => ({ path: p, bytes: lay.sizes[i]! })),
    externalTensors: lay.placed.length,
    resumed: { tensors: done, bytes: resumedBytes },
  };
  if (restartReason) res.restartReason = restartReason;
  return res;
}

/** Descriptor and position of bytes [from, from + length) of a file-backed tensor's data (for a reader thread), else undefined. */
export function tensorSpan(t: Tensor, from: number, length: number): { fd: number; position: number } | undefined {
  const src = t.isExternal ? t.external!.source : undefined;
  return src instanceof FileExternalSource ? src.span(t, t.external!, from, length) : undefined;
}

/** Reads bytes [from, from + length) of a tensor's data without reading the rest (external data by pread). */
export function readTensorRange(t: Tensor, from: number, length: number, into?: Uint8Array): Uint8Array {
  const src = t.isExternal ? t.external!.source : undefined;
  if (src instanceof FileExternalSource) return src.readRange(t, t.external!, from, length, into);
  const all = t.bytes();
  if (from < 0 || from + length > all.length) throw inputError('TENSOR_BAD_LENGTH', `tensor ${t.name ?? '(unnamed)'}: range [${from}, ${from + length}) is outside its ${all.length} bytes`, { tensor: t.name });
  if (into) {
    into.set(all.subarray(from, from + length));
    return into;
  }
  return all.subarray(from, from + length);
}

/** Bytes of external data the model reads (file-backed and derived), without reading any. */
export function externalDataBytes(model: Model): number {
  let n = 0;
  forEachTensor(model, (t) => {
    if (t.isExternal) n += expectedByteLength(t);
  });
  return n;
}

/**
 * Writes only the .onnx of a model whose external tensors already reference data files beside
 * `dest` (their `external_data` entries are written as they are; nothing is read or copied). For
 * generators that write weights straight to a data file in chunks (benchmarks/scale.ts).
 */
export function writeModelReferences(model: Model, dest: string): number {
  const bytes = encode(modelToProto(model), 'ModelProto');
  writeFileAtomic(dest, bytes);
  return bytes.length;
}
