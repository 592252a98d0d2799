/**
 * `onnxforge tune`: find the smallest (or fastest) model that keeps accuracy within the budgets. Typed
 * options in, a TuneReport out, progress through a callback, nothing parsed from argv.
 *
 * 1. The space: derived from the model (space.ts) or read from `--space FILE`.
 * 2. Inputs go into a content-addressed store (store.ts; default `<output stem>.tune-store/` beside
 *    the output), trials name them by hash, and a trial's id is the hash of its spec: `--resume`
 *    reuses finished trials of an earlier run with the same id from the results file.
 * 3. The search (search.ts) runs trials on an executor: in-process, `--workers K` local child
 *    processes (executors.ts) or any TrialExecutor the caller opens (the queue).
 * 4. The results file (`<stem>.tune.json`, the report itself) is rewritten atomically as each trial
 *    finishes. At the end: the winner's model is written to the output, `<stem>.pipeline.yaml` next to
 *    it reproduces it with `onnxforge run` (a latency-aware quantization replays `<stem>.decisions.json`,
 *    so the re-run writes the same bytes), and the report as `.md` and `.html`. With no trial meeting
 *    the budgets nothing but the reports is written (`passed: false`; the CLI exits 1).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { stringify as toYaml } from 'yaml';
import { inputError } from '../../core/errors.js';
import { writeFileAtomic } from '../../core/files.js';
import { loadModel } from '../../onnx/index.js';
import { formatPipeline, parsePipeline } from '../../passes/pipeline.js';
import { toJson } from '../../report/json.js';
import { renderTuneHtml, renderTuneMarkdown, TUNE_SCHEMA, type TuneBudgets, type TuneReport, type TuneRow } from '../../report/tune.js';
import { InProcessExecutor, LocalWorkersExecutor } from './executors.js';
import { search } from './search.js';
import { defaultSpace, modelTraits, readSpaceFile, type SpaceEntry, type TuneObjective } from './space.js';
import { openStore } from './store.js';
import type { DataRef, TrialExecutor, TrialResult, TrialSpec } from './types.js';

export interface TuneOptions {
  model: string;
  output: string;
  /** Evaluation data spec and the metric module (`path[#export]`). */
  eval: string;
  metric: string;
  calibration?: string;
  /** Training data: pruning trials recover by distillation. */
  train?: string;
  /** Image preprocessing JSON for every data spec. */
  preprocess?: string;
  /** Samples read per data spec. */
  limit?: number;
  objective: TuneObjective;
  budgets: TuneBudgets;
  target: 'node' | 'wasm';
  threads: number;
  latencyRuns: number;
  shapes: Record<string, number[]>;
  /** A space file instead of the default space. */
  space?: string;
  trials: number;
  patience?: number;
  /** Local child processes (1: in this process); with `executor`, the trials kept in flight on it. */
  workers: number;
  /** An executor opened by the caller (the queue), given the store URL; overrides `workers`. */
  executor?: (storeUrl: string) => Promise<TrialExecutor>;
  /** Store URL (default `<output stem>.tune-store` beside the output). */
  store?: string;
  resume: boolean;
  onProgress?: (e: { done: number; total: number; label: string }) => void;
}

export interface TuneResult {
  report: TuneReport;
  passed: boolean;
  files: { results: string; markdown: string; html: string };
}

function stemOf(output: string): string {
  return output.replace(/\.onnx$/i, '');
}

/** sha256 of a JSON value with sorted keys. */
function canonicalHash(x: unknown): string {
  const sort = (v: unknown): unknown => (Array.isArray(v) ? v.map(sort) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, w]) => [k, sort(w)])) : v);
  return createHash('sha256').update(JSON.stringify(sort(x))).digest('hex');
}

/** `path/metric.js#rec` with the file part absolute (trials run with other working folders). */
function absoluteMetric(spec: string): string {
  const hash = spec.lastIndexOf('#');
  const file = hash > 0 ? spec.slice(0, hash) : spec;
  return `${path.resolve(file)}${hash > 0 ? spec.slice(hash) : ''}`;
}

function validate(o: TuneOptions): void {
  const bad = (flag: string, msg: string): never => {
    throw inputError('USAGE_BAD_VALUE', `--${flag}: ${msg}`, { flag });
  };
  if (!fs.existsSync(o.model)) throw inputError('FILE_NOT_FOUND', `${o.model}: no such model`, { file: o.model });
  if (!/\.onnx$/i.test(o.output)) bad('output', `'${o.output}' must end in .onnx`);
  if (o.objective !== 'size' && o.objective !== 'latency') bad('objective', `must be size or latency, got '${String(o.objective)}'`);
  if (!Number.isInteger(o.trials) || o.trials < 1) bad('trials', `must be a positive integer, got ${o.trials}`);
  if (!Number.isInteger(o.workers) || o.workers < 1) bad('workers', `must be a positive integer, got ${o.workers}`);
  if (!Number.isInteger(o.latencyRuns) || o.latencyRuns < 1) bad('latency-runs', `must be a positive integer, got ${o.latencyRuns}`);
  for (const [k, v] of Object.entries(o.budgets)) if (v !== undefined && !(v >= 0)) bad(k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), `must be a non-negative number, got ${v}`);
}

/** Finished results of an earlier run (by trial id) from a results file. */
export function readResults(file: string): Map<string, TrialResult> {
  let doc: Partial<TuneReport>;
  try {
    doc = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<TuneReport>;
  } catch (e) {
    throw inputError('TUNE_RESULTS_INVALID', `${file}: cannot read the results to resume (${(e as Error).message.split('\n')[0]})`, { file });
  }
  if (doc?.schema !== TUNE_SCHEMA || !Array.isArray(doc.rows)) throw inputError('TUNE_RESULTS_INVALID', `${file}: not an ${TUNE_SCHEMA} results file`, { file });
  return new Map(doc.rows.filter((r) => r?.result?.outcome === 'ok' && typeof r.result.id === 'string').map((r) => [r.result.id, r.result as TrialResult]));
}

const TIMING_IN_PROCESS = 'one trial at a time in this process; input, candidate and the reference workload timed in interleaved rounds (CPU time per run at 1 thread, wall time otherwise); ratios are medians of the rounds.';
const TIMING_WORKERS = 'local workers take one shared timing lock, so one trial times at a time while the others build, calibrate and evaluate; each timed interleaved with the input and the reference workload (CPU time per run at 1 thread).';
const TIMING_EXECUTOR = 'each trial timed in its worker interleaved with the input and the reference workload; latency ratios are candidate/input in that worker, and the reference ratio compares machines.';

/**
 * Objective size without a latency budget: the winner may not be slower than the input
 * (`--max-latency-ratio` overrides it). A weight-compressed model run raw dequantizes at run time:
 * the smallest file is often the slowest, which is rarely what "smallest within budget" means.
 */
export const SIZE_OBJECTIVE_LATENCY_BUDGET = 1.0;

export async function tuneWorkflow(options: TuneOptions): Promise<TuneResult> {
  validate(options);
  const o: TuneOptions = options.objective === 'size' && options.budgets.maxLatencyRatio === undefined ? { ...options, budgets: { ...options.budgets, maxLatencyRatio: SIZE_OBJECTIVE_LATENCY_BUDGET } } : options;
  const t0 = performance.now();
  const stem = stemOf(path.resolve(o.output));
  const files = { results: `${stem}.tune.json`, markdown: `${stem}.tune.md`, html: `${stem}.tune.html` };
  const previous = o.resume && fs.existsSync(files.results) ? readResults(files.results) : undefined;
  const model = await loadModel(o.model);
  const space: SpaceEntry[] = o.space ? readSpaceFile(o.space) : defaultSpace(modelTraits(model), { objective: o.objective, calibration: Boolean(o.calibration), train: Boolean(o.train) });
  const usable = space.filter((e) => !e.needsCalibration || o.calibration);
  const storeUrl = o.store ?? `${stem}.tune-store`;
  // the executor first: an unreachable queue fails before anything (the store included) is written
  const executor = o.executor ? await o.executor(storeUrl) : o.workers > 1 ? new LocalWorkersExecutor(o.workers, path.resolve(storeUrl)) : undefined;
  const store = openStore(storeUrl);
  const modelRef = await store.putFile(path.resolve(o.model));
  const extra = { ...(o.preprocess ? { preprocess: path.resolve(o.preprocess) } : {}), ...(o.limit !== undefined ? { limit: o.limit } : {}) };
  const dataRef = (spec: string): Promise<DataRef> => store.putData(/^random(:|$)/.test(spec) ? spec : path.resolve(spec), extra);
  const evalRef = await dataRef(o.eval);
  const calRef = o.calibration ? await dataRef(o.calibration) : undefined;
  const trainRef = o.train ? await dataRef(o.train) : undefined;
  const metric = absoluteMetric(o.metric);
  const specOf = (e: SpaceEntry): TrialSpec => {
    const body: Omit<TrialSpec, 'id'> = { pipeline: e.pipeline, model: modelRef, eval: evalRef, metric, target: o.target, threads: o.threads, shapes: o.shapes, latencyRuns: o.latencyRuns };
    if (calRef) body.calibration = calRef;
    if (trainRef && /distill/.test(e.pipeline)) body.train = trainRef;
    return { id: canonicalHash(body), ...body };
  };

  const exec = executor ?? new InProcessExecutor(store);
  const report: TuneReport = {
    schema: TUNE_SCHEMA,
    input: { file: o.model, bytes: modelRef.bytes, hash: modelRef.hash },
    objective: o.objective,
    budgets: o.budgets,
    metric: o.metric,
    target: o.target,
    threads: o.threads,
    executor: exec.describe,
    timing: o.executor ? TIMING_EXECUTOR : o.workers > 1 ? TIMING_WORKERS : TIMING_IN_PROCESS,
    space: [],
    rows: [],
    stopped: 'running',
    wallSeconds: 0,
    notes: [],
  };
  if (o !== options) report.notes.push(`Objective size without --max-latency-ratio: the winner may not be slower than the input (latency <= ${SIZE_OBJECTIVE_LATENCY_BUDGET}x by default).`);
  if (usable.length < space.length) report.notes.push(`Without --calibration, ${space.length - usable.length} trials that need it were left out (static int8).`);
  if (o.resume && !previous) report.notes.push(`--resume: no results file ${files.results} yet; every trial ran.`);
  const total = Math.min(o.trials, usable.length);
  const save = () => writeFileAtomic(files.results, `${toJson(report)}\n`);
  let outcome;
  try {
    outcome = await search({
      space: usable,
      spec: specOf,
      executor: exec,
      objective: o.objective,
      budgets: o.budgets,
      trials: o.trials,
      concurrency: o.workers,
      ...(o.patience !== undefined ? { patience: o.patience } : {}),
      ...(previous ? { previous } : {}),
      onStart: (e) => o.onProgress?.({ done: report.rows.length, total, label: e.label }),
      onRow: (row, rows) => {
        report.rows = [...rows];
        report.wallSeconds = (performance.now() - t0) / 1000;
        save();
        o.onProgress?.({ done: rows.length, total, label: row.label });
      },
    });
  } finally {
    await exec.close();
  }
  const ran = new Map(outcome.rows.map((r) => [r.label, r]));
  report.space = usable.map((e) => {
    const r = ran.get(e.label);
    if (r) return { label: e.label, pipeline: e.pipeline, status: r.reused ? 'reused' : 'ran' };
    const why = outcome.skipped.get(e.label);
    return why ? { label: e.label, pipeline: e.pipeline, status: 'skipped', reason: why } : { label: e.label, pipeline: e.pipeline, status: 'not reached' };
  });
  report.rows = outcome.rows;
  report.stopped = outcome.stopped;
  if (outcome.winner) {
    report.winner = outcome.winner.label;
    report.written = await writeWinner(o, stem, outcome.winner, store);
  } else {
    report.closest = outcome.closest.map((r) => r.label);
    report.notes.push('No trial met every budget: no model was written. The closest trials are listed; loosen a budget or widen the space (--space).');
  }
  report.wallSeconds = (performance.now() - t0) / 1000;
  save();
  writeFileAtomic(files.markdown, renderTuneMarkdown(report));
  writeFileAtomic(files.html, renderTuneHtml(report));
  return { report, passed: Boolean(outcome.winner), files };
}

/** Writes the winner's model, its decisions file (when it has one) and a pipeline file reproducing it. */
async function writeWinner(o: TuneOptions, stem: string, win: TuneRow, store: ReturnType<typeof openStore>): Promise<NonNullable<TuneReport['written']>> {
  const out = path.resolve(o.output);
  if (!win.result.output) throw inputError('STORE_MISSING', `the winning trial '${win.label}' has no stored model`);
  writeFileAtomic(out, fs.readFileSync(await store.fetchFile(win.result.output)));
  const dir = path.dirname(out);
  const rel = (p: string) => path.relative(dir, path.resolve(p)) || '.';
  const steps = parsePipeline(win.pipeline);
  let decisions: string | undefined;
  if (win.result.decisions) {
    decisions = `${stem}.decisions.json`;
    writeFileAtomic(decisions, fs.readFileSync(await store.fetchFile(win.result.decisions)));
    for (const s of steps) if (s.pass.name === 'quantize-static' && s.options.latencyAware !== 'off') s.options = { ...s.options, decisions };
  }
  const data = (spec: string) => ({ inputs: /^random(:|$)/.test(spec) ? spec : rel(spec), ...(o.preprocess ? { preprocess: rel(o.preprocess) } : {}), ...(o.limit !== undefined ? { limit: o.limit } : {}) });
  const budgets: Record<string, number> = {};
  if (o.budgets.maxAccuracyDrop !== undefined) budgets['max-accuracy-drop'] = o.budgets.maxAccuracyDrop;
  if (o.budgets.maxSizeRatio !== undefined) budgets['max-size-ratio'] = o.budgets.maxSizeRatio;
  const doc = {
    version: 1,
    model: rel(o.model),
    output: rel(out),
    passes: formatPipeline(steps),
    data: { ...(o.calibration ? { calibration: data(o.calibration) } : {}), eval: data(o.eval) },
    metric: rel(o.metric.replace(/#.*$/, '')) + (o.metric.includes('#') ? o.metric.slice(o.metric.lastIndexOf('#')) : ''),
    ...(Object.keys(o.shapes).length ? { shapes: o.shapes } : {}),
    ...(Object.keys(budgets).length ? { budgets } : {}),
    latency: { runs: o.latencyRuns, threads: o.threads },
    target: o.target,
  };
  const pipelineFile = `${stem}.pipeline.yaml`;
  const head = `# Written by onnxforge tune: the winning trial '${win.label}' (${o.objective} objective).\n# Reproduce it with: npx onnxforge run ${path.basename(pipelineFile)}${decisions ? `\n# Latency-aware quantization replays ${path.basename(decisions)} (no profiling), so the re-run writes the same bytes.` : ''}\n# The latency budget is left out: timings move with the machine's load; the tune report has them.\n`;
  writeFileAtomic(pipelineFile, head + toYaml(doc));
  return { model: out, pipeline: pipelineFile, ...(decisions ? { decisions } : {}) };
}
