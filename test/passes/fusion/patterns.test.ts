import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../ir/builder.js';
import { Node, Value } from '../../../ir/ir.js';
import { matched, noMatch, type Pattern } from '../../../passes/pass.js';
import { applyPatterns, perAxisVector, rankOf, lengthOf1D } from '../../../passes/patterns.js';
import { testContext } from './ctx.js';
import { DataType } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';

/** Collapses Neg(Neg(x)) -> x; the matcher is pure and says why it did not match. */
const doubleNeg: Pattern<Value> = {
  name: 'double-neg',
  anchors: ['Neg'],
  match(n: Node) {
    const p = n.input(0)?.producer;
    if (!p || p.opType !== 'Neg') return noMatch('input is not a Neg');
    return matched(p.input(0)!);
  },
  rewrite(n: Node, x: Value) {
    const inner = n.input(0)!.producer!;
    n.output(0).replaceAllUsesWith(x);
    n.graph!.removeNode(n);
    if (inner.output(0).uses.length === 0) inner.graph!.removeNode(inner);
  },
};

function negChain(k: number) {
  const b = new GraphBuilder({ opset: 13 });
  let v = b.input('x', 'float32', [2]);
  for (let i = 0; i < k; i++) [v] = b.op('Neg', [v]) as [Value];
  b.output(b.op('Relu', [v])[0]!, 'y');
  return b.model();
}

describe('applyPatterns', () => {
  it('runs to a fixed point, counts rewrites and reports convergence', () => {
    const m = negChain(8);
    const ctx = testContext();
    const r = applyPatterns(m, [doubleNeg], ctx, { passName: 't' });
    expect(r).toMatchObject({ changed: true, converged: true, rewrites: { 'double-neg': 4 } });
    expect(m.graph.nodes.map((n) => n.opType)).toEqual(['Relu']);
  });

  it('stops at the iteration cap without claiming convergence', () => {
    // round 1 rewrites; only a second, unchanged round could prove the fixed point
    const m = negChain(3);
    const r = applyPatterns(m, [doubleNeg], testContext(), { passName: 't', maxIterations: 1 });
    expect(r.iterations).toBe(1);
    expect(r.converged).toBe(false);
    expect(r.changed).toBe(true);
  });

  it('explains misses of the final round only', () => {
    const m = negChain(3);
    const ctx = testContext();
    applyPatterns(m, [doubleNeg], ctx, { passName: 't' });
    // one Neg is left; it is the only explained miss
    expect(ctx.explanations).toHaveLength(1);
    expect(ctx.explanations[0]!.reason).toBe('double-neg: input is not a Neg');
    const quiet = testContext('t', false);
    applyPatterns(negChain(1), [doubleNeg], quiet, { passName: 't' });
    expect(quiet.explanations).toHaveLength(0);
  });
});

describe('pattern helpers', () => {
  it('reads per-channel vectors and rejects spatial variation', () => {
    expect(Array.from(perAxisVector(Float64Array.of(2), [], 4, 1, 3) as Float64Array)).toEqual([2, 2, 2]);
    expect(Array.from(perAxisVector(Float64Array.of(1, 2, 3), [3, 1, 1], 4, 1, 3) as Float64Array)).toEqual([1, 2, 3]);
    expect(perAxisVector(Float64Array.of(1, 2), [1, 1, 2], 4, 1, 3)).toMatch(/varies along axis 3/);
    expect(perAxisVector(Float64Array.of(1, 2), [2], 2, 1, 3)).toMatch(/2 values/);
  });

  it('infers ranks through Reshape(Concat(Slice(Shape)))', () => {
    const b = new GraphBuilder({ opset: 9 });
    const x = b.input('x', 'float32', ['N', 4, 1, 1]);
    const [sh] = b.op('Shape', [x]);
    const [sl] = b.op('Slice', [sh!], { starts: [0], ends: [1], axes: [0] });
    const [cat] = b.op('Concat', [sl!, b.constant('c', Tensor.from(DataType.INT64, [1], BigInt64Array.of(4n)))], { axis: 0 });
    const [r] = b.op('Reshape', [x, cat!]);
    expect(lengthOf1D(sh)).toBe(4);
    expect(lengthOf1D(cat)).toBe(2);
    expect(rankOf(r)).toBe(2);
  });
});
