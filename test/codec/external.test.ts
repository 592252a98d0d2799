/**
 * External data: every location, file and offset/length case of notes/robustness.md, checked when the
 * model is loaded (not only at first read), with 0 false rejections of legitimate nested paths.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { OnnxForgeError } from '../../core/errors.js';
import { loadModelSync, releaseModel, saveModelSync } from '../../onnx/index.js';
import { Model } from '../../ir/ir.js';
import { editModelFile, initializerProtos, runCli, setExternalEntries, snapshot, tmpDir, writeExternalModel } from './helpers.js';

let root: string;
let dir: string;
let modelPath: string;
let wBytes: Buffer;

beforeEach(() => {
  root = tmpDir();
  dir = path.join(root, 'm');
  fs.mkdirSync(dir);
  modelPath = writeExternalModel(dir);
  wBytes = fs.readFileSync(path.join(dir, 'model.onnx.data')).subarray(0, 1024);
  // a file outside the model folder that a traversal would reach
  fs.writeFileSync(path.join(root, 'x'), Buffer.alloc(4096, 7));
});

afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

/** Rewrites W's external_data entries. */
function setW(entries: Array<[string, string]>, edit?: (t: Record<string, unknown>) => void): void {
  editModelFile(modelPath, (proto) => {
    const w = initializerProtos(proto).find((t) => t.name === 'W')!;
    setExternalEntries(w, entries);
    edit?.(w);
  });
}

function loadError(file = modelPath): OnnxForgeError {
  try {
    loadModelSync(file);
  } catch (e) {
    expect(e).toBeInstanceOf(OnnxForgeError);
    return e as OnnxForgeError;
  }
  throw new Error('expected the load to fail');
}

function wData(m: Model): Uint8Array {
  const g = m.graph;
  return g.initializerTensor(g.initializers.get('W')!)!.bytes();
}

describe('location', () => {
  const traversal = [
    '../x',
    'a/../../x',
    './../x',
    'a/./../../x',
    '..\\x',
    'a\\..\\..\\x',
    'a/b/../../../x',
    '..',
    '../m/model.onnx.data',
    'a/../model.onnx.data',
    '/etc/passwd',
    '/dev/zero',
    '//x',
    'C:\\x',
    'c:x',
    'C:/x',
    '\\\\srv\\share\\x',
    '\\x',
    '',
    '.',
    './',
    'model.onnx.data\0.txt',
    '\0',
    '*/_ORT_MEM_ADDR_/*',
    '_ORT_MEM_ADDR_',
  ];
  for (const loc of traversal) {
    it(`rejects ${JSON.stringify(loc)} at load, naming the tensor`, () => {
      setW([['location', loc], ['offset', '0'], ['length', '1024']]);
      const e = loadError();
      expect(e.code).toBe('EXTERNAL_BAD_LOCATION');
      expect(e.details.tensor).toBe('W');
      expect(e.message).toContain('tensor W');
      expect(e.details.file).toBe(modelPath);
    });
  }

  const legitimate: Array<[string, string]> = [
    ['weights/a.bin', 'weights/a.bin'],
    ['./weights/a.bin', 'weights/a.bin'],
    ['weights/./a.bin', 'weights/a.bin'],
    ['weights//a.bin', 'weights/a.bin'],
    ['weights\\a.bin', 'weights/a.bin'],
    ['w..bin', 'w..bin'],
    ['..a/b.bin', '..a/b.bin'],
    ['deep/er/still/w.bin', 'deep/er/still/w.bin'],
    ['name with spaces.bin', 'name with spaces.bin'],
    ['ünï/cødé.bin', 'ünï/cødé.bin'],
  ];
  for (const [loc, onDisk] of legitimate) {
    it(`accepts the legitimate relative path ${JSON.stringify(loc)}`, () => {
      fs.mkdirSync(path.dirname(path.join(dir, onDisk)), { recursive: true });
      fs.writeFileSync(path.join(dir, onDisk), wBytes);
      setW([['location', loc], ['offset', '0'], ['length', '1024']]);
      const m = loadModelSync(modelPath);
      expect(Buffer.from(wData(m)).equals(wBytes)).toBe(true);
    });
  }
});

describe('files', () => {
  it('rejects a symlink as the final component, even one pointing inside the folder', () => {
    fs.symlinkSync('model.onnx.data', path.join(dir, 'link.data'));
    setW([['location', 'link.data']]);
    expect(loadError().code).toBe('EXTERNAL_SYMLINK');
  });

  it('rejects a symlinked parent folder', () => {
    fs.mkdirSync(path.join(root, 'outside'));
    fs.writeFileSync(path.join(root, 'outside', 'w.bin'), wBytes);
    fs.symlinkSync(path.join(root, 'outside'), path.join(dir, 'sub'));
    setW([['location', 'sub/w.bin']]);
    const e = loadError();
    expect(e.code).toBe('EXTERNAL_SYMLINK');
    expect(e.message).toContain('sub');
  });

  it('rejects a hard link', () => {
    fs.linkSync(path.join(root, 'x'), path.join(dir, 'hard.data'));
    setW([['location', 'hard.data']]);
    expect(loadError().code).toBe('EXTERNAL_HARDLINK');
  });

  it('rejects a folder', () => {
    fs.mkdirSync(path.join(dir, 'folder'));
    setW([['location', 'folder']]);
    expect(loadError().code).toBe('EXTERNAL_NOT_FILE');
  });

  it('rejects a FIFO without blocking on it', () => {
    try {
      execFileSync('mkfifo', [path.join(dir, 'fifo')]);
    } catch {
      console.warn('mkfifo unavailable: FIFO case skipped');
      return;
    }
    setW([['location', 'fifo']]);
    expect(loadError().code).toBe('EXTERNAL_NOT_FILE');
  });

  it('rejects a file under a parent that is a file', () => {
    setW([['location', 'model.onnx.data/x']]);
    expect(['EXTERNAL_BAD_LOCATION', 'EXTERNAL_MISSING']).toContain(loadError().code);
  });

  it('rejects a missing file at load, not at first read', () => {
    setW([['location', 'nope.bin']]);
    const e = loadError();
    expect(e.code).toBe('EXTERNAL_MISSING');
    expect(e.message).toContain('nope.bin');
  });

  it('rejects a tensor marked external without a location', () => {
    setW([['offset', '0']]);
    expect(loadError().code).toBe('EXTERNAL_BAD_LOCATION');
  });

  it('rejects duplicate keys', () => {
    setW([['location', 'model.onnx.data'], ['location', 'other']]);
    expect(loadError().code).toBe('EXTERNAL_DUPLICATE_KEY');
  });

  it('keeps Object.prototype untouched with __proto__-style keys and loads the data', () => {
    setW([['location', 'model.onnx.data'], ['__proto__', 'polluted'], ['constructor', 'x'], ['toString', 'y'], ['hasOwnProperty', 'z']]);
    const m = loadModelSync(modelPath);
    expect(Buffer.from(wData(m)).equals(wBytes)).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype.toString).toBe(Object.prototype.toString);
    expect(typeof ({} as { hasOwnProperty: unknown }).hasOwnProperty).toBe('function');
    // the entries are kept verbatim for lossless output
    const t = m.graph.initializerTensor(m.graph.initializers.get('W')!)!;
    expect(t.external!.entries.map((e) => e.key)).toEqual(['location', '__proto__', 'constructor', 'toString', 'hasOwnProperty']);
  });
});

describe('offset and length', () => {
  const badNumbers: Array<[string, string]> = [
    ['offset', '-1'],
    ['offset', 'abc'],
    ['offset', ''],
    ['offset', '1e3'],
    ['offset', '0x10'],
    ['offset', ' 1'],
    ['offset', '1.5'],
    ['offset', '99999999999999999999'],
    ['offset', '9999999999999999'],
    ['length', '-1024'],
    ['length', 'NaN'],
    ['length', ''],
    ['length', '+1024'],
  ];
  for (const [key, value] of badNumbers) {
    it(`rejects ${key} ${JSON.stringify(value)}`, () => {
      const entries: Array<[string, string]> = [['location', 'model.onnx.data'], ['offset', '0'], ['length', '1024']];
      entries.find((e) => e[0] === key)![1] = value;
      setW(entries);
      const e = loadError();
      expect(e.code).toBe('EXTERNAL_BAD_NUMBER');
      expect(e.message).toContain('tensor W');
      expect(e.message).toContain(key);
    });
  }

  it('rejects data beyond the end of the file, with the byte range', () => {
    const size = fs.statSync(path.join(dir, 'model.onnx.data')).size;
    setW([['location', 'model.onnx.data'], ['offset', String(size - 100)], ['length', '1024']]);
    const e = loadError();
    expect(e.code).toBe('EXTERNAL_OUT_OF_FILE');
    expect(e.message).toContain(`${size} bytes`);
  });

  it('rejects a huge offset without allocating', () => {
    setW([['location', 'model.onnx.data'], ['offset', '9007199254740000']]);
    expect(loadError().code).toBe('EXTERNAL_OUT_OF_FILE');
  });

  it('rejects a length that disagrees with dims x dtype, reporting both', () => {
    setW([['location', 'model.onnx.data'], ['offset', '0'], ['length', '1000']]);
    const e = loadError();
    expect(e.code).toBe('EXTERNAL_BAD_LENGTH');
    expect(e.message).toContain('1000');
    expect(e.message).toContain('1024');
  });

  it('rejects dims that make the data run past the file when length is absent', () => {
    setW([['location', 'model.onnx.data']], (t) => (t.dims = [1024, 1024]));
    expect(loadError().code).toBe('EXTERNAL_OUT_OF_FILE');
  });

  it('rejects negative dims and string tensors in external data', () => {
    setW([['location', 'model.onnx.data']], (t) => (t.dims = [-16, 16]));
    expect(loadError().code).toBe('TENSOR_BAD_DIMS');
    setW([['location', 'model.onnx.data']], (t) => (t.data_type = 8));
    expect(loadError().code).toBe('EXTERNAL_BAD_DTYPE');
    setW([['location', 'model.onnx.data']], (t) => (t.data_type = 99));
    expect(loadError().code).toBe('TENSOR_BAD_DTYPE');
  });

  it('accepts missing offset and length (the spec defaults: 0 and dims x dtype)', () => {
    setW([['location', 'model.onnx.data']]);
    expect(Buffer.from(wData(loadModelSync(modelPath))).equals(wBytes)).toBe(true);
  });
});

describe('lazy reads', () => {
  it('reads exactly the tensor bytes on demand and keeps reading the validated file', () => {
    const m = loadModelSync(modelPath);
    const dataFile = path.join(dir, 'model.onnx.data');
    // replace the data file by rename: the open descriptor still reads the validated file
    fs.writeFileSync(path.join(dir, 'new.bin'), Buffer.alloc(fs.statSync(dataFile).size, 1));
    fs.renameSync(path.join(dir, 'new.bin'), dataFile);
    const bytes = wData(m);
    expect(bytes.length).toBe(1024);
    expect(Buffer.from(bytes).equals(wBytes)).toBe(true);
  });

  it('refuses to read a data file that was replaced after its descriptor was closed', () => {
    const m = loadModelSync(modelPath);
    releaseModel(m);
    const dataFile = path.join(dir, 'model.onnx.data');
    const copy = fs.readFileSync(dataFile);
    fs.unlinkSync(dataFile);
    fs.writeFileSync(dataFile, copy);
    try {
      wData(m);
      expect.unreachable();
    } catch (e) {
      expect((e as OnnxForgeError).code).toBe('EXTERNAL_CHANGED');
    }
  });

  it('from bytes: lexical checks at load, no file access without a folder', () => {
    const bytes = fs.readFileSync(modelPath);
    const m = loadModelSync(bytes);
    expect(() => wData(m)).toThrow(/loaded from bytes/);
    const m2 = loadModelSync(bytes, { baseDir: dir });
    expect(Buffer.from(wData(m2)).equals(wBytes)).toBe(true);
    setW([['location', '../x']]);
    expect(() => loadModelSync(fs.readFileSync(modelPath))).toThrow(/leaves the model folder/);
  });

  it('a base folder that does not exist only matters for models with external data', () => {
    const inline = path.join(root, 'inline.onnx');
    saveModelSync(loadModelSync(modelPath), inline, { inlineData: true });
    expect(() => loadModelSync(fs.readFileSync(inline), { baseDir: path.join(root, 'nowhere') })).not.toThrow();
    expect(() => loadModelSync(fs.readFileSync(modelPath), { baseDir: path.join(root, 'nowhere') })).toThrow(expect.objectContaining({ code: 'EXTERNAL_MISSING', message: expect.stringContaining('tensor W') }));
  });

  it('validateExternalData: false defers the error to the first read', () => {
    setW([['location', 'nope.bin']]);
    const m = loadModelSync(modelPath, { validateExternalData: false });
    expect(() => wData(m)).toThrow(OnnxForgeError);
  });
});

describe('convert with bad external data', () => {
  it('exits 2 naming the tensor and writes nothing', async () => {
    setW([['location', '../x'], ['offset', '0'], ['length', '1024']]);
    const outDir = path.join(root, 'out');
    fs.mkdirSync(outDir);
    const r = await runCli(['convert', modelPath, '-o', path.join(outDir, 'o.onnx')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('EXTERNAL_BAD_LOCATION');
    expect(r.stderr).toContain('tensor W');
    expect(r.stderr).toContain(modelPath);
    expect(fs.readdirSync(outDir)).toEqual([]);
  });

  it('honours --external-data, --threshold and --inline-data', async () => {
    const outDir = path.join(root, 'out');
    fs.mkdirSync(outDir);
    const o1 = path.join(outDir, 'a.onnx');
    expect((await runCli(['convert', modelPath, '-o', o1, '--external-data', '--threshold', '64'])).code).toBe(0);
    expect(fs.statSync(`${o1}.data`).size).toBeGreaterThanOrEqual(1024 + 64);
    const m1 = loadModelSync(o1);
    const ext = [...m1.graph.initializers.values()].filter((v) => m1.graph.initializerTensor(v)!.isExternal).map((v) => v.name);
    expect(ext.sort()).toEqual(['B', 'W']);
    const o2 = path.join(outDir, 'b.onnx');
    expect((await runCli(['convert', o1, '-o', o2, '--inline-data'])).code).toBe(0);
    expect(fs.existsSync(`${o2}.data`)).toBe(false);
    expect(Buffer.from(wData(loadModelSync(o2))).equals(wBytes)).toBe(true);
    const o3 = path.join(outDir, 'c.onnx');
    expect((await runCli(['convert', o2, '-o', o3, '--external-data', 'weights.bin'])).code).toBe(0);
    expect(fs.existsSync(path.join(outDir, 'weights.bin'))).toBe(true);
    const before = snapshot(outDir);
    const r = await runCli(['convert', o2, '-o', path.join(outDir, 'd.onnx'), '--external-data', '../escape.bin']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('OUTPUT_BAD_LOCATION');
    expect(snapshot(outDir)).toEqual(before);
    expect(fs.existsSync(path.join(root, 'escape.bin'))).toBe(false);
  });

  it('convert onto its own input path keeps the model readable', async () => {
    const r = await runCli(['convert', modelPath, '-o', modelPath, '--external-data', '--threshold', '0']);
    expect(r.code).toBe(0);
    const m = loadModelSync(modelPath);
    expect(Buffer.from(wData(m)).equals(wBytes)).toBe(true);
    expect(fs.readdirSync(dir).sort()).toEqual(['model.onnx', 'model.onnx.data']);
  });

  it('saves a model loaded with external data back to external data by default', () => {
    const m = loadModelSync(modelPath);
    const out = path.join(root, 'copy.onnx');
    const res = saveModelSync(m, out);
    expect(res.dataPath).toBe(`${out}.data`);
    expect(res.externalTensors).toBe(1);
  });
});
