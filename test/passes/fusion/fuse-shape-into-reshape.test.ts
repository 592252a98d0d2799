import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../ir/builder.js';
import { DataType } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';
import { constantOf } from '../../../ir/ir.js';
import pass from '../../../passes/fusion/fuse-shape-into-reshape.js';
import { applyAndCompare, floatFeed } from './helpers.js';
import { testContext } from './ctx.js';

const i64 = (v: number[]) => Tensor.from(DataType.INT64, [v.length], BigInt64Array.from(v.map(BigInt)));

describe('fuse-shape-into-reshape', () => {
  it('turns the PaddleOCR cls flatten (Shape->Cast->Slice->Cast->Concat) into Reshape(x, [0, 200])', async () => {
    const b = new GraphBuilder({ opset: 9 });
    const x = b.input('x', 'float32', ['N', 200, 1, 1]);
    const [sh] = b.op('Shape', [x]);
    const [c32] = b.op('Cast', [sh!], { to: DataType.INT32 });
    const [sl] = b.op('Slice', [c32!], { axes: [0], starts: [0], ends: [1] });
    const [c64] = b.op('Cast', [sl!], { to: DataType.INT64 });
    const [cat] = b.op('Concat', [c64!, b.constant('n', i64([200]))], { axis: 0 });
    const [r] = b.op('Reshape', [x, cat!]);
    b.output(r!, 'y');
    const { model } = await applyAndCompare(pass, b.model(), floatFeed('x', [3, 200, 1, 1]));
    const reshape = model.graph.nodes.find((n) => n.opType === 'Reshape')!;
    expect(constantOf(reshape.input(1))!.toNumbers()).toEqual([0, 200]);
  });

  it('keeps shapes taken from another tensor or at a shifted position, and allowzero=1', () => {
    const cases: Array<[string, RegExp]> = [
      ['other', /neither a constant nor a slice of Shape/],
      ['shifted', /lands at position 1/],
      ['allowzero', /allowzero/],
    ];
    for (const [kind, why] of cases) {
      const b = new GraphBuilder({ opset: 14 });
      const x = b.input('x', 'float32', [2, 3, 4]);
      const z = b.input('z', 'float32', [2, 3, 4]);
      const [sh] = b.op('Shape', [kind === 'other' ? z : x]);
      const [sl] = b.op('Slice', [sh!, b.constant('s', i64([0])), b.constant('e', i64([1])), b.constant('a', i64([0]))]);
      const pieces = kind === 'shifted' ? [b.constant('m', i64([-1])), sl!] : [sl!, b.constant('m', i64([-1]))];
      const [cat] = b.op('Concat', pieces, { axis: 0 });
      const [r] = b.op('Reshape', [x, cat!], kind === 'allowzero' ? { allowzero: 1 } : {});
      b.output(r!, 'y');
      const ctx = testContext();
      expect(pass.run(b.model(), { maxIterations: 10 }, ctx)).toMatchObject({ changed: false });
      expect(ctx.explanations[0]!.reason).toMatch(why);
    }
  });
});
