/**
 * GPTQ of the weights that read one layer input (q, k and v share theirs): the Hessian's factor once,
 * then each weight. Jobs of different inputs are independent, so the int4 pass shares them between
 * its own thread and helper threads (ctx.threads, {@link GPTQ_TASK}); a job computes the same codes
 * wherever it runs (the same code and onnxruntime-node's kernels, one intra-op thread).
 */
import type { ThreadContext, ThreadTask } from '../../../runtime/runner-types.js';
import { flagCancellation, type Cancellation } from '../../../core/share-work.js';
import type { Bits } from './blocks.js';
import { hessianFactor, quantizeGptqBlocked, releaseFactor, type GptqResult, type GptqWeight } from './gptq.js';
import { sharedLinalg, type Linalg } from './linalg.js';

export interface GptqJob {
  K: number;
  /** [K, K], the layer input's second moments. */
  hessian: Float64Array;
  damp: number;
  weights: Array<{ weight: GptqWeight; N: number }>;
  bits: Bits;
  blockSize: number;
  symmetric: boolean;
  /** Raised (core/share-work.ts raiseFlag) when the job is no longer wanted: a helper thread running it stops at its next step. */
  cancel?: Int32Array;
}

/** Runs `job` with `linalg`'s sessions: one result per weight, in order; stops (throws) once `signal` aborts. */
export async function runGptqJob(job: GptqJob, linalg: Linalg, signal?: Cancellation): Promise<GptqResult[]> {
  const { K, hessian, bits, blockSize, symmetric } = job;
  // several weights on one factor (q, k and v) share its per-block values
  const factor = await hessianFactor(hessian, K, job.damp, linalg, signal, job.weights.length > 1);
  try {
    const out: GptqResult[] = [];
    for (const { weight, N } of job.weights) out.push(await quantizeGptqBlocked(weight, N, K, hessian, bits, blockSize, symmetric, factor, linalg, signal));
    return out;
  } finally {
    releaseFactor(factor);
  }
}

/** Multiply-adds of GPTQ on weights [K, N] for each N of `outputs` reading one input, roughly: the factor, K^3 / 3, and per weight its in-span feedback and updates, K N (K / 2 + span). */
export function gptqWork(K: number, outputs: readonly number[]): number {
  return K ** 3 / 3 + outputs.reduce((a, N) => a + K * N * (K / 2 + 32), 0);
}

/** {@link gptqWork} of a job: to hand out the longest first. */
export function gptqJobCost(job: GptqJob): number {
  return gptqWork(job.K, job.weights.map((w) => w.N));
}

/** {@link runGptqJob} in a helper thread (runtime/thread-entry.ts calls it by {@link GPTQ_TASK}). */
export function gptqJobTask(job: GptqJob, ctx: ThreadContext): Promise<GptqResult[]> {
  return runGptqJob(job, sharedLinalg(ctx.runner), job.cancel ? flagCancellation(job.cancel) : undefined);
}

export const GPTQ_TASK: ThreadTask = { module: import.meta.url, name: 'gptqJobTask' };
