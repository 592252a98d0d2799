/**
 * The ONNX codec's public face: load a model into the IR, save it back (atomically, inline or with
 * external data), and (de)serialize single tensors. Protobuf objects never leave this folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { inputError, OnnxForgeError } from '../errors.js';
import { Model } from '../ir.js';
import { Tensor } from '../tensor.js';
import { FileExternalSource } from './external.js';
import { modelFromProto, modelToProto, tensorFrom, tensorTo, ToProtoOptions } from './serde.js';
import { decode, DecodeOptions, encode, encodeChunks, ProtoObject } from './wire.js';

export { ORT_MEM_ADDR_MARKER, FileExternalSource, checkLocation } from './external.js';
export { DEFAULT_MAX_DEPTH } from './wire.js';

/** Protobuf messages cannot exceed 2 GiB; larger models must put tensors in external data. */
export const MAX_PROTO_BYTES = 2 ** 31 - 1;

export interface LoadOptions extends DecodeOptions {
  /** Folder that external data locations are relative to (default: the model's folder). */
  baseDir?: string;
  /** Name used in messages when loading from bytes. */
  name?: string;
}

const MAGIC: Array<[string, number[]]> = [
  ['a PNG image', [0x89, 0x50, 0x4e, 0x47]],
  ['a ZIP archive', [0x50, 0x4b, 0x03, 0x04]],
  ['a GGUF file', [0x47, 0x47, 0x55, 0x46]],
  ['a gzip file', [0x1f, 0x8b]],
  ['a JPEG image', [0xff, 0xd8, 0xff]],
  ['a PDF document', [0x25, 0x50, 0x44, 0x46]],
  ['an ELF binary', [0x7f, 0x45, 0x4c, 0x46]],
  ['a NumPy array', [0x93, 0x4e, 0x55, 0x4d]],
];

function sniff(bytes: Uint8Array, file: string): void {
  if (bytes.length === 0) throw inputError('ONNX_EMPTY', `${file} is empty`, { file });
  for (const [what, magic] of MAGIC) {
    if (bytes.length >= magic.length && magic.every((b, i) => bytes[i] === b)) {
      throw inputError('ONNX_NOT_A_MODEL', `${file} is ${what}, not an ONNX model`, { file });
    }
  }
}

/** Loads a model synchronously from a path or from bytes. */
export function loadModelSync(src: string | Uint8Array, options: LoadOptions = {}): Model {
  let bytes: Uint8Array;
  let file: string;
  let baseDir = options.baseDir;
  if (typeof src === 'string') {
    file = src;
    let st: fs.Stats;
    try {
      st = fs.statSync(src);
    } catch {
      throw inputError('FILE_NOT_FOUND', `${src}: no such file`, { file });
    }
    if (!st.isFile()) throw inputError('FILE_NOT_REGULAR', `${src} is not a regular file`, { file });
    if (st.size > MAX_PROTO_BYTES) {
      throw inputError('ONNX_TOO_LARGE', `${src} is ${st.size} bytes: a single protobuf cannot exceed 2 GiB (store the weights as external data)`, { file });
    }
    bytes = fs.readFileSync(src);
    baseDir ??= path.dirname(path.resolve(src));
  } else {
    bytes = src;
    file = options.name ?? '<bytes>';
    if (bytes.length > MAX_PROTO_BYTES) throw inputError('ONNX_TOO_LARGE', `${file} is over 2 GiB: use external data`, { file });
  }
  sniff(bytes, file);
  let proto: ProtoObject;
  try {
    proto = decode(bytes, 'ModelProto', options);
  } catch (e) {
    if (e instanceof OnnxForgeError) {
      const parse = e.code === 'ONNX_BAD_WIRE' || e.code === 'ONNX_TRUNCATED' || e.code === 'ONNX_BAD_VARINT' || e.code === 'ONNX_BAD_PACKED' || e.code === 'ONNX_MALFORMED';
      throw inputError(e.code, `${file}: ${parse ? 'not a valid ONNX model: ' : ''}${e.message}`, { ...e.details, file });
    }
    throw e;
  }
  const ctx = baseDir ? { file, source: new FileExternalSource(baseDir, file) } : { file };
  try {
    const model = modelFromProto(proto, ctx);
    if (typeof src === 'string') model.sourcePath = path.resolve(src);
    return model;
  } catch (e) {
    if (e instanceof OnnxForgeError) throw e.withFile(file);
    if (e instanceof RangeError) throw inputError('ONNX_MALFORMED', `${file}: ${e.message}`, { file });
    throw e;
  }
}

/** Loads a model from a path or bytes. */
export async function loadModel(src: string | Uint8Array, options: LoadOptions = {}): Promise<Model> {
  return loadModelSync(src, options);
}

export interface SaveOptions {
  /**
   * Store tensors outside the .onnx: `true` for `<model file>.data`, or a location relative to the
   * output folder. Default: inline, unless the model would exceed 2 GiB (then external is forced).
   */
  externalData?: boolean | string;
  /** With external data: tensors of at least this many bytes go to the data file (default 1024). */
  threshold?: number;
  /** Force every tensor inline even if the model was loaded with external data. */
  inlineData?: boolean;
  /** Alignment of each tensor in the data file (default 64 bytes). */
  align?: number;
}

export interface SaveResult {
  path: string;
  bytes: number;
  dataPath?: string;
  dataBytes?: number;
  externalTensors: number;
}

/** Serializes a model to one buffer (all data inline; external data is read in). */
export function serializeModel(model: Model): Uint8Array {
  const proto = modelToProto(model, { tensorData: inlineHook });
  return encode(proto, 'ModelProto');
}

/** Inline data for tensors that were loaded from external files. */
function inlineHook(t: Tensor): ProtoObject | undefined {
  if (t.dataLocation === 1 && t.external) return { raw_data: t.bytes() };
  return undefined;
}

function tempName(dest: string): string {
  return path.join(path.dirname(dest), `.${path.basename(dest)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

function writeAll(fd: number, chunks: Uint8Array[]): void {
  // writev in groups keeps the number of syscalls low without copying large chunks
  for (let i = 0; i < chunks.length; i += 512) {
    const group = chunks.slice(i, i + 512);
    let total = group.reduce((n, c) => n + c.length, 0);
    let written = fs.writevSync(fd, group);
    if (written === total) continue;
    // partial write: fall back to a plain loop for the rest
    for (const c of group) {
      if (written >= c.length) {
        written -= c.length;
        continue;
      }
      let off = written;
      written = 0;
      while (off < c.length) off += fs.writeSync(fd, c, off, c.length - off);
    }
    total = 0;
  }
}

/**
 * Saves a model atomically: data file first, then the .onnx, each written to a temp file in the
 * destination folder and renamed into place. On any failure nothing at the destination changes.
 */
export async function saveModel(model: Model, dest: string, options: SaveOptions = {}): Promise<SaveResult> {
  return saveModelSync(model, dest, options);
}

export function saveModelSync(model: Model, dest: string, options: SaveOptions = {}): SaveResult {
  const outPath = path.resolve(dest);
  const dir = path.dirname(outPath);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw inputError('OUTPUT_DIR_MISSING', `${dest}: folder ${dir} does not exist`, { file: dest });
  let external = options.inlineData ? false : options.externalData;
  const threshold = options.threshold ?? 1024;
  const align = options.align ?? 64;

  const plan = (ext: boolean | string | undefined) => {
    const location = ext === true ? `${path.basename(outPath)}.data` : typeof ext === 'string' ? ext : undefined;
    const placed: Array<{ t: Tensor; offset: number; length: number }> = [];
    let dataSize = 0;
    const hook: ToProtoOptions['tensorData'] = (t) => {
      if (location && t.dataType !== 8 && t.byteLength >= threshold && t.name) {
        const length = t.byteLength;
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
      return inlineHook(t);
    };
    const proto = modelToProto(model, { tensorData: hook });
    const enc = encodeChunks(proto, 'ModelProto');
    return { location, placed, dataSize, enc };
  };

  let p = plan(external);
  if (!p.location && p.enc.size > MAX_PROTO_BYTES) {
    if (options.inlineData) throw inputError('ONNX_TOO_LARGE', `${dest}: the model is ${p.enc.size} bytes inline, over the 2 GiB protobuf limit; save with external data`, { file: dest });
    external = true;
    p = plan(true);
  }
  if (p.enc.size > MAX_PROTO_BYTES) throw inputError('ONNX_TOO_LARGE', `${dest}: the model is still ${p.enc.size} bytes with external data (lower --threshold)`, { file: dest });

  const temps: string[] = [];
  try {
    let dataPath: string | undefined;
    let dataTemp: string | undefined;
    if (p.location) {
      dataPath = path.join(dir, p.location);
      if (path.dirname(dataPath) !== dir && !path.resolve(dataPath).startsWith(dir + path.sep)) {
        throw inputError('EXTERNAL_BAD_LOCATION', `external data location ${p.location} leaves the output folder`, { file: dest });
      }
      dataTemp = tempName(dataPath);
      temps.push(dataTemp);
      const fd = fs.openSync(dataTemp, 'wx', 0o644);
      try {
        let pos = 0;
        for (const { t, offset, length } of p.placed) {
          if (offset > pos) {
            fs.writeSync(fd, new Uint8Array(offset - pos), 0, offset - pos, pos);
            pos = offset;
          }
          const bytes = t.bytes();
          if (bytes.length !== length) throw inputError('TENSOR_BAD_LENGTH', `tensor ${t.name}: ${bytes.length} bytes of data for ${length} expected`, { tensor: t.name });
          let off = 0;
          while (off < bytes.length) off += fs.writeSync(fd, bytes, off, bytes.length - off, pos + off);
          pos += length;
        }
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    const modelTemp = tempName(outPath);
    temps.push(modelTemp);
    const fd = fs.openSync(modelTemp, 'wx', 0o644);
    try {
      writeAll(fd, p.enc.chunks);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (dataTemp && dataPath) fs.renameSync(dataTemp, dataPath);
    fs.renameSync(modelTemp, outPath);
    temps.length = 0;
    const res: SaveResult = { path: outPath, bytes: p.enc.size, externalTensors: p.placed.length };
    if (dataPath) {
      res.dataPath = dataPath;
      res.dataBytes = p.dataSize;
    }
    return res;
  } catch (e) {
    for (const t of temps) {
      try {
        fs.unlinkSync(t);
      } catch {
        /* already gone */
      }
    }
    if (e instanceof OnnxForgeError) throw e;
    const err = e as NodeJS.ErrnoException;
    throw inputError('WRITE_FAILED', `${dest}: could not write (${err.code ?? err.message})`, { file: dest });
  }
}

/** Decodes a serialized TensorProto (e.g. the conformance suite's input_N.pb) into a Tensor. */
export function decodeTensor(bytes: Uint8Array, name = '<tensor>'): Tensor {
  try {
    return tensorFrom(decode(bytes, 'TensorProto'), { file: name });
  } catch (e) {
    if (e instanceof OnnxForgeError) throw e.withFile(name);
    throw e;
  }
}

/** Serializes a Tensor as a TensorProto (external data is read in). */
export function encodeTensor(t: Tensor): Uint8Array {
  return encode(tensorTo(t, { tensorData: inlineHook }), 'TensorProto');
}

/** Decodes any message of the ONNX schema to plain data (for tools that need Sequence/Optional protos). */
export function decodeMessage(bytes: Uint8Array, type: 'SequenceProto' | 'MapProto' | 'OptionalProto' | 'TensorProto'): ProtoObject {
  return decode(bytes, type);
}

/** Round-trips a model through its proto form: a deep, independent copy sharing immutable tensor bytes. */
export function cloneModel(model: Model): Model {
  const proto = modelToProto(model);
  const copy = modelFromProto(proto, firstSource(model));
  if (model.sourcePath) copy.sourcePath = model.sourcePath;
  return copy;
}

function firstSource(model: Model): { source?: FileExternalSource } {
  for (const g of model.graph.allGraphs()) {
    for (const v of g.initializers.values()) {
      const s = g.initializerTensor(v)?.external?.source;
      if (s instanceof FileExternalSource) return { source: s };
    }
  }
  return {};
}
