/**
 * The model checker. It reports every problem it finds (not just the first), each with a stable
 * code and the node, tensor or graph it concerns. It refuses what onnxruntime refuses and accepts
 * what it accepts (the loader has already taken the tolerated departures its way: see
 * `onnx/normalize.ts`; test/graph/exporter-quirks.ts holds the case-by-case survey):
 * - model: ir_version present and at most 13, opset_import not empty, node domains imported (the
 *   domains onnxruntime registers itself need no import); a domain imported twice is fine (the last
 *   entry counts). Opsets newer than onnxruntime knows are accepted: onnxforge round-trips and
 *   optimizes models for newer runtimes (the ONNX backend suite has opset-27 cases);
 * - SSA: every value name defined once across all scopes; no repeated initializers (the loader keeps
 *   the last of repeats onnxruntime takes); node names unique within a graph (empty names are fine);
 * - interface: every main-graph input that is not an initializer has a type; a subgraph does not
 *   return an outer-scope value directly; standard-domain nodes have at least one output;
 * - references: every node input and graph output defined (in scope, by the loader's name
 *   resolution and by value identity for models built or edited through the API), no cycles,
 *   nodes in topological order (the loader sorts files; this catches models built through the API);
 * - tensors: known data type, non-negative dims with a product under the element cap, data length
 *   equal to dims x dtype for raw and typed-field storage;
 * - functions: no recursion among model-local functions.
 */
import { inputError, InputErrorCode } from '../core/errors.js';
import { byteLengthOf, DataType, dtypeInfo } from '../core/dtype.js';
import { Graph, inTopologicalOrder, Model, Node, OpsetImport, topologicalOrder, Value } from './ir.js';
import { Tensor } from '../core/tensor.js';

export interface CheckIssue {
  code: InputErrorCode;
  message: string;
  node?: string;
  tensor?: string;
  graph?: string;
}

/** The newest IR version onnxruntime-node 1.30 loads (it refuses 14; it loads 0). */
export const MAX_IR_VERSION = 13;

/** Tensors above this many elements are rejected before anything allocates them (2^34). */
export const MAX_TENSOR_ELEMENTS = 2 ** 34;

export function checkTensor(t: Tensor, where: string, issues: CheckIssue[]): void {
  const name = t.name ?? '(unnamed)';
  const info = dtypeInfo(t.dataType);
  if (!info) {
    issues.push({ code: 'TENSOR_BAD_DTYPE', message: `tensor ${name} in ${where} has unknown data type ${t.dataType}`, tensor: t.name });
    return;
  }
  let count = 1n;
  for (const d of t.dims) {
    if (!Number.isInteger(d) || d < 0) {
      issues.push({ code: 'TENSOR_BAD_DIMS', message: `tensor ${name} in ${where} has invalid dim ${d} in [${t.dims.join(',')}]`, tensor: t.name });
      return;
    }
    count *= BigInt(d);
  }
  if (count > BigInt(MAX_TENSOR_ELEMENTS)) {
    issues.push({ code: 'TENSOR_TOO_LARGE', message: `tensor ${name} in ${where} claims ${count} elements (limit ${MAX_TENSOR_ELEMENTS})`, tensor: t.name });
    return;
  }
  const n = Number(count);
  if (t.dataLocation === 1) {
    if (!t.external || t.external.location === '') issues.push({ code: 'EXTERNAL_BAD_LOCATION', message: `tensor ${name} in ${where} is marked external but has no location`, tensor: t.name });
    else if (t.external.length !== undefined && t.dataType !== DataType.STRING && t.external.length !== byteLengthOf(t.dataType, n)) {
      issues.push({ code: 'EXTERNAL_BAD_LENGTH', message: `tensor ${name} in ${where}: external length ${t.external.length} bytes, dims x dtype need ${byteLengthOf(t.dataType, n)}`, tensor: t.name });
    }
    return;
  }
  if (t.dataType === DataType.STRING) {
    const have = (t.fields?.string_data as unknown[] | undefined)?.length ?? 0;
    if (have !== n) issues.push({ code: 'TENSOR_BAD_LENGTH', message: `tensor ${name} in ${where} has ${have} strings for ${n} elements`, tensor: t.name });
    return;
  }
  const expected = byteLengthOf(t.dataType, n);
  if (t.raw !== undefined) {
    if (t.raw.length !== expected) {
      issues.push({ code: 'TENSOR_BAD_LENGTH', message: `tensor ${name} in ${where}: raw_data has ${t.raw.length} bytes, dims [${t.dims.join(',')}] x ${info.name} need ${expected}`, tensor: t.name });
    }
    return;
  }
  const field = t.fields?.[info.storage] as ArrayLike<unknown> | undefined;
  const have = field?.length ?? 0;
  let want = n;
  if (info.packed) want = Math.ceil(n / info.packed);
  if (t.dataType === DataType.COMPLEX64 || t.dataType === DataType.COMPLEX128) want = n * 2;
  if (have !== want && !(have === 0 && n === 0)) {
    issues.push({ code: 'TENSOR_BAD_LENGTH', message: `tensor ${name} in ${where}: ${info.storage} has ${have} values, dims [${t.dims.join(',')}] need ${want}`, tensor: t.name });
  }
}

/**
 * Domains onnxruntime registers itself: a node may use them without an opset_import entry (onnxruntime
 * adds the entry at its latest version). Measured with onnxruntime-node 1.30: an unknown op in each of
 * these fails as an unknown op, in any other domain as "No opset import for domain".
 */
export const IMPLICIT_DOMAINS: ReadonlySet<string> = new Set([
  '',
  'ai.onnx.ml',
  'ai.onnx.training',
  'ai.onnx.preview.training',
  'com.microsoft',
  'com.microsoft.nchwc',
  'com.microsoft.experimental',
  'com.ms.internal.nhwc',
  'org.pytorch.aten',
]);

/** Domains the nodes of a model use (every graph, function bodies included). */
function usedDomains(model: Model): Set<string> {
  const out = new Set<string>();
  const graphs = [model.graph, ...model.functions.map((f) => f.body)];
  for (const g of graphs) for (const n of g.allNodes()) out.add(n.opDomain);
  return out;
}

/** Domains whose every operator has at least one output. */
const STANDARD_DOMAINS = new Set(['', 'ai.onnx.ml']);

function graphLabel(g: Graph): string {
  if (g.parentNode) return `subgraph ${g.name ?? '?'} of ${g.parentNode.label}`;
  return `graph ${g.name ?? '(main)'}`;
}

/**
 * Where a value name was defined: the sentence of a duplicate-name issue, written only when one is
 * found (building it for every value took a third of a check).
 */
interface Definition {
  what: 'input of' | 'initializer of' | 'sparse initializer of' | 'output of node';
  /** The graph's label, or the node whose output it is. */
  of: string | Node;
}

function describe(d: Definition): string {
  return `${d.what} ${typeof d.of === 'string' ? d.of : d.of.label}`;
}

function checkGraph(g: Graph, defined: Map<string, Definition>, issues: CheckIssue[], model: Model, importedDomains: Set<string>, topLevel: boolean): void {
  const where = graphLabel(g);
  const define = (v: Value, d: Definition) => {
    if (v.name === '') return;
    const prev = defined.get(v.name);
    if (prev !== undefined) {
      issues.push({ code: 'IR_DUPLICATE_NAME', message: `${where}: "${v.name}" is defined twice (${describe(prev)}, and ${describe(d)})`, tensor: v.name, graph: g.name });
    } else defined.set(v.name, d);
  };
  for (const v of g.inputs) define(v, { what: 'input of', of: where });
  for (const v of g.initializers.values()) {
    if (!g.inputs.includes(v)) define(v, { what: 'initializer of', of: where });
    const t = g.initializerTensor(v);
    if (t) checkTensor(t, where, issues);
  }
  for (const v of g.duplicateInitializers) {
    const why = g.parentNode ? 'in a subgraph' : 'with a different type or shape';
    issues.push({ code: 'IR_DUPLICATE_INITIALIZER', message: `${where}: initializer "${v.name}" appears more than once ${why}`, tensor: v.name, graph: g.name });
  }
  if (topLevel && !g.parentNode && g.model) {
    for (const v of g.inputs) {
      if (v.type === undefined && !g.initializers.has(v.name)) {
        issues.push({ code: 'IR_INPUT_NO_TYPE', message: `${where}: input "${v.name}" has no type (onnxruntime needs the type of every model input that is not an initializer)`, tensor: v.name, graph: g.name });
      }
    }
  }
  for (const s of g.sparseInitializers) define(s.value, { what: 'sparse initializer of', of: where });
  for (const v of g.danglingValues) {
    const readers = v.uses.map((u) => u.node.label);
    issues.push({
      code: 'IR_DANGLING_INPUT',
      message: `${where}: "${v.name}" is read by ${readers.slice(0, 3).join(', ') || 'a graph output'}${readers.length > 3 ? ` and ${readers.length - 3} more` : ''} but nothing defines it`,
      tensor: v.name,
      node: v.uses[0]?.node.name,
      graph: g.name,
    });
  }
  const nodeNames = new Map<string, Node>();
  for (const n of g.nodes) {
    for (const o of n.outputs) define(o, { what: 'output of node', of: n });
    if (n.opType === '') issues.push({ code: 'IR_NO_OP_TYPE', message: `${where}: a node has no op_type (${n.label})`, node: n.name });
    if (n.name) {
      const other = nodeNames.get(n.name);
      if (other) issues.push({ code: 'IR_DUPLICATE_NODE_NAME', message: `${where}: two nodes are named "${n.name}" (${other.opType} and ${n.opType}); node names must be unique within a graph`, node: n.name, graph: g.name });
      else nodeNames.set(n.name, n);
    }
    if (n.outputs.length === 0 && STANDARD_DOMAINS.has(n.opDomain) && n.opType !== '') {
      issues.push({ code: 'IR_NODE_NO_OUTPUT', message: `${where}: node ${n.label} has no outputs (every ${n.opType} has at least one)`, node: n.name, graph: g.name });
    }
    if (!importedDomains.has(n.opDomain) && !IMPLICIT_DOMAINS.has(n.opDomain) && !model.functions.some((f) => f.name === n.opType && (f.domain ?? '') === (n.domain ?? ''))) {
      issues.push({ code: 'IR_DOMAIN_NOT_IMPORTED', message: `${where}: node ${n.label} uses domain "${n.domain ?? ''}" that the model does not import`, node: n.name });
    }
    for (const a of n.attributes) {
      if (a.t) checkTensor(a.t, `attribute ${a.name} of node ${n.label}`, issues);
      for (const t of a.tensors ?? []) checkTensor(t, `attribute ${a.name} of node ${n.label}`, issues);
    }
  }
  // topological order and cycles (sorted only when a node reads a value produced at or after it)
  if (!inTopologicalOrder(g)) {
    try {
      const order = topologicalOrder(g);
      const pos = new Map<Node, number>(g.nodes.map((n, i) => [n, i]));
      for (let i = 0; i < order.length; i++) {
        if (order[i] !== g.nodes[i]) {
          const n = g.nodes[i]!;
          const late = [...n.inputs, ...n.implicitInputs()].find((v) => v?.producer?.graph === g && pos.get(v.producer)! > i);
          issues.push({
            code: 'IR_NOT_TOPOLOGICAL',
            message: `${where}: node ${n.label} comes before ${late?.producer?.label ?? 'a producer of one of its inputs'}`,
            node: n.name,
          });
          break;
        }
      }
    } catch (e) {
      const err = e as { code?: InputErrorCode; message: string; details?: { node?: string } };
      const issue: CheckIssue = { code: err.code ?? 'IR_CYCLE', message: err.message };
      if (err.details?.node) issue.node = err.details.node;
      issues.push(issue);
    }
  }
  // A graph output listed twice is accepted (onnxruntime does); a subgraph may not return an outer value
  // as it is (onnxruntime asks for an Identity in between)
  const mine = g.parentNode ? scopeValues(g) : undefined;
  for (const o of g.outputs) {
    if (!o.producer && !g.inputs.includes(o) && !o.initializer && g.danglingValues.includes(o) && o.uses.length === 0) {
      issues.push({ code: 'IR_OUTPUT_UNDEFINED', message: `${where}: output "${o.name}" is not produced by any node`, tensor: o.name });
    } else if (mine && !mine.has(o) && !g.danglingValues.includes(o) && o.graph) {
      issues.push({ code: 'IR_SUBGRAPH_OUTPUT_OUTER', message: `${where}: output "${o.name}" is a value of an enclosing graph returned directly (onnxruntime needs it produced in the subgraph, e.g. by an Identity)`, tensor: o.name, graph: g.name });
    }
  }
  checkReferences(g, where, issues);
  for (const n of g.nodes) for (const sub of n.subgraphs()) checkGraph(sub, defined, issues, model, importedDomains, false);
}

/** Values defined in `g` itself: inputs, initializers, sparse initializers and outputs of its nodes. */
function scopeValues(g: Graph): Set<Value> {
  const s = new Set<Value>(g.inputs);
  for (const v of g.initializers.values()) s.add(v);
  for (const sp of g.sparseInitializers) s.add(sp.value);
  for (const n of g.nodes) for (const o of n.outputs) s.add(o);
  return s;
}

/**
 * Node inputs and graph outputs must be values visible from `g` (defined in it or an enclosing
 * scope). The loader records names nothing defines as `danglingValues`; this catches the same
 * problem in models built or edited through the API (e.g. a node removed with `force` whose
 * outputs were not rewired, or a value produced inside a subgraph read outside it).
 */
function checkReferences(g: Graph, where: string, issues: CheckIssue[]): void {
  const chain: Set<Value>[] = [];
  for (let s: Graph | null = g; s; s = s.parentNode?.graph ?? null) chain.push(scopeValues(s));
  const visible = (v: Value) => chain.some((c) => c.has(v));
  const known = new Set(g.danglingValues);
  for (const n of g.nodes) {
    for (const v of n.inputs) {
      if (!v || visible(v) || known.has(v)) continue;
      known.add(v);
      const why = v.producer ? (v.producer.graph ? `it is produced by ${v.producer.label} in another scope` : `its producer ${v.producer.label} was removed`) : 'nothing defines it';
      issues.push({ code: 'IR_DANGLING_INPUT', message: `${where}: "${v.name}" is read by ${n.label} but ${why}`, tensor: v.name, node: n.name, graph: g.name });
    }
  }
  for (const o of g.outputs) {
    if (visible(o) || known.has(o)) continue;
    known.add(o);
    const why = o.producer ? (o.producer.graph ? `it is produced by ${o.producer.label} in another scope` : `its producer ${o.producer.label} was removed`) : 'nothing defines it';
    issues.push({ code: 'IR_OUTPUT_UNDEFINED', message: `${where}: output "${o.name}" is not produced by any node (${why})`, tensor: o.name, graph: g.name });
  }
}

/** Checks a model and returns every issue found (empty when valid). */
export function checkModel(model: Model): CheckIssue[] {
  const issues: CheckIssue[] = [];
  if (model.irVersion === undefined) issues.push({ code: 'MODEL_NO_IR_VERSION', message: 'the model has no ir_version' });
  else if (Number(model.irVersion) < 0 || Number(model.irVersion) > MAX_IR_VERSION) issues.push({ code: 'MODEL_BAD_IR_VERSION', message: `ir_version ${model.irVersion} is outside 0..${MAX_IR_VERSION}` });
  if (model.opsetImports.length === 0) issues.push({ code: 'MODEL_NO_OPSET', message: 'the model imports no opset' });
  const domains = new Set<string>();
  const effective = new Map<string, OpsetImport>();
  for (const o of model.opsetImports) {
    const d = o.domain === 'ai.onnx' ? '' : (o.domain ?? '');
    domains.add(d);
    effective.set(d, o);
  }
  // a domain listed twice counts its last entry (as in onnxruntime); a version below 1 matters where it is used
  const used = usedDomains(model);
  for (const [d, o] of effective) {
    if ((o.version === undefined || Number(o.version) < 1) && (d === '' || used.has(d))) {
      issues.push({ code: 'MODEL_BAD_OPSET', message: `opset_import for domain "${d}" has version ${o.version}` });
    }
  }
  if (model.graphUnset) issues.push({ code: 'MODEL_NO_GRAPH', message: 'the model has no graph' });
  else checkGraph(model.graph, new Map(), issues, model, domains, true);
  // functions: bodies and recursion
  const fnKey = (domain: string | undefined, name: string | undefined) => `${domain ?? ''}::${name ?? ''}`;
  const fns = new Map(model.functions.map((f) => [fnKey(f.domain, f.name), f]));
  for (const f of model.functions) {
    const fDomains = new Set(f.opsetImports.map((o) => (o.domain === 'ai.onnx' ? '' : (o.domain ?? ''))));
    for (const d of domains) fDomains.add(d);
    checkGraph(f.body, new Map(), issues, model, fDomains, true);
  }
  const state = new Map<string, number>();
  const visit = (k: string, stack: string[]): void => {
    if (state.get(k) === 2) return;
    if (state.get(k) === 1) {
      issues.push({ code: 'FUNCTION_RECURSIVE', message: `model-local functions call each other recursively: ${[...stack, k].join(' -> ')}` });
      return;
    }
    state.set(k, 1);
    const f = fns.get(k)!;
    for (const n of f.body.allNodes()) {
      const callee = fnKey(n.domain, n.opType);
      if (fns.has(callee)) visit(callee, [...stack, k]);
    }
    state.set(k, 2);
  };
  for (const k of fns.keys()) visit(k, []);
  for (const ti of model.trainingInfo) {
    if (ti.initialization) checkGraph(ti.initialization, new Map(), issues, model, domains, true);
    if (ti.algorithm) checkGraph(ti.algorithm, new Map(), issues, model, domains, true);
  }
  return issues;
}

/** Throws an input error (exit code 2) listing the issues when the model is not valid. */
export function assertValid(model: Model, file?: string): void {
  const issues = checkModel(model);
  if (issues.length === 0) return;
  const first = issues[0]!;
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
  const details: Record<string, unknown> = { issues };
  if (file) details.file = file;
  if (first.node) details.node = first.node;
  if (first.tensor) details.tensor = first.tensor;
  throw inputError(first.code, `${file ? `${file}: ` : ''}${first.message}${more}`, details);
}
