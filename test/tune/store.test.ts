import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { isOnnxForgeError } from '../../core/errors.js';
import { openStore } from '../../workflows/tune/store.js';

const root = fs.mkdtempSync(join(tmpdir(), 'onnxforge-queue-store-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function sha(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

async function codeOf(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (isOnnxForgeError(e)) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('expected an error');
}

describe('content store (folder backend)', () => {
  it('puts a file under its sha256 and fetches a verified copy with its name', async () => {
    const store = openStore(join(root, 's1'), { cacheDir: join(root, 'cache1') });
    const src = join(root, 'model.onnx');
    const bytes = Buffer.from('not really a model, but bytes all the same');
    fs.writeFileSync(src, bytes);
    const ref = await store.putFile(src);
    expect(ref).toEqual({ hash: sha(bytes), name: 'model.onnx', bytes: bytes.length });
    expect(fs.readFileSync(join(root, 's1', ref.hash.slice(0, 2), ref.hash))).toEqual(bytes);
    const got = await store.fetchFile(ref);
    expect(got.endsWith('/model.onnx')).toBe(true);
    expect(got.startsWith(join(root, 'cache1'))).toBe(true);
    expect(fs.readFileSync(got)).toEqual(bytes);
    // a store opened by file:// URL on the same folder sees the same content
    const again = openStore(pathToFileURL(join(root, 's1')).href, { cacheDir: join(root, 'cache1b') });
    expect(fs.readFileSync(await again.fetchFile(ref))).toEqual(bytes);
    // putting the same bytes twice stores one object
    expect(await store.putBytes(bytes, 'other.bin')).toEqual({ ...ref, name: 'other.bin' });
    expect(fs.readdirSync(join(root, 's1', ref.hash.slice(0, 2)))).toEqual([ref.hash]);
  });

  it('stores a folder as a manifest with a stable hash and materializes it, every file checked', async () => {
    const store = openStore(join(root, 's2'), { cacheDir: join(root, 'cache2') });
    const dir = join(root, 'images');
    fs.mkdirSync(join(dir, 'sub'), { recursive: true });
    fs.writeFileSync(join(dir, 'a.png'), 'A');
    fs.writeFileSync(join(dir, 'sub', 'b.png'), 'BB');
    fs.writeFileSync(join(dir, 'labels.json'), '[]');
    const d1 = await store.putData(dir, { limit: 2 });
    const d2 = await store.putData(dir, { limit: 2 });
    expect(d1).toEqual(d2);
    if (d1.kind !== 'tree') throw new Error('expected a tree');
    expect(d1.limit).toBe(2);
    const m = await store.readManifest(d1.manifest);
    expect(Object.keys(m.files)).toEqual(['a.png', 'labels.json', 'sub/b.png']);
    expect(m.files['sub/b.png']).toEqual({ hash: sha('BB'), name: 'b.png', bytes: 2 });
    const local = await store.fetchData(d1);
    expect(fs.readFileSync(join(local, 'sub', 'b.png'), 'utf8')).toBe('BB');
    expect(fs.readFileSync(join(local, 'labels.json'), 'utf8')).toBe('[]');
    // one more file changes the manifest hash
    fs.writeFileSync(join(dir, 'c.png'), 'C');
    const d3 = await store.putData(dir);
    expect(d3.kind === 'tree' && d3.manifest.hash).not.toBe(d1.manifest.hash);
  });

  it('keeps specs that need no files, and a list with the files it names and its kind prefix', async () => {
    const store = openStore(join(root, 's3'), { cacheDir: join(root, 'cache3') });
    expect(await store.putData('random:4:1')).toEqual({ kind: 'spec', spec: 'random:4:1' });
    const dir = join(root, 'listed');
    fs.mkdirSync(join(dir, 'x'), { recursive: true });
    fs.writeFileSync(join(dir, 'x', 'one.npy'), '1');
    fs.writeFileSync(join(dir, 'unlisted.npy'), 'u');
    fs.writeFileSync(join(dir, 'list.txt'), '# samples\nx/one.npy\n');
    const ref = await store.putData(`npy:${join(dir, 'list.txt')}`);
    if (ref.kind !== 'tree') throw new Error('expected a tree');
    expect(Object.keys((await store.readManifest(ref.manifest)).files)).toEqual(['list.txt', 'x/one.npy']);
    const spec = await store.fetchData(ref);
    expect(spec.startsWith('npy:')).toBe(true);
    expect(spec.endsWith('/list.txt')).toBe(true);
    expect(fs.readFileSync(join(spec.slice(4), '..', 'x', 'one.npy'), 'utf8')).toBe('1');
    fs.writeFileSync(join(dir, 'bad.txt'), '../outside.npy\n');
    expect((await codeOf(store.putData(join(dir, 'bad.txt')))).code).toBe('STORE_UNSUPPORTED_DATA');
  });

  it('names the hash when content is missing or damaged, and refuses unsafe manifests', async () => {
    const store = openStore(join(root, 's4'), { cacheDir: join(root, 'cache4') });
    const missing = { hash: sha('never stored'), name: 'x.onnx', bytes: 12 };
    const e1 = await codeOf(store.fetchFile(missing));
    expect(e1.code).toBe('STORE_MISSING');
    expect(e1.message).toContain(missing.hash);

    const ref = await store.putBytes('good bytes', 'g.bin');
    fs.writeFileSync(join(root, 's4', ref.hash.slice(0, 2), ref.hash), 'evil bytes');
    const e2 = await codeOf(store.fetchFile(ref));
    expect(e2.code).toBe('STORE_CORRUPT');
    expect(e2.message).toContain(ref.hash);
    expect(fs.existsSync(join(root, 'cache4', ref.hash, 'g.bin'))).toBe(false);

    const evil = await store.putBytes(JSON.stringify({ format: 'onnxforge-tree/1', files: { '../escape': missing } }), 'evil.tree.json');
    const e3 = await codeOf(store.fetchData({ kind: 'tree', manifest: evil }));
    expect(e3.code).toBe('STORE_CORRUPT');
    expect(e3.message).toContain(evil.hash);

    expect((await codeOf(store.fetchFile({ hash: '../../etc/passwd', name: 'p', bytes: 1 }))).code).toBe('STORE_CORRUPT');
  });

  it('refuses URLs it has no backend for instead of pretending', () => {
    expect(() => openStore('https://bucket.example/store')).toThrow(/object store/);
    const file = join(root, 'plain-file');
    fs.writeFileSync(file, 'x');
    expect(() => openStore(file)).toThrow(/not a folder/);
    expect(() => openStore(join(root, 'absent'), { mustExist: true })).toThrow(/no such folder/);
    expect(fs.existsSync(join(root, 'absent'))).toBe(false);
  });
});
