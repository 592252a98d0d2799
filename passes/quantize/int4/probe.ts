/**
 * Measurements on candidate models, against the float model on fixed calibration feeds:
 * - output error: sum of squared differences over every float output and feed, divided by the float
 *   outputs' energy (relative MSE; SQNR = -10 log10 of it);
 * - latency: the candidates run in interleaved rounds (order reversed every round) on one thread, so
 *   load from other processes hits them alike; the median per candidate.
 * Used to pick MatMulNBits' accuracy_level on this CPU and which layers keep 8 bits.
 */
import type { Feed } from '../../../core/host-tensor.js';
import type { Model } from '../../../ir/ir.js';
import type { ModelSession, Runner } from '../../../runtime/runner.js';

export interface Reference {
  feeds: readonly Feed[];
  /** Float outputs per feed (float32 outputs only). */
  outputs: Array<Record<string, Float32Array>>;
  energy: number;
}

const SESSION = { intraOpNumThreads: 1, allowSpinning: false } as const;

function floatOutputs(out: Feed): Record<string, Float32Array> {
  const r: Record<string, Float32Array> = {};
  for (const [k, t] of Object.entries(out)) if (t.data instanceof Float32Array) r[k] = t.data;
  return r;
}

/** The float model's outputs on `feeds`. */
export async function reference(model: Model, feeds: readonly Feed[], runner: Runner): Promise<Reference> {
  const s = await runner.open(model, SESSION, '(float model)');
  try {
    const outputs: Array<Record<string, Float32Array>> = [];
    let energy = 0;
    for (const f of feeds) {
      const o = floatOutputs(await s.run(f));
      for (const v of Object.values(o)) for (let i = 0; i < v.length; i++) energy += v[i]! * v[i]!;
      outputs.push(o);
    }
    return { feeds, outputs, energy };
  } finally {
    await s.dispose();
  }
}

async function errorOf(s: ModelSession, ref: Reference): Promise<number> {
  let sse = 0;
  for (let i = 0; i < ref.feeds.length; i++) {
    const o = floatOutputs(await s.run(ref.feeds[i]!));
    for (const [k, want] of Object.entries(ref.outputs[i]!)) {
      const got = o[k]!;
      for (let j = 0; j < want.length; j++) {
        const d = got[j]! - want[j]!;
        sse += Number.isFinite(d) ? d * d : Infinity;
      }
    }
  }
  return ref.energy > 0 ? sse / ref.energy : sse;
}

/** Relative output error of `model` against the reference. */
export async function relativeError(model: Model, ref: Reference, runner: Runner): Promise<number> {
  const s = await runner.open(model, SESSION, '(candidate model)');
  try {
    return await errorOf(s, ref);
  } finally {
    await s.dispose();
  }
}

export interface CandidateMeasure {
  error: number;
  /** Median wall time of one run, ms. */
  ms: number;
}

/** Error and interleaved latency (median of `runs` rounds on the first feed) of each model. */
export async function measureCandidates(models: readonly Model[], ref: Reference, runner: Runner, runs: number): Promise<CandidateMeasure[]> {
  const sessions: ModelSession[] = [];
  try {
    for (const m of models) sessions.push(await runner.open(m, SESSION, '(candidate model)'));
    const errors: number[] = [];
    for (const s of sessions) errors.push(await errorOf(s, ref));
    const feed = ref.feeds[0]!;
    for (const s of sessions) for (let i = 0; i < 3; i++) await s.run(feed);
    const times: number[][] = sessions.map(() => []);
    for (let r = 0; r < runs; r++) {
      const order = sessions.map((_, i) => (r % 2 === 0 ? i : sessions.length - 1 - i));
      for (const i of order) {
        const t0 = performance.now();
        await sessions[i]!.run(feed);
        times[i]!.push(performance.now() - t0);
      }
    }
    return sessions.map((_, i) => {
      const t = times[i]!.sort((a, b) => a - b);
      return { error: errors[i]!, ms: t[Math.floor(t.length / 2)]! };
    });
  } finally {
    for (const s of sessions) await s.dispose();
  }
}

export const sqnrDb = (relative: number): number => (relative > 0 ? -10 * Math.log10(relative) : Infinity);
