/**
 * The CI regression gate: measure a model (size, latency relative to a reference workload, optional
 * accuracy), compare with a checked-in baseline under budgets ({@link gateWorkflow}, which the `gate`
 * command and `bench:gate` call). The documents and their rendering (terminal table, Markdown summary,
 * JUnit XML) live in report/gate.ts.
 *
 * Latency on shared CI machines is noisy, so the gate never compares raw milliseconds between runs and
 * never fails on noise (runtime/timer.ts has the estimator and why):
 * - the model and a fixed reference workload (`reference-workload.ts`) run in short trials of fresh
 *   sessions, interleaved and timed by CPU time; a trial's ratio is the fastest model slot over the
 *   fastest reference slot; the estimate is the median of the lowest third of the trial ratios and its
 *   noise the spread of that third. Baseline and check use the same trial and the same statistic, so
 *   a baseline measured longer estimates the same quantity (the old gate compared the minimum of 450
 *   rounds with the minimum of 150);
 * - a check measures until its verdict is clear: the change minus its noise above the budget fails,
 *   the change plus its noise within the budget passes; otherwise it keeps measuring up to a time limit
 *   and then says "inconclusive" with the reason (exit 0 unless --strict). A failure needs at least
 *   `failMinSeconds` of trials, so that a passing burst of load on the machine cannot make one;
 * - with a baseline model, both models are timed in the same trials instead and the change is their
 *   estimated ratio minus 1.
 */
import { backendDriftCheck, type BackendDriftOptions } from './compare-backends.js';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkError, inputError, type OnnxForgeError } from '../core/errors.js';
import { writeFileAtomic } from '../core/files.js';
import type { Feed } from '../core/host-tensor.js';
import { collectSamples, openDataSource, parseDataSpec } from '../data/index.js';
import {
  BASELINE_SCHEMA,
  MEASUREMENT_SCHEMA,
  type Baseline,
  type BaselineModelComparison,
  type GateCheck,
  type GateResult,
  type IoSignature,
  type LatencyMeasurement,
  type Measurement,
  type Signature,
} from '../report/gate.js';
import { loadMetric } from '../runtime/metrics.js';
import { Session } from '../runtime/session.js';
import { adaptiveEstimate, describeContention, mergeContention, median, onnxruntimeVersion, ratioTrial, RatioTrial, StableEstimate } from '../runtime/timer.js';
import { evaluate } from './evaluate.js';
import { noProgress, type ProgressFactory } from './progress.js';
import { REFERENCE_WORKLOAD_VERSION, referenceWorkloadFeed, referenceWorkloadModel } from './reference-workload.js';

// the documents are defined with their rendering (report/gate.ts); re-exported here, where callers of the gate have imported them
export { BASELINE_SCHEMA, MEASUREMENT_SCHEMA };
export type { Baseline, BaselineModelComparison, GateCheck, GateResult, IoSignature, LatencyMeasurement, Measurement, Signature, Verdict } from '../report/gate.js';

/** The latency estimator; a baseline made with another one is not comparable. */
export const LATENCY_ESTIMATOR = 'trial-floor/1';

export interface Budgets {
  /** Fractions: 0.01 = 1%. */
  maxSizeIncrease: number;
  maxLatencyIncrease: number;
  minAccuracy?: number;
  /** Treat an inconclusive latency verdict as a failure. */
  strict?: boolean;
  /** Least seconds of trials before latency may fail (default 10). */
  failMinSeconds?: number;
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
  return { node: process.version, onnxruntime: onnxruntimeVersion(), cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, platform: `${process.platform}-${process.arch}` };
}

export interface TimingOptions {
  /** Interleaved rounds per trial (default 40). */
  rounds?: number;
  threads?: number;
  /** Time limit of the adaptive measurement, seconds (default 60). */
  maxSeconds?: number;
  /** Trials before it may stop (default 5). */
  minTrials?: number;
  /** Noise at which the estimate counts as stable (default 0.02). */
  tolerance?: number;
  /** Stop early when this says the estimate is good enough (e.g. the verdict is clear). */
  done?: (e: StableEstimate) => boolean;
  onTrial?: (e: StableEstimate) => void;
  /** One trial (injectable for tests; default: fresh onnxruntime sessions, runtime/timer.ts). */
  trial?: (a: { source: string | Uint8Array; feed: Feed; name: string }, b: { source: string | Uint8Array; feed: Feed; name: string }) => Promise<RatioTrial>;
}

export interface MeasureOptions extends TimingOptions {
  /** Inputs for timing; default: generated from the model's declared inputs. */
  feed: Feed;
  latency?: boolean;
  accuracy?: { metric: string; value: number };
}

/** Adaptive trials of A against B (runtime/timer.ts), with the slot times and contention of every trial. */
async function estimate(a: { source: string | Uint8Array; feed: Feed; name: string }, b: { source: string | Uint8Array; feed: Feed; name: string }, opts: TimingOptions) {
  const threads = opts.threads ?? 1;
  const runs: RatioTrial[] = [];
  const trial = opts.trial ?? ((x, y) => ratioTrial(x, y, { rounds: opts.rounds ?? 40, session: { intraOpNumThreads: threads } }));
  const e = await adaptiveEstimate(
    async () => {
      const t = await trial(a, b);
      runs.push(t);
      return t.ratio;
    },
    {
      ...(opts.maxSeconds !== undefined ? { maxSeconds: opts.maxSeconds } : {}),
      ...(opts.minTrials !== undefined ? { minTrials: opts.minTrials } : {}),
      ...(opts.tolerance !== undefined ? { tolerance: opts.tolerance } : {}),
      ...(opts.done ? { done: opts.done } : {}),
      ...(opts.onTrial ? { onTrial: opts.onTrial } : {}),
    },
  );
  return { e, runs, contention: mergeContention(runs.map((r) => r.contention)), clock: (threads === 1 ? 'cpu' : 'wall') as 'cpu' | 'wall' };
}

/** Measures a model for the gate: size, signature, and latency against the reference workload. */
export async function measureModel(file: string, opts: MeasureOptions): Promise<Measurement> {
  const threads = opts.threads ?? 1;
  const session = await Session.create(file, { intraOpNumThreads: threads, graphOptimizationLevel: 'all', allowSpinning: false });
  let signature: Signature;
  try {
    signature = signatureOf(session);
  } finally {
    await session.dispose();
  }
  const m: Measurement = {
    schema: MEASUREMENT_SCHEMA,
    model: { file: path.basename(file), sha256: await sha256File(file), sizeBytes: modelDiskSize(file), signature },
    environment: environment(),
    measuredAt: new Date().toISOString(),
  };
  if (opts.latency !== false) {
    const { e, runs, contention, clock } = await estimate({ source: file, feed: opts.feed, name: path.basename(file) }, { source: referenceWorkloadModel(), feed: referenceWorkloadFeed(), name: 'reference workload' }, opts);
    m.latency = {
      ratioToReference: e.value,
      noise: e.noise,
      stable: e.stable,
      ...(e.reason ? { unstableReason: e.reason } : {}),
      trials: e.trials,
      rounds: opts.rounds ?? 40,
      seconds: e.seconds,
      modelMinMs: median(runs.map((r) => r.aMinMs)),
      referenceMinMs: median(runs.map((r) => r.bMinMs)),
      modelP50Ms: median(runs.map((r) => r.aP50Ms)),
      referenceP50Ms: median(runs.map((r) => r.bP50Ms)),
      estimator: LATENCY_ESTIMATOR,
      referenceWorkload: REFERENCE_WORKLOAD_VERSION,
      threads,
      clock,
      contention,
    };
  }
  if (opts.accuracy) m.accuracy = opts.accuracy;
  return m;
}

/** Times the current model against a baseline model in the same trials; the change is their estimated ratio minus 1. */
export async function compareModels(current: string, baseline: string, feed: Feed, opts: TimingOptions = {}): Promise<BaselineModelComparison> {
  const threads = opts.threads ?? 1;
  const a = await Session.create(current, { intraOpNumThreads: threads, allowSpinning: false });
  const b = await Session.create(baseline, { intraOpNumThreads: threads, allowSpinning: false });
  try {
    const mismatch = sameSignature(signatureOf(b), signatureOf(a));
    if (mismatch) throw inputError('GATE_SIGNATURE_MISMATCH', `--baseline-model ${baseline} is not the same model interface as ${current}: ${mismatch}`, { file: baseline });
  } finally {
    await a.dispose();
    await b.dispose();
  }
  const { e, contention } = await estimate({ source: current, feed, name: path.basename(current) }, { source: baseline, feed, name: path.basename(baseline) }, opts);
  return { file: baseline, change: e.value - 1, noise: e.noise, stable: e.stable, ...(e.reason ? { unstableReason: e.reason } : {}), trials: e.trials.length, seconds: e.seconds, contention };
}

export interface LatencyVerdict {
  verdict: 'pass' | 'fail' | 'inconclusive';
  /** Why, in one sentence. */
  reason: string;
}

/**
 * The latency verdict from a measured relative change and its noise (both fractions): fail only
 * when the change minus the noise exceeds the budget and the trials lasted at least
 * `failMinSeconds`; pass when the change plus the noise is within the budget; otherwise inconclusive.
 */
export function latencyVerdict(change: number, noise: number, budget: number, measured: { stable: boolean; seconds: number; unstableReason?: string }, failMinSeconds = 10): LatencyVerdict {
  const band = `${pct(change)} ± ${(noise * 100).toFixed(1)}%`;
  if (change - noise > budget) {
    if (measured.seconds >= failMinSeconds) return { verdict: 'fail', reason: `${band} is above the budget even allowing for the measured noise` };
    return { verdict: 'inconclusive', reason: `${band} looks above the budget but was measured for only ${measured.seconds.toFixed(0)} s (a failure needs ${failMinSeconds} s of trials)` };
  }
  if (change + noise <= budget) return { verdict: 'pass', reason: `${band} is within the budget even allowing for the measured noise` };
  return { verdict: 'inconclusive', reason: `${band} straddles the budget${measured.stable ? '' : `: ${measured.unstableReason ?? 'the estimate did not settle'}`}` };
}

/** The noise of the latency change between a check and a baseline (each side's noise added). */
export function combinedNoise(current: LatencyMeasurement, baseline: LatencyMeasurement): number {
  return current.noise + baseline.noise;
}

/**
 * A `done` callback for {@link measureModel}: stop once the verdict against `baseline` is pass, or a
 * fail backed by `failMinSeconds` of trials.
 */
export function verdictIsClear(baseline: LatencyMeasurement, budget: number, failMinSeconds = 10): (e: StableEstimate) => boolean {
  return (e) => {
    const v = latencyVerdict(e.value / baseline.ratioToReference - 1, e.noise + baseline.noise, budget, { stable: e.stable, seconds: e.seconds }, failMinSeconds);
    return v.verdict !== 'inconclusive';
  };
}

/** The same for a comparison with a baseline model. */
export function comparisonIsClear(budget: number, failMinSeconds = 10): (e: StableEstimate) => boolean {
  return (e) => latencyVerdict(e.value - 1, e.noise, budget, { stable: e.stable, seconds: e.seconds }, failMinSeconds).verdict !== 'inconclusive';
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
    if (typeof l.noise !== 'number' || !(l.noise >= 0)) bad(`${at}.latency.noise`, 'must be a non-negative number (or Infinity written as null is not allowed)');
    if (typeof l.estimator !== 'string') bad(`${at}.latency.estimator`, 'must be a string');
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
export function evaluateGate(baseline: Baseline, current: Measurement, budgets: Budgets, baselineModel?: BaselineModelComparison): GateResult {
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
  const failMin = budgets.failMinSeconds ?? 10;
  if (baselineModel) {
    const v = latencyVerdict(baselineModel.change, baselineModel.noise, budgets.maxLatencyIncrease, baselineModel, failMin);
    checks.push({
      metric: 'latency (vs baseline model, interleaved)',
      baseline: '1.000x',
      current: `${(1 + baselineModel.change).toFixed(3)}x`,
      change: `${pct(baselineModel.change)} ± ${(baselineModel.noise * 100).toFixed(1)}%`,
      budget: `<= ${pct(budgets.maxLatencyIncrease)}`,
      verdict: v.verdict,
      relativeChange: baselineModel.change,
      noise: baselineModel.noise,
      detail: `${v.reason}; ${baselineModel.trials} trials in ${baselineModel.seconds.toFixed(0)} s; ${describeContention(baselineModel.contention)}`,
    });
  } else if (b.latency && current.latency) {
    if (b.latency.referenceWorkload !== current.latency.referenceWorkload) {
      throw inputError('GATE_REFERENCE_CHANGED', `the baseline's latency was measured against reference workload ${b.latency.referenceWorkload}, this onnxforge uses ${current.latency.referenceWorkload}; re-create the baseline with --update-baseline`);
    }
    if (b.latency.estimator !== current.latency.estimator) {
      throw inputError('GATE_REFERENCE_CHANGED', `the baseline's latency was estimated with ${b.latency.estimator}, this onnxforge uses ${current.latency.estimator}; re-create the baseline with --update-baseline`);
    }
    const change = current.latency.ratioToReference / b.latency.ratioToReference - 1;
    const noise = combinedNoise(current.latency, b.latency);
    const v = latencyVerdict(change, noise, budgets.maxLatencyIncrease, { stable: current.latency.stable, seconds: current.latency.seconds, ...(current.latency.unstableReason ? { unstableReason: current.latency.unstableReason } : {}) }, failMin);
    const l = current.latency;
    checks.push({
      metric: 'latency (ratio to reference workload)',
      baseline: `${b.latency.ratioToReference.toFixed(3)}`,
      current: `${l.ratioToReference.toFixed(3)}`,
      change: `${pct(change)} ± ${(noise * 100).toFixed(1)}%`,
      budget: `<= ${pct(budgets.maxLatencyIncrease)}`,
      verdict: v.verdict,
      relativeChange: change,
      noise,
      detail: `${v.reason}; fastest ${l.modelMinMs.toFixed(2)} ms (${l.clock} time) here, reference ${l.referenceMinMs.toFixed(2)} ms; ${l.trials.length} trials of ${l.rounds} rounds in ${l.seconds.toFixed(0)} s, noise here ${(l.noise * 100).toFixed(1)}%, in the baseline ${(b.latency.noise * 100).toFixed(1)}%; ${describeContention(l.contention)}`,
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
  const strict = budgets.strict ?? false;
  const inconclusive = checks.some((c) => c.verdict === 'inconclusive');
  const result: GateResult = { schema: 'onnxforge.gate/1', model: current.model.file, passed: checks.every((c) => c.verdict !== 'fail') && !(strict && inconclusive), inconclusive, strict, checks, current };
  if (baselineModel) result.baselineModel = baselineModel;
  return result;
}

/** What `gate` is asked to do: measure a model (or read a saved measurement) and judge it against a baseline. */
export interface GateOptions {
  /** The baseline file: read and judged against, or written with `updateBaseline`. */
  baseline: string;
  /** The model to measure now. */
  model?: string;
  /** A measurement saved earlier (`saveMeasurement`), instead of `model`. */
  report?: string;
  /** Time the old model interleaved with `model` in this process instead of using the stored ratio. */
  baselineModel?: string;
  budgets: Budgets;
  /** Evaluation data spec and metric module (path[#export]); together or not at all. */
  eval?: string;
  metric?: string;
  /** Inputs for timing (data spec; default generated). */
  inputs?: string;
  preprocess?: string;
  /** Sizes of symbolic input dims. */
  shapes?: Record<string, number[]>;
  /** Interleaved rounds per trial (default 40, at least 5). */
  rounds?: number;
  /** Time limit of the latency measurement, seconds (default 30; a baseline gets twice this). */
  maxSeconds?: number;
  threads?: number;
  /** Write the current measurement as the new baseline instead of judging it. */
  updateBaseline?: boolean;
  /** Also write the current measurement to this file. */
  saveMeasurement?: string;
  progress?: ProgressFactory;
  /** Also run `model` on two backends (default node, wasm) and fail when an output's max abs difference passes `max`. */
  backendDrift?: Omit<BackendDriftOptions, 'inputs' | 'preprocess' | 'shapes'>;
}

export type GateOutcome = { kind: 'baseline'; file: string; baseline: Baseline } | { kind: 'check'; result: GateResult };

/** One sample of the timing inputs: `inputs` (default one generated sample). */
async function timingFeed(model: string, o: GateOptions): Promise<Feed> {
  const s = await Session.create(model, { intraOpNumThreads: 1 });
  try {
    const spec = o.inputs ? parseDataSpec(o.inputs) : parseDataSpec('random:1:0');
    const samples = await collectSamples(spec, s.inputs, { shapes: o.shapes ?? {}, limit: 1, ...(o.preprocess ? { preprocess: o.preprocess } : {}) });
    if (samples.length === 0) throw inputError('GATE_NO_INPUTS', `--inputs ${o.inputs}: no samples`);
    return samples[0]!.feed;
  } finally {
    await s.dispose();
  }
}

/** The metric on the evaluation data, named `metric` or `metric.key` when the metric returns several values. */
async function measureAccuracy(model: string, o: GateOptions): Promise<{ metric: string; value: number } | undefined> {
  if (!o.eval && !o.metric) return undefined;
  if (!o.eval || !o.metric) throw inputError('USAGE_MISSING', '--eval and --metric go together');
  const metric = await loadMetric(o.metric);
  const s = await Session.create(model, {});
  try {
    const data = openDataSource(parseDataSpec(o.eval), s.inputs, { shapes: o.shapes ?? {}, ...(o.preprocess ? { preprocess: o.preprocess } : {}) });
    const rep = await evaluate(s, undefined, data, { metrics: [metric] });
    const rec = rep.metrics[metric.name] ?? {};
    const keys = Object.keys(rec);
    const key = keys.includes(metric.name) ? metric.name : keys.includes('accuracy') ? 'accuracy' : keys[0];
    if (key === undefined) throw inputError('METRIC_BAD_VALUE', `metric ${metric.name} returned nothing`);
    return { metric: key === metric.name ? metric.name : `${metric.name}.${key}`, value: rec[key]! };
  } finally {
    await s.dispose();
  }
}

function checkGateOptions(o: GateOptions): void {
  const rounds = o.rounds ?? 40;
  const maxSeconds = o.maxSeconds ?? 30;
  const failMinSeconds = o.budgets.failMinSeconds ?? 10;
  if (!o.model && !o.report) throw inputError('USAGE_MISSING', 'give --model (measure now) or --report (a saved measurement)');
  if (o.model && o.report) throw inputError('USAGE_CONFLICT', '--model and --report cannot be used together');
  if (o.baselineModel && !o.model) throw inputError('USAGE_CONFLICT', '--baseline-model needs --model');
  if (o.backendDrift && !o.model) throw inputError('USAGE_CONFLICT', '--max-backend-drift needs --model (it runs the model on both backends)');
  if (!Number.isInteger(rounds) || rounds < 5) throw inputError('USAGE_BAD_VALUE', `--rounds must be an integer of at least 5, got ${rounds}`);
  if (!(maxSeconds > 0)) throw inputError('USAGE_BAD_VALUE', `--max-seconds must be a positive number, got ${maxSeconds}`);
  if (!(failMinSeconds >= 0)) throw inputError('USAGE_BAD_VALUE', `--fail-min-seconds must be a non-negative number, got ${failMinSeconds}`);
  for (const f of [o.model, o.baselineModel]) if (f && !fs.existsSync(f)) throw inputError('FILE_NOT_FOUND', `${f}: no such model file`, { file: f });
}

/**
 * The gate: validates the options and the baseline before measuring anything, measures `model` (or
 * reads `report`), writes `saveMeasurement`, and then either writes the baseline (`updateBaseline`) or
 * judges the measurement against it. Timing progress goes to `progress` (seconds measured).
 */
export async function gateWorkflow(o: GateOptions): Promise<GateOutcome> {
  checkGateOptions(o);
  const rounds = o.rounds ?? 40;
  const threads = o.threads ?? 1;
  const failMinSeconds = o.budgets.failMinSeconds ?? 10;
  // validate the baseline before spending time measuring (unless we are creating it)
  const baseline: Baseline | undefined = o.updateBaseline ? undefined : readBaseline(o.baseline);
  let current: Measurement;
  let feed: Feed | undefined;
  if (o.model) {
    feed = await timingFeed(o.model, o);
    const accuracy = await measureAccuracy(o.model, o);
    // a baseline measures until its estimate is stable (twice the time limit); a check until its
    // verdict against the baseline is clear (runtime/timer.ts)
    const maxSeconds = (o.maxSeconds ?? 30) * (o.updateBaseline ? 2 : 1);
    const bar = (o.progress ?? noProgress)('gate: timing (s)', Math.ceil(maxSeconds));
    const stopWhen = baseline?.measurement.latency && !o.baselineModel ? { done: verdictIsClear(baseline.measurement.latency, o.budgets.maxLatencyIncrease, failMinSeconds) } : {};
    current = await measureModel(o.model, {
      feed,
      rounds,
      threads,
      maxSeconds,
      ...(o.updateBaseline ? { minTrials: 9 } : {}),
      ...stopWhen,
      onTrial: (e) => bar.update(Math.min(Math.ceil(maxSeconds), Math.round(e.seconds))),
      ...(accuracy ? { accuracy } : {}),
      latency: !o.baselineModel,
    });
    bar.done();
  } else current = readMeasurement(o.report!);
  if (o.saveMeasurement) writeFileAtomic(o.saveMeasurement, `${JSON.stringify(current, null, 2)}\n`);
  if (o.updateBaseline) {
    const b: Baseline = { schema: BASELINE_SCHEMA, createdAt: new Date().toISOString(), measurement: current };
    writeFileAtomic(o.baseline, `${JSON.stringify(b, null, 2)}\n`);
    return { kind: 'baseline', file: o.baseline, baseline: b };
  }
  let vsModel: BaselineModelComparison | undefined;
  if (o.baselineModel && o.model) {
    vsModel = await compareModels(o.model, o.baselineModel, feed!, { rounds, threads, maxSeconds: o.maxSeconds ?? 30, done: comparisonIsClear(o.budgets.maxLatencyIncrease, failMinSeconds) });
  }
  const result = evaluateGate(baseline!, current, o.budgets, vsModel);
  if (o.backendDrift && o.model) {
    result.checks.push(await backendDriftCheck(o.model, { ...o.backendDrift, ...(o.inputs ? { inputs: o.inputs } : {}), ...(o.preprocess ? { preprocess: o.preprocess } : {}), ...(o.shapes ? { shapes: o.shapes } : {}) }));
    result.passed &&= result.checks.every((c) => c.verdict !== 'fail');
  }
  return { kind: 'check', result };
}

/** The error a failed gate exits with (GATE_REGRESSION, or GATE_INCONCLUSIVE under --strict); undefined when it passed. */
export function gateFailure(result: GateResult, file: string): OnnxForgeError | undefined {
  if (result.passed) return undefined;
  const failed = result.checks.filter((c) => c.verdict === 'fail').map((c) => `${c.metric} ${c.change} (budget ${c.budget})`);
  if (failed.length) return checkError('GATE_REGRESSION', `regression: ${failed.join('; ')}`, { file });
  const unsure = result.checks.filter((c) => c.verdict === 'inconclusive').map((c) => `${c.metric}: ${c.detail ?? c.change}`);
  return checkError('GATE_INCONCLUSIVE', `inconclusive with --strict: ${unsure.join('; ')}`, { file });
}
