/** The exporter-variant transformer test models: valid, runnable, finite, with outlier channels. */
import { describe, expect, it } from 'vitest';
import { checkModel } from '../../../ir/checker.js';
import { TRANSFORMER_VARIANTS, transformerFeed } from '../../models/transformers.js';
import { runModel } from './helpers.js';

describe('transformer test models', () => {
  for (const variant of TRANSFORMER_VARIANTS) {
    it(`${variant.name} checks, runs in onnxruntime at symbolic batch/seq and gives finite outputs`, async () => {
      const model = variant.build();
      expect(checkModel(model)).toEqual([]);
      expect(model.graph.inputs.map((v) => v.name)).toEqual(variant.inputs);
      expect(model.opset('')).toBe(variant.opset);
      for (const [batch, seq] of [[1, 7], [2, 12]] as const) {
        const out = await runModel(model, transformerFeed(variant, batch, seq, { padded: true }));
        const [y] = Object.values(out);
        expect(y!.dims.slice(0, 2)).toEqual([batch, seq]);
        const data = y!.data as Float32Array;
        expect(data.every(Number.isFinite)).toBe(true);
        // outlier channels: the largest channel magnitude is far above the median one
        if (variant.kind === 'encoder') {
          const h = y!.dims[2]!;
          const mag = new Float64Array(h);
          for (let i = 0; i < data.length; i++) mag[i % h] = Math.max(mag[i % h]!, Math.abs(data[i]!));
          const sorted = [...mag].sort((a, b) => a - b);
          expect(sorted[h - 1]! / sorted[h >> 1]!).toBeGreaterThan(3);
        }
      }
    });
  }
});
