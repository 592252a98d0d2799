/**
 * Which int8 kernels onnxruntime-web 1.30's WASM backend has, probed with one-op models (the way
 * test/fp16/probe-wasm.ts probes float16): each case is built as ONNX bytes, created in a WASM
 * session (1 thread, optimization 'all'), run, and profiled; the profile names the kernels that ran
 * after onnxruntime's graph optimizations (e.g. whether a QDQ Conv became a QLinearConv or stayed a
 * float Conv between DequantizeLinear and QuantizeLinear). With `time`, each case is also timed
 * (fastest of interleaved rounds against its float counterpart) on the same shapes as the native probe.
 *
 * `npx tsx test/runtime/web-probe.ts [--node]` prints the table (--node: the same cases in onnxruntime-node).
 */
import { fileURLToPath } from 'node:url';
import type { Feed } from '../../core/host-tensor.js';
import { openSession, runnerFor, type Backend } from '../../runtime/backend.js';
import { timeInterleaved } from '../../runtime/timer.js';
import { encode, type ProtoObject } from '../../onnx/wire.js';
import { rawTensor, valueInfo } from './models.js';

const F32 = 1;
const U8 = 2;
const I8 = 3;
const I32 = 6;

export type IntType = 'u8' | 's8';
export interface ProbeCase {
  name: string;
  /** The op under test ('Conv' / 'MatMul' for the float and QDQ forms). */
  op: string;
  /** 'float' | 'qdq' | 'qop' (integer operator) | 'integer' (ConvInteger/MatMulInteger) | 'dynamic'. */
  form: 'float' | 'qdq' | 'qop' | 'integer' | 'dynamic';
  act?: IntType;
  weight?: IntType;
  bytes: Uint8Array;
  feed: Feed;
}

function mulberry(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const rnd = mulberry(7);
const floats = (n: number, scale = 1) => Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * scale);
const ints = (n: number, t: IntType) => (t === 'u8' ? Uint8Array.from({ length: n }, () => Math.floor(rnd() * 256)) : Int8Array.from({ length: n }, () => Math.floor(rnd() * 255) - 127));
const elem = (t: IntType) => (t === 'u8' ? U8 : I8);
const zero = (t: IntType) => (t === 'u8' ? 128 : 0);
const scalar = (name: string, t: number, v: number): ProtoObject =>
  rawTensor(name, t, [], t === F32 ? new Float32Array([v]) : t === U8 ? new Uint8Array([v]) : t === I8 ? new Int8Array([v]) : new Int32Array([v]));

function model(graph: ProtoObject, microsoft = false): Uint8Array {
  const opset_import = [{ domain: '', version: 13 }, ...(microsoft ? [{ domain: 'com.microsoft', version: 1 }] : [])];
  return encode({ ir_version: 8, producer_name: 'onnxforge-web-probe', opset_import, graph }, 'ModelProto');
}

// Shapes like a PaddleOCR rec block: Conv 32 -> 64 channels 3x3 over 24x96; MatMul [96, 256] x [256, 256].
const CONV_X = [1, 32, 24, 96];
const CONV_W = [64, 32, 3, 3];
const MM_A = [96, 256];
const MM_B = [256, 256];
const size = (d: number[]) => d.reduce((a, b) => a * b, 1);

function computeNode(op: 'Conv' | 'MatMul', inputs: string[], output: string, domainOp?: string): ProtoObject {
  const n: ProtoObject = { op_type: domainOp ?? op, input: inputs, output: [output], name: `${domainOp ?? op}_0` };
  if (op === 'Conv') n.attribute = [{ name: 'pads', type: 7, ints: [1, 1, 1, 1] }];
  return n;
}

function floatCase(op: 'Conv' | 'MatMul'): ProbeCase {
  const [xd, wd] = op === 'Conv' ? [CONV_X, CONV_W] : [MM_A, MM_B];
  const w = floats(size(wd), 0.1);
  const bytes = model({
    name: `float-${op}`,
    node: [computeNode(op, ['x', 'w'], 'y')],
    initializer: [rawTensor('w', F32, wd, w)],
    input: [valueInfo('x', F32, xd)],
    output: [valueInfo('y', F32, null)],
  });
  return { name: `${op} float`, op, form: 'float', bytes, feed: { x: { type: 'float32', dims: xd, data: floats(size(xd)) } } };
}

/** Q(x) -> DQ -> op (DQ(w)) -> Q -> DQ: what quantize --mode static writes around a layer. */
function qdqCase(op: 'Conv' | 'MatMul', act: IntType, weight: IntType): ProbeCase {
  const [xd, wd] = op === 'Conv' ? [CONV_X, CONV_W] : [MM_A, MM_B];
  const ch = op === 'Conv' ? wd[0]! : wd[1]!;
  const wAxis = op === 'Conv' ? 0 : 1;
  const bytes = model({
    name: `qdq-${op}`,
    node: [
      { op_type: 'QuantizeLinear', input: ['x', 'sx', 'zx'], output: ['xq'], name: 'qx' },
      { op_type: 'DequantizeLinear', input: ['xq', 'sx', 'zx'], output: ['xf'], name: 'dqx' },
      { op_type: 'DequantizeLinear', input: ['wq', 'sw', 'zw'], output: ['wf'], name: 'dqw', attribute: [{ name: 'axis', type: 2, i: wAxis }] },
      computeNode(op, ['xf', 'wf'], 'yf'),
      { op_type: 'QuantizeLinear', input: ['yf', 'sy', 'zy'], output: ['yq'], name: 'qy' },
      { op_type: 'DequantizeLinear', input: ['yq', 'sy', 'zy'], output: ['y'], name: 'dqy' },
    ],
    initializer: [
      scalar('sx', F32, 1 / 127),
      scalar('zx', elem(act), zero(act)),
      rawTensor('wq', elem(weight), wd, ints(size(wd), weight)),
      rawTensor('sw', F32, [ch], Float32Array.from({ length: ch }, () => 0.001)),
      rawTensor('zw', elem(weight), [ch], weight === 'u8' ? new Uint8Array(ch).fill(128) : new Int8Array(ch)),
      scalar('sy', F32, 0.05),
      scalar('zy', elem(act), zero(act)),
    ],
    input: [valueInfo('x', F32, xd)],
    output: [valueInfo('y', F32, null)],
  });
  return { name: `${op} qdq ${act}/${weight}`, op, form: 'qdq', act, weight, bytes, feed: { x: { type: 'float32', dims: xd, data: floats(size(xd)) } } };
}

/** QuantizeLinear -> QLinearConv / QLinearMatMul -> DequantizeLinear. */
function qopCase(op: 'Conv' | 'MatMul', act: IntType, weight: IntType): ProbeCase {
  const [xd, wd] = op === 'Conv' ? [CONV_X, CONV_W] : [MM_A, MM_B];
  const bytes = model({
    name: `qop-${op}`,
    node: [
      { op_type: 'QuantizeLinear', input: ['x', 'sx', 'zx'], output: ['xq'], name: 'qx' },
      computeNode(op, ['xq', 'sx', 'zx', 'wq', 'sw', 'zw', 'sy', 'zy'], 'yq', `QLinear${op}`),
      { op_type: 'DequantizeLinear', input: ['yq', 'sy', 'zy'], output: ['y'], name: 'dqy' },
    ],
    initializer: [
      scalar('sx', F32, 1 / 127),
      scalar('zx', elem(act), zero(act)),
      rawTensor('wq', elem(weight), wd, ints(size(wd), weight)),
      scalar('sw', F32, 0.001),
      scalar('zw', elem(weight), zero(weight)),
      scalar('sy', F32, 0.05),
      scalar('zy', elem(act), zero(act)),
    ],
    input: [valueInfo('x', F32, xd)],
    output: [valueInfo('y', F32, null)],
  });
  return { name: `QLinear${op} ${act}/${weight}`, op: `QLinear${op}`, form: 'qop', act, weight, bytes, feed: { x: { type: 'float32', dims: xd, data: floats(size(xd)) } } };
}

/** ConvInteger / MatMulInteger on an integer input (int32 output), as dynamic quantization emits. */
function integerCase(op: 'Conv' | 'MatMul', act: IntType, weight: IntType): ProbeCase {
  const [xd, wd] = op === 'Conv' ? [CONV_X, CONV_W] : [MM_A, MM_B];
  const bytes = model({
    name: `integer-${op}`,
    node: [computeNode(op, ['x', 'wq', 'zx', 'zw'], 'y', `${op}Integer`)],
    initializer: [rawTensor('wq', elem(weight), wd, ints(size(wd), weight)), scalar('zx', elem(act), zero(act)), scalar('zw', elem(weight), zero(weight))],
    input: [valueInfo('x', elem(act), xd)],
    output: [valueInfo('y', I32, null)],
  });
  const data = ints(size(xd), act);
  return { name: `${op}Integer ${act}/${weight}`, op: `${op}Integer`, form: 'integer', act, weight, bytes, feed: { x: { type: act === 'u8' ? 'uint8' : 'int8', dims: xd, data } } };
}

/** DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul: quantize --mode dynamic's MatMul. */
function dynamicCase(weight: IntType): ProbeCase {
  const bytes = model({
    name: 'dynamic-matmul',
    node: [
      { op_type: 'DynamicQuantizeLinear', input: ['x'], output: ['xq', 'sx', 'zx'], name: 'dql' },
      { op_type: 'MatMulInteger', input: ['xq', 'wq', 'zx', 'zw'], output: ['yi'], name: 'mmi' },
      { op_type: 'Cast', input: ['yi'], output: ['yc'], name: 'cast', attribute: [{ name: 'to', type: 2, i: F32 }] },
      { op_type: 'Mul', input: ['sx', 'sw'], output: ['s'], name: 'scale' },
      { op_type: 'Mul', input: ['yc', 's'], output: ['y'], name: 'mul' },
    ],
    initializer: [rawTensor('wq', elem(weight), MM_B, ints(size(MM_B), weight)), scalar('zw', elem(weight), zero(weight)), scalar('sw', F32, 0.001)],
    input: [valueInfo('x', F32, MM_A)],
    output: [valueInfo('y', F32, null)],
  });
  return { name: `dynamic MatMul u8/${weight}`, op: 'DynamicQuantizeLinear+MatMulInteger', form: 'dynamic', act: 'u8', weight, bytes, feed: { x: { type: 'float32', dims: MM_A, data: floats(size(MM_A)) } } };
}

/** Every case: float, QDQ, QOperator and integer forms of Conv and MatMul in u8/s8, u8/u8, s8/s8, and dynamic MatMul. */
export function probeCases(): ProbeCase[] {
  const combos: Array<[IntType, IntType]> = [['u8', 's8'], ['u8', 'u8'], ['s8', 's8']];
  const out: ProbeCase[] = [];
  for (const op of ['Conv', 'MatMul'] as const) {
    out.push(floatCase(op));
    for (const [a, w] of combos) out.push(qdqCase(op, a, w));
    for (const [a, w] of combos) out.push(qopCase(op, a, w));
    for (const [a, w] of combos) out.push(integerCase(op, a, w));
  }
  out.push(dynamicCase('u8'), dynamicCase('s8'));
  return out;
}

export interface ProbeResult {
  name: string;
  loads: boolean;
  runs: boolean;
  /** Op types of the kernels that ran (after onnxruntime's optimizations), in profile order. */
  kernels: string[];
  error?: string;
  /** Fastest interleaved slot, ms (with `time`). */
  minMs?: number;
  /** minMs / the float case's minMs of the same op (with `time`). */
  vsFloat?: number;
}

/** Probes every case on a backend. */
export async function probeKernels(backend: Backend, opts: { time?: boolean; rounds?: number } = {}): Promise<ProbeResult[]> {
  const cases = probeCases();
  const results: ProbeResult[] = [];
  const floats = new Map<string, ProbeCase>();
  for (const c of cases) if (c.form === 'float') floats.set(c.op, c);
  const so = { intraOpNumThreads: 1, allowSpinning: false };
  for (const c of cases) {
    const r: ProbeResult = { name: c.name, loads: false, runs: false, kernels: [] };
    results.push(r);
    let s;
    let f;
    try {
      s = await openSession(backend, c.bytes, so, c.name);
      r.loads = true;
      await s.run(c.feed);
      r.runs = true;
      const p = await runnerFor(backend).profile(c.bytes, [c.feed], { ...so, runs: 1 });
      r.kernels = [...new Set(p.nodes.map((n) => n.opType))];
      const base = floats.get(c.op.replace(/^QLinear/, '').replace(/Integer$/, '').replace(/^DynamicQuantizeLinear\+MatMul$/, 'MatMul'));
      if (opts.time && base && c.form !== 'float') {
        // interleaved with the float case on the same input shape: the ratio of the fastest slots
        f = await openSession(backend, base.bytes, so, base.name);
        const t = await timeInterleaved([{ session: f, feeds: [base.feed] }, { session: s, feeds: [c.feed] }], { rounds: opts.rounds ?? 30, warmup: 3, inner: 'auto' });
        r.minMs = Math.min(...t.entries[1]!.wallMs);
        r.vsFloat = r.minMs / Math.min(...t.entries[0]!.wallMs);
      }
    } catch (e) {
      r.error = (e as Error).message.split('\n')[0]!.slice(0, 160);
    } finally {
      await s?.dispose();
      await f?.dispose();
    }
  }
  return results;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const backend: Backend = process.argv.includes('--node') ? 'node' : 'wasm';
  const rows = await probeKernels(backend, { time: true });
  for (const r of rows) {
    const t = r.minMs === undefined ? '' : `${r.minMs.toFixed(3)} ms${r.vsFloat ? ` (${r.vsFloat.toFixed(2)}x float)` : ''}`;
    console.log(`${r.name.padEnd(24)} ${r.loads ? 'loads' : 'NO LOAD'} ${r.runs ? 'runs ' : 'NO RUN'} ${r.kernels.join(',').padEnd(60)} ${t} ${r.error ?? ''}`);
  }
}
