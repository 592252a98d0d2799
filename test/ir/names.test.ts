/**
 * The model's name authority (ir/names.ts): it knows every name of every graph from its first use,
 * stays right as the IR adds, renames and attaches things, and never hands out a name twice.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { DataType } from '../../core/dtype.js';
import { Attribute, Graph, Model, Node, OnnxFunction, Value } from '../../ir/ir.js';
import { NameAuthority } from '../../ir/names.js';
import { cloneModel, loadModelSync, serializeModel } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';

/** x -> Relu(node 'relu', out 'r') -> If(cond, then: Neg(r) 'neg_out') -> y, initializer 'w'. */
function model(): Model {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [2]);
  const cond = b.input('cond', 'bool', []);
  b.initializer('w', Tensor.from(DataType.FLOAT, [2], Float32Array.of(1, 2)));
  const r = b.node('Relu', [x], {}, { name: 'relu', names: ['r'] }).output(0);
  const then = new GraphBuilder({ name: 'then' });
  const neg = then.node('Neg', [r], {}, { name: 'inner_neg', names: ['neg_out'] });
  then.output(neg.output(0));
  const els = new GraphBuilder({ name: 'else' });
  els.output(els.node('Identity', [r], {}, { name: 'inner_id', names: ['id_out'] }).output(0));
  const iff = b.node('If', [cond], { then_branch: then.graph, else_branch: els.graph }, { name: 'if', names: ['y'] });
  b.output(iff.output(0), 'y', 'float32', [2]);
  return b.model();
}

describe('NameAuthority', () => {
  it('gives the base when free, then the first free suffix, and short numbered ids', () => {
    const a = new NameAuthority(['x', 'x_1', 'a0']);
    expect(a.fresh('y')).toBe('y');
    expect(a.fresh('x')).toBe('x_2');
    expect(a.fresh('x')).toBe('x_3');
    expect(a.fresh('y')).toBe('y_1');
    expect(a.numbered('a')).toBe('a1');
    expect(a.numbered('a')).toBe('a2');
    expect(a.numbered('w')).toBe('w0');
    // a name handed out by one style is taken for the other
    expect(a.fresh('w1')).toBe('w1');
    expect(a.numbered('w')).toBe('w2');
    expect(a.has('x_3')).toBe(true);
  });

  it('knows values, initializers, graph inputs/outputs and node names of every graph and function', () => {
    const m = model();
    const fn = new OnnxFunction();
    fn.name = 'f';
    const fi = fn.body.addInput(new Value('fn_in'));
    const fnode = new Node('Relu', [fi], [new Value('fn_out')]);
    fnode.name = 'fn_node';
    fn.body.insertNode(fnode);
    m.functions.push(fn);
    const names = m.names;
    for (const n of ['x', 'cond', 'w', 'r', 'relu', 'y', 'if', 'neg_out', 'inner_neg', 'id_out', 'inner_id', 'fn_in', 'fn_out', 'fn_node']) {
      expect(names.has(n), n).toBe(true);
      expect(names.fresh(n)).toBe(`${n}_1`);
    }
    expect(m.names).toBe(names); // built once
    expect(m.graph.names).toBe(names);
    expect(m.graph.nodes.find((n) => n.opType === 'If')!.subgraphs()[0]!.names).toBe(names);
  });

  it('stays right as the IR changes after its first use', () => {
    const m = model();
    const g = m.graph;
    const names = m.names;
    // a node added with a name and an output
    const out = new Value('added_out');
    const n = new Node('Sigmoid', [g.inputs[0]!], [out]);
    n.name = 'added_node';
    g.insertNode(n);
    // an initializer, a graph input, a renamed value, a renamed node, an output appended to a node in the graph
    g.addInitializer(Tensor.from(DataType.FLOAT, [1], Float32Array.of(0)), 'added_init');
    g.addInput(new Value('added_input'));
    out.name = 'renamed_out';
    n.name = 'renamed_node';
    n.appendOutput(new Value('appended_out'));
    // a subgraph attached to a node already in the graph, and a node carrying a subgraph inserted
    const sub = new GraphBuilder({ name: 'loop_body' });
    sub.output(sub.node('Identity', [sub.input('body_in', 'float32', [])], {}, { name: 'body_node', names: ['body_out'] }).output(0));
    n.setAttr(Attribute.graph('body', sub.graph));
    const sub2 = new GraphBuilder({ name: 'later' });
    sub2.output(sub2.node('Identity', [g.inputs[0]!], {}, { name: 'later_node', names: ['later_out'] }).output(0));
    const holder = new Node('If', [g.inputs[1]!], [new Value('holder_out')]);
    holder.setAttr(Attribute.graph('then_branch', sub2.graph));
    g.insertNode(holder);
    for (const name of ['added_out', 'added_node', 'added_init', 'added_input', 'renamed_out', 'renamed_node', 'appended_out', 'body_in', 'body_node', 'body_out', 'later_node', 'later_out', 'holder_out']) {
      expect(names.has(name), name).toBe(true);
      expect(names.fresh(name), name).not.toBe(name);
    }
  });

  it('never hands out a name twice, even after its value is removed', () => {
    const m = model();
    const g = m.graph;
    const first = m.names.fresh('t');
    const v = new Value(first);
    const n = new Node('Relu', [g.inputs[0]!], [v]);
    g.insertNode(n);
    g.removeNode(n);
    expect(m.names.fresh('t')).toBe('t_1');
  });

  it('is rebuilt when the model gets a new main graph, and a graph outside a model has its own', () => {
    const m = model();
    expect(m.names.has('r')).toBe(true);
    const other = new GraphBuilder({ name: 'other' });
    other.output(other.node('Relu', [other.input('q', 'float32', [1])], {}, { name: 'only', names: ['z'] }).output(0));
    const own = other.graph.names;
    expect(own.has('z')).toBe(true);
    expect(own.fresh('z')).toBe('z_1');
    m.graph = other.graph;
    expect(m.graph.model).toBe(m);
    expect(m.names.has('r')).toBe(false);
    expect(m.names.has('z')).toBe(true);
    expect(m.names.has('q')).toBe(true);
  });

  it('is not part of the model: loading, cloning and saving give the same bytes whether it was used or not', () => {
    const m = model();
    const before = serializeModel(m);
    m.names.fresh('r');
    expect(Buffer.from(serializeModel(m)).equals(Buffer.from(before))).toBe(true);
    const c = cloneModel(m);
    expect(c.names).not.toBe(m.names);
    expect(c.names.has('neg_out')).toBe(true);
    const loaded = loadModelSync(before);
    expect(loaded.names.has('inner_id')).toBe(true);
  });

  it('costs one scan: a 10k-node model answers many calls from its set', () => {
    const b = new GraphBuilder({ opset: 17 });
    let x = b.input('x', 'float32', [1]);
    for (let i = 0; i < 10_000; i++) x = b.op('Relu', [x])[0]!;
    b.output(x, 'y');
    const m = b.model();
    const names = m.names;
    const scanned = names.size;
    expect(scanned).toBe(1 + 2 * 10_000); // x, and each node's name and output ('y' is the last output)
    const g: Graph = m.graph;
    let allNodes = 0;
    const orig = g.allGraphs.bind(g);
    g.allGraphs = () => {
      allNodes++;
      return orig();
    };
    for (let i = 0; i < 1000; i++) names.fresh('relu');
    expect(allNodes).toBe(0); // no rescan per call
    expect(names.size).toBe(scanned + 1000);
  });
});
