/**
 * The onnxforge graph IR: Model, Graph, Node, Value, Attribute (Tensor lives in `tensor.ts`).
 *
 * Invariants kept by the mutation API (never edit `inputs`, `outputs` or `uses` arrays directly):
 * - a Value knows its producer (`producer`, `outputIndex`) and its uses (`uses`: node + input slot,
 *   including nodes inside subgraphs that capture it from an outer scope);
 * - a Node registers itself as a user of its inputs when inputs are set;
 * - graph outputs are uses too (`graphOutputUses`), so a value feeding a graph output is never dead;
 * - names: `model.names` (ir/names.ts) hands out new names; values and nodes report their names to it
 *   when they join the model or are renamed, so it never hands out a name in use.
 *
 * Every field of the ONNX messages has a home here (optional proto2 fields stay optional, so an
 * explicit empty string is not confused with an absent one) and unknown fields ride along as raw
 * bytes: loading then saving an unchanged model gives the same bytes.
 */
import { inputError, internalError } from '../core/errors.js';
import { DataType } from '../core/dtype.js';
import { Entry, Int64, Tensor } from '../core/tensor.js';
import { NameAuthority } from './names.js';

export type { Entry, Int64 } from '../core/tensor.js';

/** Plain-data mirrors of the ONNX type messages (they carry no behaviour). */
export interface Dim {
  value?: Int64;
  param?: string;
  denotation?: string;
  unknownFields?: Uint8Array[];
}
export interface ShapeInfo {
  dims: Dim[];
  unknownFields?: Uint8Array[];
}
export interface TypeInfo {
  tensor?: { elemType?: number; shape?: ShapeInfo; unknownFields?: Uint8Array[] };
  sparseTensor?: { elemType?: number; shape?: ShapeInfo; unknownFields?: Uint8Array[] };
  sequence?: { elemType?: TypeInfo; unknownFields?: Uint8Array[] };
  map?: { keyType?: number; valueType?: TypeInfo; unknownFields?: Uint8Array[] };
  optional?: { elemType?: TypeInfo; unknownFields?: Uint8Array[] };
  denotation?: string;
  unknownFields?: Uint8Array[];
}

/** Opaque structures the IR keeps without interpreting (device configuration, sharding, ...). */
export type OpaqueProto = Record<string, unknown>;

export interface OpsetImport {
  domain?: string;
  version?: Int64;
  unknownFields?: Uint8Array[];
}

export interface SparseTensor {
  values?: Tensor;
  indices?: Tensor;
  dims?: Int64[];
  unknownFields?: Uint8Array[];
  altEncoding?: string[];
}

export const enum AttrType {
  UNDEFINED = 0,
  FLOAT = 1,
  INT = 2,
  STRING = 3,
  TENSOR = 4,
  GRAPH = 5,
  FLOATS = 6,
  INTS = 7,
  STRINGS = 8,
  TENSORS = 9,
  GRAPHS = 10,
  SPARSE_TENSOR = 11,
  SPARSE_TENSORS = 12,
  TYPE_PROTO = 13,
  TYPE_PROTOS = 14,
}

export class Attribute {
  name?: string;
  refAttrName?: string;
  docString?: string;
  type?: number;
  f?: number;
  i?: Int64;
  s?: Uint8Array;
  t?: Tensor;
  g?: Graph;
  sparseTensor?: SparseTensor;
  tp?: TypeInfo;
  floats?: number[];
  ints?: Int64[];
  strings?: Uint8Array[];
  tensors?: Tensor[];
  graphs?: Graph[];
  sparseTensors?: SparseTensor[];
  typeProtos?: TypeInfo[];
  unknownFields?: Uint8Array[];
  altEncoding?: string[];

  static float(name: string, v: number): Attribute {
    return Object.assign(new Attribute(), { name, type: AttrType.FLOAT, f: v });
  }
  static int(name: string, v: Int64): Attribute {
    return Object.assign(new Attribute(), { name, type: AttrType.INT, i: v });
  }
  static string(name: string, v: string): Attribute {
    return Object.assign(new Attribute(), { name, type: AttrType.STRING, s: new TextEncoder().encode(v) });
  }
  static tensor(name: string, v: Tensor): Attribute {
    return Object.assign(new Attribute(), { name, type: AttrType.TENSOR, t: v });
  }
  static graph(name: string, v: Graph): Attribute {
    return Object.assign(new Attribute(), { name, type: AttrType.GRAPH, g: v });
  }
  static floats(name: string, v: number[]): Attribute {
    return Object.assign(new Attribute(), { name, type: AttrType.FLOATS, floats: v });
  }
  static ints(name: string, v: Int64[]): Attribute {
    return Object.assign(new Attribute(), { name, type: AttrType.INTS, ints: v });
  }
  static strings(name: string, v: string[]): Attribute {
    const enc = new TextEncoder();
    return Object.assign(new Attribute(), { name, type: AttrType.STRINGS, strings: v.map((x) => enc.encode(x)) });
  }

  /** The attribute's value as a JS value, according to `type`. */
  get value(): unknown {
    switch (this.type) {
      case AttrType.FLOAT:
        return this.f ?? 0;
      case AttrType.INT:
        return this.i ?? 0;
      case AttrType.STRING:
        return new TextDecoder().decode(this.s ?? new Uint8Array(0));
      case AttrType.TENSOR:
        return this.t;
      case AttrType.GRAPH:
        return this.g;
      case AttrType.FLOATS:
        return this.floats ?? [];
      case AttrType.INTS:
        return this.ints ?? [];
      case AttrType.STRINGS:
        return (this.strings ?? []).map((b) => new TextDecoder().decode(b));
      case AttrType.TENSORS:
        return this.tensors ?? [];
      case AttrType.GRAPHS:
        return this.graphs ?? [];
      case AttrType.SPARSE_TENSOR:
        return this.sparseTensor;
      case AttrType.SPARSE_TENSORS:
        return this.sparseTensors ?? [];
      case AttrType.TYPE_PROTO:
        return this.tp;
      case AttrType.TYPE_PROTOS:
        return this.typeProtos ?? [];
    }
    return undefined;
  }

  /** Subgraphs held by this attribute (g and graphs). */
  subgraphs(): Graph[] {
    const out: Graph[] = [];
    if (this.g) out.push(this.g);
    if (this.graphs) out.push(...this.graphs);
    return out;
  }
}

export interface Use {
  node: Node;
  index: number;
}

export class Value {
  private _name = '';
  type?: TypeInfo;
  /** ValueInfoProto fields when the value is described by one (graph input/output/value_info). */
  docString?: string;
  metadataProps?: Entry[];
  unknownFields?: Uint8Array[];
  /** The ValueInfoProto had no `name` field (kept so it is not written as ''). */
  nameUnset?: boolean;

  producer: Node | null = null;
  outputIndex = -1;
  /** The graph whose scope defines this value (graph input, initializer or node output). */
  graph: Graph | null = null;
  readonly uses: Use[] = [];
  /** Graphs that list this value among their outputs. */
  readonly outputOf: Set<Graph> = new Set();

  constructor(name: string, type?: TypeInfo) {
    this._name = name;
    if (type) this.type = type;
  }

  get name(): string {
    return this._name;
  }
  /** Renaming a value of a model registers the new name with the model's name authority. */
  set name(name: string) {
    this._name = name;
    claimName(this.graph, name);
  }

  /** Element type when the value is a tensor with known type. */
  get elemType(): number | undefined {
    return this.type?.tensor?.elemType;
  }

  /** Static shape as numbers, `string` for symbolic dims, `undefined` for unknown dims, or undefined. */
  get shape(): Array<number | string | undefined> | undefined {
    const s = this.type?.tensor?.shape;
    if (!s) return undefined;
    return s.dims.map((d) => (d.value !== undefined ? Number(d.value) : d.param));
  }

  /** Sets a tensor type (element type and dims). */
  setTensorType(elemType: number, dims?: Array<number | string | undefined>): void {
    const shape = dims ? { dims: dims.map((d): Dim => (typeof d === 'number' ? { value: d } : d === undefined ? {} : { param: d })) } : undefined;
    this.type = { tensor: shape ? { elemType, shape } : { elemType } };
  }

  /** Nodes that read this value (each once). */
  consumers(): Node[] {
    return [...new Set(this.uses.map((u) => u.node))];
  }

  get isGraphOutput(): boolean {
    return this.outputOf.size > 0;
  }

  get initializer(): Tensor | undefined {
    return this.graph?.initializers.get(this.name) === this ? this.graph.initializerTensor(this) : undefined;
  }

  /**
   * True when `other` can take this value's name in {@link replaceAllUsesWith}: it is a node output of
   * the same graph and not a graph output itself (renaming a graph input, an initializer or another
   * output would change another part of the model's interface), and this value is the output of at
   * most one graph.
   */
  canGiveNameTo(other: Value): boolean {
    return other !== this && !!other.producer && other.graph === this.graph && !other.isGraphOutput && this.outputOf.size <= 1;
  }

  /** True when {@link replaceAllUsesWith} with `strict` would succeed (not an output, or its name can move). */
  canBeReplacedBy(other: Value): boolean {
    return !this.isGraphOutput || this.canGiveNameTo(other);
  }

  /**
   * The one replace primitive. Every use of this value (node inputs, captured uses in subgraphs, graph
   * output slots) reads `other` instead. The rule for names: a graph output's name is the model's
   * interface and stays. When this value is a graph output (or `takeName` is set), `other` takes this
   * value's name and its value_info entry, and this value (now unused) takes `other`'s old name, so
   * names stay unique — provided {@link canGiveNameTo}. When it cannot, `strict` refuses (returns
   * false, nothing changes: the caller keeps the node); otherwise the output slot holds `other` under
   * its own name. Returns true when the uses moved.
   */
  replaceAllUsesWith(other: Value, opts: { takeName?: boolean; strict?: boolean } = {}): boolean {
    if (other === this) return true;
    const wasOutput = this.outputOf.size > 0;
    const swap = (wasOutput || opts.takeName === true) && this.canGiveNameTo(other);
    if (wasOutput && !swap && opts.strict) return false;
    for (const u of [...this.uses]) u.node.setInput(u.index, other);
    for (const g of [...this.outputOf]) {
      for (let i = 0; i < g.outputs.length; i++) if (g.outputs[i] === this) g.setOutput(i, other);
    }
    if (swap) {
      const mine = this.name;
      const theirs = other.name;
      // initializer maps are keyed by name: note which entries must follow the swap
      const keyed = [this, other].filter((v) => v.graph?.initializers.get(v === this ? mine : theirs) === v);
      this.name = theirs;
      other.name = mine;
      for (const g of new Set(keyed.map((v) => v.graph!))) g.rekeyInitializers();
      const g = other.graph;
      const vi = g ? g.valueInfo.indexOf(this) : -1;
      if (g && vi >= 0 && !g.valueInfo.includes(other)) g.valueInfo[vi] = other;
    }
    return true;
  }
}

export class Node {
  opType: string;
  domain?: string;
  private _name?: string;
  overload?: string;
  docString?: string;
  metadataProps?: Entry[];
  deviceConfigurations?: OpaqueProto[];
  unknownFields?: Uint8Array[];
  /** The NodeProto had no op_type field. */
  opTypeUnset?: boolean;
  attributes: Attribute[] = [];
  graph: Graph | null = null;
  private _inputs: Array<Value | null> = [];
  private _outputs: Value[] = [];

  constructor(opType: string, inputs: Array<Value | null> = [], outputs: Value[] = [], domain?: string) {
    this.opType = opType;
    if (domain !== undefined) this.domain = domain;
    for (const v of inputs) this.appendInput(v);
    for (const v of outputs) this.appendOutput(v);
  }

  get name(): string | undefined {
    return this._name;
  }
  /** Naming a node of a model registers the name with the model's name authority. */
  set name(name: string | undefined) {
    this._name = name;
    claimName(this.graph, name);
  }

  get inputs(): ReadonlyArray<Value | null> {
    return this._inputs;
  }
  get outputs(): ReadonlyArray<Value> {
    return this._outputs;
  }

  /** Domain with '' and 'ai.onnx' normalized to ''. */
  get opDomain(): string {
    const d = this.domain ?? '';
    return d === 'ai.onnx' ? '' : d;
  }

  /** A readable name for messages: the node name, or op type and first output. */
  get label(): string {
    return this.name ? `${this.name} (${this.opType})` : `${this.opType} -> ${this._outputs[0]?.name ?? '?'}`;
  }

  input(i: number): Value | null {
    return this._inputs[i] ?? null;
  }

  output(i: number): Value {
    const v = this._outputs[i];
    if (!v) throw internalError('IR_NO_OUTPUT', `node ${this.label} has no output ${i}`);
    return v;
  }

  appendInput(v: Value | null): void {
    this._inputs.push(v);
    if (v) v.uses.push({ node: this, index: this._inputs.length - 1 });
  }

  setInput(i: number, v: Value | null): void {
    while (this._inputs.length <= i) this._inputs.push(null);
    const old = this._inputs[i];
    if (old === v) return;
    if (old) removeUse(old, this, i);
    this._inputs[i] = v;
    if (v) v.uses.push({ node: this, index: i });
  }

  /** Replaces all inputs (unregistering the old ones). */
  setInputs(vs: Array<Value | null>): void {
    this.clearInputs();
    for (const v of vs) this.appendInput(v);
  }

  /** Removes trailing inputs so that `n` remain. */
  truncateInputs(n: number): void {
    while (this._inputs.length > n) {
      const v = this._inputs.pop();
      if (v) removeUse(v, this, this._inputs.length);
    }
  }

  clearInputs(): void {
    for (let i = 0; i < this._inputs.length; i++) {
      const v = this._inputs[i];
      if (v) removeUse(v, this, i);
    }
    this._inputs = [];
  }

  appendOutput(v: Value): void {
    if (v.producer && v.producer !== this) throw internalError('IR_OUTPUT_TAKEN', `value ${v.name} is already produced by ${v.producer.label}`);
    v.producer = this;
    v.outputIndex = this._outputs.length;
    v.graph = this.graph;
    claimName(this.graph, v.name);
    this._outputs.push(v);
  }

  /** Replaces output `i` by a new value (the old one loses its producer). */
  setOutput(i: number, v: Value): void {
    const old = this._outputs[i];
    if (old) {
      old.producer = null;
      old.outputIndex = -1;
    }
    v.producer = this;
    v.outputIndex = i;
    v.graph = this.graph;
    claimName(this.graph, v.name);
    this._outputs[i] = v;
  }

  attr(name: string): Attribute | undefined {
    return this.attributes.find((a) => a.name === name);
  }

  getInt(name: string, dflt: number): number;
  getInt(name: string): number | undefined;
  getInt(name: string, dflt?: number): number | undefined {
    const a = this.attr(name);
    return a?.i !== undefined ? Number(a.i) : dflt;
  }

  getFloat(name: string, dflt: number): number;
  getFloat(name: string): number | undefined;
  getFloat(name: string, dflt?: number): number | undefined {
    const a = this.attr(name);
    return a?.f !== undefined ? a.f : dflt;
  }

  getInts(name: string): number[] | undefined {
    const a = this.attr(name);
    return a?.ints ? a.ints.map((x) => Number(x)) : undefined;
  }

  getFloats(name: string): number[] | undefined {
    return this.attr(name)?.floats;
  }

  getString(name: string, dflt: string): string;
  getString(name: string): string | undefined;
  getString(name: string, dflt?: string): string | undefined {
    const a = this.attr(name);
    return a?.s !== undefined ? new TextDecoder().decode(a.s) : dflt;
  }

  getTensor(name: string): Tensor | undefined {
    return this.attr(name)?.t;
  }

  /** Sets (replacing) an attribute. */
  setAttr(a: Attribute): void {
    const i = this.attributes.findIndex((x) => x.name === a.name);
    if (i >= 0) this.attributes[i] = a;
    else this.attributes.push(a);
    for (const g of a.subgraphs()) {
      g.parentNode = this;
      claimGraphNames(g);
    }
  }

  removeAttr(name: string): void {
    this.attributes = this.attributes.filter((a) => a.name !== name);
  }

  /** Subgraphs of this node's attributes (If branches, Loop/Scan bodies). */
  subgraphs(): Graph[] {
    const out: Graph[] = [];
    for (const a of this.attributes) out.push(...a.subgraphs());
    return out;
  }

  /** Values from this node's scope or above that its subgraphs read (implicit inputs). */
  implicitInputs(): Value[] {
    const out = new Set<Value>();
    for (const g of this.subgraphs()) for (const v of g.capturedValues()) if (!isInside(v.graph, g)) out.add(v);
    return [...out];
  }
}

function isInside(scope: Graph | null, g: Graph): boolean {
  for (let s: Graph | null = scope; s; s = s.parentNode?.graph ?? null) if (s === g) return true;
  return false;
}

/**
 * The name authority of `g`: its model's, or (for a graph in no model) its outermost graph's own.
 * Without `create`, only one that exists already (nothing to keep up to date before the first use).
 */
function authorityOf(g: Graph, create: boolean): NameAuthority | undefined {
  let root = g;
  while (root.parentNode?.graph) root = root.parentNode.graph;
  if (root.model) return create ? root.model.names : authorities.get(root.model);
  let a = standaloneAuthorities.get(root);
  if (!a && create) {
    a = new NameAuthority(graphNames(root));
    standaloneAuthorities.set(root, a);
  }
  return a;
}

/** Tells the name authority of `g` (if it has one yet) that `name` is used. */
function claimName(g: Graph | null, name: string | undefined): void {
  if (g && name) authorityOf(g, false)?.claim(name);
}

/** Tells the name authority of `g` about every name in `g` (a graph that joins another graph). */
function claimGraphNames(g: Graph): void {
  const a = authorityOf(g, false);
  if (a) for (const name of graphNames(g)) a.claim(name);
}

/** Every name used in `g` and its subgraphs: values (inputs, outputs, initializers, node outputs) and nodes. */
function* graphNames(g: Graph): Generator<string> {
  for (const sub of g.allGraphs()) {
    for (const v of sub.inputs) yield v.name;
    for (const v of sub.outputs) yield v.name;
    for (const k of sub.initializers.keys()) yield k;
    for (const n of sub.nodes) {
      if (n.name) yield n.name;
      for (const o of n.outputs) yield o.name;
    }
  }
}

function removeUse(v: Value, node: Node, index: number): void {
  const k = v.uses.findIndex((u) => u.node === node && u.index === index);
  if (k >= 0) v.uses.splice(k, 1);
}

export interface TensorAnnotation {
  tensorName?: string;
  quantParameterTensorNames?: Entry[];
  unknownFields?: Uint8Array[];
}

export class Graph {
  name?: string;
  docString?: string;
  metadataProps?: Entry[];
  unknownFields?: Uint8Array[];
  quantizationAnnotation?: TensorAnnotation[];
  /** The node whose attribute holds this graph (null for the main graph and function bodies). */
  parentNode: Node | null = null;
  /** The model this graph belongs to (set for the main graph; subgraphs reach it through parents). */
  model: Model | null = null;

  readonly nodes: Node[] = [];
  inputs: Value[] = [];
  outputs: Value[] = [];
  /** value_info entries, in file order. */
  valueInfo: Value[] = [];
  /** Initializers by name, in file order; the tensor of each is in `initializerTensor()`. */
  readonly initializers: Map<string, Value> = new Map();
  private readonly tensors: Map<Value, Tensor> = new Map();
  sparseInitializers: Array<{ value: Value; tensor: SparseTensor }> = [];
  /** Names read by nodes that nothing defines (found when loading; the checker reports them). */
  danglingValues: Value[] = [];

  constructor(name?: string) {
    if (name !== undefined) this.name = name;
  }

  initializerTensor(v: Value): Tensor | undefined {
    return this.tensors.get(v);
  }

  /**
   * Adds (or replaces) an initializer and returns its value. With `duplicate` a second initializer of
   * the same name gets its own value (only the loader does this, to keep malformed files lossless).
   */
  addInitializer(tensor: Tensor, name = tensor.name, duplicate = false): Value {
    if (name === undefined || (name === '' && !duplicate)) throw internalError('IR_UNNAMED_INITIALIZER', 'an initializer needs a name');
    tensor.name = name;
    let v = this.initializers.get(name);
    if (v && duplicate) {
      v = new Value(name);
      v.graph = this;
      this.duplicateInitializers.push(v);
      this.tensors.set(v, tensor);
      return v;
    }
    if (!v) {
      v = new Value(name);
      v.graph = this;
      this.initializers.set(name, v);
      claimName(this, name);
    }
    this.tensors.set(v, tensor);
    return v;
  }

  /** Initializers whose name repeats an earlier one (malformed input, kept for the checker). */
  duplicateInitializers: Value[] = [];

  /** Makes an existing value (a graph input, in IR < 4 style) an initializer too. */
  attachInitializer(v: Value, tensor: Tensor): void {
    this.initializers.set(v.name, v);
    this.tensors.set(v, tensor);
  }

  /** Replaces the tensor of an existing initializer value. */
  setInitializerTensor(v: Value, tensor: Tensor): void {
    if (this.initializers.get(v.name) !== v) throw internalError('IR_NOT_INITIALIZER', `${v.name} is not an initializer of this graph`);
    tensor.name = v.name;
    this.tensors.set(v, tensor);
  }

  removeInitializer(v: Value): void {
    if (this.initializers.get(v.name) === v) {
      this.initializers.delete(v.name);
      this.tensors.delete(v);
    }
  }

  /** Re-keys the initializer map (and the tensors' names) after values were renamed, keeping its order. */
  rekeyInitializers(): void {
    const entries = [...this.initializers.values()];
    this.initializers.clear();
    for (const v of entries) {
      this.initializers.set(v.name, v);
      const t = this.tensors.get(v);
      if (t) t.name = v.name;
    }
  }

  /** Renames an initializer value (keeps the map consistent). */
  renameValue(v: Value, name: string): void {
    if (this.initializers.get(v.name) === v) {
      const entries = [...this.initializers.entries()].map(([k, x]): [string, Value] => (x === v ? [name, v] : [k, x]));
      this.initializers.clear();
      for (const [k, x] of entries) this.initializers.set(k, x);
      const t = this.tensors.get(v);
      if (t) t.name = name;
    }
    v.name = name;
  }

  addInput(v: Value): Value {
    v.graph = this;
    this.inputs.push(v);
    claimName(this, v.name);
    return v;
  }

  addOutput(v: Value): void {
    this.outputs.push(v);
    v.outputOf.add(this);
    claimName(this, v.name);
  }

  setOutput(i: number, v: Value): void {
    const old = this.outputs[i];
    this.outputs[i] = v;
    if (old && !this.outputs.includes(old)) old.outputOf.delete(this);
    v.outputOf.add(this);
    claimName(this, v.name);
  }

  /** Appends a node (or inserts it at `index`). */
  insertNode(node: Node, index = this.nodes.length): Node {
    if (node.graph && node.graph !== this) throw internalError('IR_NODE_OWNED', `node ${node.label} belongs to another graph`);
    node.graph = this;
    for (const o of node.outputs) o.graph = this;
    for (const g of node.subgraphs()) g.parentNode = node;
    this.nodes.splice(index, 0, node);
    claimName(this, node.name);
    for (const o of node.outputs) claimName(this, o.name);
    for (const g of node.subgraphs()) claimGraphNames(g);
    return node;
  }

  /** Inserts `node` right before `before`. */
  insertBefore(before: Node, node: Node): Node {
    const i = this.nodes.indexOf(before);
    return this.insertNode(node, i < 0 ? this.nodes.length : i);
  }

  insertAfter(after: Node, node: Node): Node {
    const i = this.nodes.indexOf(after);
    return this.insertNode(node, i < 0 ? this.nodes.length : i + 1);
  }

  /**
   * Removes a node. Its outputs must be unused unless `force` (then their uses dangle: callers that
   * force must rewire first). Its input uses are unregistered.
   */
  removeNode(node: Node, force = false): void {
    if (!force) {
      for (const o of node.outputs) {
        if (o.uses.length > 0 || o.isGraphOutput) {
          throw internalError('IR_REMOVE_USED', `cannot remove ${node.label}: its output ${o.name} is still used`);
        }
      }
    }
    const i = this.nodes.indexOf(node);
    if (i >= 0) this.nodes.splice(i, 1);
    node.clearInputs();
    node.graph = null;
  }

  /** Every node here and in nested subgraphs, depth first. */
  allNodes(): Node[] {
    const out: Node[] = [];
    collectNodes(this, out);
    return out;
  }

  /** Every graph: this one and nested subgraphs. */
  allGraphs(): Graph[] {
    const out: Graph[] = [];
    collectGraphs(this, out);
    return out;
  }

  /** Values read in this graph (or nested subgraphs) that are defined in an enclosing scope. */
  capturedValues(): Value[] {
    const out = new Set<Value>();
    for (const n of this.allNodes()) {
      for (const v of n.inputs) if (v && !isInside(v.graph, this)) out.add(v);
    }
    for (const o of this.outputs) if (!isInside(o.graph, this)) out.add(o);
    return [...out];
  }

  /** Finds a value by name visible in this scope (node outputs, inputs, initializers), then outer scopes. */
  findValue(name: string): Value | undefined {
    for (let g: Graph | null = this; g; g = g.parentNode?.graph ?? null) {
      const init = g.initializers.get(name);
      for (const v of g.inputs) if (v.name === name) return v;
      if (init) return init;
      for (const n of g.nodes) for (const o of n.outputs) if (o.name === name) return o;
    }
    return undefined;
  }

  /**
   * The name authority for new names in this graph: its model's (`model.names`), or for a graph that
   * belongs to no model yet, one of its own built from the graph (its names join the model's when the
   * graph is attached).
   */
  get names(): NameAuthority {
    return authorityOf(this, true)!;
  }

  /** The model this graph belongs to, following parents. */
  owningModel(): Model | null {
    let g: Graph | null = this;
    while (g) {
      if (g.model) return g.model;
      g = g.parentNode?.graph ?? null;
    }
    return null;
  }

  /**
   * Sorts nodes topologically (stable: keeps the current order where it is valid, so a sorted graph
   * is left exactly as it is). Subgraph captures count as dependencies. Throws naming the nodes of a
   * cycle (the graph is then untouched). Returns how many nodes moved: the fewest nodes that, taken
   * out and put back elsewhere, turn the old order into the new one.
   */
  toposort(): number {
    if (inTopologicalOrder(this)) return 0;
    const order = topologicalOrder(this);
    const moved = movedCount(this.nodes, order);
    if (moved > 0) {
      this.nodes.length = 0;
      this.nodes.push(...order);
    }
    return moved;
  }
}

/**
 * Nodes that change place between two orders of the same nodes: all but a longest run that keeps its
 * relative order (a longest increasing subsequence of old positions, O(n log n)).
 */
function movedCount(before: readonly Node[], after: readonly Node[]): number {
  const pos = new Map<Node, number>(before.map((n, i) => [n, i]));
  const tails: number[] = [];
  for (const n of after) {
    const p = pos.get(n)!;
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (tails[mid]! < p) lo = mid + 1;
      else hi = mid;
    }
    tails[lo] = p;
  }
  return after.length - tails.length;
}

/**
 * True when every node of `g` reads only values produced by earlier nodes of `g` (or outside it, or by
 * subgraphs of earlier nodes): the order {@link topologicalOrder} keeps as it is.
 */
export function inTopologicalOrder(g: Graph): boolean {
  const seen = new Set<Node>();
  for (const n of g.nodes) {
    if (seen.has(n)) return false;
    const reads = n.attributes.some((a) => a.g || a.graphs?.length) ? [...n.inputs, ...n.implicitInputs()] : n.inputs;
    for (const v of reads) {
      let p = v?.producer;
      while (p && p.graph !== g && p.graph?.parentNode) p = p.graph.parentNode;
      if (p && p.graph === g && !seen.has(p)) return false;
    }
    seen.add(n);
  }
  return true;
}

/** Returns the nodes of `g` in a topological order (stable) or throws IR_CYCLE naming the nodes. */
export function topologicalOrder(g: Graph): Node[] {
  // a graph in order (the common case: loaded files are sorted, rewrites keep it) is its own order;
  // Kahn's algorithm below, which keeps the original order where it can, would return the same
  if (inTopologicalOrder(g)) return [...g.nodes];
  const nodes = g.nodes;
  const index = new Map<Node, number>();
  nodes.forEach((n, i) => index.set(n, i));
  const indeg = new Array<number>(nodes.length).fill(0);
  const succ: number[][] = nodes.map(() => []);
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i]!;
    const deps = new Set<number>();
    for (const v of [...n.inputs, ...n.implicitInputs()]) {
      if (!v) continue;
      let p = v.producer;
      // a captured value produced inside another node's subgraph is impossible; walk up to this graph
      while (p && p.graph !== g && p.graph?.parentNode) p = p.graph.parentNode;
      if (p && p.graph === g) {
        const j = index.get(p);
        if (j !== undefined && j !== i && !deps.has(j)) {
          deps.add(j);
          succ[j]!.push(i);
          indeg[i]!++;
        } else if (j === i) {
          throw inputError('IR_CYCLE', `node ${n.label} reads its own output`, { node: n.name });
        }
      }
    }
  }
  // Kahn with a min-heap on the original index keeps the order stable.
  const heap: number[] = [];
  const push = (x: number) => {
    heap.push(x);
    let i = heap.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (heap[p]! <= heap[i]!) break;
      [heap[p], heap[i]] = [heap[i]!, heap[p]!];
      i = p;
    }
  };
  const pop = (): number => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && heap[l]! < heap[m]!) m = l;
        if (r < heap.length && heap[r]! < heap[m]!) m = r;
        if (m === i) break;
        [heap[m], heap[i]] = [heap[i]!, heap[m]!];
        i = m;
      }
    }
    return top;
  };
  for (let i = 0; i < nodes.length; i++) if (indeg[i] === 0) push(i);
  const out: Node[] = [];
  while (heap.length) {
    const i = pop();
    out.push(nodes[i]!);
    for (const j of succ[i]!) if (--indeg[j]! === 0) push(j);
  }
  if (out.length !== nodes.length) {
    const cycle = findCycle(nodes, succ, indeg).map((i) => nodes[i]!);
    const names = cycle.map((n) => n.label);
    const shown = names.length > 8 ? [...names.slice(0, 7), `... (${names.length - 7} more)`] : names;
    throw inputError('IR_CYCLE', `graph ${g.name || '(main)'} has a cycle: ${[...shown, names[0]].join(' -> ')}`, { node: cycle[0]!.name ?? names[0], cycle: names });
  }
  return out;
}

/**
 * One cycle among the nodes Kahn's algorithm could not emit (indegree still > 0), in dependency
 * order. Every such node has a predecessor that is also stuck, so walking predecessors from any of
 * them must come back to a node already visited: the walk from that node on is the cycle.
 */
function findCycle(nodes: readonly Node[], succ: number[][], indeg: number[]): number[] {
  const pred: number[] = new Array<number>(nodes.length).fill(-1);
  for (let i = 0; i < nodes.length; i++) {
    if (indeg[i]! <= 0) continue;
    for (const j of succ[i]!) if (indeg[j]! > 0 && pred[j] === -1) pred[j] = i;
  }
  const start = indeg.findIndex((d) => d > 0);
  const seenAt = new Map<number, number>();
  const walk: number[] = [];
  let cur = start;
  while (!seenAt.has(cur) && cur >= 0) {
    seenAt.set(cur, walk.length);
    walk.push(cur);
    cur = pred[cur]!;
  }
  if (cur < 0) return [start];
  // walk follows predecessors: reverse it so the cycle reads producer -> consumer
  return walk.slice(seenAt.get(cur)!).reverse();
}

export interface TrainingInfo {
  initialization?: Graph;
  algorithm?: Graph;
  initializationBinding?: Entry[];
  updateBinding?: Entry[];
  unknownFields?: Uint8Array[];
}

/** A model-local function (FunctionProto). Its body is a Graph whose inputs/outputs are untyped. */
export class OnnxFunction {
  name?: string;
  domain?: string;
  overload?: string;
  docString?: string;
  /** Attribute names the function takes (FunctionProto.attribute). */
  attributeNames: string[] = [];
  /** Attributes with defaults (FunctionProto.attribute_proto). */
  attributeProtos: Attribute[] = [];
  opsetImports: OpsetImport[] = [];
  metadataProps?: Entry[];
  unknownFields?: Uint8Array[];
  body: Graph = new Graph();
}

export class Model {
  irVersion?: Int64;
  opsetImports: OpsetImport[] = [];
  producerName?: string;
  producerVersion?: string;
  domain?: string;
  modelVersion?: Int64;
  docString?: string;
  metadataProps?: Entry[];
  trainingInfo: TrainingInfo[] = [];
  functions: OnnxFunction[] = [];
  configuration?: OpaqueProto[];
  unknownFields?: Uint8Array[];
  /** The ModelProto had no graph field. */
  graphUnset?: boolean;
  /** Where the model was loaded from (used to resolve external data and in messages). */
  sourcePath?: string;
  private _graph!: Graph;

  constructor(graph: Graph = new Graph()) {
    this.graph = graph;
  }

  get graph(): Graph {
    return this._graph;
  }
  /** A new main graph belongs to this model; the name authority is rebuilt on its next use. */
  set graph(g: Graph) {
    this._graph = g;
    g.model = this;
    authorities.delete(this);
    standaloneAuthorities.delete(g);
  }

  /**
   * The model's name authority (ir/names.ts): every new value or node name comes from here. Built by
   * one scan of every graph (subgraphs, training graphs, function bodies) on first use, then kept up
   * to date by the IR as names appear.
   */
  get names(): NameAuthority {
    let a = authorities.get(this);
    if (!a) {
      a = new NameAuthority(modelNames(this));
      authorities.set(this, a);
    }
    return a;
  }

  /**
   * The opset version imported for a domain ('' and 'ai.onnx' are the same), or undefined. A domain
   * listed more than once gets its last entry, the one onnxruntime uses.
   */
  opset(domain = ''): number | undefined {
    const want = domain === 'ai.onnx' ? '' : domain;
    let found: number | undefined;
    for (const o of this.opsetImports) {
      const d = o.domain === 'ai.onnx' ? '' : (o.domain ?? '');
      if (d === want) found = o.version === undefined ? undefined : Number(o.version);
    }
    return found;
  }

  /** Sets the version of a domain (every entry of it, when it is listed more than once). */
  setOpset(domain: string, version: number): void {
    const want = domain === 'ai.onnx' ? '' : domain;
    const entries = this.opsetImports.filter((x) => (x.domain === 'ai.onnx' ? '' : (x.domain ?? '')) === want);
    for (const o of entries) o.version = version;
    if (entries.length === 0) this.opsetImports.push({ domain, version });
  }

  metadata(key: string): string | undefined {
    return this.metadataProps?.find((e) => e.key === key)?.value;
  }

  setMetadata(key: string, value: string): void {
    this.metadataProps ??= [];
    const e = this.metadataProps.find((x) => x.key === key);
    if (e) e.value = value;
    else this.metadataProps.push({ key, value });
  }
}

/** Name authorities by model (kept beside the model, so a Model's own fields stay its ONNX fields). */
const authorities = new WeakMap<Model, NameAuthority>();
const standaloneAuthorities = new WeakMap<Graph, NameAuthority>();

function* modelNames(m: Model): Generator<string> {
  yield* graphNames(m.graph);
  for (const t of m.trainingInfo) {
    if (t.initialization) yield* graphNames(t.initialization);
    if (t.algorithm) yield* graphNames(t.algorithm);
  }
  for (const f of m.functions) yield* graphNames(f.body);
}

// ---------------------------------------------------------------------------------------------
// Constants: initializers and Constant nodes through one accessor

/**
 * The constant value of `v`, if it has one: a non-overridable initializer (one that is not also a
 * graph input) of its scope, or the output of a `Constant` node (value, value_float(s), value_int(s),
 * value_string(s)). Sparse constants are not densified here.
 */
export function constantOf(v: Value | null | undefined): Tensor | undefined {
  if (!v) return undefined;
  const g = v.graph;
  if (!v.producer) {
    if (!g) return undefined;
    const t = g.initializerTensor(v);
    if (!t) return undefined;
    if (g.inputs.includes(v)) return undefined; // an initializer that is also an input can be overridden
    return t;
  }
  const n = v.producer;
  if (n.opType !== 'Constant' || n.opDomain !== '' || n.outputs.length !== 1) return undefined;
  const a = n.attributes[0];
  if (!a || n.attributes.length !== 1) return undefined;
  switch (a.name) {
    case 'value':
      return a.t;
    case 'value_float':
      return a.f === undefined ? undefined : Tensor.from(DataType.FLOAT, [], Float32Array.of(a.f));
    case 'value_floats':
      return a.floats ? Tensor.from(DataType.FLOAT, [a.floats.length], Float32Array.from(a.floats)) : undefined;
    case 'value_int':
      return a.i === undefined ? undefined : Tensor.from(DataType.INT64, [], BigInt64Array.of(BigInt(a.i)));
    case 'value_ints':
      return a.ints ? Tensor.from(DataType.INT64, [a.ints.length], BigInt64Array.from(a.ints.map((x) => BigInt(x)))) : undefined;
    case 'value_string':
      return a.s ? Tensor.from(DataType.STRING, [], [new TextDecoder().decode(a.s)]) : undefined;
    case 'value_strings':
      return a.strings ? Tensor.from(DataType.STRING, [a.strings.length], a.strings.map((b) => new TextDecoder().decode(b))) : undefined;
  }
  return undefined;
}

/** True when `v` has a constant value (see {@link constantOf}). */
export function isConstant(v: Value | null | undefined): boolean {
  return constantOf(v) !== undefined;
}

/*
 * Graph walks into arrays, with index loops: passes and checks walk every graph many times per
 * pipeline, and generators (one iterator result per node, one array iterator per node's attributes)
 * made ~3 MB of garbage per int4 pass on the trained LM.
 */
function collectNodes(g: Graph, out: Node[]): void {
  const nodes = g.nodes;
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i]!;
    out.push(n);
    // the attributes' subgraphs in order (n.subgraphs() without its arrays)
    const attrs = n.attributes;
    for (let j = 0; j < attrs.length; j++) {
      const a = attrs[j]!;
      if (a.g) collectNodes(a.g, out);
      if (a.graphs) for (let k = 0; k < a.graphs.length; k++) collectNodes(a.graphs[k]!, out);
    }
  }
}

function collectGraphs(g: Graph, out: Graph[]): void {
  out.push(g);
  const nodes = g.nodes;
  for (let i = 0; i < nodes.length; i++) {
    const attrs = nodes[i]!.attributes;
    for (let j = 0; j < attrs.length; j++) {
      const a = attrs[j]!;
      if (a.g) collectGraphs(a.g, out);
      if (a.graphs) for (let k = 0; k < a.graphs.length; k++) collectGraphs(a.graphs[k]!, out);
    }
  }
}
