/**
 * Atomic saves: temp files in the destination folder, data first, .onnx last; a failure at every write
 * step leaves the old content (or nothing); stale data files are replaced; saving over the input works;
 * output is deterministic; files the model reads from are never overwritten by another output.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OnnxForgeError } from '../../core/errors.js';
import { loadModelSync, SAVE_STEPS, saveModelSync, SaveOptions, SaveStep, serializeModel } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import { Model } from '../../ir/ir.js';
import { editModelFile, initializerProtos, setExternalEntries, smallModel, snapshot, tempLeftovers, tmpDir, writeExternalModel } from './helpers.js';

let root: string;
beforeEach(() => {
  root = tmpDir();
});
afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

function tensorBytes(m: Model, name: string): Buffer {
  return Buffer.from(m.graph.initializerTensor(m.graph.initializers.get(name)!)!.bytes());
}

/** A model that differs from smallModel() in W's values. */
function otherModel(): Model {
  const m = smallModel();
  const v = m.graph.initializers.get('W')!;
  m.graph.setInitializerTensor(v, Tensor.from('float32', [16, 16], new Float32Array(256).fill(3), 'W'));
  return m;
}

function failAt(target: SaveStep): SaveOptions['onStep'] {
  return (s) => {
    if (s === target) throw Object.assign(new Error(`injected failure at ${s}`), { code: 'ENOSPC' });
  };
}

describe('failure at every write step', () => {
  const modes: Array<[string, SaveOptions]> = [
    ['external', { externalData: true, threshold: 64 }],
    ['inline', { inlineData: true }],
  ];
  for (const [mode, opts] of modes) {
    for (const step of SAVE_STEPS) {
      it(`${mode}, ${step}: a fresh destination stays empty`, () => {
        const out = path.join(root, 'out.onnx');
        let reached = false;
        const onStep = (s: SaveStep, f: string) => {
          if (s === step) reached = true;
          failAt(step)!(s, f);
        };
        if (mode === 'inline' && step.endsWith('-data')) {
          saveModelSync(smallModel(), out, { ...opts, onStep });
          expect(reached).toBe(false);
          return;
        }
        const e = (() => {
          try {
            saveModelSync(smallModel(), out, { ...opts, onStep });
          } catch (err) {
            return err as OnnxForgeError;
          }
          throw new Error('expected failure');
        })();
        expect(reached).toBe(true);
        expect(e).toBeInstanceOf(OnnxForgeError);
        expect(e.code).toBe('WRITE_FAILED');
        expect(e.message).toContain('ENOSPC');
        expect(fs.readdirSync(root)).toEqual([]);
      });

      it(`${mode}, ${step}: an existing destination keeps its old content`, () => {
        const out = path.join(root, 'out.onnx');
        saveModelSync(otherModel(), out, { externalData: true, threshold: 64 });
        const before = snapshot(root);
        try {
          saveModelSync(smallModel(), out, { ...opts, onStep: failAt(step) });
        } catch (err) {
          expect((err as OnnxForgeError).code).toBe('WRITE_FAILED');
        }
        if (mode === 'inline' && step.endsWith('-data')) return; // step not reached: the save succeeded
        expect(snapshot(root)).toEqual(before);
        expect(tensorBytes(loadModelSync(out), 'W').equals(tensorBytes(otherModel(), 'W'))).toBe(true);
      });
    }
  }

  it('writes temp files in the destination folder, the data file before the .onnx', () => {
    const out = path.join(root, 'out.onnx');
    const seen: string[] = [];
    saveModelSync(smallModel(), out, {
      externalData: true,
      onStep: (s) => {
        if (s === 'rename-data' || s === 'rename-model') seen.push(`${s}:${fs.readdirSync(root).sort().join(',')}`);
      },
    });
    expect(seen[0]).toMatch(/^rename-data:\.out\.onnx\.data\.tmp-\d+-[0-9a-f]+,\.out\.onnx\.tmp-\d+-[0-9a-f]+$/);
    expect(seen[1]).toMatch(/^rename-model:\.out\.onnx\.tmp-\d+-[0-9a-f]+,out\.onnx\.data$/);
    expect(fs.readdirSync(root).sort()).toEqual(['out.onnx', 'out.onnx.data']);
  });
});

describe('destination contents', () => {
  it('replaces a stale .data file instead of appending to it', () => {
    const out = path.join(root, 'out.onnx');
    fs.writeFileSync(`${out}.data`, Buffer.alloc(1 << 20, 9));
    const res = saveModelSync(smallModel(), out, { externalData: true, threshold: 64 });
    expect(fs.statSync(`${out}.data`).size).toBe(res.dataBytes);
    expect(res.dataBytes!).toBeLessThan(2048);
    expect(tensorBytes(loadModelSync(out), 'W').equals(tensorBytes(smallModel(), 'W'))).toBe(true);
    expect(tempLeftovers(root)).toEqual([]);
  });

  it('gives byte-identical output on two runs (inline and external)', () => {
    for (const opts of [{}, { externalData: true, threshold: 0 }] as SaveOptions[]) {
      const a = path.join(root, 'a');
      const b = path.join(root, 'b');
      fs.mkdirSync(a);
      fs.mkdirSync(b);
      saveModelSync(smallModel(), path.join(a, 'm.onnx'), opts);
      saveModelSync(loadModelSync(path.join(a, 'm.onnx')), path.join(b, 'm.onnx'), opts);
      saveModelSync(smallModel(), path.join(a, 'm.onnx'), opts);
      expect(snapshot(a)).toEqual(snapshot(b));
      fs.rmSync(a, { recursive: true });
      fs.rmSync(b, { recursive: true });
    }
  });

  it('saves over its own input path (inline and with lazily read external data)', () => {
    const dir = path.join(root, 'm');
    fs.mkdirSync(dir);
    const p = writeExternalModel(dir, 'model.onnx', 64);
    const want = tensorBytes(smallModel(), 'W');
    // external -> external with another layout, over the same files
    const m = loadModelSync(p);
    saveModelSync(m, p, { externalData: true, threshold: 0, align: 4096 });
    // the in-memory model still reads the data it was loaded from
    expect(tensorBytes(m, 'W').equals(want)).toBe(true);
    expect(tensorBytes(loadModelSync(p), 'W').equals(want)).toBe(true);
    // external -> inline over the same path, then inline -> inline
    saveModelSync(loadModelSync(p), p, { inlineData: true });
    const inline = fs.readFileSync(p);
    saveModelSync(loadModelSync(p), p);
    expect(fs.readFileSync(p).equals(inline)).toBe(true);
    expect(tensorBytes(loadModelSync(p), 'W').equals(want)).toBe(true);
    expect(tempLeftovers(dir)).toEqual([]);
  });

  it('never overwrites a file the model reads from when writing elsewhere, and never modifies the input', () => {
    const dir = path.join(root, 'm');
    fs.mkdirSync(dir);
    const p = writeExternalModel(dir, 'a.onnx');
    const before = snapshot(dir);
    const m = loadModelSync(p);
    expect(() => saveModelSync(m, path.join(dir, 'b.onnx'), { externalData: 'a.onnx.data' })).toThrow(expect.objectContaining({ code: 'OUTPUT_IS_INPUT' }));
    expect(() => saveModelSync(m, path.join(dir, 'a.onnx.data'))).toThrow(expect.objectContaining({ code: 'OUTPUT_IS_INPUT' }));
    expect(snapshot(dir)).toEqual(before);
    saveModelSync(m, path.join(dir, 'b.onnx'));
    const after = snapshot(dir);
    expect(after['a.onnx']).toBe(before['a.onnx']);
    expect(after['a.onnx.data']).toBe(before['a.onnx.data']);
  });

  it('refuses an output data location that leaves the folder or goes through a symlinked folder', () => {
    const out = path.join(root, 'out', 'm.onnx');
    fs.mkdirSync(path.dirname(out));
    fs.mkdirSync(path.join(root, 'elsewhere'));
    fs.symlinkSync(path.join(root, 'elsewhere'), path.join(root, 'out', 'link'));
    for (const loc of ['../x.data', '/tmp/x.data', 'link/x.data', 'missing/x.data', 'm.onnx', '']) {
      expect(() => saveModelSync(smallModel(), out, { externalData: loc || '.' })).toThrow(expect.objectContaining({ code: 'OUTPUT_BAD_LOCATION' }));
    }
    expect(fs.readdirSync(path.join(root, 'elsewhere'))).toEqual([]);
    expect(fs.readdirSync(path.dirname(out))).toEqual(['link']);
    fs.mkdirSync(path.join(root, 'out', 'weights'));
    saveModelSync(smallModel(), out, { externalData: 'weights/w.bin' });
    expect(tensorBytes(loadModelSync(out), 'W').equals(tensorBytes(smallModel(), 'W'))).toBe(true);
  });

  it('creates a missing output folder, and refuses a path through a file', () => {
    const out = path.join(root, 'no', 'such', 'm.onnx');
    saveModelSync(smallModel(), out);
    expect(tensorBytes(loadModelSync(out), 'W').equals(tensorBytes(smallModel(), 'W'))).toBe(true);
    fs.writeFileSync(path.join(root, 'plain'), 'x');
    expect(() => saveModelSync(smallModel(), path.join(root, 'plain', 'm.onnx'))).toThrow(expect.objectContaining({ code: 'OUTPUT_BAD_LOCATION' }));
  });
});

describe('size limits', () => {
  it('switches to external data past the inline limit, and refuses inlineData past it', () => {
    const out = path.join(root, 'm.onnx');
    const res = saveModelSync(smallModel(), out, { maxInlineBytes: 600 });
    expect(res.dataPath).toBe(`${out}.data`);
    fs.rmSync(out);
    fs.rmSync(`${out}.data`);
    expect(() => saveModelSync(smallModel(), out, { inlineData: true, maxInlineBytes: 600 })).toThrow(expect.objectContaining({ code: 'ONNX_TOO_LARGE' }));
    expect(fs.readdirSync(root)).toEqual([]);
  });

  it('loads a model with a tensor over 2 GiB without reading it, and refuses to inline it', () => {
    const dir = path.join(root, 'big');
    fs.mkdirSync(dir);
    const p = writeExternalModel(dir);
    const elements = 2 ** 29 + 64; // 2 GiB + 256 bytes of float32
    const data = path.join(dir, 'huge.bin');
    const fd = fs.openSync(data, 'w');
    fs.ftruncateSync(fd, elements * 4); // sparse: no disk blocks, nothing in memory
    fs.closeSync(fd);
    editModelFile(p, (proto) => {
      const w = initializerProtos(proto).find((t) => t.name === 'W')!;
      setExternalEntries(w, [['location', 'huge.bin'], ['offset', '0'], ['length', String(elements * 4)]]);
      w.dims = [elements];
    });
    const rss = process.memoryUsage().rss;
    const m = loadModelSync(p);
    expect(process.memoryUsage().rss - rss).toBeLessThan(256 << 20);
    const out = path.join(root, 'out.onnx');
    expect(() => saveModelSync(m, out, { inlineData: true })).toThrow(expect.objectContaining({ code: 'ONNX_TOO_LARGE' }));
    expect(() => serializeModel(smallModel())).not.toThrow();
    expect(fs.existsSync(out)).toBe(false);
    expect(tempLeftovers(root)).toEqual([]);
  });
});
