/**
 * `quantize --mode int4` for models larger than memory (see stream.ts): every MatMul whose B is a
 * constant [K, N] float32 initializer becomes com.microsoft MatMulNBits, every Gather on axis 0 of a
 * constant [V, D] table GatherBlockQuantized (8 bits by default, as the quantize-int4 pass does), with
 * the codes, scales and zero points as derived tensors. Each weight is quantized when the writer
 * reaches it, from its external data read in slices of whole blocks (a slice of B's rows is contiguous
 * in the file), with the int4 pass's own RTN and layouts (passes/quantize/int4/blocks.ts): the output
 * of a weight is byte for byte what the pass writes for it with RTN. Memory per weight: its quantized
 * output and one slice (~16 MiB) of its input.
 *
 * With calibration data (`auto` or `gptq`), the MatMul weights are GPTQ's instead: workflows/stream-gptq.ts
 * runs the model segment by segment on the calibration data before writing (activations between
 * segments kept in memory up to a budget, spilled to disk beyond it), quantizes each weight with the
 * in-memory pass's GPTQ and keeps the result in a temporary file that the weight's derived tensors
 * read back; embeddings stay RTN (8 bits), as in memory.
 *
 * What streaming leaves out, and says in the report: the measured choices (first/last layer at 8 bits,
 * accuracy_level: both run the whole model; accuracy_level is 0 unless given), the default preset and
 * the transformer fusion run first, Gemm and MatMul of a transposed constant (left float), and the
 * qdq format.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { DataType } from '../core/dtype.js';
import { inputError } from '../core/errors.js';
import { derivedTensor, sharedParts } from '../core/derived.js';
import { Tensor } from '../core/tensor.js';
import { Attribute, constantOf, Graph, Model, Node, Value } from '../ir/ir.js';
import { loadModel } from '../onnx/index.js';
import { inputFilesOf, readTensorRange, statfsFreeBytes, tensorSpan } from '../onnx/stream.js';
import { BlockQuantized, packCodes, packZeroPoints, quantizeRtn, type Bits } from '../passes/quantize/int4/blocks.js';
import { MS_DOMAIN, replaceNode } from '../passes/quantize/int4/emit.js';
import int4Pass, { checkBlockSize, type QuantizeInt4Options } from '../passes/quantize/quantize-int4.js';
import { resolveOptions } from '../passes/pipeline.js';
import type { StreamInt4Report, StreamInt4Weight } from '../report/stream.js';
import { weightBytes, writeStreamed, type StreamOptions } from './stream.js';
import { streamGptq, type GptqTarget, type StreamGptq } from './stream-gptq.js';
import { collectSamples } from '../data/index.js';
import { evenlySpaced } from '../passes/quantize/sample-source.js';
import { inputInfos } from '../passes/convert/convert-float16.js';

export interface StreamInt4Options extends StreamOptions {
  model: string;
  output: string;
  pass?: Partial<QuantizeInt4Options>;
  /** Calibration data (a data spec): GPTQ, layer by layer (method auto or gptq). */
  calibration?: string;
  /** Streamed GPTQ's budgets (default: workflows/stream-gptq.ts picks them); tests force spilling with a small activation budget. */
  gptq?: { segmentBytes?: number; activationBytes?: number };
  /** Progress lines of the calibration (segments, spilled bytes). */
  log?: (line: string) => void;
}



/** Input bytes read per slice of a weight (whole blocks of K rows). */
const SLICE_BYTES = 16 << 20;

/** Quantized bytes of an [N, K] weight at `bits` (codes, float scales, packed zero points if any). */
function quantizedBytes(N: number, K: number, bits: Bits, blockSize: number, symmetric: boolean): number {
  const kBlocks = Math.ceil(K / blockSize);
  const zps = symmetric ? 0 : bits === 8 ? N * kBlocks : N * Math.ceil(kBlocks / 2);
  return (N * kBlocks * blockSize * bits) / 8 + 4 * N * kBlocks + zps;
}

interface Parts {
  codes: Uint8Array;
  scales: Uint8Array;
  zp: Uint8Array;
}

type KNWork = { a: Float64Array; b: Float64Array; tmp: Uint8Array };

/** Per column n in n0..n1: the block's min into lo and max into hi (both from 0), or (symmetric) the value of largest magnitude into lo. */
function knRange(f: Float32Array, base: number, N: number, n0: number, n1: number, blockSize: number, symmetric: boolean, lo: Float64Array, hi: Float64Array): void {
  lo.fill(0, n0, n1);
  hi.fill(0, n0, n1);
  for (let j = 0; j < blockSize; j++) {
    const row = base + j * N;
    if (symmetric) {
      // lo holds the value of largest magnitude (the first one, as blockParams keeps it)
      for (let n = n0; n < n1; n++) {
        const x = f[row + n]!;
        if (Math.abs(x) > Math.abs(lo[n]!)) lo[n] = x;
      }
    } else {
      for (let n = n0; n < n1; n++) {
        const x = f[row + n]!;
        if (x < lo[n]!) lo[n] = x;
        if (x > hi[n]!) hi[n] = x;
      }
    }
  }
}

/** Scale and zero point per column from {@link knRange}'s lo/hi, written out and left in hi (scale) and lo (zero point). */
function knParams(n0: number, n1: number, kb: number, kBlocks: number, bits: Bits, symmetric: boolean, lo: Float64Array, hi: Float64Array, scales: Float32Array, zeroPoints: Uint8Array): void {
  const levels = (1 << bits) - 1;
  const mid = 1 << (bits - 1);
  for (let n = n0; n < n1; n++) {
    let scale: number;
    let zp = mid;
    if (symmetric) scale = Math.fround(lo[n]! / -mid);
    else {
      scale = Math.fround((hi[n]! - lo[n]!) / levels);
      if (scale !== 0) zp = Math.min(levels, Math.max(0, Math.round(-lo[n]! / scale)));
      else scale = 0;
    }
    scales[n * kBlocks + kb] = scale;
    zeroPoints[n * kBlocks + kb] = zp;
    hi[n] = scale;
    lo[n] = zp;
  }
}

/**
 * Codes row by row into `tmp` ([blockSize / 2 or blockSize][N], contiguous writes along n).
 * `Math.floor(q + 0.5)` is `codeOf`'s `Math.round(q)` for every q = float32 / float32 scale (they
 * differ only when q + 0.5 is inexact next to an integer, and such a quotient lies at least ~2^-25
 * relative from a tie; 5e7 random and near-tie pairs checked, no difference) and has no
 * data-dependent branch: 17.5 -> 13 ns per weight on the synthetic model's random weights.
 */
function knCodes(f: Float32Array, base: number, N: number, n0: number, n1: number, blockSize: number, bits: Bits, lo: Float64Array, hi: Float64Array, tmp: Uint8Array): void {
  const levels = (1 << bits) - 1;
  const per = bits === 8 ? 1 : 2;
  for (let j = 0; j < blockSize; j += per) {
    const r0 = base + j * N;
    const t0 = (j / per) * N;
    for (let n = n0; n < n1; n++) {
      const s = hi[n]!;
      const z = lo[n]!;
      let c0 = z;
      if (s !== 0) {
        c0 = Math.floor(f[r0 + n]! / s + 0.5) + z;
        c0 = c0 < 0 ? 0 : c0 > levels ? levels : c0;
      }
      if (per === 1) {
        tmp[t0 + n] = c0;
        continue;
      }
      let c1 = z;
      if (s !== 0) {
        c1 = Math.floor(f[r0 + N + n]! / s + 0.5) + z;
        c1 = c1 < 0 ? 0 : c1 > levels ? levels : c1;
      }
      tmp[t0 + n] = (c0 & 15) | ((c1 & 15) << 4);
    }
  }
}

/** Each column's blob copied from `tmp` to its place in the [N, kBlocks, blob] codes (one contiguous run of `blob` bytes per n). */
function knScatter(N: number, n0: number, n1: number, kb: number, kBlocks: number, blob: number, tmp: Uint8Array, codes: Uint8Array): void {
  const stride = kBlocks * blob;
  for (let n = n0; n < n1; n++) {
    const at = n * stride + kb * blob;
    for (let i = 0; i < blob; i++) codes[at + i] = tmp[i * N + n]!;
  }
}

/**
 * RTN of block `kb` of every column n of B [K, N] (rows kb * blockSize .. + blockSize of `f`, from
 * `base`), written to the [N, kBlocks, blob] codes and [N, kBlocks] scales / zero points: the same
 * values as blocks.ts's `blockParams`, `codeOf` and `packCodes` on the transposed rows (same float
 * operations in the same order), without transposing: the inner loops run along n, so reads are
 * contiguous. Columns n0 .. n1 - 1 only (a helper thread takes the other half; these functions'
 * sources are what it runs, so they use nothing but their arguments and Math).
 *
 * Four functions, not one: V8 compiled the single function on-stack while its first loop was hot,
 * before the later loops had run, and deoptimized at each of them ("insufficient type feedback"),
 * until it stopped optimizing it: ~43 ns per weight instead of ~6 on the 28 GB model.
 */
function quantizeKNBlock(f: Float32Array, base: number, N: number, n0: number, n1: number, kb: number, kBlocks: number, blockSize: number, bits: Bits, symmetric: boolean, codes: Uint8Array, scales: Float32Array, zeroPoints: Uint8Array, work: KNWork): void {
  knRange(f, base, N, n0, n1, blockSize, symmetric, work.a, work.b);
  knParams(n0, n1, kb, kBlocks, bits, symmetric, work.a, work.b, scales, zeroPoints);
  knCodes(f, base, N, n0, n1, blockSize, bits, work.a, work.b, work.tmp);
  knScatter(N, n0, n1, kb, kBlocks, (blockSize * bits) / 8, work.tmp, codes);
}

/**
 * A worker thread the caller blocks on (Atomics.wait on a shared flag), so derived tensors stay
 * synchronous recipes. `body` defines `run(m)`, which handles one job and returns its status (> 0);
 * `wait` returns that status, or the thread's error if it died. Undefined where threads cannot start.
 */
function blockingThread(body: string): { start(job: object): void; wait(): number | Error } | undefined {
  try {
    const flag = new Int32Array(new SharedArrayBuffer(4));
    const src = `const { parentPort, workerData } = require('node:worker_threads');
const flag = workerData;
${body}
parentPort.on('message', (m) => {
  Atomics.store(flag, 0, run(m));
  Atomics.notify(flag, 0);
});`;
    const w = new Worker(src, { eval: true, workerData: flag });
    w.unref();
    let failed: Error | undefined;
    w.on('error', (e) => (failed = e));
    return {
      start(job) {
        Atomics.store(flag, 0, 0);
        w.postMessage(job);
      },
      wait() {
        while (Atomics.load(flag, 0) === 0) {
          if (Atomics.wait(flag, 0, 0, 1000) === 'timed-out' && failed) return failed;
        }
        return Atomics.load(flag, 0);
      },
    };
  } catch {
    return undefined;
  }
}

interface Helper {
  start(job: Record<string, unknown>): void;
  wait(): void;
}

let helperThread: Helper | null | undefined;

/**
 * A second thread for {@link quantizeKNBlock} (the other half of the columns of each slice), or
 * undefined on one core, with ONNXFORGE_STREAM_THREADS=1, or where threads cannot start.
 */
function helper(): Helper | undefined {
  if (helperThread !== undefined) return helperThread ?? undefined;
  helperThread = null;
  if (os.availableParallelism() < 2 || process.env.ONNXFORGE_STREAM_THREADS === '1') return undefined;
  const t = blockingThread(`${[knRange, knParams, knCodes, knScatter, quantizeKNBlock].map((fn) => `const ${fn.name} = (${fn.toString()});`).join('\n')}
let work;
function run(m) {
  if (!work || work.a.length < m.N) work = { a: new Float64Array(m.N), b: new Float64Array(m.N), tmp: new Uint8Array(((m.blockSize * m.bits) / 8) * m.N) };
  const f = new Float32Array(m.f, 0, m.fLen);
  const codes = new Uint8Array(m.codes), scales = new Float32Array(m.scales), zps = new Uint8Array(m.zeroPoints);
  for (let b = 0; b < m.nb; b++) quantizeKNBlock(f, b * m.blockSize * m.N, m.N, m.n0, m.n1, m.b0 + b, m.kBlocks, m.blockSize, m.bits, m.symmetric, codes, scales, zps, work);
  return 1;
}`);
  if (t) {
    helperThread = {
      start: (job) => t.start(job),
      wait() {
        const r = t.wait();
        if (r instanceof Error) throw r;
      },
    };
  }
  return helperThread ?? undefined;
}

const scratchBuffers = new Map<string, ArrayBuffer | SharedArrayBuffer>();

/**
 * A scratch buffer of at least `bytes`, kept for the next weight (shared with the helper thread when
 * there is one). Reused rather than allocated per weight: a SharedArrayBuffer the helper has seen is
 * freed only after both threads collect it, and the helper allocates too little to collect often, so
 * fresh buffers per weight piled up (3.7 GiB peak RSS on the 28 GB model, against 0.4 GiB before).
 */
function scratch(h: Helper | undefined, key: string, bytes: number): ArrayBuffer | SharedArrayBuffer {
  const k = `${h ? 'shared' : 'plain'}:${key}`;
  const have = scratchBuffers.get(k);
  if (have && have.byteLength >= bytes) return have;
  const b = h ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);
  scratchBuffers.set(k, b);
  return b;
}

interface Reader {
  start(job: { fd: number; position: number; length: number; buf: ArrayBufferLike }): void;
  /** Blocks until the read ends; false when it failed or fell short (the caller reads again itself). */
  wait(): boolean;
}

let readerThread: Reader | null | undefined;

/** A thread that reads the next slice of a weight (pread on the source's descriptor) while the others quantize. */
function reader(): Reader | undefined {
  if (readerThread !== undefined) return readerThread ?? undefined;
  readerThread = null;
  if (process.env.ONNXFORGE_STREAM_THREADS === '1') return undefined;
  const t = blockingThread(`const fs = require('node:fs');
function run(m) {
  try {
    const buf = new Uint8Array(m.buf, 0, m.length);
    for (let done = 0; done < m.length; ) {
      const got = fs.readSync(m.fd, buf, done, m.length - done, m.position + done);
      if (got <= 0) return 2;
      done += got;
    }
    return 1;
  } catch {
    return 2;
  }
}`);
  if (t) readerThread = { start: (job) => t.start(job), wait: () => t.wait() === 1 };
  return readerThread ?? undefined;
}

/** RTN of a weight read slice by slice: `rows` is [N, K] (Gather table) or [K, N] (MatMul B, transposed per slice). */
function quantizeStreamed(t: Tensor, layout: 'NK' | 'KN', N: number, K: number, bits: Bits, blockSize: number, symmetric: boolean): Parts {
  const kBlocks = Math.ceil(K / blockSize);
  const blob = (blockSize * bits) / 8;
  const codes = new Uint8Array(N * kBlocks * blob);
  const scales = new Float32Array(N * kBlocks);
  const zeroPoints = new Uint8Array(N * kBlocks);
  if (layout === 'NK') {
    // rows are contiguous: a slice is whole rows, quantized and packed as the pass does
    const per = Math.max(1, Math.floor(SLICE_BYTES / (4 * K)));
    for (let n0 = 0; n0 < N; n0 += per) {
      const n = Math.min(per, N - n0);
      const raw = readTensorRange(t, n0 * K * 4, n * K * 4, new Uint8Array(n * K * 4));
      const q = quantizeRtn(new Float32Array(raw.buffer, raw.byteOffset, n * K), n, K, bits, blockSize, symmetric);
      codes.set(packCodes(q), n0 * kBlocks * blob);
      scales.set(q.scales, n0 * kBlocks);
      zeroPoints.set(q.zeroPoints, n0 * kBlocks);
    }
  } else {
    // B [K, N]: a slice of whole blocks of rows k is contiguous, quantized in place (no transpose)
    const blocksPer = Math.max(1, Math.floor(SLICE_BYTES / (4 * N * blockSize)));
    const h = N >= 512 ? helper() : undefined;
    const buf = new Uint8Array(scratch(h, 'slice', Math.min(kBlocks, blocksPer) * blockSize * N * 4));
    const out = {
      codes: new Uint8Array(scratch(h, 'codes', codes.length), 0, codes.length).fill(0),
      scales: new Float32Array(scratch(h, 'scales', scales.byteLength), 0, scales.length).fill(0),
      zeroPoints: new Uint8Array(scratch(h, 'zeroPoints', zeroPoints.length), 0, zeroPoints.length).fill(0),
    };
    const work = { a: new Float64Array(N), b: new Float64Array(N), tmp: new Uint8Array(((blockSize * bits) / 8) * N) };
    const half = h ? N >> 1 : N;
    // read-ahead: while both threads quantize slice i, a reader thread reads slice i + 1 into the other buffer
    const rd = h ? reader() : undefined;
    const bufs = [buf, rd ? new Uint8Array(scratch(h, 'slice-ahead', buf.length)) : buf];
    const sliceBytes = (b0: number) => Math.min(blocksPer, kBlocks - b0) * blockSize * N * 4;
    const readAhead = (b0: number, into: Uint8Array): boolean => {
      if (!rd || b0 >= kBlocks) return false;
      const at = tensorSpan(t, b0 * blockSize * N * 4, sliceBytes(b0));
      if (at) rd.start({ ...at, length: sliceBytes(b0), buf: into.buffer });
      return Boolean(at);
    };
    let slot = 0;
    let ahead = false;
    try {
      for (let b0 = 0; b0 < kBlocks; b0 += blocksPer) {
        const nb = Math.min(blocksPer, kBlocks - b0);
        const n4 = nb * blockSize * N * 4;
        const cur = bufs[slot]!;
        // a failed read-ahead is read again here, where its error is reported with the tensor's name
        if (!ahead || !rd!.wait()) readTensorRange(t, b0 * blockSize * N * 4, n4, cur.subarray(0, n4));
        ahead = readAhead(b0 + blocksPer, bufs[1 - slot]!);
        const f = new Float32Array(cur.buffer, 0, n4 / 4);
        h?.start({ f: cur.buffer, fLen: n4 / 4, N, n0: half, n1: N, b0, nb, kBlocks, blockSize, bits, symmetric, codes: out.codes.buffer, scales: out.scales.buffer, zeroPoints: out.zeroPoints.buffer });
        for (let b = 0; b < nb; b++) quantizeKNBlock(f, b * blockSize * N, N, 0, half, b0 + b, kBlocks, blockSize, bits, symmetric, out.codes, out.scales, out.zeroPoints, work);
        h?.wait();
        if (rd) slot = 1 - slot;
      }
    } finally {
      if (ahead) rd!.wait();
    }
    codes.set(out.codes);
    scales.set(out.scales);
    zeroPoints.set(out.zeroPoints);
  }
  const whole: BlockQuantized = { N, K, bits, blockSize, kBlocks, symmetric, codes: new Uint8Array(0), scales, zeroPoints };
  return { codes, scales: new Uint8Array(scales.buffer), zp: symmetric ? new Uint8Array(0) : packZeroPoints(whole).bytes };
}

/** Replaces `node` by `op` (com.microsoft) reading `inputs`, with `attrs`; returns the new node. */
function emit(g: Graph, node: Node, op: string, inputs: Array<Value | null>, attrs: Record<string, number>): Node {
  const n = new Node(op, inputs, [], MS_DOMAIN);
  for (const [k, v] of Object.entries(attrs)) n.setAttr(Attribute.int(k, v));
  replaceNode(g, node, n);
  return n;
}

interface StreamCandidate {
  op: StreamInt4Weight['op'];
  weight: Value;
  t: Tensor;
  row: StreamInt4Weight;
}

/**
 * What streaming does with `node`'s weight: undefined when it reads none (not a MatMul, Gather or Gemm
 * of a constant 2-D float32 initializer), else its report row, with `reason` when it stays float.
 * A MatMul whose K the block size does not divide is an input error.
 */
function candidateOf(node: Node, blockSize: number, embeddings: 'int4' | 'int8' | 'float', minElements: number): StreamCandidate | undefined {
  if (node.opDomain !== '' || (node.opType !== 'MatMul' && node.opType !== 'Gather' && node.opType !== 'Gemm')) return undefined;
  const op = node.opType as StreamInt4Weight['op'];
  const gather = op === 'Gather';
  const wv = node.inputs[gather ? 0 : 1];
  const t = constantOf(wv);
  if (!wv || !t || t.dataType !== DataType.FLOAT || t.dims.length !== 2 || wv.producer) return undefined;
  const label = node.name ?? node.label;
  const row: StreamInt4Weight = { tensor: wv.name, node: label, op, K: 0, N: 0, bits: 0, floatBytes: t.byteLength, bytes: t.byteLength };
  const [d0, d1] = t.dims as [number, number];
  [row.K, row.N] = gather ? [d1, d0] : [d0, d1];
  const c = { op, weight: wv, t, row };
  const skip = (reason: string) => ((row.reason = reason), c);
  if (op === 'Gemm') return skip('Gemm is not streamed (MatMul and Gather are): left float');
  if (t.size < minElements) return skip(`fewer than ${minElements} values`);
  if (gather && (node.getInt('axis', 0) ?? 0) !== 0) return skip('Gather on an axis other than 0');
  if (gather && embeddings === 'float') return skip('embeddings left float (--embeddings float)');
  if (row.K % blockSize !== 0) {
    if (gather) return skip(`row length ${row.K} is not a multiple of block size ${blockSize}`);
    throw inputError('INT4_BLOCK_NOT_DIVIDING', `--block-size ${blockSize} does not divide K = ${row.K} of weight '${wv.name}' (node ${label})`, { tensor: wv.name, node: label, field: 'block-size' });
  }
  return c;
}

/** The MatMuls streaming quantizes at 4 bits (GPTQ's targets). */
function matmulTargets(model: Model, blockSize: number, minElements: number): GptqTarget[] {
  const out: GptqTarget[] = [];
  for (const node of model.graph.nodes) {
    const c = candidateOf(node, blockSize, 'int8', minElements);
    if (c && c.op === 'MatMul' && !c.row.reason) out.push({ node, weight: c.t, K: c.row.K, N: c.row.N });
  }
  return out;
}

/**
 * Rewrites the graph with derived int4 tensors; returns the per-weight rows. `gptq` gives the parts
 * of the MatMuls GPTQ quantized (the rest are RTN).
 */
function rewrite(model: Model, blockSize: number, symmetric: boolean, level: number, embeddings: 'int4' | 'int8' | 'float', minElements: number, gptq?: StreamGptq): StreamInt4Weight[] {
  const g = model.graph;
  const names = g.names;
  const rows: StreamInt4Weight[] = [];
  const replaced = new Set<Value>();
  for (const node of [...g.nodes]) {
    const c = candidateOf(node, blockSize, embeddings, minElements);
    if (!c) continue;
    const { op, t, row } = c;
    const wv = c.weight;
    const gather = op === 'Gather';
    rows.push(row);
    if (row.reason) continue;
    const bits: Bits = gather && embeddings === 'int8' ? 8 : 4;
    const { K, N } = row;
    const kBlocks = K / blockSize;
    const own = gather ? undefined : gptq?.parts(node);
    row.method = own ? 'gptq' : 'rtn';
    const part = sharedParts<keyof Parts>(own ?? (() => quantizeStreamed(t, gather ? 'NK' : 'KN', N, K, bits, blockSize, symmetric)));
    const stem = names.numbered('q');
    const blob = (blockSize * bits) / 8;
    const codes = g.addInitializer(derivedTensor(DataType.UINT8, gather ? [N, kBlocks * blob] : [N, kBlocks, blob], () => part('codes')), names.fresh(`${stem}_q${bits}`));
    const scales = g.addInitializer(derivedTensor(DataType.FLOAT, [N, kBlocks], () => part('scales')), names.fresh(`${stem}_scales`));
    const zpDims = bits === 8 ? [N, kBlocks] : [N, Math.ceil(kBlocks / 2)];
    const zp = symmetric ? null : g.addInitializer(derivedTensor(DataType.UINT8, zpDims, () => part('zp')), names.fresh(`${stem}_zp`));
    if (gather) {
      emit(g, node, 'GatherBlockQuantized', zp ? [codes, node.inputs[1]!, scales, zp] : [codes, node.inputs[1]!, scales], { gather_axis: 0, quantize_axis: 1, block_size: blockSize, bits });
    } else {
      emit(g, node, 'MatMulNBits', zp ? [node.inputs[0]!, codes, scales, zp] : [node.inputs[0]!, codes, scales], { K, N, bits, block_size: blockSize, accuracy_level: level });
    }
    row.bits = bits;
    if (bits === 8) row.reason = 'embeddings at 8 bits (GatherBlockQuantized bits 8, the int4 mode default)';
    row.bytes = quantizedBytes(N, K, bits, blockSize, symmetric);
    replaced.add(wv);
  }
  for (const v of replaced) if (v.uses.length === 0 && !v.isGraphOutput && g.initializers.get(v.name) === v) g.removeInitializer(v);
  if (replaced.size) model.setOpset(MS_DOMAIN, model.opset(MS_DOMAIN) ?? 1);
  return rows;
}

/**
 * GPTQ writes every quantized weight to a temporary folder beside the output before the streaming
 * writer copies them into it, so the destination must hold both: checked before calibration starts
 * (the writer's own guard runs only after it, when the temporary files already take their space).
 */
function checkGptqSpace(o: StreamInt4Options, targets: readonly GptqTarget[], blockSize: number, symmetric: boolean, inputBytes: number): void {
  const temp = targets.reduce((a, t) => a + quantizedBytes(t.N, t.K, 4, blockSize, symmetric), 0);
  const floatTargets = targets.reduce((a, t) => a + t.K * t.N * 4, 0);
  const output = Math.max(0, inputBytes - floatTargets) + temp;
  const dir = path.dirname(path.resolve(o.output));
  const free = (o.freeBytes ?? statfsFreeBytes)(dir);
  if (temp + output > free) {
    throw inputError('OUTPUT_NO_SPACE', `${o.output}: GPTQ needs about ${temp + output} bytes at the destination (${temp} of temporary quantized weights, then about ${output} for the output) but ${dir} has ${free} bytes free; nothing written`, { file: o.output });
  }
}

/** Streams `quantize --mode int4` (see the file header). */
export async function streamInt4Workflow(o: StreamInt4Options): Promise<StreamInt4Report> {
  const t0 = performance.now();
  // the pass's own defaults and checks (the same as in memory): one source, so the two paths cannot drift apart
  const p = resolveOptions(int4Pass, o.pass ?? {}) as Required<QuantizeInt4Options>;
  const blockSize = p.blockSize;
  checkBlockSize(blockSize);
  const symmetric = p.symmetric;
  const method: 'rtn' | 'gptq' = p.method === 'rtn' || p.method === 'gptq' ? p.method : o.calibration ? 'gptq' : 'rtn';
  if (method === 'gptq' && !o.calibration) throw inputError('INT4_GPTQ_NEEDS_DATA', '--int4-method gptq needs calibration data (--calibration SPEC)', { field: 'calibration' });
  const notes: string[] = [`streamed tensor by tensor: ${method === 'gptq' ? 'the model was run in onnxruntime only segment by segment for calibration' : 'the model was not run in onnxruntime'}, so no output error or latency against float32 is measured`];
  if (p.format !== 'msft') throw inputError('USAGE_CONFLICT', '--format qdq is not available when streaming (msft only)');
  const measured = p.accuracyLevel === 'auto' || p.accuracyLevel === 'measure';
  const level = measured ? 0 : Number(p.accuracyLevel);
  if (measured) notes.push(`accuracy_level 0: ${p.accuracyLevel} times the levels in onnxruntime, which streaming does not (give --accuracy-level)`);
  if (p.keepInt8 === 'auto') notes.push('first/last layers at 4 bits: keep-int8 auto measures them in onnxruntime, which streaming does not');
  if (o.calibration && method === 'rtn') notes.push('--calibration is not used: --int4-method rtn');
  const model = await loadModel(o.model);
  for (const n of model.graph.allNodes()) {
    if (n.opType === 'MatMulNBits' || n.opType === 'DequantizeLinear' || n.opType === 'GatherBlockQuantized') {
      throw inputError('INT4_ALREADY_QUANTIZED', `the model is already quantized (node ${n.label} is ${n.opType}); quantize the float model`, { node: n.name ?? n.label });
    }
  }
  const input = { bytes: weightBytes(model), files: inputFilesOf(model) };
  const minElements = p.minElements;
  const targets = matmulTargets(model, blockSize, minElements);
  if (!targets.length) throw inputError('INT4_NO_WEIGHTS', 'no MatMul with a constant 2-D float32 initializer to quantize');
  const samples = p.calibrationSamples;
  const damp = p.damp;
  let gptq: StreamGptq | undefined;
  if (method === 'gptq') {
    checkGptqSpace(o, targets, blockSize, symmetric, input.bytes);
    const read = (await collectSamples(o.calibration!, inputInfos(model), { limit: samples })).map((s) => s.feed);
    // the in-memory pass's moment samples (evenly spaced), so both paths quantize on the same data
    const feeds = evenlySpaced(read, p.momentSamples);
    gptq = await streamGptq(model, targets, feeds, {
      blockSize,
      symmetric,
      damp,
      tempParent: path.dirname(path.resolve(o.output)),
      ...(o.gptq?.segmentBytes !== undefined ? { segmentBytes: o.gptq.segmentBytes } : {}),
      ...(o.gptq?.activationBytes !== undefined ? { activationBytes: o.gptq.activationBytes } : {}),
      ...(o.log ? { log: o.log } : {}),
    });
    const c = gptq.report;
    notes.push(`GPTQ layer by layer: ${c.samples} of ${read.length} calibration samples (evenly spaced: the pass's momentSamples) through ${c.segments} segment${c.segments === 1 ? '' : 's'}; ${c.spilledBytes ? `${c.spilledBytes} bytes of activations spilled to ${c.spillDir} (removed)` : 'no activation spilled'}`);
  }
  try {
    const weights = rewrite(model, blockSize, symmetric, level, p.embeddings, minElements, gptq);
    const fingerprint = JSON.stringify({ mode: 'int4-stream', blockSize, symmetric, level, embeddings: p.embeddings, minElements, ...(method === 'gptq' ? { method, calibration: o.calibration, samples, momentSamples: p.momentSamples, damp } : {}) });
    const write = writeStreamed(model, o.output, o, fingerprint, t0, notes, input);
    const report: StreamInt4Report = { schema: 'onnxforge.quantize-stream/1', mode: 'int4', input: o.model, output: o.output, method, blockSize, symmetric, accuracyLevel: level, weights, write };
    if (gptq) report.calibration = gptq.report;
    return report;
  } finally {
    gptq?.dispose();
  }
}
