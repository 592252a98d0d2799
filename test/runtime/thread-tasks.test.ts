/**
 * runtime/thread-tasks.ts: KEEP_MODEL opens a model and keeps the session for a later RUN_MODEL's
 * `kept` (which runs on it, not on its own `model`, and closes it); a thread keeps at most two, the
 * oldest closed first; a key it does not hold, or a kept model that failed to open, falls back to `model`.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { Tensor } from '../../core/tensor.js';
import { serializeModel } from '../../onnx/index.js';
import { nodeRunner } from '../../runtime/runner.js';
import { keepModel, runModel } from '../../runtime/thread-tasks.js';

/** y = x op c, as bytes. */
function model(op: 'Add' | 'Mul', c: number): Uint8Array {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float', [2]);
  const [y] = b.op(op, [x, b.constant('c', Tensor.from('float32', [2], Float32Array.of(c, c)))]);
  b.output(y!, 'y', 'float');
  return serializeModel(b.model());
}

const ctx = { runner: nodeRunner };
const feeds = [{ x: { type: 'float32' as const, dims: [2], data: Float32Array.of(1, 2) } }];
const y = async (args: Parameters<typeof runModel>[0]) => Array.from((await runModel(args, ctx))[0]!.y!.data as Float32Array);

describe('RUN_MODEL kept sessions', () => {
  const plus1 = model('Add', 1);
  const times10 = model('Mul', 10);

  it('a later task runs on the session KEEP_MODEL opened, once', async () => {
    await keepModel({ key: 'a', model: times10 }, ctx);
    expect(await y({ model: plus1, feeds, kept: 'a' })).toEqual([10, 20]);
    // used up: the task's own model again
    expect(await y({ model: plus1, feeds, kept: 'a' })).toEqual([2, 3]);
  });

  it('keeps at most two sessions, closing the oldest', async () => {
    for (const key of ['k1', 'k2', 'k3']) await keepModel({ key, model: times10 }, ctx);
    expect(await y({ model: plus1, feeds, kept: 'k1' })).toEqual([2, 3]);
    expect(await y({ model: plus1, feeds, kept: 'k2' })).toEqual([10, 20]);
    expect(await y({ model: plus1, feeds, kept: 'k3' })).toEqual([10, 20]);
  });

  it('a kept model that fails to open leaves the later task on its own model', async () => {
    await keepModel({ key: 'bad', model: Uint8Array.of(1, 2, 3), name: '(broken)' }, ctx);
    expect(await y({ model: plus1, feeds, kept: 'bad' })).toEqual([2, 3]);
  });

  it('runs every feed in order', async () => {
    const three = [1, 2, 3].map((v) => ({ x: { type: 'float32' as const, dims: [2], data: Float32Array.of(v, v) } }));
    const out = await runModel({ model: plus1, feeds: three }, ctx);
    expect(out.map((o) => Array.from(o.y!.data as Float32Array))).toEqual([[2, 2], [3, 3], [4, 4]]);
  });
});
