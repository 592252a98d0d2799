/**
 * q4f16 takes its activation ranges from the int4 step's GPTQ moments run (8 samples, the float32
 * model) instead of measuring them on the int4 model over all calibration samples. On two transformer
 * test models, with float16 compute (target any, where ranges decide most), the written model is the
 * same byte for byte as with the old path's ranges. A large two-valued float constant (an additive
 * mask) that the int4 step compacts to uint8 codes after the moments run becomes a computed tensor
 * the measured ranges do not name: it is evaluated exactly, and a mask beyond float16 keeps its Add
 * float32 as before. Without GPTQ (RTN) the conversion measures its ranges itself. The conversion
 * measures only the tensors its plan can use (none at target cpu): the same model as measuring all.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataType } from '../../core/dtype.js';
import type { Feed } from '../../core/host-tensor.js';
import { Tensor } from '../../core/tensor.js';
import { mulberry32 } from '../../data/generate.js';
import { GraphBuilder } from '../../ir/builder.js';
import type { Model } from '../../ir/ir.js';
import { collectSamples, openDataSource } from '../../data/index.js';
import { serializeModel } from '../../onnx/index.js';
import { convertFloat16, randomSamples, rangeTensors, type ConvertFloat16Report } from '../../passes/convert/convert-float16.js';
import { inferTypes } from '../../passes/convert/float16/plan.js';
import { measureRanges } from '../../passes/convert/float16/ranges.js';
import { nodeRunner } from '../../runtime/runner.js';
import { halfTransform } from '../../workflows/quantize/fp16.js';
import { createPassContext } from '../../passes/manager.js';
import { resolveOptions } from '../../passes/pipeline.js';
import int4Pass, { quantizeInt4, type QuantizeInt4Options } from '../../passes/quantize/quantize-int4.js';
import type { ValueInfo } from '../../runtime/runner-types.js';
import { fuseTransformer } from '../../workflows/quantize/int4.js';
import { q4f16Transform } from '../../workflows/quantize/q4f16.js';
import { inputInfos } from '../../passes/convert/convert-float16.js';
import { transformerVariant } from '../models/transformers.js';
import { writeFeedsJson } from '../helpers/feeds-file.js';

const dir = mkdtempSync(join(tmpdir(), 'q4f16-ranges-'));

/** 16 in-domain random samples of [1, 32] as a data file. */
async function calibrationFile(name: string, model: Model, dims: number[] = [1, 32]): Promise<string> {
  const feeds: Feed[] = [];
  const shapes = Object.fromEntries(inputInfos(model).map((i) => [i.name, dims]));
  for await (const x of randomSamples(model, 16, shapes)()) feeds.push(x.feed);
  return writeFeedsJson(join(dir, `${name}.json`), feeds);
}

const rangeKept = (c: ConvertFloat16Report) => c.keptFloat.filter((k) => k.reason === 'overflow' || k.reason === 'underflow').map((k) => `${k.node}: ${k.reason}`).sort();

/** convert-float16 on ranges of every float32 tensor (rangeTensors) measured on all calibration samples, as it measured before. */
async function convertOnAllRanges(model: Model, inputs: readonly ValueInfo[], calibration: string, target: 'cpu' | 'any'): Promise<{ bytes: Uint8Array; conversion: ConvertFloat16Report; samples: number }> {
  inferTypes(model);
  const r = await measureRanges(model, rangeTensors(model), () => openDataSource(calibration, inputs), undefined, nodeRunner);
  const conversion = await convertFloat16(model, { target, ranges: r.ranges }, createPassContext());
  return { bytes: serializeModel(model), conversion, samples: r.samples };
}

/** The path before: the int4 step, then convert-float16 measuring every range on the int4 model over all calibration samples. */
async function oldPath(float: Model, inputs: readonly ValueInfo[], calibration: string, target: 'cpu' | 'any' = 'any'): Promise<{ bytes: Uint8Array; conversion: ConvertFloat16Report; samples: number }> {
  const o = resolveOptions(int4Pass, { kernel: 'nbits' }) as QuantizeInt4Options;
  const { model } = await fuseTransformer(float, { keepWeights: true });
  const feeds = (await collectSamples(calibration, inputs, { limit: 32 })).map((x) => x.feed);
  await quantizeInt4(model, { calibration: feeds, probe: feeds }, o, createPassContext());
  return convertOnAllRanges(model, inputs, calibration, target);
}

describe('q4f16 ranges from the int4 moments run', () => {
  for (const variant of ['bert-ts17', 'llama-ts17']) {
    it(`${variant}: the same model as with ranges measured on the int4 model (target any)`, async () => {
      const float = transformerVariant(variant).build();
      const inputs = inputInfos(float);
      const calibration = await calibrationFile(variant, float);
      const before = await oldPath(transformerVariant(variant).build(), inputs, calibration);
      const now = await q4f16Transform(float, inputs, { calibration, pass: { target: 'any' } });
      const r = now.conversion.ranges;
      expect(r.source).toBe('calibration');
      expect(r.samples).toBe(8);
      expect(r.on).toContain('moments run');
      expect(r.unmeasured).toBeUndefined();
      expect(r.filled?.measured ?? []).toEqual([]);
      expect(before.samples).toBe(16);
      expect(rangeKept(now.conversion)).toEqual(rangeKept(before.conversion));
      expect(now.conversion.halfNodes).toBe(before.conversion.halfNodes);
      expect(Buffer.from(serializeModel(now.model)).equals(Buffer.from(before.bytes))).toBe(true);
    });
  }

  it('a float constant the int4 step compacts after measuring (a -1e9 mask) is evaluated exactly: its Add stays float32 as before', async () => {
    const build = (): Model => {
      const rand = mulberry32(9);
      const w = (k: number, n: number) => Tensor.from(DataType.FLOAT, [k, n], Float32Array.from({ length: k * n }, () => rand() - 0.5));
      const b = new GraphBuilder({ opset: 17 });
      const x = b.input('x', 'float', ['batch', 32, 64]);
      const mask = Float32Array.from({ length: 32 * 64 }, (_, i) => (i % 64 > i >> 6 ? -1e9 : 0));
      let [h] = b.op('MatMul', [x, b.initializer('w0', w(64, 64))]);
      [h] = b.op('Add', [h!, b.initializer('mask', Tensor.from(DataType.FLOAT, [32, 64], mask))], {}, { name: 'masked' });
      [h] = b.op('Softmax', [h!], { axis: -1 });
      for (let i = 1; i < 4; i++) [h] = b.op('MatMul', [h!, b.initializer(`w${i}`, w(64, 64))]);
      b.output(h!, 'y', 'float');
      return b.model();
    };
    const inputs = inputInfos(build());
    const calibration = await calibrationFile('mask', build(), [1, 32, 64]);
    const before = await oldPath(build(), inputs, calibration);
    const now = await q4f16Transform(build(), inputs, { calibration, pass: { target: 'any' } });
    expect((now.before as { constants: { tensor: string }[] }).constants.map((c) => c.tensor)).toEqual(['mask']);
    expect(now.conversion.ranges.filled?.evaluated).toContain('mask');
    expect(now.conversion.ranges.unmeasured).toBeUndefined();
    expect(rangeKept(now.conversion)).toEqual(rangeKept(before.conversion));
    expect(rangeKept(now.conversion).some((k) => k.startsWith('masked'))).toBe(true);
    expect(Buffer.from(serializeModel(now.model)).equals(Buffer.from(before.bytes))).toBe(true);
  });

  it('fp16: measuring only the tensors the plan can use (rangeTensorsFor) gives the model measuring every tensor gives', async () => {
    for (const target of ['cpu', 'any'] as const) {
      const float = transformerVariant('bert-ts17').build();
      const inputs = inputInfos(float);
      const calibration = await calibrationFile(`fp16-${target}`, float);
      const all = await convertOnAllRanges(transformerVariant('bert-ts17').build(), inputs, calibration, target);
      const now = await halfTransform(float, inputs, { calibration, pass: { target }, fuseTransformer: false }, { mode: 'fp16' });
      expect(Buffer.from(serializeModel(now.model)).equals(Buffer.from(all.bytes))).toBe(true);
      if (target === 'cpu') expect(now.conversion.ranges).toMatchObject({ source: 'none', notNeeded: true });
      else expect(now.conversion.ranges.tensors).toBeLessThanOrEqual(all.conversion.ranges.tensors);
    }
  });

  it('q4f16 at target cpu (the default): no node can compute in half, so no range is measured, and the model is the old path\'s', async () => {
    const float = transformerVariant('bert-ts17').build();
    const inputs = inputInfos(float);
    const calibration = await calibrationFile('cpu', float);
    const before = await oldPath(transformerVariant('bert-ts17').build(), inputs, calibration, 'cpu');
    const now = await q4f16Transform(float, inputs, { calibration });
    expect(now.conversion.ranges).toEqual({ source: 'none', samples: 0, tensors: 0, notNeeded: true });
    expect(Buffer.from(serializeModel(now.model)).equals(Buffer.from(before.bytes))).toBe(true);
  });

  it('RTN (no moments run): the conversion measures its own ranges on the calibration data', async () => {
    const float = transformerVariant('bert-ts17').build();
    const inputs = inputInfos(float);
    const calibration = await calibrationFile('rtn', float);
    const now = await q4f16Transform(float, inputs, { calibration, int4: { method: 'rtn' }, pass: { target: 'any' } });
    expect(now.conversion.ranges).toMatchObject({ source: 'calibration', samples: 16 });
    expect(now.conversion.ranges.on).toBeUndefined();
  });
});
