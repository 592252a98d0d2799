/**
 * runtime/session.ts toOrtOptions: onnxforge's session options map onto onnxruntime's (the memory
 * pattern and arena switches the int4 pass's few-run sessions turn off), and a session opened
 * without them gives the same outputs as one with onnxruntime's defaults.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { Tensor } from '../../core/tensor.js';
import { serializeModel } from '../../onnx/index.js';
import { Session, toOrtOptions } from '../../runtime/session.js';

describe('session options', () => {
  it('passes the memory pattern and arena switches through, and leaves them to onnxruntime when unset', () => {
    const off = toOrtOptions({ enableMemPattern: false, enableCpuMemArena: false, graphOptimizationLevel: 'disabled' });
    expect(off.enableMemPattern).toBe(false);
    expect(off.enableCpuMemArena).toBe(false);
    expect(off.graphOptimizationLevel).toBe('disabled');
    const defaults = toOrtOptions({});
    expect('enableMemPattern' in defaults).toBe(false);
    expect('enableCpuMemArena' in defaults).toBe(false);
  });

  it('a session without them runs the model to the same outputs', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float', ['n', 4]);
    const [y] = b.op('MatMul', [x, b.constant('w', Tensor.from('float32', [4, 3], Float32Array.from({ length: 12 }, (_, i) => i / 7)))]);
    const [z] = b.op('Relu', [b.op('Add', [y!, y!])[0]!]);
    b.output(z!, 'z', 'float');
    const bytes = serializeModel(b.model());
    const feed = { x: { type: 'float32' as const, dims: [2, 4], data: Float32Array.of(1, -2, 3, -4, 0.5, 0.25, -1, 2) } };
    const outputs: Float32Array[] = [];
    for (const o of [{}, { enableMemPattern: false, enableCpuMemArena: false }]) {
      const s = await Session.create(bytes, o);
      try {
        // twice: the second run is the one the memory pattern plans
        await s.run(feed);
        outputs.push((await s.run(feed)).z!.data as Float32Array);
      } finally {
        await s.dispose();
      }
    }
    expect(Array.from(outputs[1]!)).toEqual(Array.from(outputs[0]!));
    expect(outputs[0]!.some((v) => v > 0)).toBe(true);
  });
});
