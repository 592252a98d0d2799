/**
 * The int4 moments run measures the float16 plan's activation ranges on the side (q4f16): min and max
 * of every listed tensor, reduced over stacked feeds, equal to convert-float16's own measurement
 * (float16/ranges.ts measureRanges, one run per sample) on the same samples, infinities and NaN (the
 * widest range) included; none when the model's own outputs are not finite on a sample (measureRanges
 * skips that sample, which a stacked run cannot).
 */
import { describe, expect, it } from 'vitest';
import { DataType } from '../../core/dtype.js';
import type { Feed } from '../../core/host-tensor.js';
import { Tensor } from '../../core/tensor.js';
import { mulberry32 } from '../../data/generate.js';
import { GraphBuilder } from '../../ir/builder.js';
import type { Model } from '../../ir/ir.js';
import { rangeTensors } from '../../passes/convert/convert-float16.js';
import { inferTypes } from '../../passes/convert/float16/plan.js';
import { measureRanges } from '../../passes/convert/float16/ranges.js';
import { collectInputMoments } from '../../passes/quantize/int4/activations.js';
import { nodeRunner } from '../../runtime/runner.js';

/** x -> MatMul -> Relu -> exp(200 r) (infinite for r > 0.44) -> min(., 7) plus (e - e with NaN set to 0); exp(x) as a second output. */
function model(): Model {
  const rand = mulberry32(5);
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float', ['batch', 3, 8]);
  const [h] = b.op('MatMul', [x, b.initializer('w', Tensor.from(DataType.FLOAT, [8, 16], Float32Array.from({ length: 128 }, () => rand() - 0.5)))], {}, { names: ['h'] });
  const [r] = b.op('Relu', [h!], {}, { names: ['r'] });
  const [s] = b.op('Mul', [r!, b.initializer('k', Tensor.from(DataType.FLOAT, [], Float32Array.of(200)))], {}, { names: ['s'] });
  const [e] = b.op('Exp', [s!], {}, { names: ['e'] });
  const [m] = b.op('Min', [e!, b.initializer('cap', Tensor.from(DataType.FLOAT, [], Float32Array.of(7)))], {}, { names: ['m'] });
  const [n] = b.op('Sub', [e!, e!], {}, { names: ['n'] });
  const [nan] = b.op('IsNaN', [n!], {}, { names: ['nan'] });
  const [z] = b.op('Where', [nan!, b.initializer('zero', Tensor.from(DataType.FLOAT, [], Float32Array.of(0))), n!], {}, { names: ['z'] });
  const [y] = b.op('Add', [m!, z!]);
  b.output(y!, 'y', 'float');
  const [ex] = b.op('Exp', [x]);
  b.output(ex!, 'ex', 'float');
  const out = b.model();
  inferTypes(out);
  return out;
}

function feeds(count: number, seed: number): Feed[] {
  const rand = mulberry32(seed);
  return Array.from({ length: count }, () => ({ x: { type: 'float32' as const, dims: [1, 3, 8], data: Float32Array.from({ length: 24 }, () => rand() * 4 - 2) } }));
}

const source = (fs: readonly Feed[]) => async function* () {
  for (let i = 0; i < fs.length; i++) yield { id: `#${i}`, feed: fs[i]! };
};

describe('int4 moments run: activation ranges', () => {
  it('equal measureRanges on the same samples (stacked feeds; infinite and NaN tensors included)', async () => {
    const m = model();
    const tensors = rangeTensors(m);
    expect(tensors).toEqual(expect.arrayContaining(['x', 'h', 'e', 'n', 'y', 'ex']));
    const fs = feeds(11, 3);
    const run = await collectInputMoments(m, new Map([['x', 8], ['r', 16]]), fs, nodeRunner, { rangeTensors: tensors });
    const want = await measureRanges(m, tensors, source(fs), undefined, nodeRunner);
    expect(want.skipped).toBe(0);
    expect(run.ranges).toBeDefined();
    expect([...run.ranges!.keys()].sort()).toEqual([...want.ranges.keys()].sort());
    for (const [t, w] of want.ranges) {
      const g = run.ranges!.get(t)!;
      for (const k of ['min', 'max'] as const) {
        if (!Number.isFinite(w[k])) expect(g[k], `${t} ${k}`).toBe(w[k]);
        else expect(Math.abs(g[k] - w[k]), `${t} ${k}`).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(w[k])));
      }
    }
    // the cases the test is for: an infinite tensor, a NaN one (widest range), finite outputs
    expect(run.ranges!.get('e')!.max).toBe(Infinity);
    expect(run.ranges!.get('n')).toEqual({ min: -Infinity, max: Infinity });
    expect(Number.isFinite(run.ranges!.get('y')!.max)).toBe(true);
    // the moments are those of a run without ranges
    const plain = await collectInputMoments(m, new Map([['x', 8], ['r', 16]]), fs, nodeRunner);
    expect(run.moments.get('r')!.hessian).toEqual(plain.moments.get('r')!.hessian);
  });

  it('none when the model\'s outputs are not finite on a sample (measureRanges skips it), or when no tensor is asked for', async () => {
    const m = model();
    const fs = feeds(6, 4);
    (fs[2]!.x.data as Float32Array)[0] = 200; // exp(200): an infinite graph output
    const tensors = rangeTensors(m);
    const run = await collectInputMoments(m, new Map([['x', 8]]), fs, nodeRunner, { rangeTensors: tensors });
    expect(run.ranges).toBeUndefined();
    expect((await measureRanges(m, tensors, source(fs), undefined, nodeRunner)).skipped).toBe(1);
    expect((await collectInputMoments(m, new Map([['x', 8]]), fs, nodeRunner)).ranges).toBeUndefined();
  });
});
