/**
 * A small builder so tests and passes write models in a few lines:
 *
 *   const b = new GraphBuilder({ opset: 17 });
 *   const x = b.input('x', 'float32', [1, 3, 'N']);
 *   const w = b.constant('w', Tensor.from('float32', [3, 3], new Float32Array(9)));
 *   const [y] = b.op('MatMul', [x, w]);
 *   b.output(b.op('Relu', [y])[0], 'y');
 *   const model = b.model();
 */
import { DataType, dtypeOf } from '../core/dtype.js';
import { Attribute, Graph, Int64, Model, Node, Value } from './ir.js';
import { Tensor } from '../core/tensor.js';

export type AttrValue = number | bigint | string | number[] | bigint[] | string[] | Tensor | Graph | Graph[] | Tensor[];

export interface OpOptions {
  /** Number of outputs (default 1). */
  outputs?: number;
  /** Output names (default: generated). */
  names?: string[];
  domain?: string;
  name?: string;
  /** Integer-valued numbers become INT attributes; use `floats` to force FLOAT(S). */
  floats?: string[];
}

/** Converts a JS value to an Attribute (numbers are INT when integral unless listed in `floats`). */
export function toAttribute(name: string, v: AttrValue, forceFloat = false): Attribute {
  if (v instanceof Tensor) return Attribute.tensor(name, v);
  if (v instanceof Graph) return Attribute.graph(name, v);
  if (typeof v === 'bigint') return Attribute.int(name, v);
  if (typeof v === 'number') return forceFloat || !Number.isInteger(v) ? Attribute.float(name, v) : Attribute.int(name, v);
  if (typeof v === 'string') return Attribute.string(name, v);
  if (Array.isArray(v)) {
    const arr = v as unknown[];
    if (arr.length > 0 && arr[0] instanceof Graph) return Object.assign(new Attribute(), { name, type: 10, graphs: arr as Graph[] });
    if (arr.length > 0 && arr[0] instanceof Tensor) return Object.assign(new Attribute(), { name, type: 9, tensors: arr as Tensor[] });
    if (arr.length > 0 && typeof arr[0] === 'string') return Attribute.strings(name, arr as string[]);
    const nums = arr as Array<number | bigint>;
    if (forceFloat || nums.some((x) => typeof x === 'number' && !Number.isInteger(x))) return Attribute.floats(name, nums.map(Number));
    return Attribute.ints(name, nums as Int64[]);
  }
  throw new Error(`cannot make attribute ${name} from ${typeof v}`);
}

export class GraphBuilder {
  readonly graph: Graph;
  private counter = 0;
  private readonly opsets: Array<[string, number]>;
  private readonly irVersion: number;

  constructor(options: { opset?: number; opsets?: Record<string, number>; irVersion?: number; name?: string; graph?: Graph } = {}) {
    this.graph = options.graph ?? new Graph(options.name ?? 'main');
    this.opsets = [['', options.opset ?? 17], ...Object.entries(options.opsets ?? {})];
    this.irVersion = options.irVersion ?? 8;
  }

  fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  input(name: string, dtype: string | number, dims?: Array<number | string | undefined>): Value {
    const v = new Value(name);
    v.setTensorType(typeof dtype === 'number' ? dtype : dtypeOf(dtype)!.type, dims);
    return this.graph.addInput(v);
  }

  /** Adds an initializer. */
  initializer(name: string, t: Tensor): Value {
    return this.graph.addInitializer(t, name);
  }

  /** Adds a `Constant` node holding `t` (the PaddleOCR models keep weights this way). */
  constant(name: string, t: Tensor): Value {
    const [v] = this.op('Constant', [], { value: t }, { names: [name] });
    return v!;
  }

  /** Adds a node; returns its outputs. Attribute values are converted with {@link toAttribute}. */
  op(opType: string, inputs: Array<Value | null>, attrs: Record<string, AttrValue | undefined> = {}, opts: OpOptions = {}): Value[] {
    const n = opts.outputs ?? 1;
    const outs: Value[] = [];
    for (let i = 0; i < n; i++) outs.push(new Value(opts.names?.[i] ?? this.fresh(opType.toLowerCase())));
    const node = new Node(opType, inputs, outs, opts.domain);
    node.name = opts.name ?? this.fresh(`${opType}_node`);
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined) node.attributes.push(toAttribute(k, v, opts.floats?.includes(k)));
    this.graph.insertNode(node);
    return outs;
  }

  /** Like `op` but returns the node. */
  node(opType: string, inputs: Array<Value | null>, attrs: Record<string, AttrValue | undefined> = {}, opts: OpOptions = {}): Node {
    const outs = this.op(opType, inputs, attrs, opts);
    return outs[0]!.producer!;
  }

  /** Marks `v` as a graph output (renaming it when `name` is given). */
  output(v: Value, name?: string, dtype?: string | number, dims?: Array<number | string | undefined>): Value {
    if (name) v.name = name;
    if (dtype !== undefined) v.setTensorType(typeof dtype === 'number' ? dtype : dtypeOf(dtype)!.type, dims);
    else if (!v.type) v.setTensorType(DataType.FLOAT);
    this.graph.addOutput(v);
    return v;
  }

  model(extra: { producerName?: string } = {}): Model {
    const m = new Model(this.graph);
    m.irVersion = this.irVersion;
    m.opsetImports = this.opsets.map(([domain, version]) => ({ domain, version }));
    m.producerName = extra.producerName ?? 'onnxforge-builder';
    return m;
  }
}
