/**
 * Which kernel runs a block-quantized weight fastest on this CPU, measured. For each shape class of
 * the weights (K, N, bits, block size, zero points): a float32
 * MatMul and a com.microsoft MatMulNBits per accuracy_level on random data of that shape, each in its
 * own small session. Candidates run in interleaved rounds (order reversed every
 * round, 1 thread) at every sequence length asked for (batch 1); each keeps the mean of its fastest third.
 *
 * The float32 MatMul stands for the unpacked form (int4/emit.ts unpackedRows): onnxruntime folds it
 * into a float32 weight at load, so it runs as that MatMul. Besides the time, the first run gives each
 * level's relative output error against level 0 (float32 arithmetic on the dequantized weight): the
 * error of the activation quantization of accuracy_level 4 (int8 activations), on Gaussian inputs.
 */
import { DataType } from '../../../core/dtype.js';
import type { Feed } from '../../../core/host-tensor.js';
import { Tensor } from '../../../core/tensor.js';
import { mulberry32 } from '../../../data/generate.js';
import { GraphBuilder } from '../../../ir/builder.js';
import type { Model } from '../../../ir/ir.js';
import type { ModelSession, Runner } from '../../../runtime/runner-types.js';
import { quantizeRtn, type Bits } from './blocks.js';
import { emitMatMulNBits, MS_DOMAIN } from './emit.js';

export interface KernelClass {
  K: number;
  N: number;
  bits: Bits;
  blockSize: number;
  symmetric: boolean;
}

export interface KernelTiming {
  /** Rows of the activation (batch 1 x sequence length). */
  seq: number;
  fp32Ms: number;
  /** accuracy_level -> ms (mean of the fastest third of the runs). */
  levelMs: Record<number, number>;
}

export interface KernelMeasure {
  cls: KernelClass;
  timings: KernelTiming[];
  /** accuracy_level -> relative squared output error against level 0 (activation quantization only). */
  levelError: Record<number, number>;
}

export const classKey = (c: KernelClass): string => `${c.K}x${c.N}/${c.bits}b/${c.blockSize}${c.symmetric ? 's' : ''}`;

function gaussian(rand: () => number, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = std * Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  return out;
}

/**
 * The mean of the fastest third of the runs: on a shared machine preemption only ever adds time, so
 * the low end estimates the kernel's own cost (a median of 20 runs of 20-300 us swung 4x under load).
 */
function lowThird(t: number[]): number {
  const s = [...t].sort((a, b) => a - b).slice(0, Math.max(1, Math.ceil(t.length / 3)));
  return s.reduce((a, b) => a + b, 0) / s.length;
}

/** Times float32 MatMul against MatMulNBits at each of `levels`, for every class, at every `seqs`. */
export async function measureKernels(classes: readonly KernelClass[], levels: readonly number[], seqs: readonly number[], runner: Runner, runs: number): Promise<KernelMeasure[]> {
  if (classes.length === 0) return [];
  const rand = mulberry32(19);
  // one model per candidate (onnxruntime runs every node of a graph whatever outputs are asked for)
  const models: Model[][] = [];
  for (const c of classes) {
    const w = gaussian(rand, c.K * c.N, 1 / Math.sqrt(c.K));
    const rows = new Float32Array(c.K * c.N);
    for (let k = 0; k < c.K; k++) for (let n = 0; n < c.N; n++) rows[n * c.K + k] = w[k * c.N + n]!;
    const q = quantizeRtn(rows, c.N, c.K, c.bits, c.blockSize, c.symmetric);
    const build = (level?: number): Model => {
      const b = new GraphBuilder({ opset: 13, opsets: { [MS_DOMAIN]: 1 } });
      const x = b.input('x', 'float', [1, 'seq', c.K]);
      const [y] = b.op('MatMul', [x, b.initializer('w', Tensor.from(DataType.FLOAT, [c.K, c.N], w))]);
      if (level === undefined) b.output(y!, 'y', 'float');
      else b.output(emitMatMulNBits(b.graph, b.graph.names, y!.producer!, x, q, 'q', level).outputs[0]!, 'y', 'float');
      const m = b.model();
      for (const v of [...m.graph.initializers.values()]) if (v.uses.length === 0) m.graph.removeInitializer(v);
      return m;
    };
    models.push([build(), ...levels.map((l) => build(l))]);
  }
  const sessions: ModelSession[][] = [];
  try {
    for (const ms of models) {
      const row: ModelSession[] = [];
      sessions.push(row);
      for (const m of ms) row.push(await runner.open(m, { intraOpNumThreads: 1, allowSpinning: false }, '(int4 kernel timing)'));
    }
    const result: KernelMeasure[] = classes.map((cls) => ({ cls, timings: [], levelError: {} }));
    for (const seq of seqs) {
      for (const [ci, c] of classes.entries()) {
        const feed: Feed = { x: { type: 'float32', dims: [1, seq, c.K], data: gaussian(rand, seq * c.K, 1) } };
        const row = sessions[ci]!;
        if (seq === seqs[0]) {
          const outs: Float32Array[] = [];
          for (const s of row) outs.push((await s.run(feed))['y']!.data as Float32Array);
          const ref = outs[1 + Math.max(0, levels.indexOf(0))] ?? outs[0]!;
          let energy = 0;
          for (const r of ref) energy += r * r;
          levels.forEach((l, i) => {
            const y = outs[i + 1]!;
            let sse = 0;
            for (let j = 0; j < y.length; j++) sse += (y[j]! - ref[j]!) ** 2;
            result[ci]!.levelError[l] = energy > 0 ? sse / energy : 0;
          });
        }
        for (const s of row) for (let i = 0; i < 3; i++) await s.run(feed);
        const times: number[][] = row.map(() => []);
        for (let r = 0; r < runs; r++) {
          for (let j = 0; j < row.length; j++) {
            const i = r % 2 === 0 ? j : row.length - 1 - j;
            const t0 = performance.now();
            await row[i]!.run(feed);
            times[i]!.push(performance.now() - t0);
          }
        }
        result[ci]!.timings.push({ seq, fp32Ms: lowThird(times[0]!), levelMs: Object.fromEntries(levels.map((l, i) => [l, lowThird(times[i + 1]!)])) });
      }
    }
    return result;
  } finally {
    for (const row of sessions) for (const s of row) await s.dispose();
  }
}
