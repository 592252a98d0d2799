/**
 * The `onnxforge tune` report (`onnxforge.tune/1`, built by workflows/tune/tune.ts): every trial's
 * pipeline, size, latency, accuracy, time and outcome, which budgets it met, the Pareto front, the
 * winner and what was written. It is also the results file `--resume` reads (rewritten atomically as
 * each trial finishes). Renderers: a terminal table, Markdown (tables and text scatter charts) and
 * self-contained HTML (SVG scatter charts: size against accuracy, latency against accuracy).
 */
import { renderTable } from './table.js';
import { svgScatter, textScatter } from './variants.js';

export const TUNE_SCHEMA = 'onnxforge.tune/1';

export interface TuneBudgets {
  maxAccuracyDrop?: number;
  maxLatencyRatio?: number;
  maxSizeRatio?: number;
}

/** A file in the content-addressed store (sha256 of its bytes, hex). */
export interface TuneContentRef {
  hash: string;
  /** The file's base name, for messages and for readers that dispatch on the extension. */
  name: string;
  bytes: number;
}

/** A trial's measured result: what a worker posts (workflows/tune/types.ts' TrialResult) and a row of this report. */
export interface TuneTrialResult {
  id: string;
  outcome: 'ok' | 'error';
  /** For 'error': the catalogued code and message (a trial that throws is a row, not a crashed search). */
  error?: { code: string; message: string };
  /** The written candidate, put in the store by the worker (the search fetches the winner from there). */
  output?: TuneContentRef;
  /** Latency-aware quantize-static's decisions file (onnxforge.quantize-decisions/1), put in the store: the winner's pipeline file replays it. */
  decisions?: TuneContentRef;
  /** Candidate bytes / input bytes. */
  sizeRatio?: number;
  /** Candidate p50 / input p50, timed interleaved in the worker's process on `target`. */
  latencyRatio?: number;
  /** Candidate p50 / the reference workload's p50 in the same process (the gate's portable figure). */
  referenceRatio?: number;
  /** The metric on `eval` for the input model and for the candidate. */
  accuracyInput?: number;
  accuracy?: number;
  /** Wall time of the whole trial, and which worker ran it (host:pid). */
  seconds: number;
  worker: string;
  /** How often the trial was started when more than once (its worker exited during an earlier start). */
  attempts?: number;
  /** How contended the worker's machine was while it timed (runtime/timer.ts' record). */
  contention?: Record<string, number>;
}

export interface TuneRow {
  /** Order the trial finished in (1-based). */
  n: number;
  label: string;
  family: string;
  pipeline: string;
  result: TuneTrialResult;
  /** Input metric minus candidate metric. */
  accuracyDrop?: number;
  /** The budgets it failed (empty: met every budget). */
  failed: string[];
  onFront: boolean;
  /** Taken from the results file by --resume, not run again. */
  reused: boolean;
}

export interface TuneReport {
  schema: typeof TUNE_SCHEMA;
  input: { file: string; bytes: number; hash: string };
  objective: 'size' | 'latency';
  budgets: TuneBudgets;
  metric?: string;
  target: 'node' | 'wasm';
  threads: number;
  executor: string;
  /** How latency was kept honest under concurrent trials. */
  timing: string;
  /** Every space entry and what became of it. */
  space: { label: string; pipeline: string; status: 'ran' | 'reused' | 'skipped' | 'not reached'; reason?: string }[];
  rows: TuneRow[];
  /** Label of the winning trial (met every budget, best objective). */
  winner?: string;
  /** With no winner: the trials closest to the budgets, closest first. */
  closest?: string[];
  /** Why the search stopped. */
  stopped: string;
  wallSeconds: number;
  written?: { model: string; pipeline: string; decisions?: string };
  notes: string[];
}

const fx = (x: number | undefined, d: number) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));

function budgetText(r: TuneReport): string {
  const b = r.budgets;
  const parts = [
    b.maxAccuracyDrop !== undefined ? `accuracy drop <= ${b.maxAccuracyDrop}` : '',
    b.maxLatencyRatio !== undefined ? `latency <= ${b.maxLatencyRatio}x` : '',
    b.maxSizeRatio !== undefined ? `size <= ${b.maxSizeRatio}x` : '',
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : 'none';
}

/** The trial table shared by the three renderers. */
export function tuneTable(r: TuneReport): { header: string[]; rows: string[][] } {
  const header = ['#', 'trial', 'size x', 'latency x', 'vs reference', 'accuracy', 'drop', 'CPU/wall', 's', 'worker', 'verdict'];
  const cpu = (t: TuneTrialResult) => (t.contention?.cpuOverWall !== undefined ? `${(t.contention.cpuOverWall * 100).toFixed(0)}%` : '-');
  const rows = r.rows.map((x) => {
    const t = x.result;
    const mark = x.label === r.winner ? 'WINNER' : x.onFront ? 'front' : '';
    if (t.outcome === 'error') return [String(x.n), x.label, '-', '-', '-', '-', '-', '-', fx(t.seconds, 0), t.worker, `error ${t.error?.code ?? ''}: ${t.error?.message ?? ''}`.slice(0, 120)];
    const verdict = x.failed.length ? `fails ${x.failed.join(', ')}` : 'meets budgets';
    const retried = t.attempts && t.attempts > 1 ? ` [start ${t.attempts}: a worker died]` : '';
    return [String(x.n), x.label, fx(t.sizeRatio, 3), fx(t.latencyRatio, 3), fx(t.referenceRatio, 3), fx(t.accuracy, 4), fx(x.accuracyDrop, 4), cpu(t), fx(t.seconds, 0), t.worker, `${verdict}${mark ? ` (${mark})` : ''}${x.reused ? ' [resumed]' : ''}${retried}`];
  });
  return { header, rows };
}

function summary(r: TuneReport): string[] {
  const lines = [
    `${r.input.file} (${r.input.bytes} bytes): objective ${r.objective}, budgets ${budgetText(r)}${r.metric ? `, metric ${r.metric}` : ''}; target ${r.target}, ${r.threads} thread(s); ${r.executor}.`,
    `Timing: ${r.timing} CPU/wall: the timing process's CPU time over wall time while it timed (100%: it had a core throughout).`,
    `${r.rows.length} trials in ${r.wallSeconds.toFixed(0)} s; stopped: ${r.stopped}.`,
  ];
  if (r.winner) lines.push(`Winner: ${r.winner} — ${r.rows.find((x) => x.label === r.winner)?.pipeline ?? ''}`);
  else lines.push(`No trial met every budget. Closest: ${(r.closest ?? []).join('; ') || 'none ran'}.`);
  if (r.written) lines.push(`Wrote ${r.written.model} and ${r.written.pipeline}${r.written.decisions ? ` (+ ${r.written.decisions})` : ''}.`);
  const skipped = r.space.filter((s) => s.status === 'skipped');
  if (skipped.length) lines.push(`Skipped: ${skipped.map((s) => `${s.label} (${s.reason})`).join('; ')}.`);
  return lines;
}

export function renderTuneTerminal(r: TuneReport): string {
  const t = tuneTable(r);
  return [renderTable(t.header, t.rows, { title: 'onnxforge tune' }), ...summary(r), ...r.notes.map((n) => `note: ${n}`)].join('\n');
}

/** Chart points of the ok trials: size against accuracy, latency against accuracy. */
export function tunePoints(r: TuneReport): { size: { label: string; x: number; y: number }[]; latency: { label: string; x: number; y: number }[] } {
  const ok = r.rows.filter((x) => x.result.outcome === 'ok' && x.result.accuracy !== undefined);
  const name = (x: TuneRow) => `${x.n}${x.onFront ? '*' : ''}`;
  return {
    size: ok.filter((x) => x.result.sizeRatio !== undefined).map((x) => ({ label: name(x), x: x.result.sizeRatio!, y: x.result.accuracy! })),
    latency: ok.filter((x) => x.result.latencyRatio !== undefined).map((x) => ({ label: name(x), x: x.result.latencyRatio!, y: x.result.accuracy! })),
  };
}

const CHART_NOTE = 'points are trial numbers; * marks the Pareto front of the trials within budget (no other such trial is at least as small, as fast and as accurate, and better in one)';

export function renderTuneMarkdown(r: TuneReport): string {
  const t = tuneTable(r);
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const table = [`| ${t.header.join(' | ')} |`, `|${t.header.map(() => ' --- ').join('|')}|`, ...t.rows.map((row) => `| ${row.map(cell).join(' | ')} |`)].join('\n');
  const p = tunePoints(r);
  const pipelines = r.rows.map((x) => `${x.n}. ${cell(x.label)}: \`${x.pipeline}\``).join('\n');
  return `${[
    '# onnxforge tune',
    summary(r).join('\n\n'),
    table,
    '## Pipelines',
    pipelines,
    `## Size against accuracy\n\n${CHART_NOTE}.`,
    '```text\n' + textScatter(p.size, 'size / input', 'accuracy') + '\n```',
    '## Latency against accuracy',
    '```text\n' + textScatter(p.latency, 'latency / input', 'accuracy') + '\n```',
    ...r.notes.map((n) => `- note: ${n}`),
  ].join('\n\n')}\n`;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function renderTuneHtml(r: TuneReport): string {
  const t = tuneTable(r);
  const p = tunePoints(r);
  const head = `<tr>${t.header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>`;
  const body = t.rows.map((row, i) => `<tr title="${esc(r.rows[i]!.pipeline)}"${r.rows[i]!.label === r.winner ? ' class="win"' : ''}>${row.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('\n');
  const style = 'body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;padding:0 16px}table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}tr.win{font-weight:600;background:#eef6ee}';
  return [
    '<!doctype html>',
    `<html lang="en"><head><meta charset="utf-8"><title>onnxforge tune: ${esc(r.input.file)}</title><style>${style}</style></head><body>`,
    '<h1>onnxforge tune</h1>',
    ...summary(r).map((l) => `<p>${esc(l)}</p>`),
    `<table><thead>${head}</thead><tbody>\n${body}\n</tbody></table>`,
    `<h2>Pareto front: size against accuracy</h2><p>${esc(CHART_NOTE)}.</p>`,
    `<figure data-chart="size">${svgScatter(p.size, 'size / input', 'accuracy')}</figure>`,
    '<h2>Pareto front: latency against accuracy</h2>',
    `<figure data-chart="latency">${svgScatter(p.latency, 'latency / input (p50, interleaved)', 'accuracy')}</figure>`,
    `<h2>Pipelines</h2><ol>${r.rows.map((x) => `<li>${esc(x.label)}: <code>${esc(x.pipeline)}</code></li>`).join('')}</ol>`,
    ...r.notes.map((n) => `<p>note: ${esc(n)}</p>`),
    '</body></html>',
    '',
  ].join('\n');
}
