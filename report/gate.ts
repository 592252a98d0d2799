/**
 * The gate's documents and their rendering: the measurement (`onnxforge.gate-measurement/2`), the
 * baseline that holds one (`onnxforge.gate-baseline/1`) and the verdict (`onnxforge.gate/1`), built by
 * workflows/gate.ts; rendered as a terminal table, a Markdown summary (GitHub step summary) and JUnit XML.
 */
import { describeContention, type Contention } from '../runtime/timer.js';
import { renderTable } from './table.js';

export const BASELINE_SCHEMA = 'onnxforge.gate-baseline/1';
export const MEASUREMENT_SCHEMA = 'onnxforge.gate-measurement/2';

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
  /** The estimate: median of the lowest third of the trial ratios t(model) / t(reference workload). */
  ratioToReference: number;
  /** Relative noise of the estimate: spread of the trials it is made of. */
  noise: number;
  /** Whether the estimate reached the stability tolerance before the time limit. */
  stable: boolean;
  /** Why not, when it did not. */
  unstableReason?: string;
  /** Every trial's ratio, in the order measured. */
  trials: number[];
  /** Interleaved rounds per trial. */
  rounds: number;
  seconds: number;
  /** Median over trials of the fastest model and reference slots, ms. */
  modelMinMs: number;
  referenceMinMs: number;
  modelP50Ms: number;
  referenceP50Ms: number;
  estimator: string;
  referenceWorkload: string;
  threads: number;
  /** Which clock the times were taken with. */
  clock: 'cpu' | 'wall';
  contention: Contention;
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
export type Verdict = 'pass' | 'fail' | 'skipped' | 'inconclusive';

export interface GateCheck {
  metric: string;
  baseline: string;
  current: string;
  change: string;
  budget: string;
  verdict: Verdict;
  /** The measured relative change (fraction) where it applies. */
  relativeChange?: number;
  /** Its measured noise (fraction), for latency. */
  noise?: number;
  detail?: string;
}

export interface GateResult {
  schema: 'onnxforge.gate/1';
  model: string;
  /** No check failed (an inconclusive latency row does not fail unless `strict`). */
  passed: boolean;
  /** A check said inconclusive. */
  inconclusive: boolean;
  strict: boolean;
  checks: GateCheck[];
  current: Measurement;
  baselineModel?: BaselineModelComparison;
}

/** The current model timed against the baseline model in the same trials. */
export interface BaselineModelComparison {
  file: string;
  /** Estimated ratio minus 1. */
  change: number;
  noise: number;
  stable: boolean;
  unstableReason?: string;
  trials: number;
  seconds: number;
  contention: Contention;
}
/** The last line of the terminal rendering. */
export function gateOutcome(r: GateResult): string {
  const failed = r.checks.some((c) => c.verdict === 'fail');
  if (failed) return 'gate FAILED: a budget was exceeded';
  if (r.inconclusive) return r.strict ? 'gate FAILED (--strict): the latency verdict is inconclusive' : 'gate PASSED, latency inconclusive (the machine was too noisy to tell; --strict makes this a failure)';
  return 'gate PASSED';
}

export function renderGateTable(r: GateResult): string {
  const rows = r.checks.map((c) => [c.metric, c.baseline, c.current, c.change, c.budget, c.verdict.toUpperCase()]);
  const details = r.checks.filter((c) => c.detail).map((c) => `  ${c.metric}: ${c.detail}`);
  return [renderTable(['metric', 'baseline', 'current', 'change', 'budget', 'verdict'], rows, { title: `onnxforge gate: ${r.model}` }), ...details, '', gateOutcome(r)].join('\n');
}

function mdEscape(s: string): string {
  return s.replace(/\|/g, '\\|');
}

export function renderGateMarkdown(r: GateResult): string {
  const icon = (v: Verdict) => (v === 'pass' ? '✅ pass' : v === 'fail' ? '❌ fail' : v === 'inconclusive' ? '❔ inconclusive' : '➖ skipped');
  const lines = [
    `### onnxforge gate: \`${mdEscape(r.model)}\` ${r.passed ? (r.inconclusive ? 'passed (latency inconclusive)' : 'passed') : 'FAILED'}`,
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
  const failing = (c: GateCheck) => c.verdict === 'fail' || (r.strict && c.verdict === 'inconclusive');
  const failures = r.checks.filter(failing).length;
  const skipped = r.checks.filter((c) => c.verdict === 'skipped' || (!r.strict && c.verdict === 'inconclusive')).length;
  const cases = r.checks.map((c) => {
    const open = `    <testcase classname="onnxforge.gate" name="${xmlEscape(c.metric)}">`;
    const body =
      failing(c)
        ? `\n      <failure message="${xmlEscape(`${c.metric}${c.verdict === 'inconclusive' ? ' inconclusive (--strict)' : ''}: ${c.current} vs baseline ${c.baseline} (${c.change}), budget ${c.budget}${c.verdict === 'inconclusive' ? `; ${c.detail ?? ''}` : ''}`)}"/>\n    `
        : c.verdict === 'skipped' || c.verdict === 'inconclusive'
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

/** The line printed after `--update-baseline` wrote `file`. */
export function renderBaselineWritten(file: string, m: Measurement): string {
  const l = m.latency;
  return `wrote baseline ${file}: ${m.model.sizeBytes} bytes${l ? `, latency ${l.ratioToReference.toFixed(3)}x the reference workload ± ${(l.noise * 100).toFixed(1)}% (${l.trials.length} trials in ${l.seconds.toFixed(0)} s${l.stable ? '' : `, not stable: ${l.unstableReason}`}; ${describeContention(l.contention)})` : ''}`;
}
