/**
 * Conversion between decoded protobuf objects (`wire.ts`) and the IR (`graph/ir.ts`). This file and
 * `wire.ts` are the only places that know the protobuf field names; nothing outside `graph/onnx/`
 * sees a protobuf object.
 *
 * Names are resolved lexically: a subgraph sees its own inputs, initializers and node outputs first,
 * then the enclosing scopes (captured values). A name that nothing defines becomes a dangling Value
 * (no producer) that the checker reports; loading never fails on graph-level problems, only on bytes
 * that are not a protobuf model.
 */
import { bytesEqual } from '../core/bytes.js';
import { inputError } from '../core/errors.js';
import {
  Attribute,
  Dim,
  Entry,
  Graph,
  Int64,
  Model,
  Node,
  OnnxFunction,
  OpsetImport,
  ShapeInfo,
  SparseTensor,
  TensorAnnotation,
  TrainingInfo,
  TypeInfo,
  Value,
} from '../ir/ir.js';
import { ExternalDataSource, Tensor } from '../core/tensor.js';
import { parseExternalData } from './external-entries.js';
import { encode, ProtoObject } from './wire.js';

type P = ProtoObject;

export interface FromProtoContext {
  /** Reads external data; absent when the model came from bytes with no folder. */
  source?: ExternalDataSource;
  /** Label for messages (the file name). */
  file?: string;
  /**
   * Told about each departure from the ONNX rules that onnxruntime tolerates and the decoder took the
   * way onnxruntime does (see `normalize.ts`); absent: taken silently.
   */
  warn?: (w: LoadWarning) => void;
}

/** Something in the file that onnxruntime tolerates, and what loading it did. */
export interface LoadWarning {
  /** Stable code, e.g. LOAD_NODES_SORTED. */
  code: string;
  message: string;
  file?: string;
  /** How many things it concerns (nodes moved, entries dropped, ...). */
  count: number;
}

class Scope {
  readonly names = new Map<string, Value>();
  readonly dangling = new Map<string, Value>();
  constructor(readonly graph: Graph, readonly parent: Scope | null) {}

  lookup(name: string): Value | undefined {
    for (let s: Scope | null = this; s; s = s.parent) {
      const v = s.names.get(name);
      if (v) return v;
    }
    return undefined;
  }

  /** Resolves a name read by a node; creates a dangling value when nothing defines it. */
  resolve(name: string): Value {
    const v = this.lookup(name);
    if (v) return v;
    let d = this.dangling.get(name);
    if (!d) {
      d = new Value(name);
      d.graph = this.graph;
      this.dangling.set(name, d);
    }
    return d;
  }
}

// --------------------------------------------------------------------------------------------
// proto -> IR

function unknown<T extends { unknownFields?: Uint8Array[] }>(target: T, o: P): T {
  if (o.$unknown) target.unknownFields = o.$unknown;
  return target;
}

function entries(list: unknown): Entry[] | undefined {
  if (!list) return undefined;
  return (list as P[]).map((e) => {
    const out: Entry = {};
    if (e.key !== undefined) out.key = e.key as string;
    if (e.value !== undefined) out.value = e.value as string;
    return unknown(out, e);
  });
}

function shapeFrom(o: P): ShapeInfo {
  const dims: Dim[] = ((o.dim as P[] | undefined) ?? []).map((d) => {
    const out: Dim = {};
    if (d.dim_value !== undefined) out.value = d.dim_value as Int64;
    if (d.dim_param !== undefined) out.param = d.dim_param as string;
    if (d.denotation !== undefined) out.denotation = d.denotation as string;
    return unknown(out, d);
  });
  const shape: ShapeInfo = { dims };
  return unknown(shape, o);
}

export function typeFrom(o: P): TypeInfo {
  const t: TypeInfo = {};
  const tensorLike = (x: P) => {
    const r: { elemType?: number; shape?: ShapeInfo; unknownFields?: Uint8Array[] } = {};
    if (x.elem_type !== undefined) r.elemType = x.elem_type as number;
    if (x.shape !== undefined) r.shape = shapeFrom(x.shape as P);
    return unknown(r, x);
  };
  if (o.tensor_type) t.tensor = tensorLike(o.tensor_type as P);
  if (o.sparse_tensor_type) t.sparseTensor = tensorLike(o.sparse_tensor_type as P);
  if (o.sequence_type) {
    const s = o.sequence_type as P;
    const seq: NonNullable<TypeInfo['sequence']> = s.elem_type ? { elemType: typeFrom(s.elem_type as P) } : {};
    t.sequence = unknown(seq, s);
  }
  if (o.optional_type) {
    const s = o.optional_type as P;
    const opt: NonNullable<TypeInfo['optional']> = s.elem_type ? { elemType: typeFrom(s.elem_type as P) } : {};
    t.optional = unknown(opt, s);
  }
  if (o.map_type) {
    const s = o.map_type as P;
    const m: NonNullable<TypeInfo['map']> = {};
    if (s.key_type !== undefined) m.keyType = s.key_type as number;
    if (s.value_type) m.valueType = typeFrom(s.value_type as P);
    t.map = unknown(m, s);
  }
  if (o.denotation !== undefined) t.denotation = o.denotation as string;
  return unknown(t, o);
}

export function tensorFrom(o: P, ctx: FromProtoContext): Tensor {
  const dims = ((o.dims as Int64[] | undefined) ?? []).map((d) => Number(d));
  const t = new Tensor((o.data_type as number | undefined) ?? 0, dims);
  if (o.data_type === undefined) t.dataTypeUnset = true;
  if (o.name !== undefined) t.name = o.name as string;
  if (o.doc_string !== undefined) t.docString = o.doc_string as string;
  if (o.segment) {
    const s = o.segment as P;
    const seg: NonNullable<Tensor['segment']> = {};
    if (s.begin !== undefined) seg.begin = s.begin as Int64;
    if (s.end !== undefined) seg.end = s.end as Int64;
    t.segment = unknown(seg, s);
  }
  if (o.raw_data !== undefined) t.raw = o.raw_data as Uint8Array;
  for (const f of ['float_data', 'int32_data', 'int64_data', 'double_data', 'uint64_data', 'string_data'] as const) {
    if (o[f] !== undefined) (t.fields ??= {})[f] = o[f] as never;
  }
  if (o.data_location !== undefined) t.dataLocation = o.data_location as number;
  if (o.external_data !== undefined) {
    const list = entries(o.external_data)!;
    t.external = parseExternalData(list, t, ctx.file);
    if (ctx.source) t.external.source = ctx.source;
  }
  const md = entries(o.metadata_props);
  if (md) t.metadataProps = md;
  if (o.$alt) t.altEncoding = o.$alt;
  return unknown(t, o);
}

function sparseFrom(o: P, ctx: FromProtoContext): SparseTensor {
  const s: SparseTensor = {};
  if (o.values) s.values = tensorFrom(o.values as P, ctx);
  if (o.indices) s.indices = tensorFrom(o.indices as P, ctx);
  if (o.dims !== undefined) s.dims = o.dims as Int64[];
  if (o.$alt) s.altEncoding = o.$alt;
  return unknown(s, o);
}

function attributeFrom(o: P, scope: Scope, ctx: FromProtoContext, owner: Node): Attribute {
  const a = new Attribute();
  if (o.name !== undefined) a.name = o.name as string;
  if (o.ref_attr_name !== undefined) a.refAttrName = o.ref_attr_name as string;
  if (o.doc_string !== undefined) a.docString = o.doc_string as string;
  if (o.type !== undefined) a.type = o.type as number;
  if (o.f !== undefined) a.f = o.f as number;
  if (o.i !== undefined) a.i = o.i as Int64;
  if (o.s !== undefined) a.s = o.s as Uint8Array;
  if (o.t !== undefined) a.t = tensorFrom(o.t as P, ctx);
  if (o.g !== undefined) a.g = graphFrom(o.g as P, new Scope(new Graph(), scope), ctx, owner);
  if (o.sparse_tensor !== undefined) a.sparseTensor = sparseFrom(o.sparse_tensor as P, ctx);
  if (o.tp !== undefined) a.tp = typeFrom(o.tp as P);
  if (o.floats !== undefined) a.floats = o.floats as number[];
  if (o.ints !== undefined) a.ints = o.ints as Int64[];
  if (o.strings !== undefined) a.strings = o.strings as Uint8Array[];
  if (o.tensors !== undefined) a.tensors = (o.tensors as P[]).map((x) => tensorFrom(x, ctx));
  if (o.graphs !== undefined) a.graphs = (o.graphs as P[]).map((x) => graphFrom(x, new Scope(new Graph(), scope), ctx, owner));
  if (o.sparse_tensors !== undefined) a.sparseTensors = (o.sparse_tensors as P[]).map((x) => sparseFrom(x, ctx));
  if (o.type_protos !== undefined) a.typeProtos = (o.type_protos as P[]).map((x) => typeFrom(x));
  if (o.$alt) a.altEncoding = o.$alt;
  return unknown(a, o);
}

function applyValueInfo(v: Value, o: P): void {
  if (o.type !== undefined) v.type = typeFrom(o.type as P);
  if (o.doc_string !== undefined) v.docString = o.doc_string as string;
  const md = entries(o.metadata_props);
  if (md) v.metadataProps = md;
  if (o.$unknown) v.unknownFields = o.$unknown;
}

/** Decodes a graph into `scope.graph`. `parentNode` is the node holding it as an attribute. */
function graphFrom(o: P, scope: Scope, ctx: FromProtoContext, parentNode: Node | null): Graph {
  const g = scope.graph;
  g.parentNode = parentNode;
  if (o.name !== undefined) g.name = o.name as string;
  if (o.doc_string !== undefined) g.docString = o.doc_string as string;
  const md = entries(o.metadata_props);
  if (md) g.metadataProps = md;
  if (o.$unknown) g.unknownFields = o.$unknown;

  // A value has one description (a ValueInfoProto): a graph output that is also an input, or listed
  // twice, keeps the first one (onnxruntime accepts both; a differing second one cannot be kept)
  const described = new Map<Value, P>();
  for (const vi of (o.input as P[] | undefined) ?? []) {
    const v = new Value((vi.name as string | undefined) ?? '');
    if (vi.name === undefined) v.nameUnset = true;
    applyValueInfo(v, vi);
    g.addInput(v);
    described.set(v, vi);
    if (!scope.names.has(v.name)) scope.names.set(v.name, v);
  }
  const repeated = new Map<string, number>();
  for (const to of (o.initializer as P[] | undefined) ?? []) {
    const t = tensorFrom(to, ctx);
    const name = t.name ?? '';
    const asInput = scope.names.get(name);
    const prev = g.initializers.get(name);
    if (asInput && asInput.graph === g && !prev) {
      g.attachInitializer(asInput, t);
    } else if (prev && g.model && sameTypeAndDims(g.initializerTensor(prev)!, t)) {
      // onnxruntime takes a repeated initializer of the main graph (same type and shape) and uses the
      // last one; anywhere else, or with another type or shape, it refuses the model (so does the checker)
      g.setInitializerTensor(prev, t);
      repeated.set(name, (repeated.get(name) ?? 1) + 1);
    } else {
      const v = g.addInitializer(t, name, true);
      if (!scope.names.has(name)) scope.names.set(name, v);
    }
  }
  if (repeated.size && ctx.warn) {
    const list = [...repeated].map(([n, k]) => `"${n}" (${k} times)`);
    const dropped = [...repeated.values()].reduce((a, k) => a + k - 1, 0);
    ctx.warn({
      code: 'LOAD_REPEATED_INITIALIZER',
      message: `initializer${list.length > 1 ? 's' : ''} ${list.slice(0, 5).join(', ')}${list.length > 5 ? ` and ${list.length - 5} more` : ''} listed more than once with the same type and shape: the last of each is used, as onnxruntime does; ${dropped} earlier cop${dropped > 1 ? 'ies were' : 'y was'} dropped`,
      count: dropped,
    });
  }
  for (const so of (o.sparse_initializer as P[] | undefined) ?? []) {
    const sp = sparseFrom(so, ctx);
    const name = sp.values?.name ?? '';
    const v = scope.names.get(name) ?? new Value(name);
    v.graph = g;
    if (!scope.names.has(name)) scope.names.set(name, v);
    g.sparseInitializers.push({ value: v, tensor: sp });
  }
  // Pass 1: nodes and their outputs, so forward references and subgraph captures resolve.
  const nodeProtos = (o.node as P[] | undefined) ?? [];
  const nodes: Node[] = [];
  for (const no of nodeProtos) {
    const n = new Node((no.op_type as string | undefined) ?? '');
    if (no.op_type === undefined) n.opTypeUnset = true;
    if (no.domain !== undefined) n.domain = no.domain as string;
    if (no.name !== undefined) n.name = no.name as string;
    if (no.overload !== undefined) n.overload = no.overload as string;
    if (no.doc_string !== undefined) n.docString = no.doc_string as string;
    const nmd = entries(no.metadata_props);
    if (nmd) n.metadataProps = nmd;
    if (no.device_configurations !== undefined) n.deviceConfigurations = no.device_configurations as P[];
    if (no.$unknown) n.unknownFields = no.$unknown;
    g.insertNode(n);
    if (isConstantNode(n, no)) constantNodes.add(n);
    for (const name of (no.output as string[] | undefined) ?? []) {
      const v = new Value(name);
      n.appendOutput(v);
      if (name !== '' && !scope.names.has(name)) scope.names.set(name, v);
      else if (name !== '' && shadows(g, n, no, scope.names.get(name)!)) scope.names.set(name, v);
    }
    nodes.push(n);
  }
  if (shadowed.get(g) && ctx.warn) {
    const names = shadowed.get(g)!;
    ctx.warn({
      code: 'LOAD_CONSTANT_SHADOWS',
      message: `${names.length} name${names.length > 1 ? 's are' : ' is'} defined by a Constant node and also by an initializer, a graph input or an earlier Constant (${names.slice(0, 5).map((x) => `"${x}"`).join(', ')}${names.length > 5 ? ', ...' : ''}): the Constant is used, as onnxruntime does, and the other definition is dropped`,
      count: names.length,
    });
  }
  // Pass 2: inputs and attributes (subgraphs see every name of this scope).
  for (let i = 0; i < nodes.length; i++) {
    const no = nodeProtos[i]!;
    const n = nodes[i]!;
    for (const name of (no.input as string[] | undefined) ?? []) n.appendInput(name === '' ? null : scope.resolve(name));
    for (const ao of (no.attribute as P[] | undefined) ?? []) n.attributes.push(attributeFrom(ao, scope, ctx, n));
  }
  let redescribed = 0;
  for (const vi of (o.output as P[] | undefined) ?? []) {
    const name = (vi.name as string | undefined) ?? '';
    const v = scope.resolve(name);
    const first = described.get(v);
    if (first === undefined) {
      applyValueInfo(v, vi);
      if (vi.name === undefined) v.nameUnset = true;
      described.set(v, vi);
    } else if (!sameMessage(first, vi, 'ValueInfoProto')) redescribed++;
    g.addOutput(v);
  }
  if (redescribed && ctx.warn) {
    ctx.warn({
      code: 'LOAD_OUTPUT_REDESCRIBED',
      message: `${redescribed} graph output${redescribed > 1 ? 's are' : ' is'} also a graph input or an earlier output, with a different type or description: the first description is kept`,
      count: redescribed,
    });
  }
  for (const vi of (o.value_info as P[] | undefined) ?? []) {
    const name = (vi.name as string | undefined) ?? '';
    let v = scope.lookup(name);
    // value_info describes intermediate values: an entry for a graph input or output (which onnxruntime
    // ignores), for a name nothing defines, or repeating an entry gets a value of its own, so loading
    // and saving keeps every entry as it was
    if (!v || described.has(v) || g.valueInfo.includes(v)) {
      v = new Value(name);
      v.graph = g;
    }
    applyValueInfo(v, vi);
    g.valueInfo.push(v);
  }
  if (o.quantization_annotation !== undefined) {
    g.quantizationAnnotation = (o.quantization_annotation as P[]).map((qa) => {
      const a: TensorAnnotation = {};
      if (qa.tensor_name !== undefined) a.tensorName = qa.tensor_name as string;
      const q = entries(qa.quant_parameter_tensor_names);
      if (q) a.quantParameterTensorNames = q;
      return unknown(a, qa);
    });
  }
  g.danglingValues = [...scope.dangling.values()];
  return g;
}

/** Names of each main graph that a Constant node took over from another definition. */
const shadowed = new WeakMap<Graph, string[]>();
/** Nodes decoded as plain Constant nodes (no inputs, one output; their inputs are set later). */
const constantNodes = new WeakSet<Node>();

function isConstantNode(n: Node, no: P): boolean {
  return n.opType === 'Constant' && n.opDomain === '' && ((no.input as string[] | undefined) ?? []).length === 0 && ((no.output as string[] | undefined) ?? []).length === 1;
}

/**
 * onnxruntime folds the Constant nodes of the main graph into its initializers, keeping the last
 * definition of a name: a Constant named like an initializer, a graph input or an earlier Constant
 * replaces it (and a graph input so replaced is no longer an input). When `n` is such a Constant and
 * `prev` such a definition, drops `prev` and returns true; anything else is a name defined twice,
 * which the checker refuses as onnxruntime does.
 */
function shadows(g: Graph, n: Node, no: P, prev: Value): boolean {
  if (!g.model || !isConstantNode(n, no) || prev.graph !== g) return false;
  const init = g.initializers.get(prev.name) === prev;
  const input = g.inputs.includes(prev);
  const earlier = prev.producer !== null && prev.producer !== n && constantNodes.has(prev.producer);
  if (!init && !input && !earlier) return false;
  if (init) g.removeInitializer(prev);
  if (input) g.inputs = g.inputs.filter((v) => v !== prev);
  if (earlier) g.removeNode(prev.producer!);
  shadowed.set(g, [...(shadowed.get(g) ?? []), prev.name]);
  return true;
}

function sameTypeAndDims(a: Tensor, b: Tensor): boolean {
  return a.dataType === b.dataType && a.dims.length === b.dims.length && a.dims.every((d, i) => d === b.dims[i]);
}

function sameMessage(a: P, b: P, type: string): boolean {
  if (a === b) return true;
  return bytesEqual(encode(a, type), encode(b, type));
}

function opsetsFrom(list: unknown): OpsetImport[] {
  return ((list as P[] | undefined) ?? []).map((x) => {
    const o: OpsetImport = {};
    if (x.domain !== undefined) o.domain = x.domain as string;
    if (x.version !== undefined) o.version = x.version as Int64;
    return unknown(o, x);
  });
}

function functionFrom(o: P, ctx: FromProtoContext): OnnxFunction {
  const f = new OnnxFunction();
  if (o.name !== undefined) f.name = o.name as string;
  if (o.domain !== undefined) f.domain = o.domain as string;
  if (o.overload !== undefined) f.overload = o.overload as string;
  if (o.doc_string !== undefined) f.docString = o.doc_string as string;
  f.attributeNames = (o.attribute as string[] | undefined) ?? [];
  f.opsetImports = opsetsFrom(o.opset_import);
  const md = entries(o.metadata_props);
  if (md) f.metadataProps = md;
  if (o.$unknown) f.unknownFields = o.$unknown;
  // The body is decoded as a graph whose inputs are the function's formal inputs.
  const body: P = {
    input: ((o.input as string[] | undefined) ?? []).map((name) => ({ name })),
    output: ((o.output as string[] | undefined) ?? []).map((name) => ({ name })),
    node: o.node,
    value_info: o.value_info,
  };
  const scope = new Scope(new Graph(), null);
  f.body = graphFrom(body, scope, ctx, null);
  // attribute_proto may reference nothing graph-like in practice, but decode it with the body scope
  const holder = new Node('__function__');
  f.attributeProtos = ((o.attribute_proto as P[] | undefined) ?? []).map((a) => attributeFrom(a, scope, ctx, holder));
  return f;
}

/** Builds the IR of a decoded ModelProto. */
export function modelFromProto(o: P, ctx: FromProtoContext = {}): Model {
  if (o.graph === undefined && o.ir_version === undefined && o.opset_import === undefined) {
    throw inputError('ONNX_NOT_A_MODEL', `${ctx.file ?? 'input'} is not an ONNX model (no graph, ir_version or opset_import)`, { file: ctx.file });
  }
  const mainScope = new Scope(new Graph(), null);
  const model = new Model(mainScope.graph);
  if (o.ir_version !== undefined) model.irVersion = o.ir_version as Int64;
  model.opsetImports = opsetsFrom(o.opset_import);
  if (o.producer_name !== undefined) model.producerName = o.producer_name as string;
  if (o.producer_version !== undefined) model.producerVersion = o.producer_version as string;
  if (o.domain !== undefined) model.domain = o.domain as string;
  if (o.model_version !== undefined) model.modelVersion = o.model_version as Int64;
  if (o.doc_string !== undefined) model.docString = o.doc_string as string;
  if (o.graph !== undefined) graphFrom(o.graph as P, mainScope, ctx, null);
  else model.graphUnset = true;
  const md = entries(o.metadata_props);
  if (md) model.metadataProps = md;
  model.trainingInfo = ((o.training_info as P[] | undefined) ?? []).map((ti) => {
    const t: TrainingInfo = {};
    if (ti.initialization) t.initialization = graphFrom(ti.initialization as P, new Scope(new Graph(), mainScope), ctx, null);
    if (ti.algorithm) t.algorithm = graphFrom(ti.algorithm as P, new Scope(new Graph(), mainScope), ctx, null);
    const ib = entries(ti.initialization_binding);
    if (ib) t.initializationBinding = ib;
    const ub = entries(ti.update_binding);
    if (ub) t.updateBinding = ub;
    return unknown(t, ti);
  });
  model.functions = ((o.functions as P[] | undefined) ?? []).map((f) => functionFrom(f, ctx));
  if (o.configuration !== undefined) model.configuration = o.configuration as P[];
  if (o.$unknown) model.unknownFields = o.$unknown;
  return model;
}

// --------------------------------------------------------------------------------------------
// IR -> proto

function withUnknown(o: P, x: { unknownFields?: Uint8Array[] }): P {
  if (x.unknownFields) o.$unknown = x.unknownFields;
  return o;
}

function entriesTo(list: Entry[] | undefined): P[] | undefined {
  if (!list) return undefined;
  return list.map((e) => {
    const o: P = {};
    if (e.key !== undefined) o.key = e.key;
    if (e.value !== undefined) o.value = e.value;
    return withUnknown(o, e);
  });
}

function set(o: P, key: string, v: unknown): void {
  if (v !== undefined) o[key] = v;
}

function shapeTo(s: ShapeInfo): P {
  return withUnknown(
    {
      dim: s.dims.map((d) => {
        const o: P = {};
        set(o, 'dim_value', d.value);
        set(o, 'dim_param', d.param);
        set(o, 'denotation', d.denotation);
        return withUnknown(o, d);
      }),
    },
    s,
  );
}

export function typeTo(t: TypeInfo): P {
  const o: P = {};
  const tensorLike = (x: { elemType?: number; shape?: ShapeInfo; unknownFields?: Uint8Array[] }): P => {
    const r: P = {};
    set(r, 'elem_type', x.elemType);
    if (x.shape) r.shape = shapeTo(x.shape);
    return withUnknown(r, x);
  };
  if (t.tensor) o.tensor_type = tensorLike(t.tensor);
  if (t.sequence) o.sequence_type = withUnknown(t.sequence.elemType ? { elem_type: typeTo(t.sequence.elemType) } : {}, t.sequence);
  if (t.map) {
    const m: P = {};
    set(m, 'key_type', t.map.keyType);
    if (t.map.valueType) m.value_type = typeTo(t.map.valueType);
    o.map_type = withUnknown(m, t.map);
  }
  if (t.sparseTensor) o.sparse_tensor_type = tensorLike(t.sparseTensor);
  if (t.optional) o.optional_type = withUnknown(t.optional.elemType ? { elem_type: typeTo(t.optional.elemType) } : {}, t.optional);
  set(o, 'denotation', t.denotation);
  return withUnknown(o, t);
}

export interface ToProtoOptions {
  /** Called for each tensor to decide how its data is stored (external data writer hooks in here). */
  tensorData?: (t: Tensor) => P | undefined;
}

export function tensorTo(t: Tensor, opts: ToProtoOptions = {}): P {
  const o: P = {};
  o.dims = t.dims;
  if (!t.dataTypeUnset || t.dataType !== 0) o.data_type = t.dataType;
  if (t.segment) {
    const s: P = {};
    set(s, 'begin', t.segment.begin);
    set(s, 'end', t.segment.end);
    o.segment = withUnknown(s, t.segment);
  }
  set(o, 'name', t.name);
  set(o, 'doc_string', t.docString);
  const override = opts.tensorData?.(t);
  if (override) Object.assign(o, override);
  else {
    if (t.fields) for (const [k, v] of Object.entries(t.fields)) o[k] = v;
    set(o, 'raw_data', t.raw);
    if (t.external) o.external_data = entriesTo(t.external.entries);
    set(o, 'data_location', t.dataLocation);
  }
  if (t.metadataProps) o.metadata_props = entriesTo(t.metadataProps);
  if (t.altEncoding) o.$alt = t.altEncoding;
  return withUnknown(o, t);
}

function sparseTo(s: SparseTensor, opts: ToProtoOptions): P {
  const o: P = {};
  if (s.values) o.values = tensorTo(s.values, opts);
  if (s.indices) o.indices = tensorTo(s.indices, opts);
  set(o, 'dims', s.dims);
  if (s.altEncoding) o.$alt = s.altEncoding;
  return withUnknown(o, s);
}

function attributeTo(a: Attribute, opts: ToProtoOptions): P {
  const o: P = {};
  set(o, 'name', a.name);
  set(o, 'ref_attr_name', a.refAttrName);
  set(o, 'doc_string', a.docString);
  set(o, 'type', a.type);
  set(o, 'f', a.f);
  set(o, 'i', a.i);
  set(o, 's', a.s);
  if (a.t) o.t = tensorTo(a.t, opts);
  if (a.g) o.g = graphTo(a.g, opts);
  if (a.sparseTensor) o.sparse_tensor = sparseTo(a.sparseTensor, opts);
  if (a.tp) o.tp = typeTo(a.tp);
  set(o, 'floats', a.floats);
  set(o, 'ints', a.ints);
  set(o, 'strings', a.strings);
  if (a.tensors) o.tensors = a.tensors.map((t) => tensorTo(t, opts));
  if (a.graphs) o.graphs = a.graphs.map((g) => graphTo(g, opts));
  if (a.sparseTensors) o.sparse_tensors = a.sparseTensors.map((s) => sparseTo(s, opts));
  if (a.typeProtos) o.type_protos = a.typeProtos.map((t) => typeTo(t));
  if (a.altEncoding) o.$alt = a.altEncoding;
  return withUnknown(o, a);
}

function valueInfoTo(v: Value): P {
  const o: P = {};
  if (!v.nameUnset || v.name !== '') o.name = v.name;
  if (v.type) o.type = typeTo(v.type);
  set(o, 'doc_string', v.docString);
  if (v.metadataProps) o.metadata_props = entriesTo(v.metadataProps);
  return withUnknown(o, v);
}

function nodeTo(n: Node, opts: ToProtoOptions): P {
  const o: P = {};
  if (n.inputs.length) o.input = n.inputs.map((v) => v?.name ?? '');
  if (n.outputs.length) o.output = n.outputs.map((v) => v.name);
  set(o, 'name', n.name);
  if (!n.opTypeUnset || n.opType !== '') o.op_type = n.opType;
  set(o, 'domain', n.domain);
  set(o, 'overload', n.overload);
  if (n.attributes.length) o.attribute = n.attributes.map((a) => attributeTo(a, opts));
  set(o, 'doc_string', n.docString);
  if (n.metadataProps) o.metadata_props = entriesTo(n.metadataProps);
  set(o, 'device_configurations', n.deviceConfigurations);
  return withUnknown(o, n);
}

export function graphTo(g: Graph, opts: ToProtoOptions = {}): P {
  const o: P = {};
  if (g.nodes.length) o.node = g.nodes.map((n) => nodeTo(n, opts));
  set(o, 'name', g.name);
  if (g.initializers.size) {
    o.initializer = [...g.initializers.values()].map((v) => {
      const t = g.initializerTensor(v)!;
      t.name = v.name;
      return tensorTo(t, opts);
    });
  }
  if (g.sparseInitializers.length) o.sparse_initializer = g.sparseInitializers.map((s) => sparseTo(s.tensor, opts));
  set(o, 'doc_string', g.docString);
  if (g.inputs.length) o.input = g.inputs.map(valueInfoTo);
  if (g.outputs.length) o.output = g.outputs.map(valueInfoTo);
  if (g.valueInfo.length) o.value_info = g.valueInfo.map(valueInfoTo);
  if (g.quantizationAnnotation) {
    o.quantization_annotation = g.quantizationAnnotation.map((a) => {
      const x: P = {};
      set(x, 'tensor_name', a.tensorName);
      if (a.quantParameterTensorNames) x.quant_parameter_tensor_names = entriesTo(a.quantParameterTensorNames);
      return withUnknown(x, a);
    });
  }
  if (g.metadataProps) o.metadata_props = entriesTo(g.metadataProps);
  return withUnknown(o, g);
}

function opsetsTo(list: OpsetImport[]): P[] {
  return list.map((x) => {
    const o: P = {};
    set(o, 'domain', x.domain);
    set(o, 'version', x.version);
    return withUnknown(o, x);
  });
}

function functionTo(f: OnnxFunction, opts: ToProtoOptions): P {
  const o: P = {};
  set(o, 'name', f.name);
  if (f.body.inputs.length) o.input = f.body.inputs.map((v) => v.name);
  if (f.body.outputs.length) o.output = f.body.outputs.map((v) => v.name);
  if (f.attributeNames.length) o.attribute = f.attributeNames;
  if (f.attributeProtos.length) o.attribute_proto = f.attributeProtos.map((a) => attributeTo(a, opts));
  if (f.body.nodes.length) o.node = f.body.nodes.map((n) => nodeTo(n, opts));
  set(o, 'doc_string', f.docString);
  if (f.opsetImports.length) o.opset_import = opsetsTo(f.opsetImports);
  set(o, 'domain', f.domain);
  set(o, 'overload', f.overload);
  if (f.body.valueInfo.length) o.value_info = f.body.valueInfo.map(valueInfoTo);
  if (f.metadataProps) o.metadata_props = entriesTo(f.metadataProps);
  return withUnknown(o, f);
}

/** Builds the ModelProto object of a model. */
export function modelToProto(m: Model, opts: ToProtoOptions = {}): P {
  const o: P = {};
  set(o, 'ir_version', m.irVersion);
  if (m.opsetImports.length) o.opset_import = opsetsTo(m.opsetImports);
  set(o, 'producer_name', m.producerName);
  set(o, 'producer_version', m.producerVersion);
  set(o, 'domain', m.domain);
  set(o, 'model_version', m.modelVersion);
  set(o, 'doc_string', m.docString);
  if (!m.graphUnset) o.graph = graphTo(m.graph, opts);
  if (m.metadataProps) o.metadata_props = entriesTo(m.metadataProps);
  if (m.trainingInfo.length) {
    o.training_info = m.trainingInfo.map((t) => {
      const x: P = {};
      if (t.initialization) x.initialization = graphTo(t.initialization, opts);
      if (t.algorithm) x.algorithm = graphTo(t.algorithm, opts);
      if (t.initializationBinding) x.initialization_binding = entriesTo(t.initializationBinding);
      if (t.updateBinding) x.update_binding = entriesTo(t.updateBinding);
      return withUnknown(x, t);
    });
  }
  if (m.functions.length) o.functions = m.functions.map((f) => functionTo(f, opts));
  set(o, 'configuration', m.configuration);
  return withUnknown(o, m);
}
