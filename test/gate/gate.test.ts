import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { saveModelSync } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import { runCli } from '../helpers/run-cli.js';
import {
  BASELINE_SCHEMA,
  Baseline,
  evaluateGate,
  Measurement,
  MEASUREMENT_SCHEMA,
  parsePercent,
  readBaseline,
  renderGateJUnit,
  renderGateMarkdown,
} from '../../workflows/gate.js';

function measurement(size: number, ratio: number, inputs = [{ name: 'x', type: 'float32', shape: [1, 8] as Array<number | string> }]): Measurement {
  return {
    schema: MEASUREMENT_SCHEMA,
    model: { file: 'm.onnx', sha256: 'x', sizeBytes: size, signature: { inputs, outputs: [{ name: 'y', type: 'float32', shape: [1, 8] }] } },
    latency: { ratioToReference: ratio, modelP50Ms: ratio, referenceP50Ms: 1, rounds: 10, spread: 0.01, referenceWorkload: 'conv3x3-32ch-56px/1', threads: 1, clock: 'cpu' },
    environment: { node: 'v20', onnxruntime: '1.30.0', cpu: 'cpu', cores: 2, platform: 'linux-x64' },
    measuredAt: '2026-11-23T00:00:00Z',
  };
}

const baselineOf = (m: Measurement): Baseline => ({ schema: BASELINE_SCHEMA, createdAt: '2026-11-23T00:00:00Z', measurement: m });
const budgets = { maxSizeIncrease: 0.01, maxLatencyIncrease: 0.05 };

describe('gate verdicts', () => {
  it('passes an unchanged model and fails size and latency regressions past the budget', () => {
    const base = baselineOf(measurement(1000, 0.5));
    expect(evaluateGate(base, measurement(1000, 0.5), budgets).passed).toBe(true);
    expect(evaluateGate(base, measurement(1009, 0.52), budgets).passed).toBe(true);
    const bigger = evaluateGate(base, measurement(1020, 0.5), budgets);
    expect(bigger.passed).toBe(false);
    expect(bigger.checks.find((c) => c.metric === 'size')!.verdict).toBe('fail');
    const slower = evaluateGate(base, measurement(1000, 0.55), budgets);
    expect(slower.passed).toBe(false);
    expect(slower.checks.find((c) => c.metric.startsWith('latency'))!.relativeChange).toBeCloseTo(0.1, 6);
  });

  it('uses the interleaved comparison with a baseline model instead of the stored ratio', () => {
    const base = baselineOf(measurement(1000, 0.5));
    const r = evaluateGate(base, measurement(1000, 0.9), budgets, { file: 'old.onnx', change: 0.02, rounds: 50 });
    expect(r.passed).toBe(true);
    expect(r.checks.map((c) => c.metric)).toContain('latency (vs baseline model, interleaved)');
    expect(evaluateGate(base, measurement(1000, 0.5), budgets, { file: 'old.onnx', change: 0.08, rounds: 50 }).passed).toBe(false);
  });

  it('checks accuracy against --min-accuracy and fails when none was measured', () => {
    const base = baselineOf(measurement(1000, 0.5));
    const cur = { ...measurement(1000, 0.5), accuracy: { metric: 'top1', value: 0.93 } };
    expect(evaluateGate(base, cur, { ...budgets, minAccuracy: 0.9 }).passed).toBe(true);
    expect(evaluateGate(base, cur, { ...budgets, minAccuracy: 0.95 }).passed).toBe(false);
    expect(evaluateGate(base, measurement(1000, 0.5), { ...budgets, minAccuracy: 0.5 }).passed).toBe(false);
  });

  it('rejects a baseline made for another model interface', () => {
    const base = baselineOf(measurement(1000, 0.5));
    const other = measurement(1000, 0.5, [{ name: 'input', type: 'float32', shape: [1, 8] }]);
    expect(() => evaluateGate(base, other, budgets)).toThrowError(/another model/);
  });

  it('parses budgets as percentages', () => {
    expect(parsePercent('1%', 'x')).toBeCloseTo(0.01);
    expect(parsePercent('2.5', 'x')).toBeCloseTo(0.025);
    expect(() => parsePercent('-1%', '--max-size-increase')).toThrowError(/--max-size-increase/);
    expect(() => parsePercent('abc', 'x')).toThrowError(/percentage/);
  });

  it('renders Markdown for a pull request and JUnit XML with one testcase per check', () => {
    const r = evaluateGate(baselineOf(measurement(1000, 0.5)), measurement(1030, 0.5), budgets);
    const md = renderGateMarkdown(r);
    expect(md).toMatch(/\| size \| 1000 B \| 1030 B \| \+3\.00% \| <= \+1\.00% \| ❌ fail \|/);
    const xml = renderGateJUnit(r);
    expect(xml).toContain('tests="2" failures="1"');
    expect(xml).toMatch(/<testcase classname="onnxforge.gate" name="size">\s*<failure message="size: 1030 B vs baseline 1000 B/);
  });
});

describe('baseline files', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-gate-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, text: string) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, text);
    return f;
  };

  it('names the problem in malformed baselines', () => {
    expect(() => readBaseline(write('a.json', '{oops'))).toThrowError(/not valid JSON/);
    expect(() => readBaseline(write('b.json', JSON.stringify({ schema: 'onnxforge.gate-baseline/9', measurement: {} })))).toThrowError(/schema onnxforge.gate-baseline\/9 is not supported/);
    expect(() => readBaseline(write('c.json', JSON.stringify({ schema: 'something-else' })))).toThrowError(/field schema/);
    const m = measurement(10, 1) as unknown as Record<string, unknown>;
    const noSize = { ...m, model: { ...(m.model as object), sizeBytes: 'big' } };
    expect(() => readBaseline(write('d.json', JSON.stringify({ schema: BASELINE_SCHEMA, measurement: noSize })))).toThrowError(/measurement.model.sizeBytes/);
    expect(() => readBaseline(path.join(dir, 'missing.json'))).toThrowError(/no such baseline/);
    expect(readBaseline(write('ok.json', JSON.stringify(baselineOf(measurement(10, 1))))).measurement.model.sizeBytes).toBe(10);
  });
});

describe('gate command', () => {
  let dir: string;
  let model: string;
  let bigger: string;
  let out: string[];
  let err: string[];

  function build(extra: number): string {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', [1, 64]);
    const w = b.initializer('w', Tensor.from('float32', [64, 64], new Float32Array(64 * 64).map((_, i) => Math.sin(i))));
    let [y] = b.op('MatMul', [x, w]);
    if (extra > 0) {
      const pad = b.initializer('pad', Tensor.from('float32', [extra], new Float32Array(extra).fill(0)));
      const [s] = b.op('ReduceSum', [pad], { keepdims: 0 });
      [y] = b.op('Add', [y!, s!]);
    }
    b.output(y!, 'y', 'float32', [1, 64]);
    const file = path.join(dir, `m${extra}.onnx`);
    saveModelSync(b.model(), file);
    return file;
  }

  async function run(args: string[]): Promise<number> {
    const r = await runCli(args);
    out = [r.out];
    err = [r.err];
    return r.code;
  }

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-gate-cli-'));
    model = build(0);
    bigger = build(1024);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('creates a baseline, passes the same model, and fails a bigger one with exit 1, JUnit and a summary', async () => {
    const baseline = path.join(dir, 'baseline.json');
    const junit = path.join(dir, 'junit.xml');
    expect(await run(['gate', '--baseline', baseline, '--model', model, '--update-baseline', '--rounds', '10'])).toBe(0);
    expect(readBaseline(baseline).measurement.latency!.ratioToReference).toBeGreaterThan(0);
    // latency budgets are wide here: timing assertions do not belong in tests on shared machines
    expect(await run(['gate', '--baseline', baseline, '--model', model, '--rounds', '10', '--max-latency-increase', '1000%', '--junit', junit])).toBe(0);
    expect(out.join('')).toMatch(/gate PASSED/);
    const summary = path.join(dir, 'summary.md');
    const prev = process.env.GITHUB_STEP_SUMMARY;
    process.env.GITHUB_STEP_SUMMARY = summary;
    try {
      expect(await run(['gate', '--baseline', baseline, '--model', bigger, '--rounds', '10', '--max-latency-increase', '1000%', '--junit', junit])).toBe(1);
    } finally {
      if (prev === undefined) delete process.env.GITHUB_STEP_SUMMARY;
      else process.env.GITHUB_STEP_SUMMARY = prev;
    }
    expect(err.join('')).toMatch(/error\[GATE_REGRESSION\].*size \+\d+\.\d+%/);
    expect(fs.readFileSync(junit, 'utf8')).toContain('failures="1"');
    expect(fs.readFileSync(summary, 'utf8')).toMatch(/FAILED/);
  });

  it('reuses a saved measurement with --report', async () => {
    const baseline = path.join(dir, 'baseline2.json');
    const saved = path.join(dir, 'current.json');
    expect(await run(['gate', '--baseline', baseline, '--model', model, '--update-baseline', '--rounds', '10'])).toBe(0);
    expect(await run(['gate', '--baseline', baseline, '--model', model, '--rounds', '10', '--max-latency-increase', '1000%', '--save-measurement', saved, '--junit', path.join(dir, 'j.xml')])).toBe(0);
    expect(await run(['gate', '--baseline', baseline, '--report', saved, '--max-latency-increase', '1000%', '--junit', path.join(dir, 'j.xml')])).toBe(0);
  });

  it('exits 2 on bad input: missing files, malformed baselines, wrong usage', async () => {
    expect(await run(['gate', '--baseline', path.join(dir, 'nope.json'), '--model', model])).toBe(2);
    expect(err.join('')).toMatch(/error\[FILE_NOT_FOUND\]/);
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, '[1,2]');
    expect(await run(['gate', '--baseline', bad, '--model', model])).toBe(2);
    expect(await run(['gate', '--baseline', bad])).toBe(2);
    expect(err.join('')).toMatch(/--model/);
    expect(await run(['gate', '--baseline', bad, '--model', path.join(dir, 'missing.onnx')])).toBe(2);
    expect(await run(['gate', '--baseline', bad, '--model', model, '--max-size-increase', 'lots'])).toBe(2);
    expect(err.join('')).not.toMatch(/\n\s+at /);
  });
});
