/**
 * `inspect` as data: what a model is (IR version, opsets, producer), its inputs and outputs with
 * shapes (symbolic dims by name), node counts by op type including subgraphs, and parameters (every
 * constant tensor: initializers and `Constant` nodes) by dtype and by the op type that reads them.
 */
import { dtypeName } from '../core/dtype.js';
import { Graph, Model, TypeInfo, Value } from '../ir/ir.js';
import { Tensor } from '../core/tensor.js';
import { formatBytes, renderTable } from './table.js';

export interface IoInfo {
  name: string;
  type: string;
  shape: Array<number | string | null> | null;
}

export interface ParamGroup {
  count: number;
  elements: number;
  bytes: number;
}

export interface ModelSummary {
  schema: 'onnxforge.inspect/1';
  file?: string;
  fileBytes?: number;
  irVersion: number | null;
  opsets: Record<string, number>;
  producer: string;
  graphName: string;
  inputs: IoInfo[];
  outputs: IoInfo[];
  nodes: number;
  subgraphs: number;
  functions: number;
  opCounts: Record<string, number>;
  parameters: { tensors: number; elements: number; bytes: number; byDtype: Record<string, ParamGroup>; byOpType: Record<string, ParamGroup>; inConstantNodes: number; external: number };
  largest: Array<{ name: string; dtype: string; dims: number[]; bytes: number; where: string }>;
}

export function describeType(t: TypeInfo | undefined): string {
  if (!t) return '?';
  if (t.tensor) return dtypeName(t.tensor.elemType ?? 0);
  if (t.sparseTensor) return `sparse(${dtypeName(t.sparseTensor.elemType ?? 0)})`;
  if (t.sequence) return `seq(${describeType(t.sequence.elemType)})`;
  if (t.optional) return `optional(${describeType(t.optional.elemType)})`;
  if (t.map) return `map(${dtypeName(t.map.keyType ?? 0)},${describeType(t.map.valueType)})`;
  return '?';
}

function io(v: Value): IoInfo {
  const s = v.type?.tensor?.shape ?? v.type?.sparseTensor?.shape;
  return { name: v.name, type: describeType(v.type), shape: s ? s.dims.map((d) => (d.value !== undefined ? Number(d.value) : (d.param ?? null))) : null };
}

function opKey(domain: string, op: string): string {
  return domain ? `${domain}.${op}` : op;
}

/** Every constant tensor of the model with where it lives and who reads it. */
export function* constantTensors(model: Model): Generator<{ tensor: Tensor; value: Value | null; where: string; constantNode: boolean }> {
  const graphs: Graph[] = [...model.graph.allGraphs()];
  for (const f of model.functions) graphs.push(...f.body.allGraphs());
  for (const g of graphs) {
    for (const v of g.initializers.values()) yield { tensor: g.initializerTensor(v)!, value: v, where: 'initializer', constantNode: false };
    for (const n of g.nodes) {
      if (n.opType === 'Constant' && n.opDomain === '') {
        const t = n.attr('value')?.t;
        if (t) yield { tensor: t, value: n.outputs[0] ?? null, where: `Constant ${n.name ?? n.outputs[0]?.name ?? ''}`, constantNode: true };
      } else {
        for (const a of n.attributes) if (a.t) yield { tensor: a.t, value: null, where: `attribute ${a.name} of ${n.label}`, constantNode: false };
      }
    }
  }
}

export function summarize(model: Model, file?: string, fileBytes?: number): ModelSummary {
  const opCounts: Record<string, number> = {};
  let nodes = 0;
  let subgraphs = 0;
  for (const g of model.graph.allGraphs()) {
    if (g !== model.graph) subgraphs++;
    for (const n of g.nodes) {
      nodes++;
      const k = opKey(n.opDomain, n.opType);
      opCounts[k] = (opCounts[k] ?? 0) + 1;
    }
  }
  const byDtype: Record<string, ParamGroup> = {};
  const byOpType: Record<string, ParamGroup> = {};
  const add = (m: Record<string, ParamGroup>, k: string, el: number, b: number) => {
    const e = (m[k] ??= { count: 0, elements: 0, bytes: 0 });
    e.count++;
    e.elements += el;
    e.bytes += b;
  };
  let tensors = 0;
  let elements = 0;
  let bytes = 0;
  let inConstantNodes = 0;
  let external = 0;
  const all: ModelSummary['largest'] = [];
  for (const { tensor, value, where, constantNode } of constantTensors(model)) {
    const el = tensor.size;
    const b = tensor.byteLength;
    tensors++;
    elements += el;
    bytes += b;
    if (constantNode) inConstantNodes++;
    if (tensor.isExternal) external++;
    add(byDtype, tensor.dtype, el, b);
    const readers = value ? [...new Set(value.consumers().map((n) => opKey(n.opDomain, n.opType)))] : [];
    add(byOpType, readers.length === 1 ? readers[0]! : readers.length === 0 ? '(unused)' : '(shared)', el, b);
    all.push({ name: tensor.name ?? value?.name ?? '', dtype: tensor.dtype, dims: tensor.dims, bytes: b, where });
  }
  all.sort((a, b) => b.bytes - a.bytes);
  const opsets: Record<string, number> = {};
  for (const o of model.opsetImports) opsets[o.domain === undefined || o.domain === '' ? 'ai.onnx' : o.domain] = Number(o.version ?? 0);
  const s: ModelSummary = {
    schema: 'onnxforge.inspect/1',
    irVersion: model.irVersion === undefined ? null : Number(model.irVersion),
    opsets,
    producer: [model.producerName, model.producerVersion].filter(Boolean).join(' '),
    graphName: model.graph.name ?? '',
    inputs: model.graph.inputs.filter((v) => !model.graph.initializers.has(v.name)).map(io),
    outputs: model.graph.outputs.map(io),
    nodes,
    subgraphs,
    functions: model.functions.length,
    opCounts: Object.fromEntries(Object.entries(opCounts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))),
    parameters: { tensors, elements, bytes, byDtype, byOpType, inConstantNodes, external },
    largest: all.slice(0, 10),
  };
  if (file !== undefined) s.file = file;
  if (fileBytes !== undefined) s.fileBytes = fileBytes;
  return s;
}

function shapeText(i: IoInfo): string {
  return i.shape ? `[${i.shape.map((d) => (d === null ? '?' : d)).join(', ')}]` : '(unknown shape)';
}

export function renderSummary(s: ModelSummary): string {
  const out: string[] = [];
  out.push(`${s.file ?? 'model'}${s.fileBytes !== undefined ? ` (${formatBytes(s.fileBytes)})` : ''}`);
  out.push(`  IR version ${s.irVersion ?? '?'}, opsets ${Object.entries(s.opsets).map(([d, v]) => `${d} ${v}`).join(', ') || 'none'}${s.producer ? `, produced by ${s.producer}` : ''}`);
  out.push(`  ${s.nodes} nodes (${Object.keys(s.opCounts).length} op types)${s.subgraphs ? `, ${s.subgraphs} subgraphs` : ''}${s.functions ? `, ${s.functions} functions` : ''}`);
  out.push('');
  out.push(renderTable(['', 'name', 'type', 'shape'], [...s.inputs.map((i) => ['input', i.name, i.type, shapeText(i)]), ...s.outputs.map((o) => ['output', o.name, o.type, shapeText(o)])]));
  out.push('');
  out.push(renderTable(['op type', 'count'], Object.entries(s.opCounts).map(([k, v]) => [k, v]), { title: 'Nodes by op type (subgraphs included)' }));
  out.push('');
  const p = s.parameters;
  out.push(`Parameters: ${p.elements.toLocaleString('en-US')} in ${p.tensors} tensors, ${formatBytes(p.bytes)}${p.inConstantNodes ? ` (${p.inConstantNodes} tensors held in Constant nodes)` : ''}${p.external ? `, ${p.external} external` : ''}`);
  out.push(renderTable(['dtype', 'tensors', 'elements', 'bytes'], Object.entries(p.byDtype).map(([k, g]) => [k, g.count, g.elements, formatBytes(g.bytes)])));
  out.push('');
  out.push(renderTable(['read by', 'tensors', 'elements', 'bytes'], Object.entries(p.byOpType).sort((a, b) => b[1].bytes - a[1].bytes).map(([k, g]) => [k, g.count, g.elements, formatBytes(g.bytes)])));
  out.push('');
  out.push(renderTable(['largest tensors', 'dtype', 'dims', 'bytes', 'where'], s.largest.map((t) => [t.name, t.dtype, `[${t.dims.join(',')}]`, formatBytes(t.bytes), t.where])));
  return out.join('\n');
}
