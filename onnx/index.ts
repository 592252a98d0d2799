/**
 * The ONNX codec's public face: load a model into the IR, save it back (atomically, inline or with
 * external data), and (de)serialize single tensors. Protobuf objects never leave this folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { inputError, OnnxForgeError } from '../core/errors.js';
import { DataType, dtypeInfo } from '../core/dtype.js';
import { Model } from '../ir/ir.js';
import { ensureParentDir } from '../core/files.js';
import { Tensor } from '../core/tensor.js';
import { checkLocation, COPY_CHUNK_BYTES, expectedByteLength, FileExternalSource, forEachTensor, validateExternalData } from './external.js';
import { modelFromProto, modelToProto, ToProtoOptions } from './serde.js';
import { checkedBytesName, decodeModel, type ExternalDataHooks, inlineHook, type LoadOptions, MAX_PROTO_BYTES } from './codec.js';
import { encodeChunks, ProtoObject } from './wire.js';

export { ORT_MEM_ADDR_MARKER, MAX_OPEN_DATA_FILES, FileExternalSource, checkLocation, forEachTensor, releaseModel, validateExternalData } from './external.js';
export { DEFAULT_MAX_DEPTH } from './wire.js';
export { MAX_PROTO_BYTES, MAX_SUBGRAPH_DEPTH, printLoadWarning, serializeModel, cloneModel, decodeTensor, encodeTensor, decodeMessage, type LoadOptions, type LoadWarning } from './codec.js';

/** Reads a model file through one descriptor (no FIFO can block, nothing over 2 GiB is read). */
function readModelFile(src: string): Uint8Array {
  let fd: number;
  try {
    fd = fs.openSync(src, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw inputError('FILE_NOT_FOUND', `${src}: no such file`, { file: src });
    throw inputError('FILE_UNREADABLE', `${src}: cannot be opened (${code ?? 'error'})`, { file: src });
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw inputError('FILE_NOT_REGULAR', `${src} is not a regular file`, { file: src });
    if (st.size > MAX_PROTO_BYTES) {
      throw inputError('ONNX_TOO_LARGE', `${src} is ${st.size} bytes: a single protobuf cannot exceed 2 GiB (store the weights as external data)`, { file: src });
    }
    const out = Buffer.allocUnsafe(st.size);
    let done = 0;
    while (done < st.size) {
      const n = fs.readSync(fd, out, done, st.size - done, done);
      if (n <= 0) break;
      done += n;
    }
    return done === st.size ? out : out.subarray(0, done);
  } catch (e) {
    if (e instanceof OnnxForgeError) throw e;
    throw inputError('FILE_UNREADABLE', `${src}: could not be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { file: src });
  } finally {
    fs.closeSync(fd);
  }
}

/** Loads a model synchronously from a path or from bytes. */
export function loadModelSync(src: string | Uint8Array, options: LoadOptions = {}): Model {
  let bytes: Uint8Array;
  let file: string;
  let baseDir = options.baseDir;
  if (typeof src === 'string') {
    file = src;
    bytes = readModelFile(src);
    baseDir ??= path.dirname(path.resolve(src));
  } else {
    bytes = src;
    file = checkedBytesName(bytes, options.name);
  }
  const source = baseDir ? new FileExternalSource(baseDir, file) : undefined;
  const external: ExternalDataHooks = { validate: (m) => validateExternalData(m, source, file), close: () => source?.close(), ...(source ? { source } : {}) };
  return decodeModel(bytes, file, options, external, typeof src === 'string' ? path.resolve(src) : undefined);
}

/** Loads a model from a path or bytes. */
export async function loadModel(src: string | Uint8Array, options: LoadOptions = {}): Promise<Model> {
  return loadModelSync(src, options);
}

/** The write steps of {@link saveModel}, in order; `SaveOptions.onStep` is called before each. */
export const SAVE_STEPS = ['open-data', 'write-data', 'sync-data', 'open-model', 'write-model', 'sync-model', 'backup-data', 'rename-data', 'rename-model'] as const;
export type SaveStep = (typeof SAVE_STEPS)[number];

export interface SaveOptions {
  /**
   * Store tensors outside the .onnx: `true` for `<model file>.data`, or a location relative to the
   * output folder (an existing subfolder is fine; no `..`, no absolute paths). Default: inline, unless
   * the model was loaded with external data (it stays external) or would exceed 2 GiB inline (then
   * external is forced).
   */
  externalData?: boolean | string;
  /** With external data: tensors of at least this many bytes go to the data file (default 1024). */
  threshold?: number;
  /** Force every tensor inline even if the model was loaded with external data. */
  inlineData?: boolean;
  /** Alignment of each tensor in the data file (default 64 bytes). */
  align?: number;
  /**
   * Called before each write step with the file it concerns; throwing aborts the save exactly like an
   * I/O error at that step would (used by the failure-injection tests).
   */
  onStep?: (step: SaveStep, file: string) => void;
  /**
   * Models whose inline encoding would exceed this many bytes are saved with external data (or, with
   * `inlineData`, rejected). Default and maximum: the 2 GiB protobuf limit.
   */
  maxInlineBytes?: number;
  /**
   * fsync each file (and the folder) before and after renaming it into place (default true). Only
   * durability across a power loss depends on it, not atomicity; tests and fuzzing turn it off.
   */
  fsync?: boolean;
}

export interface SaveResult {
  path: string;
  bytes: number;
  dataPath?: string;
  dataBytes?: number;
  externalTensors: number;
}

function tempName(dest: string, kind = 'tmp'): string {
  return path.join(path.dirname(dest), `.${path.basename(dest)}.${kind}-${process.pid}-${randomBytes(4).toString('hex')}`);
}

function writeFully(fd: number, bytes: Uint8Array, pos: number): void {
  let off = 0;
  while (off < bytes.length) off += fs.writeSync(fd, bytes, off, bytes.length - off, pos + off);
}

/** Writes chunks in order with writev in groups (few syscalls, no copies), handling partial writes. */
function writeAll(fd: number, chunks: Uint8Array[]): void {
  let pos = 0;
  for (let i = 0; i < chunks.length; i += 256) {
    const group = chunks.slice(i, i + 256);
    const total = group.reduce((n, c) => n + c.length, 0);
    let written = fs.writevSync(fd, group, pos);
    if (written < total) {
      let at = pos;
      for (const c of group) {
        if (written >= c.length) {
          written -= c.length;
          at += c.length;
          continue;
        }
        writeFully(fd, c.subarray(written), at + written);
        at += c.length;
        written = 0;
      }
    }
    pos += total;
  }
}

function externalByteTotal(model: Model): number {
  let n = 0;
  forEachTensor(model, (t) => {
    if (t.isExternal) n += expectedByteLength(t);
  });
  return n;
}

function hasExternalTensors(model: Model): boolean {
  let found = false;
  forEachTensor(model, (t) => {
    if (t.isExternal) found = true;
  });
  return found;
}

/** Files the model was read from (the .onnx and its data files), as device:inode keys. */
function inputFiles(model: Model): Set<string> {
  const keys = new Set<string>();
  const add = (p: string) => {
    try {
      const st = fs.statSync(p);
      keys.add(`${st.dev}:${st.ino}`);
    } catch {
      /* gone */
    }
  };
  if (model.sourcePath) add(model.sourcePath);
  const seen = new Set<string>();
  forEachTensor(model, (t) => {
    const s = t.external?.source;
    if (t.isExternal && s instanceof FileExternalSource && t.external!.location) {
      const key = `${s.baseDir}\0${t.external!.location}`;
      if (seen.has(key)) return;
      seen.add(key);
      try {
        add(path.join(s.baseDir, checkLocation(t.external!.location, t)));
      } catch {
        /* invalid locations were rejected at load */
      }
    }
  });
  return keys;
}

function fileKey(p: string): string | undefined {
  try {
    const st = fs.lstatSync(p);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

interface Placed {
  t: Tensor;
  offset: number;
  length: number;
}

interface Plan {
  location?: string;
  placed: Placed[];
  dataSize: number;
  enc: { chunks: Uint8Array[]; size: number };
}

/** Builds the proto of the model, deciding which tensors go to the data file and where. */
function planSave(model: Model, location: string | undefined, threshold: number, align: number): Plan {
  const placed: Placed[] = [];
  let dataSize = 0;
  const hook: ToProtoOptions['tensorData'] = (t) => {
    if (location && t.name && t.dataType !== DataType.STRING && dtypeInfo(t.dataType)) {
      const length = t.isExternal ? expectedByteLength(t) : t.byteLength;
      if (length >= threshold && length > 0) {
        const offset = Math.ceil(dataSize / align) * align;
        dataSize = offset + length;
        placed.push({ t, offset, length });
        return {
          external_data: [
            { key: 'location', value: location },
            { key: 'offset', value: String(offset) },
            { key: 'length', value: String(length) },
          ],
          data_location: 1,
        };
      }
    }
    return inlineHook(t);
  };
  const proto = modelToProto(model, { tensorData: hook });
  return { location, placed, dataSize, enc: encodeChunks(proto, 'ModelProto') };
}

/** Checks a data file location given for the output and returns its absolute path. */
function outputDataPath(dir: string, location: string, dest: string): string {
  const probe = new Tensor(0, [], '(output)');
  let rel: string;
  try {
    rel = checkLocation(location, probe, dest);
  } catch (e) {
    throw inputError('OUTPUT_BAD_LOCATION', `${dest}: external data location "${location.slice(0, 200)}" must be a plain relative path inside the output folder (${(e as Error).message.replace(/^.*" /, '')})`, { file: dest });
  }
  // parent folders must exist and be real folders (a symlinked folder could lead outside)
  const parts = rel.split('/');
  let cur = dir;
  for (let i = 0; i < parts.length - 1; i++) {
    cur = path.join(cur, parts[i]!);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(cur);
    } catch {
      st = undefined;
    }
    if (!st || !st.isDirectory() || st.isSymbolicLink()) {
      throw inputError('OUTPUT_BAD_LOCATION', `${dest}: folder ${parts.slice(0, i + 1).join('/')} of external data location "${rel}" is missing or not a real folder`, { file: dest });
    }
  }
  return path.join(dir, rel);
}

/**
 * Saves a model atomically. Every file is written to a temp file in its destination folder and
 * fsynced; then an existing data file is moved aside, the new data file renamed into place, and the
 * .onnx renamed last. On any failure the temp files are removed and a moved-aside data file is put
 * back, so the destination holds its old content (or nothing). Unchanged external tensors are streamed
 * from their source file in chunks, never held in memory whole. Saving over the model's own path works
 * (its data is read before anything is replaced); replacing any other file the model reads from is
 * refused. Output is deterministic: the same model and options give the same bytes.
 */
export async function saveModel(model: Model, dest: string, options: SaveOptions = {}): Promise<SaveResult> {
  return saveModelSync(model, dest, options);
}

export function saveModelSync(model: Model, dest: string, options: SaveOptions = {}): SaveResult {
  const outPath = path.resolve(dest);
  const dir = path.dirname(outPath);
  ensureParentDir(dest);
  const threshold = options.threshold ?? 1024;
  const align = options.align ?? 64;
  if (!Number.isFinite(threshold) || threshold < 0) throw inputError('USAGE_BAD_VALUE', `threshold must be a non-negative number of bytes, got ${threshold}`, { file: dest });
  if (!Number.isInteger(align) || align < 1) throw inputError('USAGE_BAD_VALUE', `align must be a positive integer, got ${align}`, { file: dest });
  if (options.inlineData && options.externalData) throw inputError('USAGE_CONFLICT', 'externalData and inlineData cannot be used together', { file: dest });
  const step = (s: SaveStep, file: string) => options.onStep?.(s, file);
  const durable = options.fsync !== false;

  const defaultLocation = `${path.basename(outPath)}.data`;
  let location: string | undefined;
  if (options.externalData === true) location = defaultLocation;
  else if (typeof options.externalData === 'string') location = options.externalData;
  else if (!options.inlineData && hasExternalTensors(model)) location = defaultLocation;

  const maxInline = Math.min(options.maxInlineBytes ?? MAX_PROTO_BYTES, MAX_PROTO_BYTES);
  const tooLarge = (n: number) => inputError('ONNX_TOO_LARGE', `${dest}: the model is ${n > MAX_PROTO_BYTES ? 'over' : 'at least'} ${n} bytes inline, over the ${maxInline === MAX_PROTO_BYTES ? '2 GiB protobuf' : `${maxInline}-byte`} limit; save with external data`, { file: dest });
  let p: Plan | undefined;
  if (location === undefined) {
    // external tensors would be read in to go inline: decide from their sizes before reading any
    const externalBytes = externalByteTotal(model);
    if (externalBytes <= maxInline) p = planSave(model, undefined, threshold, align);
    const inlineSize = p ? p.enc.size : externalBytes;
    if (inlineSize > maxInline) {
      if (options.inlineData) throw tooLarge(inlineSize);
      p = planSave(model, defaultLocation, threshold, align);
    }
  }
  p ??= planSave(model, location, threshold, align);
  if (p.enc.size > MAX_PROTO_BYTES) throw inputError('ONNX_TOO_LARGE', `${dest}: the model is still ${p.enc.size} bytes with external data (lower the threshold)`, { file: dest });

  const dataPath = p.location !== undefined && p.placed.length > 0 ? outputDataPath(dir, p.location, dest) : undefined;
  if (dataPath === outPath) throw inputError('OUTPUT_BAD_LOCATION', `${dest}: the external data file cannot be the model file itself`, { file: dest });
  // never replace a file the model reads from, unless it is the model's own path (then the data is
  // read before anything is renamed, and open descriptors keep reading the old files)
  const reads = inputFiles(model);
  const sameAsInput = model.sourcePath !== undefined && fileKey(model.sourcePath) !== undefined && fileKey(model.sourcePath) === fileKey(outPath);
  if (!sameAsInput) {
    for (const target of [outPath, dataPath]) {
      const k = target ? fileKey(target) : undefined;
      if (k && reads.has(k)) throw inputError('OUTPUT_IS_INPUT', `${dest}: writing ${target} would overwrite a file the model is read from; choose another output path`, { file: dest });
    }
  }

  const temps: string[] = [];
  let backup: string | undefined;
  let dataRenamed = false;
  let committed = false;
  try {
    let dataTemp: string | undefined;
    if (dataPath) {
      dataTemp = tempName(dataPath);
      step('open-data', dataPath);
      const fd = fs.openSync(dataTemp, 'wx', 0o644);
      temps.push(dataTemp);
      try {
        step('write-data', dataPath);
        let pos = 0;
        let scratch: Uint8Array | undefined;
        const zeros = new Uint8Array(align);
        for (const { t, offset, length } of p.placed) {
          if (offset > pos) writeFully(fd, zeros.subarray(0, offset - pos), pos);
          const src = t.isExternal ? t.external!.source : undefined;
          if (src instanceof FileExternalSource) {
            scratch ??= new Uint8Array(COPY_CHUNK_BYTES);
            src.copyTo(t, t.external!, fd, offset, scratch);
          } else {
            const bytes = t.bytes();
            if (bytes.length !== length) throw inputError('TENSOR_BAD_LENGTH', `tensor ${t.name}: ${bytes.length} bytes of data, dims [${t.dims.join(',')}] x ${t.dtype} need ${length}`, { tensor: t.name, file: dest });
            writeFully(fd, bytes, offset);
          }
          pos = offset + length;
        }
        step('sync-data', dataPath);
        if (durable) fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    const modelTemp = tempName(outPath);
    step('open-model', outPath);
    const fd = fs.openSync(modelTemp, 'wx', 0o644);
    temps.push(modelTemp);
    try {
      step('write-model', outPath);
      writeAll(fd, p.enc.chunks);
      step('sync-model', outPath);
      if (durable) fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (dataPath && dataTemp) {
      step('backup-data', dataPath);
      if (fileKey(dataPath) !== undefined) {
        backup = tempName(dataPath, 'old');
        fs.renameSync(dataPath, backup);
      }
      step('rename-data', dataPath);
      fs.renameSync(dataTemp, dataPath);
      dataRenamed = true;
      temps.splice(temps.indexOf(dataTemp), 1);
    }
    step('rename-model', outPath);
    fs.renameSync(modelTemp, outPath);
    committed = true;
    temps.length = 0;
  } catch (e) {
    for (const t of temps) {
      try {
        fs.unlinkSync(t);
      } catch {
        /* already gone */
      }
    }
    if (!committed && dataPath) {
      if (backup) {
        try {
          fs.renameSync(backup, dataPath);
        } catch {
          /* reported below */
        }
      } else if (dataRenamed) {
        // there was no data file before: remove the one renamed into place for a model never written
        try {
          fs.unlinkSync(dataPath);
        } catch {
          /* ignore */
        }
      }
    }
    if (e instanceof OnnxForgeError) throw e.withFile(dest);
    const err = e as NodeJS.ErrnoException;
    throw inputError('WRITE_FAILED', `${dest}: could not write (${err.code ?? err.message})`, { file: dest });
  }
  if (backup) {
    try {
      fs.unlinkSync(backup);
    } catch {
      /* a leftover backup is harmless */
    }
  }
  if (durable) syncDir(dir);
  const res: SaveResult = { path: outPath, bytes: p.enc.size, externalTensors: p.placed.length };
  if (dataPath) {
    res.dataPath = dataPath;
    res.dataBytes = p.dataSize;
  }
  return res;
}

function syncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    /* not supported everywhere (best effort) */
  }
}

