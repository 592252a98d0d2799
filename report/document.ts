/**
 * The versioned report every command can write (`--report out.json`): typed data first, rendered
 * second (`report/markdown.ts`, `report/html.ts`, or `onnxforge report file.json --format md|html`).
 *
 * One document shape serves all commands: model facts before and after, the passes that ran, latency
 * samples, output errors, task accuracy, per-layer quantization error, budgets and notes. Sections a
 * command does not produce are simply absent. `details` keeps the command's own full report.
 */
import * as fs from 'node:fs';
import type { Model } from '../ir/ir.js';
import { constantTensors } from './inspect.js';

export const REPORT_SCHEMA = 'onnxforge.report/1';

export interface ModelFacts {
  file?: string;
  bytes: number;
  /** Absent in reports adapted from commands that do not count nodes. */
  nodes?: number;
  opCounts?: Record<string, number>;
  /** Bytes of constant tensors by the op type that reads them. */
  paramBytesByOp?: Record<string, number>;
  opset?: number;
}

export interface PassEntry {
  pass: string;
  ms: number;
  changed: boolean;
  nodesBefore: number;
  nodesAfter: number;
  bytesBefore: number;
  bytesAfter: number;
  stats?: Record<string, number | string>;
}

export interface LatencyEntry {
  model: string;
  /** Per-run milliseconds, in execution order. */
  samplesMs: number[];
  p50: number;
  p90: number;
  mean: number;
  min: number;
}

export interface OutputErrorEntry {
  name: string;
  maxAbsError: number;
  sqnrDb?: number;
  cosine?: number;
}

export interface AccuracyEntry {
  metric: string;
  value: number;
  reference?: number;
}

export interface LayerEntry {
  name: string;
  op: string;
  sqnrDb?: number;
  precision?: string;
  reason?: string;
}

export interface BudgetEntry {
  metric: string;
  budget: string;
  value: string;
  verdict: 'pass' | 'fail' | 'skipped';
}

export interface ReportDocument {
  schema: typeof REPORT_SCHEMA;
  command: string;
  title: string;
  createdAt: string;
  tool: { name: 'onnxforge'; version: string };
  input?: ModelFacts;
  output?: ModelFacts;
  passes?: PassEntry[];
  latency?: LatencyEntry[];
  outputs?: OutputErrorEntry[];
  accuracy?: AccuracyEntry[];
  layers?: LayerEntry[];
  budgets?: BudgetEntry[];
  notes?: string[];
  details?: unknown;
}

function opKey(domain: string, op: string): string {
  return domain ? `${domain}.${op}` : op;
}

/** Pass runs summed by pass name, in first-run order (a fixed-point pipeline runs passes many times). */
export function aggregatePasses(passes: readonly PassEntry[]): Array<{ pass: string; runs: number; changedRuns: number; ms: number; nodesRemoved: number; bytesSaved: number }> {
  const by = new Map<string, { pass: string; runs: number; changedRuns: number; ms: number; nodesRemoved: number; bytesSaved: number }>();
  for (const p of passes) {
    let e = by.get(p.pass);
    if (!e) by.set(p.pass, (e = { pass: p.pass, runs: 0, changedRuns: 0, ms: 0, nodesRemoved: 0, bytesSaved: 0 }));
    e.runs++;
    if (p.changed) e.changedRuns++;
    e.ms += p.ms;
    e.nodesRemoved += p.nodesBefore - p.nodesAfter;
    e.bytesSaved += p.bytesBefore - p.bytesAfter;
  }
  return [...by.values()];
}

/** Facts about a model for the before/after sections. */
export function modelFacts(model: Model, bytes: number, file?: string): ModelFacts {
  const opCounts: Record<string, number> = {};
  let nodes = 0;
  for (const n of model.graph.allNodes()) {
    nodes++;
    const k = opKey(n.opDomain, n.opType);
    opCounts[k] = (opCounts[k] ?? 0) + 1;
  }
  const paramBytesByOp: Record<string, number> = {};
  for (const { tensor, value } of constantTensors(model)) {
    const readers = value ? [...new Set(value.consumers().map((n) => opKey(n.opDomain, n.opType)))] : [];
    const k = readers.length === 1 ? readers[0]! : readers.length === 0 ? '(unused)' : '(shared)';
    paramBytesByOp[k] = (paramBytesByOp[k] ?? 0) + tensor.byteLength;
  }
  const f: ModelFacts = { bytes, nodes, opCounts, paramBytesByOp };
  if (file !== undefined) f.file = file;
  const opset = model.opset('');
  if (opset !== undefined) f.opset = opset;
  return f;
}

let version = '0.0.0';
try {
  version = (JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
} catch {
  try {
    version = (JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    /* keep the default */
  }
}

export function newReport(command: string, title: string): ReportDocument {
  return { schema: REPORT_SCHEMA, command, title, createdAt: new Date().toISOString(), tool: { name: 'onnxforge', version } };
}
