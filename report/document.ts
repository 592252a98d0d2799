/**
 * The versioned report every command can write (`--report out.json`): typed data first, rendered
 * second (`report/markdown.ts`, `report/html.ts`, or `onnxforge report file.json --format md|html`).
 *
 * One document shape serves all commands: model facts before and after, the passes that ran, latency
 * samples, output errors, task accuracy, per-layer quantization error, budgets and notes. Sections a
 * command does not produce are simply absent. `details` keeps the command's own full report.
 */
import * as fs from 'node:fs';
import { inputError } from '../core/errors.js';
import type { Model } from '../ir/ir.js';
import { constantTensors } from './inspect.js';
import { adaptReport } from './adapters.js';
import { writeFileAtomic } from '../core/files.js';

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

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Reads and validates a report file, naming the field that is wrong. */
export function readReport(file: string): ReportDocument {
  let x: unknown;
  try {
    x = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw inputError('FILE_NOT_FOUND', `${file}: no such report`, { file });
    throw inputError('REPORT_BAD_JSON', `${file}: not valid JSON (${err.message})`, { file });
  }
  if (!isObject(x)) throw inputError('REPORT_BAD_FIELD', `${file}: a report must be a JSON object`, { file });
  const adapted = adaptReport(x, file);
  if (adapted) return adapted;
  if (x.schema !== REPORT_SCHEMA) {
    if (typeof x.schema === 'string' && x.schema.startsWith('onnxforge.report/')) {
      throw inputError('REPORT_SCHEMA_VERSION', `${file}: report schema ${x.schema} is not supported by this onnxforge (it reads ${REPORT_SCHEMA})`, { file });
    }
    throw inputError('REPORT_BAD_FIELD', `${file}: field schema must be "${REPORT_SCHEMA}", got ${JSON.stringify(x.schema)}`, { file, field: 'schema' });
  }
  const need = (k: string, t: string) => {
    if (typeof x[k] !== t) throw inputError('REPORT_BAD_FIELD', `${file}: field ${k} must be a ${t}`, { file, field: k });
  };
  need('command', 'string');
  need('title', 'string');
  for (const k of ['passes', 'latency', 'outputs', 'accuracy', 'layers', 'budgets', 'notes']) {
    if (x[k] !== undefined && !Array.isArray(x[k])) throw inputError('REPORT_BAD_FIELD', `${file}: field ${k} must be a list`, { file, field: k });
  }
  for (const k of ['input', 'output']) {
    const m = x[k];
    if (m === undefined) continue;
    if (!isObject(m) || typeof m.bytes !== 'number' || (m.nodes !== undefined && typeof m.nodes !== 'number') || (m.opCounts !== undefined && !isObject(m.opCounts))) {
      throw inputError('REPORT_BAD_FIELD', `${file}: field ${k} must have a numeric bytes (and optional nodes, opCounts)`, { file, field: k });
    }
  }
  return x as unknown as ReportDocument;
}

/** Writes a report as JSON, Markdown or HTML depending on the extension (atomically). */
export async function writeReport(doc: ReportDocument, file: string): Promise<void> {
  const { renderMarkdown } = await import('./markdown.js');
  const { renderHtml } = await import('./html.js');
  const lower = file.toLowerCase();
  const text = lower.endsWith('.md') ? renderMarkdown(doc) : lower.endsWith('.html') || lower.endsWith('.htm') ? renderHtml(doc) : `${JSON.stringify(doc, null, 2)}\n`;
  writeFileAtomic(file, text);
}
