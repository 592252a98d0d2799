import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../ir/builder.js';
import { DataType } from '../../../core/dtype.js';
import { constantOf } from '../../../ir/ir.js';
import { Tensor } from '../../../core/tensor.js';
import { beforeAfter, f32, ops, runPass } from './helpers.js';

const i64 = (vals: number[], dims = [vals.length]) => Tensor.from(DataType.INT64, dims, BigInt64Array.from(vals.map(BigInt)));

describe('fold-constants', () => {
  it('folds a Shape/Gather/Concat/Reshape chain of a static shape and keeps outputs', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2, 3, 4]);
    const [s] = b.op('Shape', [x]);
    const [d0] = b.op('Gather', [s!, b.constant('i0', i64([0], []))], { axis: 0 });
    const [u] = b.op('Unsqueeze', [d0!, b.constant('ax', i64([0]))]);
    const [shape] = b.op('Concat', [u!, b.constant('m1', i64([-1]))], { axis: 0 });
    const [y] = b.op('Reshape', [x, shape!]);
    b.output(y!, 'y');
    const m = b.model();
    const r = await beforeAfter(m, 'fold-constants', { x: f32([2, 3, 4]) });
    expect(ops(r.model)).toEqual(['Reshape']);
    expect(constantOf(r.model.graph.nodes[0]!.input(1))!.toNumbers()).toEqual([2, -1]);
    expect(r.issues).toEqual([]);
    expect(r.after.y!.dims).toEqual([2, 12]);
    expect(Array.from(r.after.y!.data as Float32Array)).toEqual(Array.from(r.before.y!.data as Float32Array));
  });

  it('evaluates arithmetic and casts like onnxruntime (opset 9 attribute forms)', async () => {
    const b = new GraphBuilder({ opset: 9 });
    const x = b.input('x', 'float32', [3]);
    const c = b.constant('c', Tensor.from('float32', [3], Float32Array.of(1.5, -2.25, 3)));
    const [p] = b.op('Pow', [c, b.constant('two', Tensor.from('float32', [], Float32Array.of(2)))]);
    const [q] = b.op('Sqrt', [p!]);
    const [n] = b.op('Neg', [q!]);
    const [ci] = b.op('Cast', [n!], { to: DataType.INT32 });
    const [cf] = b.op('Cast', [ci!], { to: DataType.FLOAT });
    const [sl] = b.op('Slice', [cf!], { starts: [1], ends: [100], axes: [0] });
    const [un] = b.op('Unsqueeze', [sl!], { axes: [0] });
    const [sq] = b.op('Squeeze', [un!], { axes: [0] });
    const [pad] = b.op('Concat', [b.constant('z', Tensor.from('float32', [1], Float32Array.of(0))), sq!], { axis: 0 });
    const [y] = b.op('Add', [x, pad!]);
    b.output(y!, 'y');
    const r = await beforeAfter(b.model(), 'fold-constants', { x: f32([3]) });
    expect(ops(r.model)).toEqual(['Add']);
    expect(Array.from(r.after.y!.data as Float32Array)).toEqual(Array.from(r.before.y!.data as Float32Array));
    expect(r.report.summary[0]!.stats.folded).toBe(9);
  });

  it('uses onnxruntime for ops the evaluator does not cover', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', [2, 2]);
    const w = b.initializer('w', Tensor.from('float32', [2, 2], Float32Array.of(1, 2, 3, 4)));
    const [e] = b.op('Erf', [w]);
    const [y] = b.op('Mul', [x, e!]);
    b.output(y!, 'y');
    const r = await beforeAfter(b.model(), 'fold-constants', { x: f32([2, 2]) });
    expect(ops(r.model)).toEqual(['Mul']);
    expect(r.report.summary[0]!.stats.foldedByRuntime).toBe(1);
    expect(Array.from(r.after.y!.data as Float32Array)).toEqual(Array.from(r.before.y!.data as Float32Array));
  });

  it('turns Constant nodes into initializers (lift) and keeps a graph-output Constant', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2]);
    const w = b.constant('w', Tensor.from('float32', [2], Float32Array.of(1, 2)));
    const [y] = b.op('Mul', [x, w]);
    b.output(y!, 'y');
    b.output(b.constant('k', Tensor.from('float32', [1], Float32Array.of(7))), 'k');
    const m = b.model();
    await runPass(m, 'fold-constants');
    expect(ops(m)).toEqual(['Mul', 'Constant']);
    expect(m.graph.initializers.has('w')).toBe(true);
    expect(m.graph.outputs.map((v) => v.name)).toEqual(['y', 'k']);
  });

  it('keeps a ConstantOfShape fill that would become large, and skips random ops', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [1000, 1000]);
    const [big] = b.op('ConstantOfShape', [b.initializer('s', i64([1000, 1000]))], { value: Tensor.from('float32', [1], Float32Array.of(1)) });
    const [r] = b.op('RandomUniform', [], { shape: [2], dtype: 1 });
    const [y] = b.op('Add', [x, big!]);
    b.output(y!, 'y');
    b.output(r!, 'r');
    const m = b.model();
    const rep = await runPass(m, 'fold-constants');
    expect(ops(m)).toEqual(['ConstantOfShape', 'RandomUniform', 'Add']);
    expect(rep.summary[0]!.stats.skippedTooLarge).toBe(1);
    expect(rep.nodesAfter).toBe(rep.nodesBefore);
    // with a larger limit it folds
    const m2 = b.model();
    await runPass(m2, 'fold-constants', { 'max-output-bytes': 8_000_000 });
    expect(ops(m2)).toEqual(['RandomUniform', 'Add']);
  });

  it('does not fold nodes that read graph inputs', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', ['N', 3]);
    const [s] = b.op('Shape', [x]);
    const [y] = b.op('Reshape', [x, s!]);
    b.output(y!, 'y');
    const m = b.model();
    const rep = await runPass(m, 'fold-constants');
    expect(rep.records[0]!.changed).toBe(false);
    expect(ops(m)).toEqual(['Shape', 'Reshape']);
  });

  it('folds inside If branches', async () => {
    const then = new GraphBuilder({ opset: 13, name: 'then' });
    const [t1] = then.op('Add', [then.constant('a', Tensor.from('float32', [1], Float32Array.of(1))), then.constant('b', Tensor.from('float32', [1], Float32Array.of(2)))]);
    then.output(t1!, 'tout');
    const els = new GraphBuilder({ opset: 13, name: 'else' });
    els.output(els.constant('e', Tensor.from('float32', [1], Float32Array.of(5))), 'eout');
    const b = new GraphBuilder({ opset: 13 });
    const c = b.input('c', 'bool', []);
    const [y] = b.op('If', [c], { then_branch: then.graph, else_branch: els.graph });
    b.output(y!, 'y');
    const r = await beforeAfter(b.model(), 'fold-constants', { c: { type: 'bool', dims: [], data: Uint8Array.of(1) } });
    expect(ops(r.model)).toEqual(['If', 'Constant', 'Constant']);
    expect(Array.from(r.after.y!.data as Float32Array)).toEqual([3]);
  });

  it('does not copy a large constant that stays in the model for another reader', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [64, 64]);
    const w = b.initializer('w', Tensor.from('float32', [64, 64], new Float32Array(4096).fill(0.5)));
    const [t] = b.op('Transpose', [w], { perm: [1, 0] });
    const [a] = b.op('Add', [x, t!]);
    const [y] = b.op('Mul', [a!, w]);
    b.output(y!, 'y');
    const m = b.model();
    const rep = await runPass(m, 'fold-constants');
    expect(ops(m)).toEqual(['Transpose', 'Add', 'Mul']);
    expect(rep.summary[0]!.stats.skippedTooLarge).toBe(1);
    expect(rep.bytesAfter).toBe(rep.bytesBefore);
  });
});
