/**
 * The one replace primitive (`Value.replaceAllUsesWith`) and its rule for graph output names.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { DataType } from '../../core/dtype.js';
import { Node, Value } from '../../ir/ir.js';
import { replaceWithInitializer } from '../../ir/edits.js';
import { Tensor } from '../../core/tensor.js';
import { bookkeepingProblems } from '../graph/helpers.js';

/** x -> Relu 'a' -> Neg 'b' -> graph output 'y' (Neg's output); 'a' also read by Sigmoid 's' (output 'z'). */
function chain() {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [2]);
  const a = b.node('Relu', [x], {}, { name: 'relu', names: ['a'] }).output(0);
  const y = b.output(b.node('Neg', [a], {}, { name: 'neg', names: ['b'] }).output(0), 'y');
  const z = b.output(b.node('Sigmoid', [a], {}, { name: 'sig', names: ['s'] }).output(0), 'z');
  const m = b.model();
  return { m, g: m.graph, x, a, y, z };
}

describe('Value.replaceAllUsesWith', () => {
  it('moves every use and keeps a graph output name: the replacement takes it, the old value takes the spare', () => {
    const { m, g, a, y } = chain();
    expect(y.replaceAllUsesWith(a)).toBe(true);
    expect(g.outputs[0]).toBe(a);
    expect(a.name).toBe('y');
    expect(y.name).toBe('a');
    expect(y.uses.length).toBe(0);
    expect(a.uses.map((u) => u.node.name).sort()).toEqual(['neg', 'sig']);
    expect(bookkeepingProblems(m)).toEqual([]);
  });

  it('refuses with strict when the replacement cannot take the name (a graph input, another output)', () => {
    const { g, x, y, z } = chain();
    expect(y.canBeReplacedBy(x)).toBe(false);
    expect(y.replaceAllUsesWith(x, { strict: true })).toBe(false);
    expect(y.replaceAllUsesWith(z, { strict: true })).toBe(false);
    expect(g.outputs.map((o) => o.name)).toEqual(['y', 'z']);
    expect(y.name).toBe('y');
  });

  it('without strict, an output that cannot keep its name takes the replacement under its own name', () => {
    const { g, x, y } = chain();
    expect(y.replaceAllUsesWith(x)).toBe(true);
    expect(g.outputs[0]).toBe(x);
    expect(x.name).toBe('x');
  });

  it('takeName gives an inner value\'s name to its replacement, with its value_info entry', () => {
    const { m, g, x, a } = chain();
    g.valueInfo.push(a);
    const n = g.insertNode(new Node('Abs', [x], [new Value(m.names.fresh('abs'))]), 1);
    const out = n.output(0);
    a.replaceAllUsesWith(out, { takeName: true });
    expect(out.name).toBe('a');
    expect(a.name).toBe('abs');
    expect(g.valueInfo).toEqual([out]);
    // without takeName an inner value's replacement keeps its own name
    const { g: g2, x: x2, a: a2 } = chain();
    const v = new Value('other');
    g2.insertNode(new Node('Abs', [x2], [v]), 1);
    a2.replaceAllUsesWith(v);
    expect(v.name).toBe('other');
  });

  it('an initializer that gives its name away is re-keyed in the initializer map (and can then be removed)', () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', [2]);
    const w = b.initializer('w', Tensor.from(DataType.FLOAT, [2], Float32Array.of(1, 2)));
    b.output(b.node('Add', [x, w], {}, { name: 'add', names: ['s'] }).output(0), 'y');
    const m = b.model();
    const g = m.graph;
    const n = g.insertNode(new Node('Neg', [x], [new Value(m.names.fresh('neg'))]), 0);
    const out = n.output(0);
    expect(w.replaceAllUsesWith(out, { takeName: true })).toBe(true);
    expect(out.name).toBe('w');
    expect(w.name).toBe('neg');
    expect(g.initializers.get('neg')).toBe(w);
    expect(g.initializers.has('w')).toBe(false);
    expect(g.initializerTensor(w)!.name).toBe('neg');
    g.removeInitializer(w);
    expect(g.initializers.size).toBe(0);
    expect(bookkeepingProblems(m)).toEqual([]);
  });

  it('replaceWithInitializer keeps the name of a graph output and gives the node output a fresh spare', () => {
    const { m, g, y } = chain();
    const init = replaceWithInitializer(g, y, Tensor.from(DataType.FLOAT, [2], Float32Array.of(1, 2)));
    expect(init.name).toBe('y');
    expect(g.outputs[0]).toBe(init);
    expect(y.name).toBe('y__folded');
    expect(m.names.has('y__folded')).toBe(true);
    g.removeNode(y.producer!);
    expect(bookkeepingProblems(m)).toEqual([]);
  });
});
