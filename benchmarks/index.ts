/**
 * `npm run bench [name ...]`: runs the benchmark scripts one after another, each in its own process
 * (so one benchmark's memory and threads do not disturb the next), and prints their tables. Without
 * names it runs all of them, which takes a long time; name the ones you want, e.g.
 * `npm run bench -- runtime passes`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const BENCHMARKS: Record<string, string> = {
  runtime: 'p50 stability of bench: the same model measured twice in one process',
  codec: 'load/save time, MB/s and peak RSS, including a 1 GiB external-data model',
  passes: 'node counts after default/fuse on PaddleOCR, outputs, session creation and latency',
  optimize: 'time of the default preset on the real models',
  quantize: 'static INT8 vs FP32 vs the reference quantizer: size, latency, accuracy',
  'quantize-modes': 'weight-compressed, dynamic and QOperator INT8',
  prune: 'magnitude and channel pruning: FLOPs, sizes, latency, accuracy',
  train: 'training-step throughput and peak memory',
  distill: 'pruned PaddleOCR cls distilled from the original',
  gate: 'CI gate reliability: false alarms and caught regressions',
  zoo: 'every npm-installed model through the plain CLI commands: exit codes, output error, size, seconds',
};

const dir = fileURLToPath(new URL('.', import.meta.url));
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
for (const w of wanted) {
  if (!(w in BENCHMARKS)) {
    console.error(`error[USAGE] unknown benchmark '${w}'; known: ${Object.keys(BENCHMARKS).join(', ')}`);
    process.exit(2);
  }
}
const names = wanted.length ? wanted : Object.keys(BENCHMARKS);
let failed = 0;
for (const name of names) {
  const file = `${dir}${name}.ts`;
  if (!existsSync(file)) {
    console.error(`skipping ${name}: ${file} is missing`);
    continue;
  }
  console.log(`\n=== ${name}: ${BENCHMARKS[name]}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.error(`=== ${name} failed (exit ${r.status})`);
  }
}
process.exitCode = failed ? 1 : 0;
