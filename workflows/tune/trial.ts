/**
 * One tune trial, run in this process: build the candidate (the spec's pipeline over the input model,
 * with the calibration data in the pass context), put it in the store, then measure it against the
 * input model on the spec's target and thread count:
 *
 * - size: candidate bytes / input bytes;
 * - latency: input, candidate and the gate's reference workload timed in interleaved rounds
 *   (runtime/timer.ts), so a burst of load hits all three alike; with one thread by this process's
 *   CPU time per run (what a core gave the run, insensitive to waiting for one), else wall time. The
 *   ratios are medians over the slots: candidate / input (`latencyRatio`) and candidate / reference
 *   (`referenceRatio`, comparable between machines); the contention record goes with them;
 * - accuracy: the metric on the eval data for the input (cached per process) and the candidate.
 *
 * A trial that throws is an 'error' row with the catalogued code, never a crashed search. The caller
 * may pass a timing lock so that only one trial of a machine times at once (local workers do).
 */
import * as fs from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import * as path from 'node:path';
import { isOnnxForgeError } from '../../core/errors.js';
import type { Feed } from '../../core/host-tensor.js';
import { collectSamples, openDataSource, parseDataSpec, type DataSourceOptions } from '../../data/index.js';
import { assertValid } from '../../ir/checker.js';
import { loadModel, serializeModel } from '../../onnx/index.js';
import { optimize, passReport } from '../../passes/manager.js';
import { parsePipeline } from '../../passes/pipeline.js';
import { formatDecisions } from '../../passes/quantize/decisions.js';
import quantizeStaticPass from '../../passes/quantize/quantize-static.js';
import { openSession, runnerFor, type BackendSession } from '../../runtime/backend.js';
import { loadMetric } from '../../runtime/metrics.js';
import { Session } from '../../runtime/session.js';
import { median, timeInterleaved } from '../../runtime/timer.js';
import { evaluate } from '../evaluate.js';
import { referenceWorkloadFeed, referenceWorkloadModel } from '../reference-workload.js';
import type { ContentRef, DataRef, TrialResult, TrialSpec } from './types.js';

/** Maps a stored file to a local path, a stored data tree to a data spec (ContentStore.fetcher()). */
export type TrialFetch = (ref: ContentRef | DataRef) => Promise<string>;

export interface TrialHooks {
  /** Where the candidate (and a decisions file) go; without it the result has no `output`. */
  store?: { putFile(file: string, name?: string): Promise<ContentRef> };
  /** Taken around the timed rounds; resolves to the release function. */
  timingLock?: () => Promise<() => void>;
  /** Names the worker in the result (default host:pid). */
  worker?: string;
  onPhase?: (phase: 'build' | 'time' | 'evaluate') => void;
}

interface OpenedData {
  spec: string;
  options: DataSourceOptions;
}

async function openData(ref: DataRef, fetch: TrialFetch, shapes: Record<string, number[]>): Promise<OpenedData> {
  const options: DataSourceOptions = { shapes };
  if (ref.preprocess) options.preprocess = await fetch(ref.preprocess);
  if (ref.limit !== undefined) options.limit = ref.limit;
  return { spec: await fetch(ref), options };
}

async function declaredInputs(bytes: Uint8Array) {
  const s = await Session.create(bytes, { graphOptimizationLevel: 'disabled' }, 'model');
  try {
    return s.inputs;
  } finally {
    await s.dispose();
  }
}

const inputAccuracy = new Map<string, number | undefined>();

async function metricOn(session: BackendSession, metricSpec: string, data: OpenedData, inputs: Awaited<ReturnType<typeof declaredInputs>>): Promise<number | undefined> {
  const metric = await loadMetric(metricSpec);
  const rep = await evaluate(session, undefined, openDataSource(parseDataSpec(data.spec), inputs, data.options), { metrics: [metric] });
  const rec = rep.metrics[metric.name] ?? {};
  const key = metric.name in rec ? metric.name : 'accuracy' in rec ? 'accuracy' : Object.keys(rec)[0];
  return key === undefined ? undefined : rec[key];
}

/** Runs one trial here. Never throws for a failing pipeline or measurement: that is an 'error' result. */
export async function runTrial(spec: TrialSpec, fetch: TrialFetch, hooks: TrialHooks = {}): Promise<TrialResult> {
  const t0 = performance.now();
  const worker = hooks.worker ?? `${hostname()}:${process.pid}`;
  const tmp = mkdtempSync(path.join(tmpdir(), 'onnxforge-tune-trial-'));
  try {
    const measured = await measureTrial(spec, fetch, hooks, tmp);
    return { id: spec.id, outcome: 'ok', ...measured, seconds: (performance.now() - t0) / 1000, worker };
  } catch (e) {
    const error = isOnnxForgeError(e) ? { code: e.code, message: e.message } : { code: 'TUNE_TRIAL_FAILED', message: (e as Error).message ?? String(e) };
    return { id: spec.id, outcome: 'error', error, seconds: (performance.now() - t0) / 1000, worker };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

type Measured = Omit<TrialResult, 'id' | 'outcome' | 'seconds' | 'worker'>;

async function measureTrial(spec: TrialSpec, fetch: TrialFetch, hooks: TrialHooks, tmp: string): Promise<Measured> {
  hooks.onPhase?.('build');
  const modelPath = await fetch(spec.model);
  const inputBytes = fs.readFileSync(modelPath);
  const model = await loadModel(modelPath);
  assertValid(model, modelPath);
  const inputs = await declaredInputs(inputBytes);
  const data: Record<string, unknown> = {};
  if (spec.calibration) {
    const cal = await openData(spec.calibration, fetch, spec.shapes);
    data.calibration = () => openDataSource(parseDataSpec(cal.spec), inputs, cal.options);
  }
  if (spec.train) {
    const tr = await openData(spec.train, fetch, spec.shapes);
    data.train = () => openDataSource(parseDataSpec(tr.spec), inputs, tr.options);
  }
  const opt = await optimize(model, parsePipeline(spec.pipeline), { data, ...(spec.target === 'wasm' ? { runner: runnerFor('wasm') } : {}) });
  assertValid(model, `${spec.model.name} after ${spec.pipeline}`);
  const outBytes = serializeModel(model);
  const out: Measured = { sizeRatio: outBytes.length / inputBytes.length };
  if (hooks.store) {
    const file = path.join(tmp, 'candidate.onnx');
    fs.writeFileSync(file, outBytes);
    out.output = await hooks.store.putFile(file, 'candidate.onnx');
    const doc = passReport(opt, quantizeStaticPass)?.latency?.document;
    if (doc) {
      const dfile = path.join(tmp, 'decisions.json');
      fs.writeFileSync(dfile, formatDecisions(doc));
      out.decisions = await hooks.store.putFile(dfile, 'decisions.json');
    }
  }

  const evalData = await openData(spec.eval, fetch, spec.shapes);
  const feeds: Feed[] = (await collectSamples(parseDataSpec(evalData.spec), inputs, { ...evalData.options, limit: Math.min(4, evalData.options.limit ?? 4) })).map((s) => s.feed);
  const so = spec.target === 'wasm' ? { allowSpinning: false } : { intraOpNumThreads: spec.threads, allowSpinning: false };
  const a = await openSession(spec.target, inputBytes, so, 'input');
  const b = await openSession(spec.target, outBytes, so, 'candidate');
  const ref = await openSession(spec.target, referenceWorkloadModel(), so, 'reference workload');
  try {
    hooks.onPhase?.('time');
    const release = hooks.timingLock ? await hooks.timingLock() : undefined;
    try {
      const t = await timeInterleaved(
        [
          { session: a, feeds },
          { session: b, feeds },
          { session: ref, feeds: [referenceWorkloadFeed()] },
        ],
        { rounds: spec.latencyRuns, warmup: 3, inner: 'auto' },
      );
      const cpu = spec.target === 'node' && spec.threads === 1;
      const [ta, tb, tr] = t.entries.map((e) => median(cpu ? e.cpuMs : e.wallMs));
      out.latencyRatio = tb! / ta!;
      out.referenceRatio = tb! / tr!;
      out.contention = { ...t.contention };
    } finally {
      release?.();
    }
    hooks.onPhase?.('evaluate');
    const key = JSON.stringify([spec.model.hash, spec.eval, spec.metric, spec.target, spec.threads, spec.shapes]);
    if (!inputAccuracy.has(key)) inputAccuracy.set(key, await metricOn(a, spec.metric, evalData, inputs));
    const before = inputAccuracy.get(key);
    const after = await metricOn(b, spec.metric, evalData, inputs);
    if (before !== undefined) out.accuracyInput = before;
    if (after !== undefined) out.accuracy = after;
  } finally {
    await a.dispose();
    await b.dispose();
    await ref.dispose();
  }
  return out;
}
