import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../ir/builder.js';
import { DataType } from '../../../core/dtype.js';
import { constantOf } from '../../../ir/ir.js';
import { Tensor } from '../../../core/tensor.js';
import { beforeAfter, f32, maxAbsDiff, ops, runPass } from './helpers.js';

const i64 = (vals: number[]) => Tensor.from(DataType.INT64, [vals.length], BigInt64Array.from(vals.map(BigInt)));

describe('merge-consecutive', () => {
  it('composes two Transposes', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2, 3, 4]);
    const [a] = b.op('Transpose', [x], { perm: [1, 2, 0] });
    const [y] = b.op('Transpose', [a!], { perm: [0, 2, 1] });
    b.output(y!, 'y');
    const r = await beforeAfter(b.model(), 'merge-consecutive', { x: f32([2, 3, 4]) });
    expect(ops(r.model)).toEqual(['Transpose']);
    expect(r.model.graph.nodes[0]!.getInts('perm')).toEqual([1, 0, 2]);
    expect(maxAbsDiff(r.after, r.before)).toBe(0);
  });

  it('merges Reshape after Unsqueeze, and Unsqueeze after Unsqueeze (opset 13 inputs)', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2, 3]);
    const [u1] = b.op('Unsqueeze', [x, b.initializer('a1', i64([0]))]);
    const [u2] = b.op('Unsqueeze', [u1!, b.initializer('a2', i64([2]))]);
    const [y] = b.op('Reshape', [u2!, b.initializer('s', i64([3, 2]))]);
    const [u3] = b.op('Unsqueeze', [x, b.initializer('a3', i64([1]))]);
    const [z] = b.op('Unsqueeze', [u3!, b.initializer('a4', i64([0, 3]))]);
    b.output(y!, 'y');
    b.output(z!, 'z');
    const r = await beforeAfter(b.model(), 'merge-consecutive', { x: f32([2, 3]) });
    expect(ops(r.model)).toEqual(['Reshape', 'Unsqueeze']);
    expect(constantOf(r.model.graph.nodes[1]!.input(1))!.toNumbers()).toEqual([0, 2, 3]);
    expect(r.after.z!.dims).toEqual([1, 2, 1, 1, 3]);
    expect(maxAbsDiff(r.after, r.before)).toBe(0);
  });

  it('cancels Squeeze(Unsqueeze) and merges Squeezes (opset 11 attributes)', async () => {
    const b = new GraphBuilder({ opset: 11 });
    const x = b.input('x', 'float32', [2, 1, 3, 1]);
    const [u] = b.op('Unsqueeze', [x], { axes: [0] });
    const [s] = b.op('Squeeze', [u!], { axes: [0] });
    const [s1] = b.op('Squeeze', [s!], { axes: [1] });
    const [s2] = b.op('Squeeze', [s1!], { axes: [2] });
    const [y] = b.op('Relu', [s2!]);
    b.output(y!, 'y');
    const r = await beforeAfter(b.model(), 'merge-consecutive', { x: f32([2, 1, 3, 1]) });
    expect(ops(r.model)).toEqual(['Squeeze', 'Relu']);
    expect(r.model.graph.nodes[0]!.getInts('axes')).toEqual([1, 3]);
    expect(maxAbsDiff(r.after, r.before)).toBe(0);
  });

  it('leaves a Reshape whose shape copies dims (0) and unrelated chains', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2, 3]);
    const [a] = b.op('Reshape', [x, b.initializer('s1', i64([3, 2]))]);
    const [y] = b.op('Reshape', [a!, b.initializer('s2', i64([0, 2]))]);
    const [t] = b.op('Transpose', [x], { perm: [1, 0] });
    const [z] = b.op('Relu', [t!]);
    b.output(y!, 'y');
    b.output(z!, 'z');
    const m = b.model();
    const rep = await runPass(m, 'merge-consecutive');
    expect(rep.records[0]!.changed).toBe(false);
  });
});
