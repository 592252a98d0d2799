/**
 * GPTQ jobs on helper threads (runtime/threads.ts, passes/quantize/int4/gptq-job.ts): a job run by a
 * thread gives exactly what it gives on the caller's thread; a job called off stops there; a task the
 * thread cannot run rejects and leaves the thread usable; a trial setting a thread never hands back is
 * run by the caller; the int4 pass with helper threads writes the same model, byte for
 * byte, as without, with the same first/last-layer trial errors, and the threads did run some of its
 * jobs (from the process's second GPTQ pass on, for a model this small).
 */
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../data/generate.js';
import { serializeModel } from '../../onnx/index.js';
import { createPassContext } from '../../passes/manager.js';
import { GPTQ_TASK, runGptqJob, type GptqJob } from '../../passes/quantize/int4/gptq-job.js';
import type { GptqResult } from '../../passes/quantize/int4/gptq.js';
import { Linalg } from '../../passes/quantize/int4/linalg.js';
import { quantizeInt4 } from '../../passes/quantize/quantize-int4.js';
import { nodeRunner } from '../../runtime/runner.js';
import type { ThreadTask, Threads } from '../../runtime/runner-types.js';
import { nodeThreads } from '../../runtime/threads.js';
import { cancelFlag, raiseFlag } from '../../core/share-work.js';
import { transformerFeed, transformerVariant } from '../models/transformers.js';

function job(K: number, Ns: number[], seed: number): GptqJob {
  const rand = mulberry32(seed);
  const rows = 3 * K;
  const x = Float64Array.from({ length: rows * K }, () => rand() - 0.5);
  const hessian = new Float64Array(K * K);
  for (let r = 0; r < rows; r++) for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) hessian[i * K + j]! += x[r * K + i]! * x[r * K + j]!;
  return { K, hessian, damp: 0.01, weights: Ns.map((N) => ({ weight: { kn: Float32Array.from({ length: K * N }, () => rand() - 0.5) }, N })), bits: 4, blockSize: 32, symmetric: false };
}

describe('GPTQ on helper threads', () => {
  const threads = nodeThreads();

  it.runIf(threads.size > 0)('a job on a thread gives what it gives here, bit for bit', async () => {
    expect(await threads.ready()).toBe(true);
    const linalg = new Linalg(nodeRunner);
    try {
      for (const j of [job(160, [48, 24], 3), job(64, [40], 4)]) {
        const here = await runGptqJob(j, linalg);
        const there = await threads.run<GptqResult[]>(GPTQ_TASK, j);
        expect(there).toHaveLength(here.length);
        there.forEach((t, i) => {
          const h = here[i]!;
          expect(t.q.codes).toEqual(h.q.codes);
          expect(t.q.scales).toEqual(h.q.scales);
          expect(t.q.zeroPoints).toEqual(h.q.zeroPoints);
          expect(t.dequantized).toEqual(h.dequantized);
          expect(t.outputError).toBe(h.outputError);
          expect(t.weightError).toBe(h.weightError);
        });
      }
    } finally {
      await linalg.dispose();
    }
  });

  it.runIf(threads.size > 0)('a job whose cancel flag is raised stops on the thread (at its next step), and the thread runs the next job', async () => {
    expect(await threads.ready()).toBe(true);
    const raised = { ...job(256, [64, 64, 64], 6), cancel: cancelFlag() };
    raiseFlag(raised.cancel);
    await expect(threads.run(GPTQ_TASK, raised)).rejects.toThrow(/cancelled/);
    // raised while it runs: a long job (a 512-wide factor, then three weights) rejects as cancelled
    // rather than resolving with its results
    const long = { ...job(512, [256, 256, 256], 7), cancel: cancelFlag() };
    const running = threads.run(GPTQ_TASK, long);
    setTimeout(() => raiseFlag(long.cancel), 1);
    await expect(running).rejects.toThrow(/cancelled/);
    const [r] = await threads.run<GptqResult[]>(GPTQ_TASK, job(32, [8], 5));
    expect(r!.q.codes.length).toBe(32 * 8);
  });

  it.runIf(threads.size > 0)('a task the thread cannot run rejects, and the thread runs the next one', async () => {
    const missing: ThreadTask = { module: GPTQ_TASK.module, name: 'noSuchTask' };
    await expect(threads.run(missing, {})).rejects.toThrow(/exports no function noSuchTask/);
    const [r] = await threads.run<GptqResult[]>(GPTQ_TASK, job(32, [8], 5));
    expect(r!.q.codes.length).toBe(32 * 8);
  });

  it.runIf(threads.size > 0)('the int4 pass writes the same model with helper threads as without, and the threads ran some of its jobs', async () => {
    const variant = transformerVariant('gpt2-ts17');
    const feeds = Array.from({ length: 8 }, (_, i) => transformerFeed(variant, 1, 32, { seed: i + 1 }));
    expect(await threads.ready()).toBe(true);
    let ran = 0;
    const counting: Threads = {
      size: threads.size,
      start: () => threads.start(),
      ready: () => threads.ready(),
      run: (task, args, transfer) => ((ran += 1), threads.run(task, args, transfer)),
    };
    const { threads: _default, ...alone } = createPassContext();
    // a process's first GPTQ pass on a model this small takes no helper threads (starting one costs
    // more than it saves then): this one is the first here
    const first = await quantizeInt4(variant.build(), { calibration: feeds, probe: feeds }, {}, { ...alone, threads: counting });
    expect(first.method).toBe('gptq');
    expect(ran).toBe(0);
    const bytes = [];
    const keep = [];
    for (const ctx of [{ ...alone, threads: counting }, alone]) {
      const model = variant.build();
      const report = await quantizeInt4(model, { calibration: feeds, probe: feeds }, {}, ctx);
      expect(report.method).toBe('gptq');
      bytes.push(serializeModel(model));
      keep.push(report.keepInt8);
    }
    expect(ran).toBeGreaterThan(0);
    // the first/last-layer trials (one of them in a thread) measured the same errors
    expect(keep[0]!.length).toBe(2);
    expect(keep[0]).toEqual(keep[1]);
    expect(Buffer.from(bytes[0]!).equals(Buffer.from(bytes[1]!))).toBe(true);
  });

  it.runIf(threads.size > 0)('a helper that never hands back its trial setting leaves this thread to run it: the same model', async () => {
    const variant = transformerVariant('gpt2-ts17');
    const feeds = Array.from({ length: 8 }, (_, i) => transformerFeed(variant, 1, 32, { seed: i + 1 }));
    expect(await threads.ready()).toBe(true);
    let release!: () => void;
    const stalled = new Promise<never>((_, reject) => (release = () => reject(new Error('released'))));
    stalled.catch(() => {});
    let held = 0;
    // the trial's runs (RUN_MODEL) never come back; the rest (GPTQ jobs, opening the kept session) runs in the thread
    const stalling: Threads = {
      size: threads.size,
      start: () => threads.start(),
      ready: () => threads.ready(),
      run: <R>(task: ThreadTask, args: unknown, transfer?: ArrayBuffer[]) => (task.name === 'runModel' ? ((held += 1), stalled) : threads.run<R>(task, args, transfer)),
    };
    const { threads: _default, ...alone } = createPassContext();
    // helper threads are taken from a process's second GPTQ pass on
    await quantizeInt4(variant.build(), { calibration: feeds, probe: feeds }, {}, alone);
    const bytes = [];
    for (const ctx of [{ ...alone, threads: stalling }, alone]) {
      const model = variant.build();
      await quantizeInt4(model, { calibration: feeds, probe: feeds }, {}, ctx);
      bytes.push(serializeModel(model));
    }
    release();
    expect(held).toBe(1);
    expect(Buffer.from(bytes[0]!).equals(Buffer.from(bytes[1]!))).toBe(true);
  });
});
