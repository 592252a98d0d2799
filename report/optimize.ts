/**
 * The optimize command's result (the pass manager's report with the file sizes and where the model went),
 * its terminal rendering, and the common report document (`onnxforge.report/1`) made from it.
 */
import type { Model } from '../ir/ir.js';
import type { OptimizeReport } from '../passes/manager.js';
import { modelFacts, newReport, type ReportDocument } from './document.js';
import { formatBytes, renderTable } from './table.js';

export interface OptimizeResult {
  report: OptimizeReport;
  input: string;
  /** The pipeline as the user named it: pass text or `@preset`. */
  pipeline: string;
  sizeBefore: number;
  /** The written model (and its external data file). */
  sizeAfter: number;
  path: string;
  dataPath?: string;
}

function pct(a: number, b: number): string {
  return a === 0 ? '0%' : `${(((b - a) / a) * 100).toFixed(1)}%`;
}

export function renderOptimizeSummary(r: OptimizeReport, sizeBefore: number, sizeAfter: number): string {
  const head = renderTable(
    ['', 'before', 'after', 'change'],
    [
      ['file size', formatBytes(sizeBefore), formatBytes(sizeAfter), pct(sizeBefore, sizeAfter)],
      ['nodes', r.nodesBefore, r.nodesAfter, pct(r.nodesBefore, r.nodesAfter)],
    ],
  );
  const rows = r.summary.map((s) => [s.pass, s.runs, `${s.ms.toFixed(1)} ms`, s.nodesRemoved, formatBytes(s.bytesSaved), Object.entries(s.stats).filter(([, v]) => v !== 0).map(([k, v]) => `${k}=${v}`).join(' ')]);
  const table = renderTable(['pass', 'runs', 'time', 'nodes removed', 'bytes saved', 'stats'], rows);
  const status = `${r.iterations} round${r.iterations === 1 ? '' : 's'}, ${r.converged ? 'converged' : 'stopped at the iteration cap before converging'}, ${r.ms.toFixed(0)} ms${r.verification ? `; verified on ${r.verification.samples} sample(s), max abs diff ${r.verification.maxAbsDiff.toExponential(2)}` : ''}`;
  return `${head}\n\n${table}\n${status}`;
}

export function renderOptimizeExplanations(r: OptimizeReport): string {
  if (r.explanations.length === 0) return 'explain: no pass reported a place where it did not apply';
  const rows = r.explanations.map((e) => [e.pass, e.node ?? '', e.reason]);
  return renderTable(['pass', 'node', 'why it did not apply'], rows);
}

/** The report document of an optimize run; `before` is the input's facts (taken before the run changed it). */
export function optimizeDocument(r: OptimizeResult, before: ReturnType<typeof modelFacts>, model: Model, title: string): ReportDocument {
  const report = r.report;
  const doc = newReport('optimize', title);
  doc.input = before;
  doc.output = modelFacts(model, r.sizeAfter, r.path);
  doc.passes = report.records.map((x) => ({ pass: x.pass, ms: x.ms, changed: x.changed, nodesBefore: x.nodesBefore, nodesAfter: x.nodesAfter, bytesBefore: x.bytesBefore, bytesAfter: x.bytesAfter, stats: x.stats }));
  if (report.verification) doc.notes = [`Verified after every pass on ${report.verification.samples} sample(s): max abs diff ${report.verification.maxAbsDiff.toExponential(2)} (rtol ${report.verification.rtol}, atol ${report.verification.atol}).`];
  doc.details = report;
  return doc;
}
