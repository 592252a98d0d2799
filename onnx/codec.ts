/**
 * The codec's pure half: bytes <-> IR with no file system, no Node built-ins (it also builds for the
 * browser, `onnxforge/web`). Decoding sniffs other formats, bounds hostile input (protobuf depth,
 * subgraph nesting, 2 GiB), and normalizes what exporters bend; encoding writes all data inline.
 * index.ts adds files: reading a model, external data next to it, atomic saving.
 */
import { inputError, OnnxForgeError } from '../core/errors.js';
import type { ExternalDataSource, Tensor } from '../core/tensor.js';
import { DerivedSource } from '../core/derived.js';
import type { Graph, Model } from '../ir/ir.js';
import { repeatedOpsets, sortNodes } from './normalize.js';
import { type LoadWarning, modelFromProto, modelToProto, tensorFrom, tensorTo } from './serde.js';
import { decode, type DecodeOptions, encode, type ProtoObject } from './wire.js';

/** Protobuf messages cannot exceed 2 GiB; larger models must put tensors in external data. */
export const MAX_PROTO_BYTES = 2 ** 31 - 1;

export interface LoadOptions extends DecodeOptions {
  /** Folder that external data locations are relative to (default: the model's folder). */
  baseDir?: string;
  /** Name used in messages when loading from bytes. */
  name?: string;
  /** How deeply If/Loop/Scan subgraphs may nest (default {@link MAX_SUBGRAPH_DEPTH}). */
  maxSubgraphDepth?: number;
  /**
   * Check every external tensor's location, file, offset and length while loading (default true;
   * lstat/fstat only, no data is read). When false, problems surface at first read.
   */
  validateExternalData?: boolean;
  /**
   * Told about each departure from the ONNX rules that onnxruntime tolerates and the loader took the
   * way onnxruntime does (nodes out of topological order are sorted, a repeated initializer keeps its
   * last copy, ...; see `normalize.ts`). Default: one line on stderr, `warning[CODE] file: message`.
   */
  onWarning?: (w: LoadWarning) => void;
}

export type { LoadWarning } from './serde.js';

/** The default {@link LoadOptions.onWarning}: one line on stderr. */
export function printLoadWarning(w: LoadWarning): void {
  const line = `warning[${w.code}] ${w.file ? `${w.file}: ` : ''}${w.message}`;
  // a browser has no process: the console's warning stream instead
  if (typeof process !== 'undefined' && process.stderr) process.stderr.write(`${line}\n`);
  else console.warn(line);
}

/**
 * Subgraphs (If/Loop/Scan bodies) may nest this deep. Each level costs three protobuf messages
 * (Node, Attribute, Graph), so 32 levels stay inside the decoder's {@link DEFAULT_MAX_DEPTH} message
 * nesting with room for the types and tensors of the deepest graph.
 */
export const MAX_SUBGRAPH_DEPTH = 32;

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

/** True when bytes that failed to decode as a ModelProto decode cleanly as a TensorProto. */
function looksLikeTensor(bytes: Uint8Array): boolean {
  try {
    const t = decode(bytes, 'TensorProto');
    return t.data_type !== undefined && t.$unknown === undefined && (t.dims !== undefined || t.raw_data !== undefined);
  } catch {
    return false;
  }
}

/** Throws when If/Loop/Scan subgraphs nest deeper than `limit` (checked iteratively). */
function checkSubgraphDepth(model: Model, limit: number, file: string): void {
  const stack: Array<[Graph, number]> = [[model.graph, 0]];
  for (const f of model.functions) stack.push([f.body, 0]);
  while (stack.length) {
    const [g, depth] = stack.pop()!;
    for (const n of g.nodes) {
      for (const sub of n.subgraphs()) {
        if (depth + 1 > limit) {
          throw inputError('ONNX_SUBGRAPH_TOO_DEEP', `${file}: subgraphs are nested deeper than ${limit} levels (at node ${n.label})`, { file, node: n.name });
        }
        stack.push([sub, depth + 1]);
      }
    }
  }
}

/**
 * How a loader attaches external data to a decoded model: the source external tensors read from, the
 * check of every external tensor (run unless `validateExternalData` is false), and what to release
 * when loading fails.
 */
export interface ExternalDataHooks {
  source?: ExternalDataSource;
  validate(model: Model): void;
  close(): void;
}

/**
 * Decodes the bytes of a .onnx into the IR. `file` labels every message; `external` attaches external
 * data (index.ts: the files beside the model); `sourcePath` is recorded on the model.
 */
export function decodeModel(bytes: Uint8Array, file: string, options: LoadOptions = {}, external?: ExternalDataHooks, sourcePath?: string): Model {
  sniff(bytes, file);
  let proto: ProtoObject;
  try {
    proto = decode(bytes, 'ModelProto', options);
  } catch (e) {
    if (e instanceof OnnxForgeError) {
      if (looksLikeTensor(bytes)) throw inputError('ONNX_NOT_A_MODEL', `${file} is a serialized TensorProto, not an ONNX model`, { file });
      const parse = e.code === 'ONNX_BAD_WIRE' || e.code === 'ONNX_TRUNCATED' || e.code === 'ONNX_BAD_VARINT' || e.code === 'ONNX_BAD_PACKED' || e.code === 'ONNX_MALFORMED';
      const hint = e.code === 'ONNX_TOO_DEEP' ? ` (subgraphs may nest at most ${options.maxSubgraphDepth ?? MAX_SUBGRAPH_DEPTH} levels)` : '';
      throw new OnnxForgeError(e.code, `${file}: ${parse ? 'not a valid ONNX model: ' : ''}${e.message}${hint}`, { ...e.details, file }, 'input');
    }
    throw e;
  }
  try {
    const source = external?.source;
    const report = options.onWarning ?? printLoadWarning;
    const warn = (w: LoadWarning) => report({ ...w, file });
    const model = modelFromProto(proto, source ? { file, source, warn } : { file, warn });
    if (sourcePath !== undefined) model.sourcePath = sourcePath;
    checkSubgraphDepth(model, options.maxSubgraphDepth ?? MAX_SUBGRAPH_DEPTH, file);
    if (options.validateExternalData !== false) external?.validate(model);
    for (const w of [repeatedOpsets(model), sortNodes(model)]) if (w) warn(w);
    return model;
  } catch (e) {
    external?.close();
    if (e instanceof OnnxForgeError) throw e.withFile(file);
    if (e instanceof RangeError) throw inputError('ONNX_MALFORMED', `${file}: ${e.message}`, { file });
    throw e;
  }
}

/**
 * Loads a model from bytes with no file system: what `loadModelSync(bytes)` does for models without
 * external data. External tensors read from `source` when one is given (the page: data files the user
 * picked), else reading one fails; their locations are not checked against files here.
 */
export function loadModelBytes(bytes: Uint8Array, options: Omit<LoadOptions, 'baseDir' | 'validateExternalData'> & { source?: ExternalDataSource } = {}): Model {
  const { source, ...rest } = options;
  const file = checkedBytesName(bytes, options.name);
  return decodeModel(bytes, file, { ...rest, validateExternalData: false }, source ? { source, validate: () => {}, close: () => {} } : undefined);
}

/**
 * Round-trips a model through its proto form: a deep, independent copy sharing immutable tensor bytes.
 * External tensors of the copy read from the original's data source (a file's folder, the page's data
 * files); derived tensors (core/derived.ts) are not carried over.
 */
export function cloneModel(model: Model): Model {
  const copy = modelFromProto(modelToProto(model), firstSource(model));
  if (model.sourcePath) copy.sourcePath = model.sourcePath;
  return copy;
}

function firstSource(model: Model): { source?: ExternalDataSource } {
  for (const g of model.graph.allGraphs()) {
    for (const v of g.initializers.values()) {
      const s = g.initializerTensor(v)?.external?.source;
      if (s && !(s instanceof DerivedSource)) return { source: s };
    }
  }
  return {};
}

/** The label of a model given as bytes; throws when they cannot be one protobuf. */
export function checkedBytesName(bytes: Uint8Array, name?: string): string {
  const file = name ?? '<bytes>';
  if (bytes.length > MAX_PROTO_BYTES) throw inputError('ONNX_TOO_LARGE', `${file} is over 2 GiB: use external data`, { file });
  return file;
}

/** Serializes a model to one buffer (all data inline; external data is read in). */
export function serializeModel(model: Model): Uint8Array {
  const proto = modelToProto(model, { tensorData: inlineHook });
  return encode(proto, 'ModelProto');
}

/** Inline data for tensors that were loaded from external files. */
export function inlineHook(t: Tensor): ProtoObject | undefined {
  if (t.dataLocation === 1 && t.external) return { raw_data: t.bytes() };
  return undefined;
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
