/**
 * The CI regression gate: measure a model (size, latency relative to a reference workload, optional
 * accuracy), compare with a checked-in baseline under budgets, and render the verdict as a terminal
 * table, a Markdown summary and JUnit XML.
 *
 * Latency on shared CI machines is noisy, so the gate never compares raw milliseconds between runs:
 * - the model and the fixed reference workload (`runtime/reference-workload.ts`) run in interleaved
 *   rounds in one process, timed by the process's CPU time (single-threaded sessions), so a machine
 *   that is 2x slower moves both times together and other processes' load barely registers;
 * - each side's cost is the fastest of its timed slots (interference only adds time), and the
 *   measurement is the ratio of the two;
 * - with a baseline model, both models are timed interleaved instead and the change is the ratio of
 *   their fastest slots.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as ort from 'onnxruntime-node';
import * as path from 'node:path';
import { inputError } from '../core/errors.js';
import { Session, toOrtTensor } from '../runtime/session.js';
import type { Feed } from '../core/host-tensor.js';
import { REFERENCE_WORKLOAD_VERSION, referenceWorkloadFeed, referenceWorkloadModel } from './reference-workload.js';
import { renderTable } from '../report/table.js';

export const BASELINE_SCHEMA = 'onnxforge.gate-baseline/1';
export const MEASUREMENT_SCHEMA = 'onnxforge.gate-measurement/1';

export interface IoSignature {
  name: string;
  type: string;
  shape: Array<number | string>;
}

export interface Signature {
  inputs: IoSignature[];
  outputs: IoSignature[];
}

export interface LatencyMeasurement {
  /**
   * min over rounds of t(model) / min over rounds of t(reference workload). Interference from other
   * processes only ever adds time, so the fastest of many timed slots is the steadiest estimate of a
   * model's own cost (measured on cls, 8 fresh measurements under load: min/min of CPU time varied by
   * 3.3%, the median of per-round ratios by 13%).
   */
  ratioToReference: number;
  modelP50Ms: number;
  referenceP50Ms: number;
  rounds: number;
  /** Interquartile range of the per-round ratios divided by their median. */
  spread: number;
  referenceWorkload: string;
  threads: number;
  /** Which clock the times were taken with. */
  clock: 'cpu' | 'wall';
}

export interface Measurement {
  schema: typeof MEASUREMENT_SCHEMA;
  model: { file: string; sha256: string; sizeBytes: number; signature: Signature };
  latency?: LatencyMeasurement;
  accuracy?: { metric: string; value: number };
  environment: { node: string; onnxruntime: string; cpu: string; cores: number; platform: string };
  measuredAt: string;
}

export interface Baseline {
  schema: typeof BASELINE_SCHEMA;
  createdAt: string;
  measurement: Measurement;
}

export interface Budgets {
  /** Fractions: 0.01 = 1%. */
  maxSizeIncrease: number;
  maxLatencyIncrease: number;
  minAccuracy?: number;
}

export type Verdict = 'pass' | 'fail' | 'skipped';

export interface GateCheck {
  metric: string;
  baseline: string;
  current: string;
  change: string;
  budget: string;
  verdict: Verdict;
  /** The measured relative change (fraction) where it applies. */
  relativeChange?: number;
  detail?: string;
}

export interface GateResult {
  schema: 'onnxforge.gate/1';
  model: string;
  passed: boolean;
  checks: GateCheck[];
  current: Measurement;
  baselineModel?: { file: string; latencyChange: number; rounds: number };
}

/** Parses a budget like "5%" or "5" (percent) into a fraction. */
export function parsePercent(text: string | number, option: string): number {
  const s = String(text).trim();
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*%?$/.exec(s);
  if (!m) throw inputError('USAGE_BAD_VALUE', `${option} must be a percentage such as 1% or 2.5%, got "${s}"`, { field: option });
  return Number(m[1]) / 100;
}

export function signatureOf(session: Session): Signature {
  const io = (v: { name: string; type: string; shape: (number | string)[] }): IoSignature => ({ name: v.name, type: String(v.type), shape: [...v.shape] });
  return { inputs: session.inputs.map(io), outputs: session.outputs.map(io) };
}

function sameSignature(a: Signature, b: Signature): string | undefined {
  const describe = (s: IoSignature) => `${s.name}:${s.type}[${s.shape.join(',')}]`;
  for (const k of ['inputs', 'outputs'] as const) {
    const x = a[k].map(describe).join(' ');
    const y = b[k].map(describe).join(' ');
    if (x !== y) return `${k} differ: baseline ${x || '(none)'} vs current ${y || '(none)'}`;
  }
  return undefined;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

function iqrOverMedian(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.round((s.length - 1) * p)))]!;
  const m = median(xs);
  return m > 0 ? (q(0.75) - q(0.25)) / m : NaN;
}

export interface TimingOptions {
  /** 'cpu' (default): process CPU time per run, robust to other load; 'wall': elapsed time. */
  clock?: 'cpu' | 'wall';
  rounds?: number;
  warmup?: number;
  threads?: number;
  onRound?: (done: number, total: number) => void;
}

async function toOrtFeed(feed: Feed): Promise<Record<string, ort.Tensor>> {
  const out: Record<string, ort.Tensor> = {};
  for (const [k, v] of Object.entries(feed)) out[k] = toOrtTensor(v, k);
  return out;
}

/**
 * Times sessions A and B interleaved (A B, B A, ...) and returns per-round times. Each "round" runs
 * each session `inner` times back to back and records the mean, which smooths timer granularity for
 * very fast models.
 */
export async function interleavedTimes(a: Session, feedA: Feed, b: Session, feedB: Feed, opts: TimingOptions = {}): Promise<{ a: number[]; b: number[] }> {
  const rounds = opts.rounds ?? 60;
  const warmup = opts.warmup ?? 5;
  const fa = await toOrtFeed(feedA);
  const fb = await toOrtFeed(feedB);
  // CPU time of this process (all threads) measures the work a run does, and barely moves when other
  // processes compete for the cores; wall time is the fallback for multi-threaded runs.
  const cpuClock = (opts.clock ?? 'cpu') === 'cpu';
  const now = () => {
    if (!cpuClock) return performance.now();
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const once = async (s: Session, f: Record<string, ort.Tensor>) => {
    const t0 = now();
    const out = await s.runOrt(f);
    const dt = now() - t0;
    for (const v of Object.values(out)) (v as { dispose?: () => void }).dispose?.();
    return dt;
  };
  for (let i = 0; i < warmup; i++) {
    await once(a, fa);
    await once(b, fb);
  }
  // calibrate each session's inner repetition so each timed slot lasts at least ~5 ms
  const reps = (ms: number) => Math.max(1, Math.min(50, Math.ceil(5 / Math.max(ms, 0.01))));
  const innerA = reps(await once(a, fa));
  const innerB = reps(await once(b, fb));
  const slot = async (s: Session, f: Record<string, ort.Tensor>, inner: number) => {
    let sum = 0;
    for (let k = 0; k < inner; k++) sum += await once(s, f);
    return sum / inner;
  };
  const ta: number[] = [];
  const tb: number[] = [];
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      ta.push(await slot(a, fa, innerA));
      tb.push(await slot(b, fb, innerB));
    } else {
      tb.push(await slot(b, fb, innerB));
      ta.push(await slot(a, fa, innerA));
    }
    opts.onRound?.(r + 1, rounds);
  }
  return { a: ta, b: tb };
}

export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  const fd = await fs.promises.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await fd.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fd.close();
  }
  return h.digest('hex');
}

/** Total bytes of a model on disk: the .onnx plus any external data files it references. */
export function modelDiskSize(file: string): number {
  let size = fs.statSync(file).size;
  const dir = path.dirname(file);
  const base = path.basename(file);
  // external data written by onnxforge sits beside the model as <name>.data
  const data = path.join(dir, `${base}.data`);
  if (fs.existsSync(data)) size += fs.statSync(data).size;
  return size;
}

export function environment(): Measurement['environment'] {
  return { node: process.version, onnxruntime: ort.env.versions?.node ?? 'unknown', cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, platform: `${process.platform}-${process.arch}` };
}

export interface MeasureOptions extends TimingOptions {
  /** Inputs for timing; default: generated from the model's declared inputs. */
  feed: Feed;
  latency?: boolean;
  accuracy?: { metric: string; value: number };
}

/** Measures a model for the gate: size, signature, and latency against the reference workload. */
export async function measureModel(file: string, opts: MeasureOptions): Promise<Measurement> {
  const threads = opts.threads ?? 1;
  const session = await Session.create(file, { intraOpNumThreads: threads, graphOptimizationLevel: 'all', allowSpinning: false });
  try {
    const m: Measurement = {
      schema: MEASUREMENT_SCHEMA,
      model: { file: path.basename(file), sha256: await sha256File(file), sizeBytes: modelDiskSize(file), signature: signatureOf(session) },
      environment: environment(),
      measuredAt: new Date().toISOString(),
    };
    if (opts.latency !== false) {
      const ref = await Session.create(referenceWorkloadModel(), { intraOpNumThreads: threads, graphOptimizationLevel: 'all', allowSpinning: false }, 'reference workload');
      try {
        const t = await interleavedTimes(session, opts.feed, ref, referenceWorkloadFeed(), { ...opts, clock: opts.clock ?? (threads === 1 ? 'cpu' : 'wall') });
        const ratios = t.a.map((x, i) => x / t.b[i]!);
        m.latency = {
          ratioToReference: Math.min(...t.a) / Math.min(...t.b),
          modelP50Ms: median(t.a),
          referenceP50Ms: median(t.b),
          rounds: ratios.length,
          spread: iqrOverMedian(ratios),
          referenceWorkload: REFERENCE_WORKLOAD_VERSION,
          threads,
          clock: opts.clock ?? (threads === 1 ? 'cpu' : 'wall'),
        };
      } finally {
        await ref.dispose();
      }
    }
    if (opts.accuracy) m.accuracy = opts.accuracy;
    return m;
  } finally {
    await session.dispose();
  }
}

/** Times the current model against a baseline model, interleaved; returns the median relative change. */
export async function compareModels(current: string, baseline: string, feed: Feed, opts: TimingOptions = {}): Promise<{ change: number; rounds: number; spread: number }> {
  const threads = opts.threads ?? 1;
  const a = await Session.create(current, { intraOpNumThreads: threads, allowSpinning: false });
  const b = await Session.create(baseline, { intraOpNumThreads: threads, allowSpinning: false });
  try {
    const mismatch = sameSignature(signatureOf(b), signatureOf(a));
    if (mismatch) throw inputError('GATE_SIGNATURE_MISMATCH', `--baseline-model ${baseline} is not the same model interface as ${current}: ${mismatch}`, { file: baseline });
    const t = await interleavedTimes(a, feed, b, feed, { ...opts, clock: opts.clock ?? (threads === 1 ? 'cpu' : 'wall') });
    const ratios = t.a.map((x, i) => x / t.b[i]!);
    return { change: Math.min(...t.a) / Math.min(...t.b) - 1, rounds: ratios.length, spread: iqrOverMedian(ratios) };
  } finally {
    await a.dispose();
    await b.dispose();
  }
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Validates a parsed measurement (from a baseline or a --report file), naming the bad field. */
export function validateMeasurement(x: unknown, file: string, at = 'measurement'): Measurement {
  const bad = (field: string, why: string): never => {
    throw inputError('GATE_BAD_BASELINE', `${file}: field ${field} ${why}`, { file, field });
  };
  if (!isObject(x)) return bad(at, 'must be an object');
  if (x.schema !== MEASUREMENT_SCHEMA) {
    if (typeof x.schema === 'string' && x.schema.startsWith('onnxforge.gate-measurement/')) {
      throw inputError('GATE_SCHEMA_VERSION', `${file}: measurement schema ${x.schema} is not supported (this onnxforge reads ${MEASUREMENT_SCHEMA}); re-create it with --update-baseline`, { file });
    }
    bad(`${at}.schema`, `must be "${MEASUREMENT_SCHEMA}"`);
  }
  const model = x.model;
  if (!isObject(model)) return bad(`${at}.model`, 'must be an object');
  if (typeof model.sizeBytes !== 'number' || !(model.sizeBytes >= 0)) bad(`${at}.model.sizeBytes`, 'must be a non-negative number');
  if (typeof model.sha256 !== 'string') bad(`${at}.model.sha256`, 'must be a string');
  const sig = model.signature;
  if (!isObject(sig) || !Array.isArray(sig.inputs) || !Array.isArray(sig.outputs)) bad(`${at}.model.signature`, 'must have inputs and outputs lists');
  if (x.latency !== undefined) {
    const l = x.latency;
    if (!isObject(l)) return bad(`${at}.latency`, 'must be an object');
    if (typeof l.ratioToReference !== 'number' || !(l.ratioToReference > 0)) bad(`${at}.latency.ratioToReference`, 'must be a positive number');
    if (typeof l.referenceWorkload !== 'string') bad(`${at}.latency.referenceWorkload`, 'must be a string');
  }
  if (x.accuracy !== undefined) {
    const a = x.accuracy;
    if (!isObject(a) || typeof a.value !== 'number' || typeof a.metric !== 'string') bad(`${at}.accuracy`, 'must be { metric: string, value: number }');
  }
  return x as unknown as Measurement;
}

/** Reads and validates a baseline file. */
export function readBaseline(file: string): Baseline {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw inputError('FILE_NOT_FOUND', `${file}: no such baseline file (create one with --update-baseline)`, { file });
  }
  let x: unknown;
  try {
    x = JSON.parse(text);
  } catch (e) {
    throw inputError('GATE_BAD_BASELINE', `${file}: not valid JSON (${(e as Error).message})`, { file });
  }
  if (!isObject(x)) throw inputError('GATE_BAD_BASELINE', `${file}: a baseline must be a JSON object`, { file });
  if (x.schema !== BASELINE_SCHEMA) {
    if (typeof x.schema === 'string' && x.schema.startsWith('onnxforge.gate-baseline/')) {
      throw inputError('GATE_SCHEMA_VERSION', `${file}: baseline schema ${x.schema} is not supported (this onnxforge reads ${BASELINE_SCHEMA}); re-create it with --update-baseline`, { file });
    }
    throw inputError('GATE_BAD_BASELINE', `${file}: field schema must be "${BASELINE_SCHEMA}" (is this a baseline file?)`, { file, field: 'schema' });
  }
  validateMeasurement(x.measurement, file, 'measurement');
  return x as unknown as Baseline;
}

/** Reads a measurement written with `gate --save-measurement` (the `--report` input). */
export function readMeasurement(file: string): Measurement {
  let x: unknown;
  try {
    x = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw inputError('FILE_NOT_FOUND', `${file}: no such report file`, { file });
    throw inputError('GATE_BAD_REPORT', `${file}: not valid JSON (${err.message})`, { file });
  }
  return validateMeasurement(x, file);
}

const pct = (f: number) => `${f >= 0 ? '+' : ''}${(f * 100).toFixed(2)}%`;

/** Compares a measurement with a baseline under budgets. */
export function evaluateGate(baseline: Baseline, current: Measurement, budgets: Budgets, baselineModel?: { file: string; change: number; rounds: number }): GateResult {
  const b = baseline.measurement;
  const mismatch = sameSignature(b.model.signature, current.model.signature);
  if (mismatch) throw inputError('GATE_SIGNATURE_MISMATCH', `the baseline was made for another model (${b.model.file}): ${mismatch}`, { file: current.model.file });
  const checks: GateCheck[] = [];
  const sizeChange = current.model.sizeBytes / b.model.sizeBytes - 1;
  checks.push({
    metric: 'size',
    baseline: `${b.model.sizeBytes} B`,
    current: `${current.model.sizeBytes} B`,
    change: pct(sizeChange),
    budget: `<= ${pct(budgets.maxSizeIncrease)}`,
    verdict: sizeChange <= budgets.maxSizeIncrease + 1e-12 ? 'pass' : 'fail',
    relativeChange: sizeChange,
  });
  if (baselineModel) {
    checks.push({
      metric: 'latency (vs baseline model, interleaved)',
      baseline: '1.000x',
      current: `${(1 + baselineModel.change).toFixed(3)}x`,
      change: pct(baselineModel.change),
      budget: `<= ${pct(budgets.maxLatencyIncrease)}`,
      verdict: baselineModel.change <= budgets.maxLatencyIncrease ? 'pass' : 'fail',
      relativeChange: baselineModel.change,
      detail: `${baselineModel.rounds} interleaved rounds`,
    });
  } else if (b.latency && current.latency) {
    if (b.latency.referenceWorkload !== current.latency.referenceWorkload) {
      throw inputError('GATE_REFERENCE_CHANGED', `the baseline's latency was measured against reference workload ${b.latency.referenceWorkload}, this onnxforge uses ${current.latency.referenceWorkload}; re-create the baseline with --update-baseline`);
    }
    const change = current.latency.ratioToReference / b.latency.ratioToReference - 1;
    checks.push({
      metric: 'latency (ratio to reference workload)',
      baseline: `${b.latency.ratioToReference.toFixed(3)}`,
      current: `${current.latency.ratioToReference.toFixed(3)}`,
      change: pct(change),
      budget: `<= ${pct(budgets.maxLatencyIncrease)}`,
      verdict: change <= budgets.maxLatencyIncrease ? 'pass' : 'fail',
      relativeChange: change,
      detail: `p50 ${current.latency.modelP50Ms.toFixed(2)} ms (${current.latency.clock ?? 'wall'} time) here, reference ${current.latency.referenceP50Ms.toFixed(2)} ms; ${current.latency.rounds} rounds, spread ${(current.latency.spread * 100).toFixed(1)}%`,
    });
  } else {
    checks.push({ metric: 'latency', baseline: b.latency ? 'measured' : '-', current: current.latency ? 'measured' : '-', change: '-', budget: `<= ${pct(budgets.maxLatencyIncrease)}`, verdict: 'skipped', detail: 'latency is missing on one side' });
  }
  if (budgets.minAccuracy !== undefined) {
    const acc = current.accuracy;
    checks.push({
      metric: `accuracy${acc ? ` (${acc.metric})` : ''}`,
      baseline: b.accuracy ? String(b.accuracy.value) : '-',
      current: acc ? acc.value.toFixed(4) : '-',
      change: acc && b.accuracy ? (acc.value - b.accuracy.value).toFixed(4) : '-',
      budget: `>= ${budgets.minAccuracy}`,
      verdict: acc ? (acc.value >= budgets.minAccuracy ? 'pass' : 'fail') : 'fail',
      ...(acc ? {} : { detail: 'no accuracy was measured (give --eval and --metric)' }),
    });
  }
  const result: GateResult = { schema: 'onnxforge.gate/1', model: current.model.file, passed: checks.every((c) => c.verdict !== 'fail'), checks, current };
  if (baselineModel) result.baselineModel = { file: baselineModel.file, latencyChange: baselineModel.change, rounds: baselineModel.rounds };
  return result;
}

export function renderGateTable(r: GateResult): string {
  const rows = r.checks.map((c) => [c.metric, c.baseline, c.current, c.change, c.budget, c.verdict.toUpperCase()]);
  const details = r.checks.filter((c) => c.detail).map((c) => `  ${c.metric}: ${c.detail}`);
  return [renderTable(['metric', 'baseline', 'current', 'change', 'budget', 'verdict'], rows, { title: `onnxforge gate: ${r.model}` }), ...details, '', r.passed ? 'gate PASSED' : 'gate FAILED: a budget was exceeded'].join('\n');
}

function mdEscape(s: string): string {
  return s.replace(/\|/g, '\\|');
}

export function renderGateMarkdown(r: GateResult): string {
  const icon = (v: Verdict) => (v === 'pass' ? '✅ pass' : v === 'fail' ? '❌ fail' : '➖ skipped');
  const lines = [
    `### onnxforge gate: \`${mdEscape(r.model)}\` ${r.passed ? 'passed' : 'FAILED'}`,
    '',
    '| metric | baseline | current | change | budget | verdict |',
    '| --- | ---: | ---: | ---: | --- | --- |',
    ...r.checks.map((c) => `| ${mdEscape(c.metric)} | ${c.baseline} | ${c.current} | ${c.change} | ${mdEscape(c.budget)} | ${icon(c.verdict)} |`),
  ];
  const details = r.checks.filter((c) => c.detail);
  if (details.length) lines.push('', ...details.map((c) => `- ${mdEscape(c.metric)}: ${mdEscape(c.detail!)}`));
  const env = r.current.environment;
  lines.push('', `<sub>onnxruntime-node ${env.onnxruntime}, ${env.cpu} (${env.cores} cores), Node ${env.node}</sub>`, '');
  return lines.join('\n');
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function renderGateJUnit(r: GateResult): string {
  const failures = r.checks.filter((c) => c.verdict === 'fail').length;
  const skipped = r.checks.filter((c) => c.verdict === 'skipped').length;
  const cases = r.checks.map((c) => {
    const open = `    <testcase classname="onnxforge.gate" name="${xmlEscape(c.metric)}">`;
    const body =
      c.verdict === 'fail'
        ? `\n      <failure message="${xmlEscape(`${c.metric}: ${c.current} vs baseline ${c.baseline} (${c.change}), budget ${c.budget}`)}"/>\n    `
        : c.verdict === 'skipped'
          ? `\n      <skipped message="${xmlEscape(c.detail ?? 'skipped')}"/>\n    `
          : '';
    return `${open}${body}</testcase>`;
  });
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="onnxforge gate" tests="${r.checks.length}" failures="${failures}" skipped="${skipped}">`,
    `  <testsuite name="${xmlEscape(r.model)}" tests="${r.checks.length}" failures="${failures}" skipped="${skipped}">`,
    ...cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}

/** The atomic text writer (graph/files.ts), re-exported where commands have always imported it. */
export { writeFileAtomic } from '../core/files.js';
