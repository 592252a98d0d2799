/**
 * The content-addressed store trials read their inputs from and write their candidates to. A file is
 * kept under its sha256 (`<root>/<aa>/<hash>`, `aa` its first two hex digits); a folder is kept as a
 * manifest (a stored JSON file mapping relative paths to the files' refs), so a trial names all it
 * reads by hashes and a worker on any machine fetches exactly those bytes, verified.
 *
 * A store is given by URL. Implemented: a local or shared folder (a plain path or `file://…`), which
 * is what the tests and a cluster with a shared file system use. The transport sits behind
 * {@link StoreBackend} (has / read into a local file / write from a local file), so an object store
 * (`http(s)://`, S3-compatible PUT/GET of `<aa>/<hash>`) is one more backend; none is implemented here,
 * and such a URL is refused (STORE_BAD_URL) rather than faked.
 *
 * Fetched content is materialized into a local cache folder (`<cache>/<hash>/<name>`, trees under
 * `<cache>/<manifest hash>/`) by copying while hashing, never by hard link: the external-data loader
 * refuses files with more than one link, and a reader writing into a linked file would corrupt the
 * store. A cache entry appears only after its hash checked out (temp file, then rename).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { inputError } from '../../core/errors.js';
import { ensureParentDir, writeFileAtomic } from '../../core/files.js';
import type { ContentRef, DataRef } from './types.js';

const HASH_RE = /^[0-9a-f]{64}$/;
const MANIFEST_FORMAT = 'onnxforge-tree/1';

/** A stored folder: relative paths (with `/`) to the files' refs, and what a data spec names in it. */
export interface TreeManifest {
  format: typeof MANIFEST_FORMAT;
  files: Record<string, ContentRef>;
  /** The path inside the tree the data spec names (a file or list); absent: the tree's root. */
  entry?: string;
  /** The data-kind prefix the spec carried (`images`, `npy`, `pb`, `json`), kept for the fetched spec. */
  kind?: string;
}

/** Moves bytes between the store and this machine. Hashes are checked by the store, not the backend. */
export interface StoreBackend {
  readonly url: string;
  has(hash: string): Promise<boolean>;
  /** Copies the object to `dest` (a new temp file) while feeding the bytes to `onChunk`; false when absent. */
  read(hash: string, dest: string, onChunk: (b: Buffer) => void): Promise<boolean>;
  /** Stores the local file `src` (already hashed) under `hash`; a no-op when present. */
  write(hash: string, src: string): Promise<void>;
}

/** A shared or local folder: `<root>/<aa>/<hash>`. */
class FolderBackend implements StoreBackend {
  constructor(readonly url: string, readonly root: string) {}

  objectPath(hash: string): string {
    return path.join(this.root, hash.slice(0, 2), hash);
  }

  async has(hash: string): Promise<boolean> {
    return fs.existsSync(this.objectPath(hash));
  }

  async read(hash: string, dest: string, onChunk: (b: Buffer) => void): Promise<boolean> {
    const src = this.objectPath(hash);
    if (!fs.existsSync(src)) return false;
    await copyHashing(src, dest, onChunk);
    return true;
  }

  async write(hash: string, src: string): Promise<void> {
    const dest = this.objectPath(hash);
    if (fs.existsSync(dest)) return;
    const tmp = tempBeside(dest);
    try {
      fs.copyFileSync(src, tmp, fs.constants.COPYFILE_FICLONE);
      fs.renameSync(tmp, dest);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw inputError('WRITE_FAILED', `${dest}: could not store ${src} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file: dest });
    }
  }
}

function tempBeside(file: string): string {
  const dir = ensureParentDir(file);
  return path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${Math.random().toString(16).slice(2)}`);
}

async function copyHashing(src: string, dest: string, onChunk: (b: Buffer) => void): Promise<void> {
  const out = fs.createWriteStream(dest);
  try {
    for await (const chunk of fs.createReadStream(src)) {
      const b = chunk as Buffer;
      onChunk(b);
      if (!out.write(b)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
  } finally {
    await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  }
}

/** sha256 (hex) and size of a local file, streamed. */
export async function hashFile(file: string): Promise<{ hash: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of fs.createReadStream(file)) {
    h.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { hash: h.digest('hex'), bytes };
}

export interface StoreOptions {
  /** Where fetched content is materialized. Default: `<root>/.cache` for a folder store. */
  cacheDir?: string;
  /** Refuse a folder that does not exist instead of creating it (a worker reads a store, never starts one). */
  mustExist?: boolean;
}

/** A content-addressed store opened from its URL. */
export class ContentStore {
  readonly url: string;
  readonly cacheDir: string;
  private readonly backend: StoreBackend;

  constructor(backend: StoreBackend, cacheDir: string) {
    this.backend = backend;
    this.url = backend.url;
    this.cacheDir = cacheDir;
  }

  /** Stores a local file; `name` defaults to its base name. */
  async putFile(file: string, name = path.basename(file)): Promise<ContentRef> {
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch {
      throw inputError('FILE_NOT_FOUND', `${file}: no such file to put in the store ${this.url}`, { file });
    }
    if (!st.isFile()) throw inputError('FILE_NOT_REGULAR', `${file}: not a regular file (store ${this.url})`, { file });
    const { hash, bytes } = await hashFile(file);
    await this.backend.write(hash, file);
    return { hash, name, bytes };
  }

  /** Stores bytes (a manifest, a report) under `name`. */
  async putBytes(data: Uint8Array | string, name: string): Promise<ContentRef> {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const hash = createHash('sha256').update(buf).digest('hex');
    if (!(await this.backend.has(hash))) {
      const staging = path.join(this.cacheDir, '.staging', `${hash}.${process.pid}-${Math.random().toString(16).slice(2)}`);
      writeFileAtomic(staging, buf);
      try {
        await this.backend.write(hash, staging);
      } finally {
        fs.rmSync(staging, { force: true });
      }
    }
    return { hash, name, bytes: buf.length };
  }

  /**
   * Stores a folder (every regular file below it, symbolic links followed) as a manifest. The manifest
   * lists paths sorted, so the same folder content always gives the same manifest hash.
   */
  async putTree(dir: string, extra: { entry?: string; kind?: string; only?: readonly string[] } = {}): Promise<ContentRef> {
    const rels = extra.only ? [...extra.only] : listFiles(dir);
    rels.sort();
    const files: Record<string, ContentRef> = {};
    for (const rel of rels) files[rel] = await this.putFile(path.join(dir, ...rel.split('/')), path.posix.basename(rel));
    const manifest: TreeManifest = { format: MANIFEST_FORMAT, files };
    if (extra.entry !== undefined) manifest.entry = extra.entry;
    if (extra.kind !== undefined) manifest.kind = extra.kind;
    return this.putBytes(JSON.stringify(manifest), `${path.basename(path.resolve(dir))}.tree.json`);
  }

  /**
   * Stores what a data spec (`--eval`, `--calibration`) reads. `random…` specs need no files and stay
   * specs; a folder, a data file, a `.txt`/`.lst` list (with the files it names, which must lie below
   * the list's folder) or a `kind:path` spec becomes a tree.
   */
  async putData(spec: string, extra: { preprocess?: string; limit?: number } = {}): Promise<DataRef> {
    const more: { preprocess?: ContentRef; limit?: number } = {};
    if (extra.preprocess) more.preprocess = await this.putFile(extra.preprocess);
    if (extra.limit !== undefined) more.limit = extra.limit;
    if (/^random(:\d+)?(:\d+)?$/.test(spec)) return { kind: 'spec', spec, ...more };
    const k = /^(npy|pb|json|images):(.+)$/.exec(spec);
    const kind = k?.[1];
    const target = k ? k[2]! : spec;
    let st: fs.Stats;
    try {
      st = fs.statSync(target);
    } catch {
      throw inputError('DATA_NOT_FOUND', `${spec}: no such file or folder to put in the store ${this.url}`, { file: target });
    }
    const opts = kind ? { kind } : {};
    if (st.isDirectory()) return { kind: 'tree', manifest: await this.putTree(target, opts), ...more };
    if (!st.isFile()) throw inputError('STORE_UNSUPPORTED_DATA', `${spec}: neither a file nor a folder`, { file: target });
    const base = path.dirname(path.resolve(target));
    const name = path.basename(target);
    const only = [name];
    if (/\.(txt|lst)$/i.test(name)) {
      for (const line of fs.readFileSync(target, 'utf8').split(/\r?\n/)) {
        const l = line.trim();
        if (!l || l.startsWith('#')) continue;
        const rel = path.relative(base, path.resolve(base, l));
        if (rel.startsWith('..') || path.isAbsolute(rel)) {
          throw inputError('STORE_UNSUPPORTED_DATA', `${target}: lists ${l}, which is outside the list's folder ${base}; the store keeps a list with the files below it`, { file: target });
        }
        only.push(rel.split(path.sep).join('/'));
      }
    }
    return { kind: 'tree', manifest: await this.putTree(base, { ...opts, entry: name, only: [...new Set(only)] }), ...more };
  }

  /** A local path holding the file `ref` names, verified against its hash (cached after the first fetch). */
  async fetchFile(ref: ContentRef): Promise<string> {
    checkHash(ref.hash, this.url);
    const dest = path.join(this.cacheDir, ref.hash, safeName(ref.name));
    if (fs.existsSync(dest)) return dest;
    await this.materialize(ref.hash, dest);
    return dest;
  }

  /** Reads and checks a stored manifest. */
  async readManifest(ref: ContentRef): Promise<TreeManifest> {
    const file = await this.fetchFile(ref);
    let m: TreeManifest;
    try {
      m = JSON.parse(fs.readFileSync(file, 'utf8')) as TreeManifest;
    } catch {
      throw inputError('STORE_CORRUPT', `manifest ${ref.hash} (${ref.name}) in ${this.url} is not JSON`, { hash: ref.hash });
    }
    if (m?.format !== MANIFEST_FORMAT || typeof m.files !== 'object' || m.files === null) {
      throw inputError('STORE_CORRUPT', `manifest ${ref.hash} (${ref.name}) in ${this.url} is not a ${MANIFEST_FORMAT} manifest`, { hash: ref.hash });
    }
    for (const [rel, f] of Object.entries(m.files)) {
      if (!isSafeRelative(rel) || typeof f?.hash !== 'string') {
        throw inputError('STORE_CORRUPT', `manifest ${ref.hash} in ${this.url} lists an unsafe path or entry '${rel}'`, { hash: ref.hash });
      }
    }
    if (m.entry !== undefined && !isSafeRelative(m.entry)) throw inputError('STORE_CORRUPT', `manifest ${ref.hash} in ${this.url} has an unsafe entry '${m.entry}'`, { hash: ref.hash });
    return m;
  }

  /** A local folder holding the tree `manifest` names, every file verified; returns the folder. */
  async fetchTree(manifest: ContentRef): Promise<{ dir: string; manifest: TreeManifest }> {
    const m = await this.readManifest(manifest);
    const dir = path.join(this.cacheDir, manifest.hash, 'tree');
    const done = path.join(this.cacheDir, manifest.hash, '.complete');
    if (!fs.existsSync(done)) {
      for (const [rel, f] of Object.entries(m.files)) {
        checkHash(f.hash, this.url);
        const dest = path.join(dir, ...rel.split('/'));
        if (!fs.existsSync(dest)) await this.materialize(f.hash, dest);
      }
      writeFileAtomic(done, '');
    }
    return { dir, manifest: m };
  }

  /**
   * What a trial's data reader takes: the spec itself for `random…`, else the fetched tree as a spec
   * string (the folder, or the file/list the spec named in it, with its `kind:` prefix).
   */
  async fetchData(ref: DataRef): Promise<string> {
    if (ref.kind === 'spec') return ref.spec;
    const { dir, manifest } = await this.fetchTree(ref.manifest);
    const p = manifest.entry !== undefined ? path.join(dir, ...manifest.entry.split('/')) : dir;
    return manifest.kind ? `${manifest.kind}:${p}` : p;
  }

  /** A `(ref) => local path or spec` function, the shape `runTrial` takes. */
  fetcher(): (ref: ContentRef | DataRef) => Promise<string> {
    return (ref) => ('kind' in ref ? this.fetchData(ref) : this.fetchFile(ref));
  }

  private async materialize(hash: string, dest: string): Promise<void> {
    const tmp = tempBeside(dest);
    const h = createHash('sha256');
    try {
      const found = await this.backend.read(hash, tmp, (b) => h.update(b));
      if (!found) throw inputError('STORE_MISSING', `content ${hash} is not in the store ${this.url}`, { hash });
      const got = h.digest('hex');
      if (got !== hash) throw inputError('STORE_CORRUPT', `content ${hash} in the store ${this.url} hashes to ${got} (damaged or replaced)`, { hash });
      fs.renameSync(tmp, dest);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
}

function checkHash(hash: string, url: string): void {
  if (!HASH_RE.test(hash)) throw inputError('STORE_CORRUPT', `'${hash}' is not a sha256 content hash (store ${url})`, { hash });
}

function safeName(name: string): string {
  const b = path.basename(name);
  return b && b !== '.' && b !== '..' ? b : 'content';
}

function isSafeRelative(rel: string): boolean {
  if (!rel || rel.startsWith('/') || rel.includes('\\') || rel.includes('\0')) return false;
  return rel.split('/').every((p) => p !== '' && p !== '.' && p !== '..');
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (abs: string, rel: string) => {
    for (const name of fs.readdirSync(abs)) {
      const a = path.join(abs, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.statSync(a);
      if (st.isDirectory()) walk(a, r);
      else if (st.isFile()) out.push(r);
    }
  };
  walk(dir, '');
  return out;
}

/** Opens a store from its URL: a folder path or `file://…` (created when missing unless `mustExist`). */
export function openStore(url: string, options: StoreOptions = {}): ContentStore {
  let root: string;
  if (/^file:\/\//i.test(url)) {
    try {
      root = fileURLToPath(url);
    } catch {
      throw inputError('STORE_BAD_URL', `store ${url}: not a valid file:// URL`, { url });
    }
  } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) {
    throw inputError('STORE_BAD_URL', `store ${url}: only a folder path or a file:// URL is supported (an object store such as http(s):// has no backend yet)`, { url });
  } else {
    root = url;
  }
  root = path.resolve(root);
  if (fs.existsSync(root) && !fs.statSync(root).isDirectory()) throw inputError('STORE_BAD_URL', `store ${url}: ${root} is not a folder`, { url });
  if (options.mustExist && !fs.existsSync(root)) throw inputError('STORE_BAD_URL', `store ${url}: no such folder ${root} on this machine (give --store where the shared store is mounted)`, { url });
  fs.mkdirSync(root, { recursive: true });
  return new ContentStore(new FolderBackend(url, root), options.cacheDir ?? path.join(root, '.cache'));
}
