/**
 * Measurements on candidate models, against the float model on fixed calibration feeds:
 * - output error: sum of squared differences over every float output and feed, divided by the float
 *   outputs' energy (relative MSE; SQNR = -10 log10 of it);
 * Used to decide which layers keep 8 bits.
 */
import type { Feed } from '../../../core/host-tensor.js';
import type { Model } from '../../../ir/ir.js';
import type { ModelSession, Runner } from '../../../runtime/runner-types.js';

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

/** The reference from float outputs already computed on `feeds`. */
export function referenceOf(feeds: readonly Feed[], outputs: Array<Record<string, Float32Array>>): Reference {
  let energy = 0;
  for (const o of outputs) for (const v of Object.values(o)) for (let i = 0; i < v.length; i++) energy += v[i]! * v[i]!;
  return { feeds, outputs, energy };
}

/** The float model's outputs on `feeds`. */
export async function reference(model: Model, feeds: readonly Feed[], runner: Runner): Promise<Reference> {
  const s = await runner.open(model, SESSION, '(float model)');
  try {
    const outputs: Array<Record<string, Float32Array>> = [];
    for (const f of feeds) outputs.push(floatOutputs(await s.run(f)));
    return referenceOf(feeds, outputs);
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

export const sqnrDb = (relative: number): number => (relative > 0 ? -10 * Math.log10(relative) : Infinity);
