import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, it } from 'vitest';
import { collectSamples, openDataSource, parseDataSpec, parseNpy, statefulSource, ZipReader } from '../../data/index.js';
import { parseShapeArg } from '../../data/generate.js';
import { resizedSize } from '../../data/image.js';
import { OnnxForgeError } from '../../core/errors.js';
import { encode } from '../../onnx/wire.js';
import { Feed, float16BitsToFloat32, toFloat64 } from '../../core/host-tensor.js';
import type { ValueInfo } from '../../runtime/session.js';

const fx = fileURLToPath(new URL('./fixtures/', import.meta.url));
const read = (f: string) => new Uint8Array(readFileSync(join(fx, f)));
const tmp = mkdtempSync(join(tmpdir(), 'onnxforge-data-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const mixedInputs: ValueInfo[] = [
  { name: 'x', type: 'float32', shape: ['B', 3], isTensor: true },
  { name: 'ids', type: 'int64', shape: ['B'], isTensor: true },
];

async function error(p: Promise<unknown> | (() => unknown)): Promise<OnnxForgeError> {
  try {
    if (typeof p === 'function') p();
    else await p;
  } catch (e) {
    expect(e).toBeInstanceOf(OnnxForgeError);
    return e as OnnxForgeError;
  }
  throw new Error('expected an error');
}

describe('.npy reader (NumPy-written files)', () => {
  it('reads every supported dtype', () => {
    const f4 = parseNpy(read('x_f4.npy'), 'x_f4.npy');
    expect(f4.type).toBe('float32');
    expect(f4.dims).toEqual([2, 4]);
    expect(Array.from(f4.data as Float32Array)).toEqual([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5]);
    const f2 = parseNpy(read('x_f2.npy'), 'x_f2.npy');
    expect(f2.type).toBe('float16');
    expect(Array.from(f2.data as Uint16Array, float16BitsToFloat32)).toEqual([0.5, -1.25, 2, 65504]);
    expect(Array.from(parseNpy(read('x_i8.npy'), 'f').data as BigInt64Array)).toEqual([1n, -2n, 3n]);
    const b1 = parseNpy(read('x_b1.npy'), 'f');
    expect(b1.type).toBe('bool');
    expect(Array.from(b1.data as Uint8Array)).toEqual([1, 0, 1]);
    expect(Array.from(parseNpy(read('x_u1.npy'), 'f').data as Uint8Array)).toEqual([0, 127, 255]);
    expect(Array.from(parseNpy(read('x_i1.npy'), 'f').data as Int8Array)).toEqual([-128, 0, 127]);
    expect(Array.from(parseNpy(read('x_i4.npy'), 'f').data as Int32Array)).toEqual([7, -7]);
    expect(Array.from(parseNpy(read('x_f8.npy'), 'f').data as Float64Array)).toEqual([1.5, -2.25]);
  });

  it('transposes Fortran order and byte-swaps big-endian data', () => {
    const f = parseNpy(read('x_fortran.npy'), 'f');
    expect(f.dims).toEqual([2, 3]);
    expect(Array.from(f.data as Float32Array)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(Array.from(parseNpy(read('x_be.npy'), 'f').data as Float32Array)).toEqual([0, 1, 2, 3]);
  });

  it('rejects truncated and malformed files with the file name', async () => {
    const bytes = read('x_f4.npy');
    for (const cut of [0, 5, 9, 40, bytes.length - 1]) {
      const e = await error(() => parseNpy(bytes.subarray(0, cut), 'cut.npy'));
      expect(e.message).toContain('cut.npy');
    }
    const e = await error(() => parseNpy(new Uint8Array(200), 'zeros.npy'));
    expect(e.code).toBe('NPY_MALFORMED');
    const text = new TextDecoder('latin1').decode(bytes).replace("'<f4'", "'<c8'");
    const c8 = await error(() => parseNpy(Uint8Array.from(text, (ch) => ch.charCodeAt(0)), 'c8.npy'));
    expect(c8.code).toBe('NPY_UNSUPPORTED_DTYPE');
    expect(c8.message).toMatch(/c8\.npy: unsupported dtype '<c8'/);
  });
});

describe('.npz reader', () => {
  it('reads stored and deflated archives by array name', async () => {
    for (const f of ['mixed_stored.npz', 'mixed_deflate.npz', 'mixed_positional.npz']) {
      const [s] = await collectSamples({ kind: 'npy', files: [join(fx, f)] }, mixedInputs);
      expect(Array.from(s!.feed.x!.data as Float32Array)).toEqual([0, 1, 2, 3, 4, 5]);
      expect(Array.from(s!.feed.ids!.data as BigInt64Array)).toEqual([1n, 2n]);
    }
  });

  it('names the file and input on mismatched names or dtypes', async () => {
    let e = await error(collectSamples({ kind: 'npy', files: [join(fx, 'mixed_wrongname.npz')] }, [...mixedInputs, { name: 'z', type: 'float32', shape: [], isTensor: true }]));
    expect(e.code).toBe('DATA_UNKNOWN_INPUT');
    expect(e.message).toContain('mixed_wrongname.npz');
    expect(e.message).toContain("'idz'");
    e = await error(collectSamples({ kind: 'npy', files: [join(fx, 'mixed_wrongdtype.npz')] }, mixedInputs));
    expect(e.code).toBe('DATA_DTYPE_MISMATCH');
    expect(e.message).toMatch(/mixed_wrongdtype\.npz: input 'ids' is int32, but the model expects int64/);
  });

  it('rejects a corrupted archive (CRC) and a zip bomb claim', async () => {
    const z = read('mixed_stored.npz');
    const bad = new Uint8Array(z);
    bad[z.indexOf(0x93) + 80] ^= 0xff; // inside the first array's bytes
    const zip = new ZipReader(bad, 'bad.npz');
    const e = await error(() => zip.read(zip.entries[0]!));
    expect(e.message).toMatch(/CRC-32|bad\.npz/);
    expect((await error(() => new ZipReader(new Uint8Array(100), 'empty.npz'))).code).toBe('ZIP_MALFORMED');
  });

  it('caps inflation at the declared size', async () => {
    const zr = new ZipReader(read('mixed_deflate.npz'), 'f.npz');
    expect(zr.entries.every((en) => en.method === 8)).toBe(true);
    const lying = { ...zr.entries[0]!, size: 10 };
    const e = await error(() => zr.read(lying));
    expect(e.code).toBe('ZIP_MALFORMED');
  });
});

describe('TensorProto (.pb) sources', () => {
  it('reads test_data_set_N/input_K.pb in input order', async () => {
    const dir = join(tmp, 'case');
    for (const set of [0, 1]) {
      mkdirSync(join(dir, `test_data_set_${set}`), { recursive: true });
      const x = new Float32Array([set, 1, 2, 3, 4, 5]);
      writeFileSync(join(dir, `test_data_set_${set}`, 'input_0.pb'), encode({ name: 'x', dims: [2, 3], data_type: 1, raw_data: new Uint8Array(x.buffer) }, 'TensorProto'));
      writeFileSync(join(dir, `test_data_set_${set}`, 'input_1.pb'), encode({ name: 'ids', dims: [2], data_type: 7, int64_data: new BigInt64Array([5n, 6n]) }, 'TensorProto'));
    }
    expect(parseDataSpec(dir).kind).toBe('pb');
    const s = await collectSamples(dir, mixedInputs);
    expect(s).toHaveLength(2);
    expect(Array.from(s[1]!.feed.x!.data as Float32Array)).toEqual([1, 1, 2, 3, 4, 5]);
    expect(Array.from(s[0]!.feed.ids!.data as BigInt64Array)).toEqual([5n, 6n]);
    // a shape the model does not accept
    writeFileSync(join(dir, 'test_data_set_1', 'input_1.pb'), encode({ name: 'ids', dims: [2, 1], data_type: 7, int64_data: new BigInt64Array([5n, 6n]) }, 'TensorProto'));
    const e = await error(collectSamples(dir, mixedInputs));
    expect(e.code).toBe('DATA_SHAPE_MISMATCH');
    expect(e.message).toMatch(/test_data_set_1: input 'ids' has shape \[2,1\], but the model expects \[B\]/);
  });
});

describe('JSON sources', () => {
  it('reads a sample object or an array of samples, with labels', async () => {
    const f = join(tmp, 'samples.json');
    writeFileSync(
      f,
      JSON.stringify([
        { x: { dims: [1, 3], dtype: 'float32', data: [1, 2, 3] }, ids: { dims: [1], dtype: 'int64', data: [4] } },
        { inputs: { x: { dims: [1, 3], data: [4, 5, 6] }, ids: { dims: [1], data: [7] } }, label: 2 },
      ]),
    );
    const s = await collectSamples(`json:${f}`, mixedInputs);
    expect(s).toHaveLength(2);
    expect(Array.from(s[1]!.feed.x!.data as Float32Array)).toEqual([4, 5, 6]);
    expect(s[1]!.feed.ids!.type).toBe('int64');
    expect(s[1]!.label).toBe(2);
    writeFileSync(f, JSON.stringify({ x: { dims: [1, 3], data: [1, 2, 'a'] }, ids: { dims: [1], data: [1] } }));
    const e = await error(collectSamples(f, mixedInputs));
    expect(e.message).toContain("input 'x'");
    expect(e.message).toContain('samples.json');
  });
});

describe('generated inputs', () => {
  it('uses --shape for symbolic dims, is seeded, and names the missing dim', async () => {
    const a = await collectSamples('random:2:7', mixedInputs, { shapes: { B: [4] } });
    const b = await collectSamples('random:2:7', mixedInputs, { shapes: { B: [4] } });
    expect(a).toHaveLength(2);
    expect(a[0]!.feed.x!.dims).toEqual([4, 3]);
    expect(Array.from(a[1]!.feed.x!.data as Float32Array)).toEqual(Array.from(b[1]!.feed.x!.data as Float32Array));
    const ids = Array.from(a[0]!.feed.ids!.data as BigInt64Array);
    expect(ids.every((v) => v >= 0n && v < 10n)).toBe(true);
    const c = await collectSamples('random', mixedInputs, { shapes: Object.fromEntries([parseShapeArg('x=2,3'), parseShapeArg('ids=2')]) });
    expect(c[0]!.feed.ids!.dims).toEqual([2]);
    const e = await error(collectSamples('random', mixedInputs));
    expect(e.code).toBe('DATA_SYMBOLIC_DIM');
    expect(e.message).toMatch(/input 'x' has symbolic dimension 0 \('B'\).*--shape x=N,3 or --shape B=N/);
  });
});

function writePng(path: string, w: number, h: number, pixel: (x: number, y: number) => [number, number, number]): void {
  const png = new PNG({ width: w, height: h });
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const [r, g, b] = pixel(x, y);
      const i = (y * w + x) * 4;
      png.data[i] = r;
      png.data[i + 1] = g;
      png.data[i + 2] = b;
      png.data[i + 3] = 255;
    }
  writeFileSync(path, PNG.sync.write(png));
}

describe('image sources', () => {
  const imgInputs: ValueInfo[] = [{ name: 'x', type: 'float32', shape: ['N', 3, 'H', 'W'], isTensor: true }];

  it('computes PaddleOCR rec and cls sizes', () => {
    expect(resizedSize(107, 31, { mode: 'height', height: 48 })).toEqual([166, 48]); // ceil(48*107/31)
    expect(resizedSize(600, 31, { mode: 'height', height: 48, maxWidth: 192 })).toEqual([192, 48]);
    expect(resizedSize(640, 640, { mode: 'multiple', multiple: 32 })).toEqual([640, 640]);
    expect(resizedSize(650, 500, { mode: 'multiple', multiple: 32 })).toEqual([640, 512]);
  });

  it('resizes, rotates by label, normalizes, pads and lays out NCHW', async () => {
    const dir = join(tmp, 'imgs');
    mkdirSync(dir, { recursive: true });
    // 4x2 image: left half red, right half blue
    writePng(join(dir, 'a.png'), 4, 2, (x) => (x < 2 ? [255, 0, 0] : [0, 0, 255]));
    writePng(join(dir, 'b.png'), 4, 2, (x) => (x < 2 ? [255, 0, 0] : [0, 0, 255]));
    writeFileSync(join(dir, 'labels.json'), JSON.stringify([{ file: 'a.png', text: 'A', rotate180: false }, { file: 'b.png', text: 'B', rotate180: true }]));
    const prep = { inputs: { x: { resize: { mode: 'height' as const, height: 2 }, rotate180: 'label' as const, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], pad: { width: { min: 6, multiple: 4 }, value: -9 } } } };
    const s = await collectSamples(dir, imgInputs, { preprocess: prep });
    expect(s.map((x) => (x.label as { text: string }).text)).toEqual(['A', 'B']);
    const a = s[0]!.feed.x!;
    expect(a.dims).toEqual([1, 3, 2, 8]); // width max(6, 4) -> multiple of 4 -> 8
    const d = a.data as Float32Array;
    const at = (c: number, y: number, x: number) => d[(c * 2 + y) * 8 + x]!;
    expect([at(0, 0, 0), at(2, 0, 0), at(0, 1, 3), at(2, 1, 3)]).toEqual([1, -1, -1, 1]);
    expect(at(0, 0, 5)).toBe(-9);
    const b = s[1]!.feed.x!.data as Float32Array;
    expect(b[0]).toBe(-1); // rotated: blue on the left
    expect(b[(2 * 2 + 0) * 8 + 0]).toBe(1);
  });

  it('needs a preprocessing file and rejects unknown input names', async () => {
    const dir = join(tmp, 'imgs');
    expect((await error(collectSamples(dir, imgInputs))).code).toBe('DATA_NO_PREPROCESS');
    const e = await error(collectSamples(dir, imgInputs, { preprocess: { inputs: { image: {} } } }));
    expect(e.message).toMatch(/preprocessing names input 'image'/);
  });
});

describe('streaming and stateful sources', () => {
  it('reads lazily: a source stops where the consumer stops', async () => {
    let produced = 0;
    async function* frames(): AsyncGenerator<Feed> {
      for (;;) {
        produced++;
        yield { x: { type: 'float32', dims: [1, 3], data: new Float32Array(3) }, ids: { type: 'int64', dims: [1], data: new BigInt64Array(1) } };
      }
    }
    const s = await collectSamples({ kind: 'iterable', samples: frames() }, mixedInputs, { limit: 3 });
    expect(s).toHaveLength(3);
    expect(produced).toBe(3);
  });

  it('feeds a state output into the next step', async () => {
    const frames: Feed[] = [1, 2, 3].map((v) => ({ v: { type: 'float32', dims: [1], data: new Float32Array([v]) } }));
    const seen: number[] = [];
    const run = async (f: Feed): Promise<Feed> => {
      const st = f.state!.data as Float32Array;
      seen.push(st[0]!);
      return { stateN: { type: 'float32', dims: [1], data: new Float32Array([st[0]! + (f.v!.data as Float32Array)[0]!]) } };
    };
    const out = [];
    for await (const s of statefulSource(frames, [{ output: 'stateN', input: 'state', initial: { type: 'float32', dims: [1], data: new Float32Array([10]) } }], run)) out.push(s);
    expect(seen).toEqual([10, 11, 13]);
    expect(out.map((s) => toFloat64(s.feed.state!)[0])).toEqual([10, 11, 13]);
  });
});
