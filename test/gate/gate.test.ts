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
  gateFailure,
  gateWorkflow,
  Measurement,
  MEASUREMENT_SCHEMA,
  parsePercent,
  readBaseline,
  LATENCY_ESTIMATOR,
  latencyVerdict,
  measureModel,
  validateMeasurement,
  verdictIsClear,
} from '../../workflows/gate.js';
import { renderBaselineWritten, renderGateJUnit, renderGateMarkdown, renderGateTable } from '../../report/gate.js';
import { describeContention, type Contention } from '../../runtime/timer.js';

const quiet: Contention = { wallMs: 1000, cpuMs: 990, cpuOverWall: 0.99, involuntaryContextSwitches: 3, preemptedSlots: 0, slotSpread: 0.02 };

function measurement(size: number, ratio: number, inputs = [{ name: 'x', type: 'float32', shape: [1, 8] as Array<number | string> }], noise = 0.005, seconds = 12): Measurement {
  return {
    schema: MEASUREMENT_SCHEMA,
    model: { file: 'm.onnx', sha256: 'x', sizeBytes: size, signature: { inputs, outputs: [{ name: 'y', type: 'float32', shape: [1, 8] }] } },
    latency: {
      ratioToReference: ratio,
      noise,
      stable: noise <= 0.02,
      ...(noise > 0.02 ? { unstableReason: 'the 3 fastest of 9 timing trials still differ' } : {}),
      trials: [ratio, ratio * (1 + noise), ratio * 1.2],
      rounds: 40,
      seconds,
      modelMinMs: ratio,
      modelP50Ms: ratio,
      referenceMinMs: 1,
      referenceP50Ms: 1,
      estimator: LATENCY_ESTIMATOR,
      referenceWorkload: 'conv3x3-32ch-56px/1',
      threads: 1,
      clock: 'cpu',
      contention: quiet,
    },
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
    const vs = (change: number, noise = 0.01) => ({ file: 'old.onnx', change, noise, stable: noise <= 0.02, trials: 9, seconds: 12, contention: quiet });
    const r = evaluateGate(base, measurement(1000, 0.9), budgets, vs(0.02));
    expect(r.passed).toBe(true);
    expect(r.checks.map((c) => c.metric)).toContain('latency (vs baseline model, interleaved)');
    expect(evaluateGate(base, measurement(1000, 0.5), budgets, vs(0.08)).passed).toBe(false);
    expect(evaluateGate(base, measurement(1000, 0.5), budgets, vs(0.045, 0.03)).checks[1]!.verdict).toBe('inconclusive');
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

describe('latency verdicts with noise', () => {
  const measured = { stable: true, seconds: 12 };
  it('fails only beyond the noise and after enough seconds, passes only within it, else says inconclusive', () => {
    expect(latencyVerdict(0.0, 0.02, 0.05, measured).verdict).toBe('pass');
    expect(latencyVerdict(0.11, 0.03, 0.05, measured).verdict).toBe('fail');
    const straddle = latencyVerdict(0.04, 0.02, 0.05, { stable: false, seconds: 30, unstableReason: 'trials still differ by 2.5%' });
    expect(straddle.verdict).toBe('inconclusive');
    expect(straddle.reason).toMatch(/straddles the budget: trials still differ/);
    const early = latencyVerdict(0.2, 0.01, 0.05, { stable: true, seconds: 3 }, 10);
    expect(early.verdict).toBe('inconclusive');
    expect(early.reason).toMatch(/only 3 s/);
  });

  it('passes an inconclusive latency row by default and fails it with strict; size still gates', () => {
    const base = baselineOf(measurement(1000, 0.5));
    const noisy = measurement(1000, 0.52, undefined, 0.06);
    const r = evaluateGate(base, noisy, budgets);
    expect(r.checks[1]!.verdict).toBe('inconclusive');
    expect(r.passed).toBe(true);
    expect(r.inconclusive).toBe(true);
    expect(renderGateTable(r)).toMatch(/latency inconclusive/);
    expect(renderGateJUnit(r)).toContain('failures="0" skipped="1"');
    const strict = evaluateGate(base, noisy, { ...budgets, strict: true });
    expect(strict.passed).toBe(false);
    expect(renderGateJUnit(strict)).toContain('failures="1" skipped="0"');
    expect(renderGateMarkdown(strict)).toMatch(/❔ inconclusive/);
    const bigAndNoisy = evaluateGate(base, measurement(1050, 0.52, undefined, 0.06), budgets);
    expect(bigAndNoisy.passed).toBe(false);
    expect(bigAndNoisy.checks[0]!.verdict).toBe('fail');
  });

  it('rejects a baseline from another estimator or the old measurement schema', () => {
    const base = baselineOf(measurement(1000, 0.5));
    const other = measurement(1000, 0.5);
    other.latency!.estimator = 'min-of-rounds/0';
    expect(() => evaluateGate(base, other, budgets)).toThrowError(/re-create the baseline/);
    const old = { ...measurement(1000, 0.5), schema: 'onnxforge.gate-measurement/1' };
    expect(() => validateMeasurement(old, 'b.json')).toThrowError(/gate-measurement\/1 is not supported.*--update-baseline/);
  });

  it('measures until the verdict is clear, with injected trials (no timing)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-gate-fake-'));
    try {
      const b = new GraphBuilder({ opset: 17 });
      const x = b.input('x', 'float32', [1, 4]);
      const [y] = b.op('Relu', [x]);
      b.output(y!, 'y', 'float32', [1, 4]);
      const file = path.join(dir, 'm.onnx');
      saveModelSync(b.model(), file);
      const feed = { x: { type: 'float32' as const, dims: [1, 4], data: new Float32Array(4) } };
      const fake = (ratios: number[] | ((i: number) => number)) => {
        let i = 0;
        const at = typeof ratios === 'function' ? ratios : (k: number) => ratios[k % ratios.length]!;
        return async () => {
          const ratio = at(i++);
          return { ratio, aMinMs: ratio, bMinMs: 1, aP50Ms: ratio, bP50Ms: 1, contention: quiet };
        };
      };
      const baseLat = measurement(10, 0.5).latency!;
      // agreeing trials at the baseline's ratio: pass after the least trials
      const same = await measureModel(file, { feed, trial: fake([0.5, 0.501, 0.502, 0.6, 0.503]), done: verdictIsClear(baseLat, 0.05, 10) });
      expect(same.latency!.trials).toHaveLength(5);
      expect(same.latency!.ratioToReference).toBeCloseTo(0.501, 6);
      // trials that never agree: measured up to the limit, then the estimate is not stable and says why
      const noisy = await measureModel(file, { feed, trial: fake((i) => 0.5 + 0.02 * i), maxSeconds: 0.05, minTrials: 4, done: verdictIsClear(baseLat, 0.05, 10) });
      expect(noisy.latency!.stable).toBe(false);
      expect(noisy.latency!.unstableReason).toMatch(/still differ by .* limit/);
      expect(evaluateGate(baselineOf(measurement(fs.statSync(file).size, 0.5, [{ name: 'x', type: 'float32', shape: [1, 4] }])), { ...noisy, model: { ...noisy.model, signature: { ...noisy.model.signature, outputs: [{ name: 'y', type: 'float32', shape: [1, 8] }] } } }, budgets).checks[1]!.verdict).toBe('inconclusive');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
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

describe('gate workflow', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-gate-wf-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('judges a saved measurement against a baseline without argv or printing, and names the failure', async () => {
    const baselineFile = path.join(dir, 'b.json');
    const saved = path.join(dir, 'm.json');
    fs.writeFileSync(baselineFile, JSON.stringify(baselineOf(measurement(1000, 0.5))));
    fs.writeFileSync(saved, JSON.stringify(measurement(1100, 0.5)));
    const copy = path.join(dir, 'copy.json');
    const out = await gateWorkflow({ baseline: baselineFile, report: saved, budgets, saveMeasurement: copy });
    expect(out.kind).toBe('check');
    if (out.kind !== 'check') return;
    expect(out.result.checks.map((c) => [c.metric, c.verdict])).toEqual([
      ['size', 'fail'],
      ['latency (ratio to reference workload)', 'pass'],
    ]);
    expect(JSON.parse(fs.readFileSync(copy, 'utf8')).model.sizeBytes).toBe(1100);
    const failure = gateFailure(out.result, saved);
    expect(failure?.code).toBe('GATE_REGRESSION');
    expect(failure?.message).toMatch(/size \+10\.00% \(budget <= \+1\.00%\)/);
    const same = await gateWorkflow({ baseline: baselineFile, report: path.join(dir, 'copy.json'), budgets: { ...budgets, maxSizeIncrease: 0.2 } });
    expect(same.kind === 'check' && gateFailure(same.result, saved)).toBeUndefined();
  });

  it('rejects bad options before reading or measuring anything', async () => {
    const b = path.join(dir, 'none.json');
    await expect(gateWorkflow({ baseline: b, budgets })).rejects.toThrowError(/give --model/);
    await expect(gateWorkflow({ baseline: b, report: 'r.json', baselineModel: 'x.onnx', budgets })).rejects.toThrowError(/--baseline-model needs --model/);
    await expect(gateWorkflow({ baseline: b, report: 'r.json', rounds: 4, budgets })).rejects.toThrowError(/--rounds must be an integer of at least 5, got 4/);
    expect(fs.existsSync(b)).toBe(false);
  });

  it('says what an updated baseline holds', () => {
    const m = measurement(1000, 0.5);
    expect(renderBaselineWritten('b.json', m)).toBe(`wrote baseline b.json: 1000 bytes, latency 0.500x the reference workload ± 0.5% (3 trials in 12 s; ${describeContention(quiet)})`);
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
    expect(await run(['gate', '--baseline', baseline, '--model', model, '--update-baseline', '--rounds', '10', '--max-seconds', '2'])).toBe(0);
    expect(readBaseline(baseline).measurement.latency!.ratioToReference).toBeGreaterThan(0);
    // latency budgets are wide here: timing assertions do not belong in tests on shared machines
    expect(await run(['gate', '--baseline', baseline, '--model', model, '--rounds', '10', '--max-seconds', '2', '--max-latency-increase', '1000%', '--junit', junit])).toBe(0);
    expect(out.join('')).toMatch(/gate PASSED/);
    const summary = path.join(dir, 'summary.md');
    const prev = process.env.GITHUB_STEP_SUMMARY;
    process.env.GITHUB_STEP_SUMMARY = summary;
    try {
      expect(await run(['gate', '--baseline', baseline, '--model', bigger, '--rounds', '10', '--max-seconds', '2', '--max-latency-increase', '1000%', '--junit', junit])).toBe(1);
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
    expect(await run(['gate', '--baseline', baseline, '--model', model, '--update-baseline', '--rounds', '10', '--max-seconds', '2'])).toBe(0);
    expect(await run(['gate', '--baseline', baseline, '--model', model, '--rounds', '10', '--max-seconds', '2', '--max-latency-increase', '1000%', '--save-measurement', saved, '--junit', path.join(dir, 'j.xml')])).toBe(0);
    expect(await run(['gate', '--baseline', baseline, '--report', saved, '--max-latency-increase', '1000%', '--junit', path.join(dir, 'j.xml')])).toBe(0);
  });

  it('exits 0 on an inconclusive latency verdict, 1 with --strict', async () => {
    const baseline = path.join(dir, 'baseline3.json');
    const noisy = path.join(dir, 'noisy.json');
    const size = fs.statSync(model).size;
    const inputs = [{ name: 'x', type: 'float32', shape: [1, 64] as Array<number | string> }];
    const m = (ratio: number, noise: number) => {
      const x = measurement(size, ratio, inputs, noise);
      x.model.signature.outputs = [{ name: 'y', type: 'float32', shape: [1, 64] }];
      return x;
    };
    fs.writeFileSync(baseline, JSON.stringify(baselineOf(m(0.5, 0.005))));
    fs.writeFileSync(noisy, JSON.stringify(m(0.52, 0.08)));
    const junit = path.join(dir, 'j3.xml');
    expect(await run(['gate', '--baseline', baseline, '--report', noisy, '--junit', junit])).toBe(0);
    expect(out.join('')).toMatch(/inconclusive/);
    expect(await run(['gate', '--baseline', baseline, '--report', noisy, '--junit', junit, '--strict'])).toBe(1);
    expect(err.join('')).toMatch(/error\[GATE_INCONCLUSIVE\]/);
    expect(fs.readFileSync(junit, 'utf8')).toContain('failures="1"');
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
