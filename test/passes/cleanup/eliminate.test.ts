import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../ir/builder.js';
import { DataType } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';
import { beforeAfter, f32, maxAbsDiff, ops, runPass } from './helpers.js';

const i64 = (vals: number[]) => Tensor.from(DataType.INT64, [vals.length], BigInt64Array.from(vals.map(BigInt)));
const scalar = (v: number) => Tensor.from('float32', [], Float32Array.of(v));

describe('eliminate-identity', () => {
  it('removes Identity, Dropout, same-type Cast, same-shape Reshape, identity Transpose, zero Pad, full Slice, x*1, x+0', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2, 3]);
    let [v] = b.op('Identity', [x]);
    [v] = b.op('Dropout', [v!]);
    [v] = b.op('Cast', [v!], { to: DataType.FLOAT });
    [v] = b.op('Reshape', [v!, b.initializer('s', i64([2, 3]))]);
    [v] = b.op('Transpose', [v!], { perm: [0, 1] });
    [v] = b.op('Pad', [v!, b.initializer('p', i64([0, 0, 0, 0]))]);
    [v] = b.op('Slice', [v!, b.initializer('st', i64([0])), b.initializer('en', i64([9_223_372_036_854_775_807n as unknown as number]))]);
    [v] = b.op('Mul', [v!, b.initializer('one', scalar(1))]);
    [v] = b.op('Add', [b.initializer('zero', scalar(0)), v!]);
    const [y] = b.op('Relu', [v!]);
    b.output(y!, 'y');
    const r = await beforeAfter(b.model(), 'eliminate-identity', { x: f32([2, 3]) });
    expect(ops(r.model)).toEqual(['Relu']);
    expect(r.issues).toEqual([]);
    expect(maxAbsDiff(r.after, r.before)).toBe(0);
  });

  it('keeps nodes that change something', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2, 3]);
    let [v] = b.op('Cast', [x], { to: DataType.DOUBLE });
    [v] = b.op('Cast', [v!], { to: DataType.FLOAT });
    [v] = b.op('Reshape', [v!, b.initializer('s', i64([3, 2]))]);
    [v] = b.op('Transpose', [v!], { perm: [1, 0] });
    [v] = b.op('Mul', [v!, b.initializer('two', scalar(2))]);
    [v] = b.op('Add', [v!, b.initializer('zeros', Tensor.from('float32', [2, 2, 3], new Float32Array(12)))]); // broadcasts to a larger shape
    [v] = b.op('Slice', [v!, b.initializer('st', i64([1])), b.initializer('en', i64([3])), b.initializer('ax', i64([2]))]);
    b.output(v!, 'y');
    const m = b.model();
    const rep = await runPass(m, 'eliminate-identity');
    expect(rep.records[0]!.changed).toBe(false);
    expect(ops(m)).toEqual(['Cast', 'Cast', 'Reshape', 'Transpose', 'Mul', 'Add', 'Slice']);
  });

  it('keeps graph output names: the input takes the name, or the node stays', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2]);
    const [r] = b.op('Relu', [x]);
    const [y] = b.op('Identity', [r!]);
    b.output(y!, 'y');
    const [z] = b.op('Identity', [x]);
    b.output(z!, 'z');
    const m = b.model();
    await runPass(m, 'eliminate-identity');
    expect(ops(m)).toEqual(['Relu', 'Identity']);
    expect(m.graph.outputs.map((v) => v.name)).toEqual(['y', 'z']);
    expect(m.graph.outputs[0]!.producer!.opType).toBe('Relu');
  });

  it('keeps a Dropout whose mask is used', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2]);
    const [o, mask] = b.op('Dropout', [x], {}, { outputs: 2 });
    b.output(o!, 'o');
    b.output(mask!, 'mask', 'bool', [2]);
    const m = b.model();
    await runPass(m, 'eliminate-identity');
    expect(ops(m)).toEqual(['Dropout']);
  });
});

describe('eliminate-dead', () => {
  it('removes unused nodes and initializers, never graph outputs or inputs', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2]);
    const w = b.initializer('w', Tensor.from('float32', [2], Float32Array.of(1, 2)));
    b.initializer('unused', Tensor.from('float32', [2], Float32Array.of(1, 2)));
    const [a] = b.op('Mul', [x, w]);
    b.op('Relu', [a!]); // dead
    const [y] = b.op('Neg', [x]);
    b.output(y!, 'y');
    const m = b.model();
    const rep = await runPass(m, 'eliminate-dead');
    expect(ops(m)).toEqual(['Neg']);
    expect([...m.graph.initializers.keys()]).toEqual([]);
    expect(rep.summary[0]!.stats).toMatchObject({ removedNodes: 2, removedInitializers: 2 });
    expect(m.graph.inputs.map((v) => v.name)).toEqual(['x']);
  });

  it('changes nothing when everything is used', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2]);
    const [y] = b.op('Neg', [x]);
    b.output(y!, 'y');
    const m = b.model();
    const rep = await runPass(m, 'eliminate-dead');
    expect(rep.records[0]!.changed).toBe(false);
  });
});

describe('eliminate-common-subexpressions', () => {
  it('merges identical nodes and keeps outputs', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2, 3]);
    const [a1] = b.op('Transpose', [x], { perm: [1, 0] });
    const [a2] = b.op('Transpose', [x], { perm: [1, 0] });
    const [y] = b.op('Add', [a1!, a2!]);
    b.output(y!, 'y');
    const r = await beforeAfter(b.model(), 'eliminate-common-subexpressions', { x: f32([2, 3]) });
    expect(ops(r.model)).toEqual(['Transpose', 'Add']);
    expect(maxAbsDiff(r.after, r.before)).toBe(0);
  });

  it('does not merge nodes with different attributes or random ops', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2, 2]);
    const [a1] = b.op('Transpose', [x], { perm: [1, 0] });
    const [a2] = b.op('Transpose', [x], { perm: [0, 1] });
    const [r1] = b.op('RandomUniformLike', [x]);
    const [r2] = b.op('RandomUniformLike', [x]);
    const [s] = b.op('Sum', [a1!, a2!, r1!, r2!]);
    b.output(s!, 'y');
    const m = b.model();
    const rep = await runPass(m, 'eliminate-common-subexpressions');
    expect(rep.records[0]!.changed).toBe(false);
  });
});

describe('dedupe-constants', () => {
  it('merges identical initializers and Constant nodes; keeps different ones', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [3]);
    const t = () => Tensor.from('float32', [3], Float32Array.of(1, 2, 3));
    const w1 = b.initializer('w1', t());
    const w2 = b.initializer('w2', t());
    const w3 = b.constant('w3', t());
    const other = b.initializer('w4', Tensor.from('float32', [3], Float32Array.of(1, 2, 4)));
    const [a] = b.op('Sum', [x, w1, w2, w3, other]);
    b.output(a!, 'y');
    const r = await beforeAfter(b.model(), 'dedupe-constants', { x: f32([3]) });
    expect([...r.model.graph.initializers.keys()]).toEqual(['w1', 'w4']);
    expect(ops(r.model)).toEqual(['Sum']);
    expect(r.report.summary[0]!.stats).toMatchObject({ merged: 2, bytesSaved: 24 });
    expect(maxAbsDiff(r.after, r.before)).toBe(0);
  });

  it('hashes by 32-bit words at any byte offset (weights viewed inside a loaded file), by bytes for odd lengths', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [3]);
    // float32 [3] views at byte offsets 1, 6 and 11 of one buffer: the first two hold the same values
    const file = new Uint8Array(32);
    const view = new DataView(file.buffer);
    [1, 6].forEach((at) => [1.5, -2, 3].forEach((v, i) => view.setFloat32(at + 4 * i, v, true)));
    [1.5, -2, 4].forEach((v, i) => view.setFloat32(11 + 4 * i, v, true));
    const w = (name: string, at: number) => b.initializer(name, Tensor.fromBytes(DataType.FLOAT, [3], file.subarray(at, at + 12)));
    const [s] = b.op('Sum', [x, w('a', 1), w('b', 6), w('c', 11)]);
    b.output(s!, 'y');
    // uint8 [3] (3 bytes, not whole words): two equal, one not
    const u = (name: string, v: number[]) => b.initializer(name, Tensor.from(DataType.UINT8, [3], Uint8Array.from(v)));
    const [c] = b.op('Concat', [u('u1', [1, 2, 3]), u('u2', [1, 2, 3]), u('u3', [1, 2, 4])], { axis: 0 });
    b.output(c!, 'z', 'uint8', [9]);
    const r = await beforeAfter(b.model(), 'dedupe-constants', { x: f32([3]) });
    expect([...r.model.graph.initializers.keys()].sort()).toEqual(['a', 'c', 'u1', 'u3']);
    expect(r.report.summary[0]!.stats).toMatchObject({ merged: 2, bytesSaved: 15 });
    expect(maxAbsDiff(r.after, r.before)).toBe(0);
  });

  it('large tensors equal on the hash samples but different between them are not merged (the byte comparison decides)', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const n = 3 * 4096 + 5;
    const x = b.input('x', 'float32', [n]);
    const base = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
    const one = Float32Array.from(base);
    one[1] = 7; // word 1: between the strided samples (every third word from 0)
    const w = (name: string, data: Float32Array) => b.initializer(name, Tensor.from('float32', [n], data));
    const [s] = b.op('Sum', [x, w('a', base), w('b', one), w('c', Float32Array.from(base))]);
    b.output(s!, 'y');
    const r = await beforeAfter(b.model(), 'dedupe-constants', { x: f32([n]) });
    expect([...r.model.graph.initializers.keys()]).toEqual(['a', 'b']);
    expect(r.report.summary[0]!.stats).toMatchObject({ merged: 1 });
    expect(maxAbsDiff(r.after, r.before)).toBe(0);
  });

  it('does not merge tensors that differ in type or shape', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2, 2]);
    const a = b.initializer('a', Tensor.from('float32', [4], Float32Array.of(1, 2, 3, 4)));
    const c = b.initializer('c', Tensor.from('float32', [2, 2], Float32Array.of(1, 2, 3, 4)));
    const d = b.initializer('d', Tensor.from('int32', [4], Int32Array.of(1, 2, 3, 4)));
    const [r] = b.op('Reshape', [a, b.initializer('s', i64([2, 2]))]);
    const [s] = b.op('Sum', [x, r!, c]);
    b.output(s!, 'y');
    b.output(d, 'd', 'int32', [4]);
    const m = b.model();
    const rep = await runPass(m, 'dedupe-constants');
    expect(rep.records[0]!.changed).toBe(false);
  });
});
