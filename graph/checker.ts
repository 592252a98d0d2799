/**
 * The model checker. It reports every problem it finds (not just the first), each with a stable
 * code and the node, tensor or graph it concerns:
 * - model: ir_version and opset_import present, one import per domain, node domains imported;
 * - SSA: every value name defined once across all scopes; no duplicate initializers or graph outputs;
 * - references: every node input and graph output defined (in scope, by the loader's name
 *   resolution and by value identity for models built or edited through the API), no cycles,
 *   nodes in topological order;
 * - tensors: known data type, non-negative dims with a product under the element cap, data length
 *   equal to dims x dtype for raw and typed-field storage;
 * - functions: no recursion among model-local functions.
 */
import { inputError } from './errors.js';
import { byteLengthOf, DataType, dtypeInfo } from './dtype.js';
import { Graph, Model, Node, topologicalOrder, Value } from './ir.js';
import { Tensor } from './tensor.js';

export interface CheckIssue {
  code: string;
  message: string;
  node?: string;
  tensor?: string;
  graph?: string;
}

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

function graphLabel(g: Graph): string {
  if (g.parentNode) return `subgraph ${g.name ?? '?'} of ${g.parentNode.label}`;
  return `graph ${g.name ?? '(main)'}`;
}

function checkGraph(g: Graph, defined: Map<string, string>, issues: CheckIssue[], model: Model, importedDomains: Set<string>, topLevel: boolean): void {
  const where = graphLabel(g);
  const define = (v: Value, what: string) => {
    if (v.name === '') return;
    const prev = defined.get(v.name);
    if (prev !== undefined) {
      issues.push({ code: 'IR_DUPLICATE_NAME', message: `${where}: "${v.name}" is defined twice (${prev}, and ${what})`, tensor: v.name, graph: g.name });
    } else defined.set(v.name, what);
  };
  for (const v of g.inputs) define(v, `input of ${where}`);
  for (const v of g.initializers.values()) {
    if (!g.inputs.includes(v)) define(v, `initializer of ${where}`);
    const t = g.initializerTensor(v);
    if (t) checkTensor(t, where, issues);
  }
  for (const v of g.duplicateInitializers) {
    issues.push({ code: 'IR_DUPLICATE_INITIALIZER', message: `${where}: initializer "${v.name}" appears more than once`, tensor: v.name, graph: g.name });
  }
  for (const s of g.sparseInitializers) define(s.value, `sparse initializer of ${where}`);
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
  for (const n of g.nodes) {
    for (const o of n.outputs) define(o, `output of node ${n.label}`);
    if (n.opType === '') issues.push({ code: 'IR_NO_OP_TYPE', message: `${where}: a node has no op_type (${n.label})`, node: n.name });
    if (!importedDomains.has(n.opDomain) && !model.functions.some((f) => f.name === n.opType && (f.domain ?? '') === (n.domain ?? ''))) {
      issues.push({ code: 'IR_DOMAIN_NOT_IMPORTED', message: `${where}: node ${n.label} uses domain "${n.domain ?? ''}" that the model does not import`, node: n.name });
    }
    for (const a of n.attributes) {
      if (a.t) checkTensor(a.t, `attribute ${a.name} of node ${n.label}`, issues);
      for (const t of a.tensors ?? []) checkTensor(t, `attribute ${a.name} of node ${n.label}`, issues);
    }
  }
  // topological order and cycles
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
    const err = e as { code?: string; message: string; details?: { node?: string } };
    const issue: CheckIssue = { code: err.code ?? 'IR_CYCLE', message: err.message };
    if (err.details?.node) issue.node = err.details.node;
    issues.push(issue);
  }
  const outNames = new Set<string>();
  for (const o of g.outputs) {
    if (topLevel && outNames.has(o.name)) issues.push({ code: 'IR_DUPLICATE_OUTPUT', message: `${where}: output "${o.name}" is listed twice`, tensor: o.name });
    outNames.add(o.name);
    if (!o.producer && !g.inputs.includes(o) && !o.initializer && g.danglingValues.includes(o) && o.uses.length === 0) {
      issues.push({ code: 'IR_OUTPUT_UNDEFINED', message: `${where}: output "${o.name}" is not produced by any node`, tensor: o.name });
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
  else if (Number(model.irVersion) < 1 || Number(model.irVersion) > 13) issues.push({ code: 'MODEL_BAD_IR_VERSION', message: `ir_version ${model.irVersion} is outside 1..13` });
  if (model.opsetImports.length === 0 && Number(model.irVersion ?? 0) >= 3) issues.push({ code: 'MODEL_NO_OPSET', message: 'the model imports no opset' });
  const domains = new Set<string>();
  for (const o of model.opsetImports) {
    const d = o.domain === 'ai.onnx' ? '' : (o.domain ?? '');
    if (domains.has(d)) issues.push({ code: 'MODEL_DUPLICATE_OPSET', message: `opset_import lists domain "${d}" twice` });
    domains.add(d);
    if (o.version === undefined || Number(o.version) < 1) issues.push({ code: 'MODEL_BAD_OPSET', message: `opset_import for domain "${d}" has version ${o.version}` });
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
