/**
 * The exporter quirks surveyed against onnxruntime-node (issue 17): one row per way real exporters bend
 * the ONNX rules, with the file that shows it, what onnxruntime does with it and what onnxforge does.
 * exporter-quirks.test.ts measures every row; `npx tsx test/graph/exporter-quirks.ts` prints the table
 * (onnxruntime and onnxforge columns measured now) for the README.
 */
import * as ort from 'onnxruntime-node';
import { checkModel } from '../../ir/checker.js';
import { DataType } from '../../core/dtype.js';
import { LoadWarning, loadModelSync } from '../../onnx/index.js';
import { encode, ProtoObject } from '../../onnx/wire.js';
import { sameBytes } from './helpers.js';

type P = ProtoObject;

export const vi = (name: string, elem = 1, dims: number[] = [1, 4]): P => ({ name, type: { tensor_type: { elem_type: elem, shape: { dim: dims.map((d) => ({ dim_value: d })) } } } });
export const node = (op: string, input: string[], output: string[], extra: P = {}): P => ({ input, output, op_type: op, ...extra });
const f32 = (name: string, vals: number[], dims = [vals.length]): P => ({ dims, data_type: 1, name, raw_data: new Uint8Array(Float32Array.from(vals).buffer) });
const intAttr = (name: string, i: number): P => ({ name, type: 2, i });
const floatAttr = (name: string, f: number): P => ({ name, type: 1, f });
const graphAttr = (name: string, g: P): P => ({ name, type: 5, g });
export const model = (graph: P, extra: P = {}): P => ({ ir_version: 8, opset_import: [{ domain: '', version: 17 }], producer_name: 'quirks', graph: { name: 'g', ...graph }, ...extra });

/** x -> Relu -> y */
const relu = (): P => ({ node: [node('Relu', ['x'], ['y'])], input: [vi('x')], output: [vi('y')] });
/** x -> Relu -> a -> Neg -> y */
const chain = (extra: P = {}): P => ({ node: [node('Relu', ['x'], ['a']), node('Neg', ['a'], ['y'])], input: [vi('x')], output: [vi('y')], ...extra });
/** y = x + w with an initializer w */
const addW = (extra: P = {}, inits: P[] = [f32('w', [1, 2, 3, 4], [1, 4])]): P => ({ node: [node('Add', ['x', 'w'], ['y'])], initializer: inits, input: [vi('x')], output: [vi('y')], ...extra });

/** An If whose condition is sum(x) < 0 (true for the feed below), with the given branches. */
export function ifModel(thenBranch: P, elseBranch: P = { name: 'e', node: [node('Identity', ['x'], ['ey'])], output: [vi('ey')] }): P {
  return model({
    node: [
      node('ReduceSum', ['x'], ['s'], { attribute: [intAttr('keepdims', 0)] }),
      node('Less', ['s', 'zero'], ['c']),
      node('If', ['c'], ['y'], { attribute: [graphAttr('then_branch', thenBranch), graphAttr('else_branch', elseBranch)] }),
    ],
    initializer: [f32('zero', [0], [])],
    input: [vi('x')],
    output: [vi('y')],
  });
}

/** y = F(x) with a model-local function F whose body is `body`. */
function withFunction(body: P[]): P {
  return model(
    { node: [node('F', ['x'], ['y'], { domain: 'local' })], input: [vi('x')], output: [vi('y')] },
    {
      opset_import: [{ domain: '', version: 17 }, { domain: 'local', version: 1 }],
      functions: [{ name: 'F', domain: 'local', input: ['a'], output: ['b'], node: body, opset_import: [{ domain: '', version: 17 }] }],
    },
  );
}

/** A Constant node holding a float [1, 4] tensor. */
const constant = (name: string, vals: number[]): P => node('Constant', [], [name], { attribute: [{ name: 'value', type: 4, t: f32('', vals, [1, 4]) }] });

/** Clip with min/max attributes: valid at opset 6, invalid from opset 11 on. */
const clipAttrs = (opsets: P[]): P =>
  model({ node: [node('Clip', ['x'], ['y'], { attribute: [floatAttr('min', 0), floatAttr('max', 0.5)] })], input: [vi('x')], output: [vi('y')] }, { ir_version: 7, opset_import: opsets });

export interface Quirk {
  name: string;
  file: () => P;
  /** What onnxruntime-node 1.30 does with the file. */
  ort: 'runs' | 'refuses';
  /** What onnxforge does: 'accepts', or the checker's code for the refusal. */
  forge: 'accepts' | string;
  /** The load warning(s) onnxforge prints (accepted files that it had to change). */
  warning?: string | string[];
  /** Accepted and re-encoded to other bytes (with the warning saying why). */
  changes?: boolean;
  /** For files onnxruntime refuses and onnxforge repairs: the same model as onnxruntime takes it. */
  twin?: () => P;
  /** Why onnxforge does not do what onnxruntime does. */
  departure?: string;
  /** The standard-domain opset onnxforge reads from the loaded model. */
  opset?: number;
}

const KEEP_IO_TYPES = (): P =>
  model({
    node: [
      node('Relu', ['x16'], ['r16']),
      node('Cast', ['r16'], ['y'], { attribute: [intAttr('to', DataType.FLOAT)] }),
      node('Cast', ['x'], ['x16'], { attribute: [intAttr('to', DataType.FLOAT16)] }),
    ],
    input: [vi('x')],
    output: [vi('y')],
  });

export const QUIRKS: Quirk[] = [
  { name: 'nodes out of topological order (graph-input Casts last, as keep_io_types writes)', file: KEEP_IO_TYPES, ort: 'runs', forge: 'accepts', warning: 'LOAD_NODES_SORTED', changes: true },
  {
    name: 'a node reads a graph output produced by a later node',
    file: () => model({ node: [node('Neg', ['a'], ['y']), node('Relu', ['x'], ['a'])], input: [vi('x')], output: [vi('y'), vi('a')] }),
    ort: 'runs',
    forge: 'accepts',
    warning: 'LOAD_NODES_SORTED',
    changes: true,
  },
  {
    name: 'an If branch out of order',
    file: () => ifModel({ name: 't', node: [node('Neg', ['a'], ['ty']), node('Relu', ['x'], ['a'])], output: [vi('ty')] }),
    twin: () => ifModel({ name: 't', node: [node('Relu', ['x'], ['a']), node('Neg', ['a'], ['ty'])], output: [vi('ty')] }),
    ort: 'refuses',
    forge: 'accepts',
    warning: 'LOAD_NODES_SORTED',
    changes: true,
    departure: 'onnxruntime sorts only the main graph; the loader sorts every graph, and the file it writes runs',
  },
  {
    name: 'a function body out of order',
    file: () => withFunction([node('Neg', ['t'], ['b']), node('Relu', ['a'], ['t'])]),
    twin: () => withFunction([node('Relu', ['a'], ['t']), node('Neg', ['t'], ['b'])]),
    ort: 'refuses',
    forge: 'accepts',
    warning: 'LOAD_NODES_SORTED',
    changes: true,
    departure: 'as for subgraphs: sorted, and the file written runs',
  },
  { name: 'a cycle', file: () => model({ node: [node('Add', ['x', 'b'], ['a'], { name: 'A' }), node('Relu', ['a'], ['b'], { name: 'B' }), node('Identity', ['a'], ['y'])], input: [vi('x')], output: [vi('y')] }), ort: 'refuses', forge: 'IR_CYCLE' },
  { name: 'an input nothing defines', file: () => model({ node: [node('Add', ['x', 'ghost'], ['y'])], input: [vi('x')], output: [vi('y')] }), ort: 'refuses', forge: 'IR_DANGLING_INPUT' },
  { name: 'no value_info at all', file: () => model(chain()), ort: 'runs', forge: 'accepts' },
  { name: 'value_info listed twice for one value', file: () => model(chain({ value_info: [vi('a'), vi('a')] })), ort: 'runs', forge: 'accepts' },
  { name: 'value_info for a name nothing defines', file: () => model({ ...relu(), value_info: [vi('nowhere')] }), ort: 'runs', forge: 'accepts' },
  {
    name: 'value_info whose type contradicts the node',
    file: () => model(chain({ value_info: [vi('a', DataType.INT64)] })),
    ort: 'refuses',
    forge: 'accepts',
    departure: 'needs type inference the checker does not run; onnxforge keeps the entry as it is',
  },
  { name: 'value_info for a graph input (same type)', file: () => model({ ...relu(), value_info: [vi('x')] }), ort: 'runs', forge: 'accepts' },
  { name: 'value_info for a graph input (another type)', file: () => model({ ...relu(), value_info: [vi('x', DataType.INT64)] }), ort: 'runs', forge: 'accepts' },
  { name: 'value_info for a graph output (another type)', file: () => model({ ...relu(), value_info: [vi('y', DataType.INT64)] }), ort: 'runs', forge: 'accepts' },
  { name: 'a graph output without a type', file: () => model({ ...relu(), output: [{ name: 'y' }] }), ort: 'runs', forge: 'accepts' },
  { name: 'a graph input without a type', file: () => model({ ...relu(), input: [{ name: 'x' }] }), ort: 'refuses', forge: 'IR_INPUT_NO_TYPE' },
  { name: 'an initializer-input without a type', file: () => model(addW({ input: [vi('x'), { name: 'w' }] })), ort: 'runs', forge: 'accepts' },
  { name: 'empty node names', file: () => model({ ...chain(), node: [node('Relu', ['x'], ['a'], { name: '' }), node('Neg', ['a'], ['y'], { name: '' })] }), ort: 'runs', forge: 'accepts' },
  { name: 'two nodes of one graph with the same name', file: () => model({ ...chain(), node: [node('Relu', ['x'], ['a'], { name: 'n' }), node('Neg', ['a'], ['y'], { name: 'n' })] }), ort: 'refuses', forge: 'IR_DUPLICATE_NODE_NAME' },
  {
    name: 'the same node name in the main graph and in subgraphs',
    file: () => ifModel({ name: 't', node: [node('Neg', ['x'], ['ty'], { name: 'n' })], output: [vi('ty')] }, { name: 'e', node: [node('Identity', ['x'], ['ey'], { name: 'n' })], output: [vi('ey')] }),
    ort: 'runs',
    forge: 'accepts',
  },
  { name: "an empty name ('') for an optional input", file: () => model({ node: [node('Clip', ['x', '', 'hi'], ['y'])], initializer: [f32('hi', [0.5], [])], input: [vi('x')], output: [vi('y')] }), ort: 'runs', forge: 'accepts' },
  { name: "a trailing empty optional input", file: () => model({ node: [node('Clip', ['x', 'lo', ''], ['y'])], initializer: [f32('lo', [0.5], [])], input: [vi('x')], output: [vi('y')] }), ort: 'runs', forge: 'accepts' },
  { name: "an empty name ('') for an optional output", file: () => model({ node: [node('Dropout', ['x'], ['y', ''])], input: [vi('x')], output: [vi('y')] }), ort: 'runs', forge: 'accepts' },
  {
    name: "an empty name ('') for a required input",
    file: () => model({ node: [node('Add', ['x', ''], ['y'])], input: [vi('x')], output: [vi('y')] }),
    ort: 'refuses',
    forge: 'accepts',
    departure: 'needs the operator schemas (which inputs are optional) the checker does not carry',
  },
  { name: 'an unused initializer', file: () => model({ ...relu(), initializer: [f32('unused', [1, 2, 3])] }), ort: 'runs', forge: 'accepts' },
  { name: 'an initializer with an empty name', file: () => model({ ...relu(), initializer: [f32('', [1])] }), ort: 'runs', forge: 'accepts' },
  { name: 'IR 3: initializers also listed as graph inputs', file: () => model(addW({ input: [vi('x'), vi('w')] }), { ir_version: 3, opset_import: [{ domain: '', version: 9 }] }), ort: 'runs', forge: 'accepts' },
  { name: 'IR 3: an initializer not listed as a graph input', file: () => model(addW(), { ir_version: 3, opset_import: [{ domain: '', version: 9 }] }), ort: 'runs', forge: 'accepts' },
  { name: 'IR 8: an initializer also listed as a graph input (overridable)', file: () => model(addW({ input: [vi('x'), vi('w')] })), ort: 'runs', forge: 'accepts' },
  {
    name: 'an initializer repeated with the same type and shape (the last is used)',
    file: () => model(addW({}, [f32('w', [1, 2, 3, 4], [1, 4]), f32('w', [5, 6, 7, 8], [1, 4]), f32('w', [0, 0, 0, 1], [1, 4])])),
    ort: 'runs',
    forge: 'accepts',
    warning: 'LOAD_REPEATED_INITIALIZER',
    changes: true,
  },
  {
    name: 'an initializer-input repeated with the same type and shape',
    file: () => model(addW({ input: [vi('x'), vi('w')] }, [f32('w', [1, 2, 3, 4], [1, 4]), f32('w', [5, 6, 7, 8], [1, 4])])),
    ort: 'runs',
    forge: 'accepts',
    warning: 'LOAD_REPEATED_INITIALIZER',
    changes: true,
  },
  { name: 'an initializer repeated with another shape', file: () => model(addW({}, [f32('w', [1, 2, 3, 4], [1, 4]), f32('w', [5], [1])])), ort: 'refuses', forge: 'IR_DUPLICATE_INITIALIZER' },
  {
    name: 'an initializer repeated in a subgraph',
    file: () => ifModel({ name: 't', node: [node('Add', ['x', 'k'], ['ty'])], initializer: [f32('k', [1]), f32('k', [2])], output: [vi('ty')] }),
    ort: 'refuses',
    forge: 'IR_DUPLICATE_INITIALIZER',
  },
  { name: 'opset_import lists a domain twice (same version)', file: () => model(relu(), { opset_import: [{ domain: '', version: 17 }, { domain: '', version: 17 }] }), ort: 'runs', forge: 'accepts', warning: 'LOAD_REPEATED_OPSET' },
  { name: "opset_import lists '' and 'ai.onnx'", file: () => model(relu(), { opset_import: [{ domain: '', version: 17 }, { domain: 'ai.onnx', version: 17 }] }), ort: 'runs', forge: 'accepts', warning: 'LOAD_REPEATED_OPSET' },
  { name: 'opset_import lists a domain twice, 13 then 6 (the last counts: Clip with attributes is valid at 6)', file: () => clipAttrs([{ domain: '', version: 13 }, { domain: '', version: 6 }]), ort: 'runs', forge: 'accepts', warning: 'LOAD_REPEATED_OPSET', opset: 6 },
  {
    name: 'opset_import lists a domain twice, 6 then 13 (the last counts: Clip with attributes is invalid at 13)',
    file: () => clipAttrs([{ domain: '', version: 6 }, { domain: '', version: 13 }]),
    ort: 'refuses',
    forge: 'accepts',
    warning: 'LOAD_REPEATED_OPSET',
    opset: 13,
    departure: 'the attributes Clip lost at opset 11 are a schema check the checker does not have; the opset onnxforge reads is 13, as in onnxruntime',
  },
  { name: 'opset_import lists a domain twice, the first with version -3 (overridden)', file: () => model(relu(), { opset_import: [{ domain: '', version: -3 }, { domain: '', version: 17 }] }), ort: 'runs', forge: 'accepts', warning: 'LOAD_REPEATED_OPSET' },
  { name: 'opset_import lists a domain twice, the last with version 0', file: () => model(relu(), { opset_import: [{ domain: '', version: 17 }, { domain: '', version: 0 }] }), ort: 'refuses', forge: 'MODEL_BAD_OPSET' },
  { name: 'an unused domain imported at version 0', file: () => model(relu(), { opset_import: [{ domain: '', version: 17 }, { domain: 'ai.onnx.ml', version: 0 }] }), ort: 'runs', forge: 'accepts' },
  {
    name: 'an opset newer than onnxruntime knows (ai.onnx 27)',
    file: () => model(relu(), { opset_import: [{ domain: '', version: 27 }] }),
    ort: 'refuses',
    forge: 'accepts',
    departure: 'onnxforge works on models for newer runtimes too (the ONNX backend suite has opset-27 cases); onnxruntime-node 1.30 knows ai.onnx up to 26, ai.onnx.ml up to 5, com.microsoft up to 1',
  },
  { name: "opset_import spells the standard domain 'ai.onnx'", file: () => model(relu(), { opset_import: [{ domain: 'ai.onnx', version: 17 }] }), ort: 'runs', forge: 'accepts' },
  { name: "a node's domain spelled 'ai.onnx'", file: () => model({ ...relu(), node: [node('Relu', ['x'], ['y'], { domain: 'ai.onnx' })] }), ort: 'runs', forge: 'accepts' },
  { name: "opset_import without the standard domain (onnxruntime adds it)", file: () => model(relu(), { opset_import: [{ domain: 'com.microsoft', version: 1 }] }), ort: 'runs', forge: 'accepts' },
  { name: 'a com.microsoft node without its opset_import', file: () => model({ ...relu(), node: [node('Gelu', ['x'], ['y'], { domain: 'com.microsoft' })] }), ort: 'runs', forge: 'accepts' },
  { name: 'an ai.onnx.ml node without its opset_import', file: () => model({ ...relu(), node: [node('Normalizer', ['x'], ['y'], { domain: 'ai.onnx.ml', attribute: [{ name: 'norm', type: 3, s: new TextEncoder().encode('MAX') }] })] }), ort: 'runs', forge: 'accepts' },
  { name: 'a node of an unknown domain without its opset_import', file: () => model({ ...relu(), node: [node('Foo', ['x'], ['y'], { domain: 'my.domain' })] }), ort: 'refuses', forge: 'IR_DOMAIN_NOT_IMPORTED' },
  { name: 'an unused opset_import of an unknown domain', file: () => model(relu(), { opset_import: [{ domain: '', version: 17 }, { domain: 'my.domain', version: 1 }] }), ort: 'runs', forge: 'accepts' },
  { name: 'a graph output that is also a graph input', file: () => model({ ...relu(), output: [vi('y'), vi('x')] }), ort: 'runs', forge: 'accepts' },
  { name: 'a graph output that is an initializer', file: () => model({ ...relu(), initializer: [f32('c', [1, 2, 3])], output: [vi('y'), vi('c', 1, [3])] }), ort: 'runs', forge: 'accepts' },
  { name: 'a graph output listed twice', file: () => model({ ...relu(), output: [vi('y'), vi('y')] }), ort: 'runs', forge: 'accepts' },
  { name: 'a graph output listed twice with different types', file: () => model({ ...relu(), output: [vi('y'), vi('y', DataType.INT64)] }), ort: 'runs', forge: 'accepts', warning: 'LOAD_OUTPUT_REDESCRIBED', changes: true },
  { name: 'a subgraph returning an outer value directly', file: () => ifModel({ name: 't', output: [vi('x')] }), ort: 'refuses', forge: 'IR_SUBGRAPH_OUTPUT_OUTER' },
  { name: 'a node whose outputs nothing uses', file: () => model({ ...relu(), node: [node('Relu', ['x'], ['y']), node('Neg', ['x'], ['dead'])] }), ort: 'runs', forge: 'accepts' },
  { name: 'a standard node with no outputs at all', file: () => model({ ...relu(), node: [node('Relu', ['x'], ['y']), node('Neg', ['x'], [])] }), ort: 'refuses', forge: 'IR_NODE_NO_OUTPUT' },
  { name: 'two nodes define one name', file: () => model({ node: [node('Relu', ['x'], ['a']), node('Neg', ['x'], ['a']), node('Identity', ['a'], ['y'])], input: [vi('x')], output: [vi('y')] }), ort: 'refuses', forge: 'IR_DUPLICATE_NAME' },
  { name: 'a node output named like a graph input', file: () => model({ node: [node('Relu', ['x'], ['x']), node('Neg', ['x'], ['y'])], input: [vi('x')], output: [vi('y')] }), ort: 'refuses', forge: 'IR_DUPLICATE_NAME' },
  { name: 'a graph input listed twice', file: () => model({ ...relu(), input: [vi('x'), vi('x')] }), ort: 'refuses', forge: 'IR_DUPLICATE_NAME' },
  { name: 'a Constant node named like an initializer (the Constant is used)', file: () => model(addW({ node: [constant('w', [5, 6, 7, 8]), node('Add', ['x', 'w'], ['y'])] })), ort: 'runs', forge: 'accepts', warning: 'LOAD_CONSTANT_SHADOWS', changes: true },
  { name: 'a Constant node named like an initializer, after its consumer', file: () => model(addW({ node: [node('Add', ['x', 'w'], ['y']), constant('w', [5, 6, 7, 8])] })), ort: 'runs', forge: 'accepts', warning: ['LOAD_CONSTANT_SHADOWS', 'LOAD_NODES_SORTED'], changes: true },
  { name: 'two Constant nodes with one name (the last is used)', file: () => model({ node: [constant('w', [1, 2, 3, 4]), constant('w', [5, 6, 7, 8]), node('Add', ['x', 'w'], ['y'])], input: [vi('x')], output: [vi('y')] }), ort: 'runs', forge: 'accepts', warning: 'LOAD_CONSTANT_SHADOWS', changes: true },
  { name: 'a Constant node named like a graph input (the input goes)', file: () => model({ node: [constant('w', [5, 6, 7, 8]), node('Add', ['x', 'w'], ['y'])], input: [vi('x'), vi('w')], output: [vi('y')] }), ort: 'runs', forge: 'accepts', warning: 'LOAD_CONSTANT_SHADOWS', changes: true },
  { name: "a Constant node named like another node's output", file: () => model({ node: [node('Relu', ['x'], ['a']), constant('a', [5, 6, 7, 8]), node('Add', ['x', 'a'], ['y'])], input: [vi('x')], output: [vi('y')] }), ort: 'refuses', forge: 'IR_DUPLICATE_NAME' },
  { name: 'a Constant node named like an initializer, in a subgraph', file: () => ifModel({ name: 't', node: [constant('k', [5, 6, 7, 8]), node('Add', ['x', 'k'], ['ty'])], initializer: [f32('k', [1, 2, 3, 4], [1, 4])], output: [vi('ty')] }), ort: 'refuses', forge: 'IR_DUPLICATE_NAME' },
  { name: 'ir_version missing', file: () => { const m = model(relu()); delete m.ir_version; return m; }, ort: 'refuses', forge: 'MODEL_NO_IR_VERSION' },
  { name: 'ir_version 0', file: () => model(relu(), { ir_version: 0 }), ort: 'runs', forge: 'accepts' },
  { name: 'ir_version 3 with opset 17', file: () => model(relu(), { ir_version: 3 }), ort: 'runs', forge: 'accepts' },
  { name: 'ir_version 13', file: () => model(relu(), { ir_version: 13 }), ort: 'runs', forge: 'accepts' },
  { name: 'ir_version 14', file: () => model(relu(), { ir_version: 14 }), ort: 'refuses', forge: 'MODEL_BAD_IR_VERSION' },
  { name: 'opset_import missing', file: () => { const m = model(relu()); delete m.opset_import; return m; }, ort: 'refuses', forge: 'MODEL_NO_OPSET' },
];

const X = Float32Array.of(-1, 0.5, 2, -3);

/** Runs a file in onnxruntime with x = X; undefined when onnxruntime refuses it. */
export async function runOrt(bytes: Uint8Array): Promise<Record<string, ort.Tensor> | undefined> {
  let s: ort.InferenceSession;
  try {
    s = await ort.InferenceSession.create(bytes, { logSeverityLevel: 4, intraOpNumThreads: 1 });
  } catch {
    return undefined;
  }
  try {
    return await s.run({ x: new ort.Tensor('float32', X, [1, 4]) });
  } finally {
    await s.release();
  }
}

/** Bit-level equality of two output maps (NaN payloads included). */
export function sameResults(a: Record<string, ort.Tensor>, b: Record<string, ort.Tensor>): string | null {
  const ka = Object.keys(a).sort().join();
  if (ka !== Object.keys(b).sort().join()) return `outputs ${ka} vs ${Object.keys(b).sort().join()}`;
  for (const k of Object.keys(a)) {
    const x = a[k]!;
    const y = b[k]!;
    if (x.type !== y.type || x.dims.join() !== y.dims.join()) return `${k}: ${x.type}[${x.dims}] vs ${y.type}[${y.dims}]`;
    const bx = new Uint8Array((x.data as Float32Array).buffer, (x.data as Float32Array).byteOffset, (x.data as Float32Array).byteLength);
    const by = new Uint8Array((y.data as Float32Array).buffer, (y.data as Float32Array).byteOffset, (y.data as Float32Array).byteLength);
    if (!sameBytes(bx, by)) return `${k}: ${Array.from(x.data as Float32Array)} vs ${Array.from(y.data as Float32Array)}`;
  }
  return null;
}

/** Loads a file as the tests do, collecting the load warnings. */
export function load(bytes: Uint8Array): { model: ReturnType<typeof loadModelSync>; warnings: LoadWarning[] } {
  const warnings: LoadWarning[] = [];
  const m = loadModelSync(bytes, { name: 'quirk.onnx', onWarning: (w) => warnings.push(w) });
  return { model: m, warnings };
}

/** What onnxforge does with a file: 'accepts' (with the warning codes) or the checker's codes. */
export function forgeVerdict(bytes: Uint8Array): string {
  try {
    const { model: m, warnings } = load(bytes);
    const issues = checkModel(m);
    if (issues.length) return `refuses (${[...new Set(issues.map((i) => i.code))].join(', ')})`;
    return warnings.length ? `accepts, ${warnings.map((w) => w.code).join(', ')}` : 'accepts';
  } catch (e) {
    return `refuses (${(e as { code?: string }).code ?? 'error'})`;
  }
}

async function printTable(): Promise<void> {
  const rows = ['| case | onnxruntime-node 1.30 | onnxforge |', '| --- | --- | --- |'];
  for (const q of QUIRKS) {
    const bytes = encode(q.file(), 'ModelProto');
    const ortRuns = (await runOrt(bytes)) !== undefined;
    rows.push(`| ${q.name} | ${ortRuns ? 'runs' : 'refuses'} | ${forgeVerdict(bytes)}${q.departure ? ` (${q.departure})` : ''} |`);
  }
  process.stdout.write(`${rows.join('\n')}\n`);
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) await printTable();
