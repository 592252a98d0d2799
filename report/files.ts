/**
 * Report files: read (validated, older command reports adapted) and write (JSON, Markdown or HTML by
 * the extension, atomically). Apart from `document.ts` so the renderers and adapters, which use the
 * document's types, are not imported by it (no cycle).
 */
import * as fs from 'node:fs';
import { inputError } from '../core/errors.js';
import { writeFileAtomic } from '../core/files.js';
import { adaptReport } from './adapters.js';
import { REPORT_SCHEMA, type ReportDocument } from './document.js';
import { renderHtml } from './html.js';
import { renderMarkdown } from './markdown.js';

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
  const lower = file.toLowerCase();
  const text = lower.endsWith('.md') ? renderMarkdown(doc) : lower.endsWith('.html') || lower.endsWith('.htm') ? renderHtml(doc) : `${JSON.stringify(doc, null, 2)}\n`;
  writeFileAtomic(file, text);
}
