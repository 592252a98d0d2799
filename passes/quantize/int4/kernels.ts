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

/**
 * The kernel rule (`--int4-kernel auto`, `--accuracy-level auto`): what the timings above measured,
 * fixed, so the choice costs nothing at quantize time and does not move with the machine's load.
 * Table: `npx tsx test/quantize-int4/kernel-table.ts` on this project's machine (AMD EPYC, AVX2 +
 * AVX-512 VNNI, 1 thread, batch 1, 4 bits, block 64, two repeats at load 2-3), MatMulNBits time over
 * float32 MatMul time at sequence 1 / 128:
 *
 *   K x N        level 0      level 1      level 4
 *   128 x 512    1.00/1.06-1.19    0.96-0.98/1.01-1.06    0.89/1.44
 *   512 x 128    0.95/1.09    0.92/1.07    0.83/1.11-1.21
 *   256 x 1024   0.78/1.06    0.77/1.05    0.55/1.14-1.19
 *   512 x 512    0.85/1.00    0.83/0.95    0.59/0.94-1.02
 *   512 x 2048   0.81/1.04    0.79/1.03    0.35/0.92-0.93
 *   640 x 640    0.79/1.08    0.78/1.07    0.47/0.97-0.99
 *   768 x 768    0.72/0.84    0.71/0.83    0.38/0.81-0.90
 *   1024 x 256   0.72/1.05    0.72/0.98    0.50/0.86-0.92
 *   3072 x 768   0.72/1.00    0.69/1.00    0.24/0.74
 *   2048 x 8192  0.33/1.00    0.33/1.00    0.13/0.71
 *
 * At sequence 1 every level beats float32 once the weight is large (a memory-bound product); at 128
 * only level 4 (int8 activations, VNNI) does, and only from K = 768 on (every shape with K >= 768
 * measured <= 0.92; below, it ran 0.92-1.45). Level 4's activation quantization measured a relative
 * squared output error of at most 4.2e-5 on Gaussian inputs (~44 dB), far below a 4-bit weight's own.
 */
export const RULE_NBITS_MIN_K = 768;

/** Whether the rule runs a weight with input length K as MatMulNBits (level 4 allowed; kernel auto). */
export const nbitsByRule = (K: number): boolean => K >= RULE_NBITS_MIN_K;
/** Largest relative squared output error of accuracy_level 4 in the table (activation quantization). */
export const RULE_LEVEL4_ERROR = 4.2e-5;

/**
 * The rule's choice for a weight shape: `nbits` when MatMulNBits is the kernel anyway (--int4-kernel
 * nbits, q4f16), else MatMulNBits only where the table has it clearly faster at both lengths.
 * `level4Allowed`: level 4's error is within the tolerance for this shape's weights.
 */
export function kernelByRule(cls: KernelClass, nbits: boolean, level4Allowed: boolean): { chosen: 'unpacked' | number; reason: string } {
  const table = 'the kernel table measured on this CPU (passes/quantize/int4/kernels.ts)';
  if (nbits) {
    const level = level4Allowed && cls.K >= 512 ? 4 : 1;
    return { chosen: level, reason: `MatMulNBits accuracy_level ${level}: ${level === 4 ? 'K >= 512, where level 4 is the fastest at sequence 1 and 128' : 'K < 512, where level 1 is the fastest at sequence 128 (level 4 ran up to 1.45x float32)'} in ${table}` };
  }
  if (nbitsByRule(cls.K) && level4Allowed) return { chosen: 4, reason: `MatMulNBits accuracy_level 4: K = ${cls.K} >= ${RULE_NBITS_MIN_K}, where it ran 0.13-0.50x float32 at sequence 1 and 0.71-0.92x at 128 in ${table}` };
  return { chosen: 'unpacked', reason: `unpacked to float32 at load: ${cls.K < RULE_NBITS_MIN_K ? `K = ${cls.K} < ${RULE_NBITS_MIN_K}, where no MatMulNBits level was clearly faster than float32 at sequence 128 (0.92-1.45x)` : 'accuracy_level 4 costs more than the tolerance and levels 0/1 are not faster at sequence 128'} in ${table}` };
}
