/**
 * `npm run bench:scale`: int4 of a model larger than memory, streamed (issue 21).
 *
 * 1. Builds a synthetic LLM-shaped model of about SCALE_GB (default 3) GB float32 with the project's
 *    builder (benchmarks/scale-model.ts: d 4096, MLP 11008, vocabulary 32000, as many decoder blocks
 *    as the size asks), its weights written straight to external data in chunks.
 * 2. Times a plain read+write copy of the same bytes (`dd bs=8M conv=fsync`), then deletes the copy.
 * 3. Quantizes the model to int4 with the workflow `quantize --mode int4` streams with, on its defaults,
 *    in a child process (benchmarks/scale-run.ts) whose peak RSS is read from outside (VmHWM of
 *    /proc/<pid>/status, polled; the child's own VmHWM at its end is the cross-check).
 * 4. Loads the int4 output in onnxruntime-node (a child process) and runs one token.
 * 5. Accuracy on a truncated copy (SCALE_CHECK_LAYERS, default 2, blocks of the same model: the same
 *    weights, seeded by name): one token through the float32 model and its streamed int4 in
 *    onnxruntime-node, logits compared (SQNR, cosine) against the int4 tolerance.
 *
 * Targets: peak RSS <= SCALE_RSS_MIB (default 1024 up to 3 GB, else 2048) and wall time <=
 * SCALE_TIME_RATIO (default 2) x the copy, both measured in this run; the output loads; the truncated check passes. Exit 1 when one is
 * missed. Everything is deleted at the end (SCALE_KEEP=1 keeps it). SCALE_DIR picks the folder.
 *
 * SCALE_METHOD=gptq: streamed GPTQ (workflows/stream-gptq.ts) on calibration token ids (SCALE_SAMPLES
 * windows, default 8, of SCALE_SEQ tokens, default 64, uniform over the vocabulary, a JSON data file),
 * on a narrower model by default (d 1024, MLP 2816, vocabulary 32000, SCALE_GB default 1: GPTQ's
 * work per weight grows with K^2; SCALE_D / SCALE_FF / SCALE_VOCAB override the widths);
 * SCALE_ACTIVATION_BYTES forces an activation budget (spilling), SCALE_SEGMENT_BYTES a segment budget.
 * Wall time is printed against the copy, not judged (GPTQ is compute-bound). The truncated check
 * quantizes the truncated model with RTN and with GPTQ and compares both with float32 on a
 * calibration window, a held-out window of random token ids and the one token; judged: GPTQ's logits
 * error on the calibration window (what GPTQ minimises, layer by layer) must not exceed RTN's. On this
 * model's random weights and uniformly random tokens the layer inputs are nearly isotropic, so a
 * held-out window gains nothing from GPTQ (it can lose: the sample Hessian's spread is noise).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { statfsFreeBytes } from '../onnx/stream.js';
import type { StreamInt4Report } from '../report/stream.js';
import { layersFor, llmBytes, LLM_7B_SHAPE, writeSyntheticLlm } from './scale-model.js';

const METHOD = process.env.SCALE_METHOD === 'gptq' ? 'gptq' : 'rtn';
const GB = Number(process.env.SCALE_GB ?? (METHOD === 'gptq' ? 1 : 3));
const RSS_MIB = Number(process.env.SCALE_RSS_MIB ?? (GB <= 3 ? 1024 : 2048));
const SHAPE = {
  d: Number(process.env.SCALE_D ?? (METHOD === 'gptq' ? 1024 : LLM_7B_SHAPE.d)),
  ff: Number(process.env.SCALE_FF ?? (METHOD === 'gptq' ? 2816 : LLM_7B_SHAPE.ff)),
  vocab: Number(process.env.SCALE_VOCAB ?? LLM_7B_SHAPE.vocab),
};
const SAMPLES = Number(process.env.SCALE_SAMPLES ?? 8);
const SEQ = Number(process.env.SCALE_SEQ ?? 64);
const CHECK_LAYERS = Number(process.env.SCALE_CHECK_LAYERS ?? 2);
/** Wall time bound, a multiple of the copy's (0: printed, not judged; CI, where other jobs share the CPU). */
const TIME_RATIO = Number(process.env.SCALE_TIME_RATIO ?? 2);
/** int4 tolerance of the truncated check: logits SQNR (dB) and cosine vs float32 (RTN, uniform random weights: ~7% relative error per weight at block 32, a little more at the default 64). */
const MIN_SQNR_DB = 12;
const MIN_COSINE = 0.97;

const here = path.dirname(new URL(import.meta.url).pathname);
const root = path.resolve(here, '..');
const dir = fs.mkdtempSync(path.join(process.env.SCALE_DIR ?? os.tmpdir(), 'onnxforge-scale-'));
const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
const log = (s: string) => process.stdout.write(`${s}\n`);

function loadAverage(): string {
  return os.loadavg().map((x) => x.toFixed(1)).join(' ');
}

/** `count` token ids uniform over the vocabulary (xorshift32 from `seed`). */
function tokenIds(count: number, seed: number): number[] {
  let x = seed;
  return Array.from({ length: count }, () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % SHAPE.vocab;
  });
}

/** Runs a node child with tsx; resolves with its stdout, wall ms and peak RSS polled from /proc. */
function child(args: string[]): Promise<{ out: string; err: string; code: number; ms: number; polledPeak: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let polledPeak = 0;
    const poll = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${p.pid}/status`, 'utf8'));
        if (m) polledPeak = Math.max(polledPeak, Number(m[1]) * 1024);
      } catch {
        /* exited */
      }
    }, 100);
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => {
      clearInterval(poll);
      resolve({ out, err, code: code ?? 1, ms: performance.now() - t0, polledPeak });
    });
  });
}

/** One token through a model in a child onnxruntime-node process (benchmarks/scale-token.ts): the logits. */
function oneToken(model: string, ids: number[] = []): Float32Array {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'benchmarks/scale-token.ts', model, ...ids.map(String)], { cwd: root, maxBuffer: 1 << 28, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`onnxruntime-node could not run ${model}: ${r.stderr.slice(-2000)}`);
  const b = Buffer.from(r.stdout, 'base64');
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

function compare(ref: Float32Array, q: Float32Array): { sqnrDb: number; cosine: number; finite: boolean } {
  let e = 0;
  let s = 0;
  let dot = 0;
  let qq = 0;
  let finite = true;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(q[i]!)) finite = false;
    e += (ref[i]! - q[i]!) ** 2;
    s += ref[i]! ** 2;
    dot += ref[i]! * q[i]!;
    qq += q[i]! ** 2;
  }
  return { sqnrDb: 10 * Math.log10(s / e), cosine: dot / Math.sqrt(s * qq), finite };
}

async function quantize(input: string, output: string, extra: string[] = []) {
  const r = await child(['benchmarks/scale-run.ts', 'int4', input, output, ...extra]);
  if (r.code !== 0) throw new Error(`streamed int4 failed (exit ${r.code}): ${r.err.slice(-2000)}`);
  const report = JSON.parse(r.out) as StreamInt4Report;
  return { ...r, report, peak: Math.max(r.polledPeak, report.write.peakRssBytes ?? 0) };
}

async function main(): Promise<number> {
  const shape = { ...SHAPE, layers: layersFor(GB * 1e9, SHAPE) };
  const size = llmBytes(shape).total;
  const need = size * 2 + size / 6;
  const free = statfsFreeBytes(dir);
  log(`bench:scale  SCALE_GB=${GB} SCALE_METHOD=${METHOD}: ${shape.layers} decoder blocks, d ${shape.d}, MLP ${shape.ff}, vocabulary ${shape.vocab}: ${(size / 1e9).toFixed(2)} GB float32 in ${dir}`);
  log(`load average at start: ${loadAverage()} (${os.cpus().length} cores)`);
  if (need > free) throw new Error(`needs about ${gib(need)} free (model + copy + int4), ${gib(free)} free in ${dir}`);

  const model = path.join(dir, 'llm.onnx');
  let t = performance.now();
  const gen = writeSyntheticLlm(model, shape);
  log(`generated ${gib(gen.dataBytes)} of weights in ${((performance.now() - t) / 1000).toFixed(1)} s (graph ${gen.modelBytes} bytes)`);

  // the plain copy of the same bytes, timed, then deleted
  const copy = path.join(dir, 'copy.data');
  t = performance.now();
  const dd = spawnSync('dd', [`if=${model}.data`, `of=${copy}`, 'bs=8M', 'conv=fsync', 'status=none']);
  const copyMs = performance.now() - t;
  fs.rmSync(copy, { force: true });
  if (dd.status !== 0) throw new Error(`dd failed: ${dd.stderr}`);
  log(`plain copy (dd bs=8M conv=fsync): ${(copyMs / 1000).toFixed(1)} s (${(gen.dataBytes / 1e6 / (copyMs / 1000)).toFixed(0)} MB/s); load average ${loadAverage()}`);

  // streamed GPTQ: calibration token ids (a JSON data file) and the budgets asked for
  const calibration = path.join(dir, 'calibration.json');
  fs.writeFileSync(calibration, JSON.stringify(Array.from({ length: SAMPLES }, (_, i) => ({ input_ids: { dims: [1, SEQ], dtype: 'int64', data: tokenIds(SEQ, 1 + i) } }))));
  const gptqArgs = ['--calibration', calibration, '--int4-method', 'gptq'];
  for (const [env, flag] of [['SCALE_ACTIVATION_BYTES', '--activation-bytes'], ['SCALE_SEGMENT_BYTES', '--segment-bytes']] as const) if (process.env[env]) gptqArgs.push(flag, process.env[env]!);
  const methodArgs = METHOD === 'gptq' ? gptqArgs : [];

  const out = path.join(dir, 'llm-int4.onnx');
  const q = await quantize(model, out, methodArgs);
  log(`int4 streamed (${q.report.method}): ${(q.ms / 1000).toFixed(1)} s wall, peak RSS ${gib(q.peak)} (polled ${gib(q.polledPeak)}, own VmHWM ${gib(q.report.write.peakRssBytes ?? 0)}), output ${gib(q.report.write.outputBytes)} in ${q.report.write.dataFiles.length} data file(s); load average ${loadAverage()}`);
  const c = q.report.calibration;
  if (c) {
    log(`  GPTQ: ${c.samples} samples x ${SEQ} tokens through ${c.segments} segments of <= ${gib(c.segmentBytes)} of weights and moments (largest ${gib(c.largestSegmentBytes)}); ${(c.ms.calibrate / 1000).toFixed(1)} s running segments, ${(c.ms.gptq / 1000).toFixed(1)} s GPTQ of ${c.gptqWeights} weights`);
    log(`  activations: at most ${(c.peakActivationBytes / 2 ** 20).toFixed(1)} MiB in memory (budget ${(c.activationBudgetBytes / 2 ** 20).toFixed(1)} MiB), ${(c.spilledBytes / 2 ** 20).toFixed(1)} MiB in ${c.spilledTensors} tensors spilled${c.spillDir ? ` to ${c.spillDir}` : ''}`);
  }

  const logits = oneToken(out);
  const loads = logits.length === shape.vocab && logits.every((x) => Number.isFinite(x));
  log(`the int4 output loads in onnxruntime-node: one token gives ${logits.length} logits${loads ? ', all finite' : ', NOT all finite'}`);

  // float32 vs streamed int4, one token: the model itself when it has at most CHECK_LAYERS blocks,
  // else a truncated copy (its first blocks: the same weights, seeded by name)
  let cmp: ReturnType<typeof compare>;
  let what: string;
  let small = model;
  let smallQ = out;
  if (shape.layers <= CHECK_LAYERS) {
    cmp = compare(oneToken(model), logits);
    what = `the model itself (${shape.layers} blocks)`;
  } else {
    fs.rmSync(`${model}.data`, { force: true });
    fs.rmSync(`${out}.data`, { force: true });
    small = path.join(dir, 'llm-truncated.onnx');
    writeSyntheticLlm(small, { ...shape, layers: CHECK_LAYERS });
    smallQ = path.join(dir, 'llm-truncated-int4.onnx');
    await quantize(small, smallQ, methodArgs);
    cmp = compare(oneToken(small), oneToken(smallQ));
    what = `a truncated copy (${CHECK_LAYERS} blocks)`;
  }
  log(`${what}: int4 vs float32 logits SQNR ${cmp.sqnrDb.toFixed(1)} dB, cosine ${cmp.cosine.toFixed(4)} (tolerance: >= ${MIN_SQNR_DB} dB, >= ${MIN_COSINE})`);
  // GPTQ against RTN on the same model, on a held-out window of random token ids and on the one token
  let gptqVsRtn: [string, boolean] | undefined;
  if (METHOD === 'gptq') {
    const rtnQ = path.join(dir, 'llm-check-rtn.onnx');
    await quantize(small, rtnQ);
    const both = (ids: number[]) => {
      const ref = oneToken(small, ids);
      return [compare(ref, oneToken(smallQ, ids)), compare(ref, oneToken(rtnQ, ids))] as const;
    };
    const line = ([g, r]: ReturnType<typeof both>) => `GPTQ ${g.sqnrDb.toFixed(2)} dB (cosine ${g.cosine.toFixed(4)}), RTN ${r.sqnrDb.toFixed(2)} dB (cosine ${r.cosine.toFixed(4)})`;
    const [calib, held] = [both(tokenIds(SEQ, 1)), both(tokenIds(SEQ, 1000))];
    log(`${what}, logits vs float32: on calibration window 1 (${SEQ} tokens) ${line(calib)}; on a held-out window ${line(held)}; one token ${line(both([42]))}`);
    gptqVsRtn = [`GPTQ's logits SQNR on a calibration window (${calib[0].sqnrDb.toFixed(2)} dB) >= RTN's (${calib[1].sqnrDb.toFixed(2)} dB)`, calib[0].sqnrDb >= calib[1].sqnrDb];
  }

  const ratio = q.ms / copyMs;
  const timeRatio = METHOD === 'gptq' ? 0 : TIME_RATIO;
  const checks: Array<[string, boolean]> = [
    [`peak RSS ${gib(q.peak)} <= ${RSS_MIB} MiB`, q.peak <= RSS_MIB * 2 ** 20],
    [
      timeRatio > 0
        ? `wall time ${(q.ms / 1000).toFixed(1)} s <= ${TIME_RATIO}x the copy (${(copyMs / 1000).toFixed(1)} s): ratio ${ratio.toFixed(2)}`
        : `wall time ${(q.ms / 1000).toFixed(1)} s, ${ratio.toFixed(2)}x the copy (${(copyMs / 1000).toFixed(1)} s; not judged: ${METHOD === 'gptq' ? 'GPTQ is compute-bound' : 'SCALE_TIME_RATIO=0'})`,
      timeRatio <= 0 || ratio <= TIME_RATIO,
    ],
    ['the int4 output loads in onnxruntime-node and gives finite logits', loads],
    [`logits of ${what} within the int4 tolerance`, cmp.finite && cmp.sqnrDb >= MIN_SQNR_DB && cmp.cosine >= MIN_COSINE],
    ...(gptqVsRtn ? [gptqVsRtn] : []),
  ];
  log(`load average at end: ${loadAverage()}`);
  for (const [what, ok] of checks) log(`${ok ? 'ok  ' : 'MISS'} ${what}`);
  return checks.every(([, ok]) => ok) ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  process.stderr.write(`bench:scale: ${(e as Error).message}\n`);
  code = 1;
} finally {
  if (process.env.SCALE_KEEP !== '1') fs.rmSync(dir, { recursive: true, force: true });
}
process.exitCode = code;
