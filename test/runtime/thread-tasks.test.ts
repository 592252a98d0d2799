/**
 * runtime/thread-tasks.ts RUN_MODEL's kept sessions: a task's `then` opens a model after its runs and
 * keeps the session for a later task's `kept` (which runs on it, not on its own `model`, and closes
 * it); a thread keeps at most two, the oldest closed first; a key it does not hold falls back to `model`.
 * With a claim counter shared with the caller, a task runs only the feeds whose index it takes.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { Tensor } from '../../core/tensor.js';
import { serializeModel } from '../../onnx/index.js';
import { nodeRunner } from '../../runtime/runner.js';
import { runModel } from '../../runtime/thread-tasks.js';

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

  it('a later task runs on the session an earlier one kept, once', async () => {
    expect(await y({ model: plus1, feeds, then: { key: 'a', model: times10 } })).toEqual([2, 3]);
    expect(await y({ model: plus1, feeds, kept: 'a' })).toEqual([10, 20]);
    // used up: the task's own model again
    expect(await y({ model: plus1, feeds, kept: 'a' })).toEqual([2, 3]);
  });

  it('keeps at most two sessions, closing the oldest', async () => {
    for (const key of ['k1', 'k2', 'k3']) await runModel({ model: plus1, feeds, then: { key, model: times10 } }, ctx);
    expect(await y({ model: plus1, feeds, kept: 'k1' })).toEqual([2, 3]);
    expect(await y({ model: plus1, feeds, kept: 'k2' })).toEqual([10, 20]);
    expect(await y({ model: plus1, feeds, kept: 'k3' })).toEqual([10, 20]);
  });

  it('a kept model that fails to open leaves the later task on its own model', async () => {
    await runModel({ model: plus1, feeds, then: { key: 'bad', model: Uint8Array.of(1, 2, 3), name: '(broken)' } }, ctx);
    expect(await y({ model: plus1, feeds, kept: 'bad' })).toEqual([2, 3]);
  });

  it('with a claim counter, runs only the feeds whose index it takes from it', async () => {
    const three = [1, 2, 3].map((v) => ({ x: { type: 'float32' as const, dims: [2], data: Float32Array.of(v, v) } }));
    const claim = new Int32Array(new SharedArrayBuffer(4));
    // the caller took run 0 already
    Atomics.add(claim, 0, 1);
    const out = await runModel({ model: plus1, feeds: three, claim }, ctx);
    expect(out.map((o) => (o ? Array.from(o.y!.data as Float32Array) : undefined))).toEqual([undefined, [3, 3], [4, 4]]);
    // every index taken (and one past the last, which ended its loop)
    expect(claim[0]).toBe(4);
  });
});
