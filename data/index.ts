/**
 * Data sources: where calibration, benchmark and comparison inputs come from. Every source is an
 * `AsyncIterable<Sample>` that reads one sample at a time (memory does not grow with the set), checks
 * it against the model's declared inputs, and names the file and input in every error.
 *
 * Spec strings (CLI `--inputs`):
 *   random[:count[:seed]]          generated from the model's input types (symbolic dims via --shape)
 *   npy:PATH | pb:PATH | json:PATH | images:PATH   explicit kind
 *   PATH                           kind detected: a folder of .npy/.npz, of test_data_set_N/input_K.pb,
 *                                  of .png (+ labels.json, needs --preprocess) or of .json; a single
 *                                  .npy/.npz/.pb/.json/.png file; a .txt list of files (one per line)
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { inputError } from '../core/errors.js';
import { Feed, fromValues, HostTensor, hostDType, HostDType } from '../core/host-tensor.js';
import type { ValueInfo } from '../runtime/session.js';
import { checkFeed } from './feed-check.js';
import type { Sample } from './sample.js';
import { generateFeeds } from './generate.js';
import { decodePng, loadPreprocess, PreprocessConfig, preprocessImage, validatePreprocess } from './image.js';
import { parseNpy } from './npy.js';
import { readTensorProto } from './tensor-proto.js';
import { ZipReader } from './zip.js';

export { checkFeed } from './feed-check.js';
export { parseShapeArg, resolveShape, generateFeeds, mulberry32 } from './generate.js';
export { loadPreprocess, validatePreprocess } from './image.js';
export type { ImagePreprocess, PreprocessConfig } from './image.js';
export { parseNpy } from './npy.js';
export { ZipReader } from './zip.js';
export { readTensorProto } from './tensor-proto.js';
export { statefulSource } from './stateful.js';
export type { StateLink } from './stateful.js';

/** One model evaluation: the inputs, where they came from, and an optional label. */
export type { Sample } from './sample.js';

export type DataSourceSpec =
  | { kind: 'random'; count?: number; seed?: number }
  | { kind: 'npy'; path?: string; files?: string[] }
  | { kind: 'pb'; path: string }
  | { kind: 'json'; path: string }
  | { kind: 'images'; path: string; files?: string[] }
  | { kind: 'iterable'; samples: AsyncIterable<Sample | Feed> | Iterable<Sample | Feed> };

export interface DataSourceOptions {
  /** Symbolic dims for generated inputs: by input name (full dims) or by dim name (one value). */
  shapes?: Record<string, number[]>;
  /** Preprocessing for images: a config or the path of a JSON file. */
  preprocess?: PreprocessConfig | string;
  /** Stop after this many samples. */
  limit?: number;
  /** Check samples against the model inputs (default true). */
  check?: boolean;
}

const EXT_KIND: Record<string, 'npy' | 'pb' | 'json' | 'images'> = { '.npy': 'npy', '.npz': 'npy', '.pb': 'pb', '.json': 'json', '.png': 'images' };

/** Parses a `--inputs` spec string. */
export function parseDataSpec(text: string): DataSourceSpec {
  const m = /^random(?::(\d+))?(?::(\d+))?$/.exec(text);
  if (m) return { kind: 'random', count: m[1] ? Number(m[1]) : 1, seed: m[2] ? Number(m[2]) : 0 };
  const k = /^(npy|pb|json|images):(.+)$/.exec(text);
  if (k) return { kind: k[1] as 'npy' | 'pb' | 'json' | 'images', path: k[2]! };
  if (!existsSync(text)) throw inputError('DATA_NOT_FOUND', `--inputs ${text}: no such file or folder (or use random[:count[:seed]])`, { file: text });
  const st = statSync(text);
  if (st.isFile()) {
    const ext = extname(text).toLowerCase();
    if (ext === '.txt' || ext === '.lst') {
      const base = dirname(text);
      const files = readFileSync(text, 'utf8')
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('#'))
        .map((l) => resolve(base, l));
      const kinds = new Set<string>(files.map((f) => EXT_KIND[extname(f).toLowerCase()] ?? 'unknown'));
      if (kinds.size !== 1 || !(kinds.has('npy') || kinds.has('images'))) {
        throw inputError('DATA_BAD_LIST', `${text}: a list must name only .npy/.npz files or only .png files`, { file: text });
      }
      return kinds.has('images') ? { kind: 'images', path: base, files } : { kind: 'npy', files };
    }
    const kind = EXT_KIND[ext];
    if (!kind) throw inputError('DATA_UNKNOWN_KIND', `--inputs ${text}: cannot tell the data kind from '${ext}' (use npy:, pb:, json: or images:)`, { file: text });
    return kind === 'npy' ? { kind, files: [text] } : kind === 'images' ? { kind, path: dirname(text), files: [text] } : { kind, path: text };
  }
  return { kind: detectFolder(text), path: text };
}

function detectFolder(dir: string): 'npy' | 'pb' | 'json' | 'images' {
  const names = readdirSync(dir);
  if (names.some((n) => /^test_data_set_\d+$/.test(n)) || names.some((n) => /^input_\d+\.pb$/.test(n))) return 'pb';
  const count = (ext: string) => names.filter((n) => n.toLowerCase().endsWith(ext)).length;
  if (count('.npy') + count('.npz') > 0) return 'npy';
  if (count('.png') > 0) return 'images';
  if (count('.json') > 0) return 'json';
  throw inputError('DATA_UNKNOWN_KIND', `${dir}: found no .npy, .npz, .pb, .png or .json samples`, { file: dir });
}

/**
 * Opens a data source for a model with the given inputs. Samples are read lazily and checked
 * against `inputs` (names, element types, ranks and fixed dims).
 */
export async function* openDataSource(spec: DataSourceSpec | string, inputs: readonly ValueInfo[], options: DataSourceOptions = {}): AsyncGenerator<Sample> {
  const s = typeof spec === 'string' ? parseDataSpec(spec) : spec;
  const limit = options.limit ?? Infinity;
  const check = options.check ?? true;
  let n = 0;
  if (n >= limit) return;
  for await (const sample of rawSamples(s, inputs, options)) {
    if (check) checkFeed(sample.feed, inputs, sample.id);
    yield sample;
    if (++n >= limit) return;
  }
}

/** Reads all samples into memory (for small sets, e.g. benchmark inputs). */
export async function collectSamples(spec: DataSourceSpec | string, inputs: readonly ValueInfo[], options: DataSourceOptions = {}): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of openDataSource(spec, inputs, options)) out.push(s);
  return out;
}

async function* rawSamples(s: DataSourceSpec, inputs: readonly ValueInfo[], options: DataSourceOptions): AsyncGenerator<Sample> {
  switch (s.kind) {
    case 'random': {
      let i = 0;
      for await (const feed of generateFeeds(inputs, s.count ?? 1, s.seed ?? 0, options.shapes ?? {})) yield { id: `random#${i++}`, feed };
      return;
    }
    case 'npy':
      yield* npySamples(s.files ?? listFiles(s.path!, ['.npy', '.npz']), inputs);
      return;
    case 'pb':
      yield* pbSamples(s.path, inputs);
      return;
    case 'json':
      yield* jsonSamples(s.path, inputs);
      return;
    case 'images':
      yield* imageSamples(s.path, s.files, inputs, options.preprocess);
      return;
    case 'iterable': {
      let i = 0;
      for await (const x of s.samples as AsyncIterable<Sample | Feed>) {
        yield isSample(x) ? x : { id: `sample#${i}`, feed: x };
        i++;
      }
      return;
    }
  }
}

function isSample(x: Sample | Feed): x is Sample {
  return typeof (x as Sample).id === 'string' && typeof (x as Sample).feed === 'object' && (x as Sample).feed !== null && !('dims' in (x as Sample).feed);
}

function listFiles(dir: string, exts: string[]): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw inputError('DATA_NOT_FOUND', `cannot list ${dir}: ${(e as Error).message}`, { file: dir });
  }
  const files = names.filter((n) => exts.includes(extname(n).toLowerCase())).sort(naturalCompare).map((n) => join(dir, n));
  if (files.length === 0) throw inputError('DATA_EMPTY', `${dir}: no ${exts.join('/')} files`, { file: dir });
  return files;
}

export function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/**
 * A sample file's bytes. Read synchronously: every reader parses the whole file at once, and an
 * asynchronous read handed the wait to the event loop, which in a busy process (the int4 pass's
 * helper thread and V8's concurrent GC on a 2-core machine) took 8-20 ms for the trained LM's 50 KB
 * calibration file against ~0.5 ms.
 */
async function readBytes(file: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(readFileSync(file));
  } catch (e) {
    throw inputError('DATA_UNREADABLE', `cannot read ${file}: ${(e as Error).message}`, { file });
  }
}

/** Assigns arrays to inputs: by name when every name matches an input, else in input order. */
function assign(arrays: { name: string; tensor: HostTensor }[], inputs: readonly ValueInfo[], file: string): Feed {
  const names = new Set(inputs.map((i) => i.name));
  const feed: Feed = {};
  if (arrays.every((a) => names.has(a.name))) {
    for (const a of arrays) feed[a.name] = a.tensor;
    return feed;
  }
  if (arrays.length !== inputs.length) {
    const bad = arrays.find((a) => !names.has(a.name));
    throw inputError(
      'DATA_UNKNOWN_INPUT',
      `${file}: array '${bad?.name}' matches no model input (${[...names].map((n) => `'${n}'`).join(', ')}), and the ${arrays.length} arrays cannot be taken in input order for ${inputs.length} inputs`,
      { file, tensor: bad?.name },
    );
  }
  arrays.forEach((a, i) => (feed[inputs[i]!.name] = a.tensor));
  return feed;
}

async function* npySamples(files: string[], inputs: readonly ValueInfo[]): AsyncGenerator<Sample> {
  for (const file of files) {
    const bytes = await readBytes(file);
    let arrays: { name: string; tensor: HostTensor }[];
    if (file.toLowerCase().endsWith('.npz')) {
      const zip = new ZipReader(bytes, file);
      arrays = zip.entries
        .filter((e) => e.name.endsWith('.npy'))
        .map((e) => ({ name: e.name.slice(0, -4), tensor: parseNpy(zip.read(e), `${file}:${e.name}`) }));
    } else arrays = [{ name: basename(file, extname(file)), tensor: parseNpy(bytes, file) }];
    // a single .npy is the only input of a single-input model whatever its file name
    if (arrays.length === 1 && inputs.length === 1) arrays[0]!.name = inputs[0]!.name;
    yield { id: file, feed: assign(arrays, inputs, file) };
  }
}

async function* pbSamples(path: string, inputs: readonly ValueInfo[]): AsyncGenerator<Sample> {
  let sets: string[];
  if (statSync(path).isFile()) sets = [];
  else {
    const names = readdirSync(path);
    sets = names.filter((n) => /^test_data_set_\d+$/.test(n)).sort(naturalCompare).map((n) => join(path, n));
    if (sets.length === 0) sets = [path];
  }
  if (sets.length === 0) {
    const { name, tensor } = readTensorProto(await readBytes(path), path);
    yield { id: path, feed: assign([{ name: name || inputs[0]?.name || 'input', tensor }], inputs, path) };
    return;
  }
  for (const dir of sets) {
    const files = readdirSync(dir)
      .filter((n) => /^input_\d+\.pb$/.test(n))
      .sort(naturalCompare)
      .map((n) => join(dir, n));
    if (files.length === 0) throw inputError('DATA_EMPTY', `${dir}: no input_N.pb files`, { file: dir });
    const arrays: { name: string; tensor: HostTensor }[] = [];
    for (const f of files) {
      const { name, tensor } = readTensorProto(await readBytes(f), f);
      arrays.push({ name, tensor });
    }
    // the suite stores inputs in model-input order; names are used when they all match
    yield { id: dir, feed: assign(arrays, inputs, dir) };
  }
}

interface JsonTensor {
  dims?: number[];
  shape?: number[];
  dtype?: string;
  type?: string;
  data: unknown[];
}

function jsonFeed(obj: unknown, inputs: readonly ValueInfo[], where: string): { feed: Feed; label?: unknown } {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw inputError('DATA_BAD_JSON', `${where}: a sample must be an object {"<input>": {"dims", "dtype", "data"}}`, { file: where });
  let body = obj as Record<string, unknown>;
  let label: unknown;
  if ('inputs' in body && typeof body.inputs === 'object' && body.inputs !== null && !('data' in (body.inputs as object))) {
    label = body.label;
    body = body.inputs as Record<string, unknown>;
  }
  const feed: Feed = {};
  for (const [name, v] of Object.entries(body)) {
    const t = v as JsonTensor;
    if (!t || typeof t !== 'object' || !Array.isArray(t.data)) throw inputError('DATA_BAD_JSON', `${where}: input '${name}' needs a "data" array`, { file: where, tensor: name });
    const info = inputs.find((i) => i.name === name);
    const typeName = t.dtype ?? t.type ?? (info?.type as string | undefined) ?? 'float32';
    const type: HostDType | undefined = hostDType(typeName);
    if (!type) throw inputError('DATA_BAD_JSON', `${where}: input '${name}' has unknown dtype '${typeName}'`, { file: where, tensor: name });
    const dims = t.dims ?? t.shape ?? [t.data.length];
    if (!Array.isArray(dims)) throw inputError('DATA_BAD_JSON', `${where}: input '${name}' has no dims array`, { file: where, tensor: name });
    feed[name] = fromValues(type, dims, t.data, `${where}: input '${name}'`);
  }
  return { feed, label };
}

async function* jsonSamples(path: string, inputs: readonly ValueInfo[]): AsyncGenerator<Sample> {
  const files = statSync(path).isDirectory() ? listFiles(path, ['.json']).filter((f) => basename(f) !== 'labels.json') : [path];
  for (const file of files) {
    let doc: unknown;
    try {
      doc = JSON.parse(new TextDecoder().decode(await readBytes(file)));
    } catch (e) {
      throw inputError('DATA_BAD_JSON', `${file}: ${(e as Error).message}`, { file });
    }
    const list = Array.isArray(doc) ? doc : [doc];
    for (let i = 0; i < list.length; i++) {
      const id = Array.isArray(doc) ? `${file}[${i}]` : file;
      yield { id, ...jsonFeed(list[i], inputs, id) };
    }
  }
}

function readLabels(dir: string): Map<string, unknown> {
  const path = join(dir, 'labels.json');
  const map = new Map<string, unknown>();
  if (!existsSync(path)) return map;
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw inputError('DATA_BAD_LABELS', `${path}: ${(e as Error).message}`, { file: path });
  }
  if (!Array.isArray(doc)) throw inputError('DATA_BAD_LABELS', `${path}: expected an array of {file, ...}`, { file: path });
  for (const e of doc) {
    if (!e || typeof e !== 'object' || typeof (e as { file?: unknown }).file !== 'string') throw inputError('DATA_BAD_LABELS', `${path}: every entry needs a "file" string`, { file: path });
    map.set((e as { file: string }).file, e);
  }
  return map;
}

async function* imageSamples(dir: string, files: string[] | undefined, inputs: readonly ValueInfo[], prep: PreprocessConfig | string | undefined): AsyncGenerator<Sample> {
  if (prep === undefined) throw inputError('DATA_NO_PREPROCESS', `${dir}: images need a preprocessing file (--preprocess prep.json)`, { file: dir });
  const config = typeof prep === 'string' ? loadPreprocess(prep) : validatePreprocess(prep);
  const names = Object.keys(config.inputs);
  for (const n of names) {
    if (!inputs.some((i) => i.name === n)) {
      throw inputError('DATA_UNKNOWN_INPUT', `preprocessing names input '${n}', but the model's inputs are ${inputs.map((i) => `'${i.name}'`).join(', ')}`, { tensor: n });
    }
  }
  const labels = readLabels(dir);
  for (const file of files ?? listFiles(dir, ['.png'])) {
    const img = decodePng(await readBytes(file), file);
    const label = labels.get(basename(file));
    const feed: Feed = {};
    for (const n of names) feed[n] = preprocessImage(img, config.inputs[n]!, label, file);
    yield label === undefined ? { id: file, feed } : { id: file, feed, label };
  }
}
