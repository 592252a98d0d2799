/**
 * quantize-dynamic: dynamic INT8 without calibration. Activations are quantized at run time
 * (uint8, asymmetric, per tensor, by DynamicQuantizeLinear); weights are int8 constants, symmetric
 * per output channel (zero point 0). Emitted in the forms onnxruntime's CPU EP runs fastest:
 *
 * - MatMul(A, B) with a constant 2-D B [K, N], K*N >= minElements (and Gemm with alpha = beta = 1,
 *   transA = 0, constant B, as MatMul + Add):
 *     (a_q, a_s, a_zp) = DynamicQuantizeLinear(A)
 *     y = Cast<float>(MatMulInteger(a_q, B_q, a_zp)) * Mul(a_s, s_B[N])
 *   which onnxruntime (level >= extended) fuses into com.microsoft DynamicQuantizeMatMul (bias Add
 *   included when constant [N]) — y_ij = a_s s_j sum_k (a_q,ik - a_zp) B_q,kj exactly.
 * - Gather(table, idx) on a constant 2-D table (axis 0): int8 table, one scale per row; the rows
 *   are dequantized after the Gather: y = Cast<float>(Gather(T_q, idx)) * Gather(s[V, 1], idx).
 * - LSTM with constant W, R: com.microsoft DynamicQuantizeLSTM (W, R transposed to [D, I, 4H] and
 *   [D, H, 4H], int8 per gate row with zero point 0), when `lstm` is on (see the benchmark for
 *   whether it pays off). GRU/RNN stay float: neither ONNX nor onnxruntime has an int8 kernel.
 * - Conv stays float: ConvInteger is u8 x u8, unpacked, and measured several times slower than the
 *   float Conv on AVX2 (see shared notes); `minElements` keeps small MatMuls float too, where the
 *   DynamicQuantizeLinear pass over A costs more than the int8 product saves.
 *
 * With reduceRange (default true) weights are limited to [-64, 64]: AVX2 without VNNI sums u8 x s8
 * pairs into saturating int16, which full-range weights can overflow silently.
 *
 * weightType 'uint8' (transformers.js' `uint8` variant) stores MatMul/Gemm weights as uint8 with zero
 * point 128 (the symmetric int8 values shifted, full range: the u8 x u8 kernel widens to int16 before
 * multiplying and cannot saturate, so reduceRange does not apply).
 */
import { DataType } from '../../core/dtype.js';
import { inputError } from '../../core/errors.js';
import { Attribute, constantOf, Graph, Model, Node, Value } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import { definePass, PassContext, withSchemaDefaults } from '../pass.js';
import { prepareForQuantization, PrepareReport } from './prepare.js';
import { quantizeInt8 } from './weights-int8.js';
import type { NameAuthority } from '../../ir/names.js';

export interface QuantizeDynamicOptions {
  /** Smallest MatMul/Gemm weight (K * N elements) that is quantized (default 16384). */
  minElements?: number;
  /** Smallest embedding table (elements) that is quantized (default 4096). */
  minGatherElements?: number;
  /** Weights in [-64, 64] (default true; avoids AVX2 int16 saturation). */
  reduceRange?: boolean;
  /** MatMul/Gemm weight storage: int8 (zero point 0) or uint8 (zero point 128); default int8. */
  weightType?: 'int8' | 'uint8';
  /** Op types to quantize (default MatMul, Gemm, Gather, LSTM). */
  ops?: string[];
  /** Node names left in float. */
  excludeNodes?: string[];
  /** Run the `default` preset and the opset upgrade first (default true). */
  prepare?: boolean;
}

export interface QuantizeDynamicReport {
  prepare?: PrepareReport;
  quantized: Record<string, number>;
  /** Candidates left in float, with the reason. */
  float: { node: string; op: string; reason: string }[];
  weightBytesBefore: number;
  weightBytesAfter: number;
}

const DEFAULT_OPS = ['MatMul', 'Gemm', 'Gather', 'LSTM'];

/** Quantizes `model` in place. */
export async function quantizeDynamic(model: Model, options: QuantizeDynamicOptions = {}, ctx?: PassContext): Promise<QuantizeDynamicReport> {
  options = withSchemaDefaults(pass.options, options);
  const minElements = options.minElements!;
  const minGather = options.minGatherElements!;
  for (const [k, v] of [['minElements', minElements], ['minGatherElements', minGather]] as const) {
    if (!(Number.isInteger(v) && v >= 1)) throw inputError('USAGE_BAD_VALUE', `${k} must be a positive integer, got ${v}`);
  }
  const u8 = options.weightType === 'uint8';
  const qmax = options.reduceRange && !u8 ? 64 : 127;
  const ops = new Set(options.ops);
  const excluded = new Set(options.excludeNodes);
  let prepare: PrepareReport | undefined;
  if (options.prepare) prepare = await prepareForQuantization(model, ctx, { presets: 'default', minOpset: 13 });
  if ((model.opset('') ?? 1) < 11) throw inputError('QUANT_OPSET_TOO_OLD', `dynamic quantization needs opset 11 (DynamicQuantizeLinear); the model has opset ${model.opset('')}`);
  const g = model.graph;
  const names = g.names;
  const report: QuantizeDynamicReport = { quantized: {}, float: [], weightBytesBefore: 0, weightBytesAfter: 0 };
  if (prepare) report.prepare = prepare;
  const keep = (n: Node, reason: string) => report.float.push({ node: n.name ?? n.label, op: n.opType, reason });

  for (const n of [...g.nodes]) {
    if (n.opDomain !== '' || !ops.has(n.opType)) continue;
    if (n.name && excluded.has(n.name)) {
      keep(n, 'excluded by name');
      continue;
    }
    let done: { before: number; after: number } | string;
    if (n.opType === 'MatMul') done = quantizeMatMul(g, names, n, minElements, qmax, u8);
    else if (n.opType === 'Gemm') done = quantizeGemm(g, names, n, minElements, qmax, u8);
    else if (n.opType === 'Gather') done = quantizeGather(g, names, n, minGather);
    else if (n.opType === 'LSTM') done = quantizeLstm(g, names, n, qmax);
    else continue;
    if (typeof done === 'string') {
      keep(n, done);
      continue;
    }
    report.quantized[n.opType] = (report.quantized[n.opType] ?? 0) + 1;
    report.weightBytesBefore += done.before;
    report.weightBytesAfter += done.after;
  }
  dropUnused(g);
  g.toposort();
  if (report.quantized.LSTM && model.opset('com.microsoft') === undefined) model.setOpset('com.microsoft', 1);
  return report;
}

type Done = { before: number; after: number } | string;

function floatWeight(v: Value | null | undefined, what: string): Tensor | string {
  const t = constantOf(v);
  if (!t) return `${what} is not a constant`;
  if (t.dataType !== DataType.FLOAT) return `${what} is ${t.dtype}, not float32`;
  return t;
}

function floatValue(g: Graph, names: NameAuthority, stem: string, dims?: Array<number | string | undefined>): Value {
  const v = new Value(names.fresh(stem));
  v.setTensorType(DataType.FLOAT, dims);
  return v;
}

/** int8 weights as uint8 with zero point 128 (exact: the same products). */
function shiftedUint8(q: Tensor): Tensor {
  const s = q.data() as Int8Array;
  const u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s[i]! + 128;
  return Tensor.from(DataType.UINT8, q.dims, u);
}

/** DynamicQuantizeLinear(A) -> MatMulInteger(., Bq[, 128 for uint8]) -> Cast -> Mul(a_s * s_B); returns the float product value. */
function emitDynamicMatMul(g: Graph, names: NameAuthority, before: Node, a: Value, int8: Tensor, bScales: Float32Array, stem: string, u8: boolean): Value {
  const q = new Value(names.fresh(`${stem}_aq`));
  q.setTensorType(DataType.UINT8, a.shape);
  const as = new Value(names.fresh(`${stem}_as`));
  as.setTensorType(DataType.FLOAT, []);
  const azp = new Value(names.fresh(`${stem}_azp`));
  azp.setTensorType(DataType.UINT8, []);
  const dql = new Node('DynamicQuantizeLinear', [a], [q, as, azp]);
  const bv = g.addInitializer(u8 ? shiftedUint8(int8) : int8, names.fresh(`${stem}_wq`));
  const acc = new Value(names.fresh(`${stem}_i32`));
  acc.setTensorType(DataType.INT32);
  // int8: b_zero_point omitted (symmetric, zero point 0); uint8: zero point 128
  const bzp = u8 ? [g.addInitializer(Tensor.from(DataType.UINT8, [], Uint8Array.of(128)), names.fresh(`${stem}_wzp`))] : [];
  const mmi = new Node('MatMulInteger', [q, bv, azp, ...bzp], [acc]);
  const f = floatValue(g, names, `${stem}_f`);
  const cast = new Node('Cast', [acc], [f]);
  cast.setAttr(Attribute.int('to', DataType.FLOAT));
  const sb = g.addInitializer(bScales.length === 1 ? Tensor.from(DataType.FLOAT, [], bScales) : Tensor.from(DataType.FLOAT, [bScales.length], bScales), names.fresh(`${stem}_ws`));
  const s = floatValue(g, names, `${stem}_s`, [bScales.length]);
  const mulS = new Node('Mul', [as, sb], [s]);
  const y = floatValue(g, names, `${stem}_y`);
  const mul = new Node('Mul', [f, s], [y]);
  for (const node of [dql, mmi, cast, mulS, mul]) g.insertBefore(before, node);
  return y;
}

function quantizeMatMul(g: Graph, names: NameAuthority, n: Node, minElements: number, qmax: 127 | 64, u8: boolean): Done {
  const a = n.inputs[0];
  const t = floatWeight(n.inputs[1], 'B');
  if (typeof t === 'string') return t;
  if (!a) return 'A is missing';
  if (t.dims.length !== 2) return `B has rank ${t.dims.length}; only 2-D weights are quantized`;
  if (constantOf(a)) return 'A is a constant (fold it instead)';
  if (a.elemType !== undefined && a.elemType !== DataType.FLOAT) return 'A is not float32';
  if (t.size < minElements) return `B has ${t.size} elements, below minElements ${minElements} (int8 would not pay off)`;
  const w = quantizeInt8(t, 1, qmax);
  const y = emitDynamicMatMul(g, names, n, a, w.q, w.scales, names.numbered('dm'), u8);
  const out = n.outputs[0]!;
  out.replaceAllUsesWith(y);
  g.removeNode(n);
  return { before: t.byteLength, after: w.q.byteLength + w.scales.byteLength };
}

function quantizeGemm(g: Graph, names: NameAuthority, n: Node, minElements: number, qmax: 127 | 64, u8: boolean): Done {
  const a = n.inputs[0];
  if (!a) return 'A is missing';
  if ((n.getFloat('alpha', 1) ?? 1) !== 1 || (n.getFloat('beta', 1) ?? 1) !== 1) return 'alpha or beta is not 1';
  if ((n.getInt('transA', 0) ?? 0) !== 0) return 'transA is set';
  const t = floatWeight(n.inputs[1], 'B');
  if (typeof t === 'string') return t;
  if (t.dims.length !== 2) return 'B is not 2-D';
  if (t.size < minElements) return `B has ${t.size} elements, below minElements ${minElements} (int8 would not pay off)`;
  const c = n.inputs[2];
  if (c && !constantOf(c)) return 'C is not a constant';
  // B as [K, N]
  const kn = (n.getInt('transB', 0) ?? 0) === 1 ? transpose2d(t) : t;
  const w = quantizeInt8(kn, 1, qmax);
  let y = emitDynamicMatMul(g, names, n, a, w.q, w.scales, names.numbered('dm'), u8);
  if (c) {
    const withBias = floatValue(g, names, names.numbered('dmb'));
    g.insertBefore(n, new Node('Add', [y, c], [withBias]));
    y = withBias;
  }
  n.outputs[0]!.replaceAllUsesWith(y);
  g.removeNode(n);
  return { before: t.byteLength, after: w.q.byteLength + w.scales.byteLength };
}

function quantizeGather(g: Graph, names: NameAuthority, n: Node, minElements: number): Done {
  const t = floatWeight(n.inputs[0], 'the table');
  if (typeof t === 'string') return t;
  const idx = n.inputs[1];
  if (!idx) return 'indices are missing';
  if (t.dims.length !== 2) return 'the table is not 2-D';
  const axis = n.getInt('axis', 0) ?? 0;
  if (axis !== 0 && axis !== -2) return `Gather axis ${axis} is not 0`;
  if (t.size < minElements) return `the table has ${t.size} elements, below ${minElements}`;
  // one scale per row, full int8 range (no int8 arithmetic here, only storage)
  const w = quantizeInt8(t, 0, 127);
  const stem = names.numbered('emb');
  const tq = g.addInitializer(w.q, names.fresh(`${stem}_q`));
  const rows = t.dims[0]!;
  const scales = w.axis === undefined ? new Float32Array(rows).fill(w.scales[0]!) : w.scales;
  const sv = g.addInitializer(Tensor.from(DataType.FLOAT, [rows, 1], scales), names.fresh(`${stem}_s`));
  const gq = new Value(names.fresh(`${stem}_rows`));
  gq.setTensorType(DataType.INT8);
  const gatherQ = new Node('Gather', [tq, idx], [gq]);
  const f = floatValue(g, names, `${stem}_f`);
  const cast = new Node('Cast', [gq], [f]);
  cast.setAttr(Attribute.int('to', DataType.FLOAT));
  const gs = floatValue(g, names, `${stem}_rs`);
  const gatherS = new Node('Gather', [sv, idx], [gs]);
  const y = floatValue(g, names, `${stem}_y`);
  const mul = new Node('Mul', [f, gs], [y]);
  for (const node of [gatherQ, cast, gatherS, mul]) g.insertBefore(n, node);
  n.outputs[0]!.replaceAllUsesWith(y);
  g.removeNode(n);
  return { before: t.byteLength, after: w.q.byteLength + rows * 4 };
}

function quantizeLstm(g: Graph, names: NameAuthority, n: Node, qmax: 127 | 64): Done {
  const W = floatWeight(n.inputs[1], 'W');
  if (typeof W === 'string') return W;
  const R = floatWeight(n.inputs[2], 'R');
  if (typeof R === 'string') return R;
  if (W.dims.length !== 3 || R.dims.length !== 3) return 'W or R is not 3-D';
  if ((n.getInt('layout', 0) ?? 0) !== 0) return 'layout = 1 is not supported by DynamicQuantizeLSTM';
  const stem = names.numbered('lstm');
  // [D, 4H, I] -> [D, I, 4H]; per-channel scales along the 4H gate rows
  const wq = quantizeInt8(transposeLast2(W), 2, qmax);
  const rq = quantizeInt8(transposeLast2(R), 2, qmax);
  const d = W.dims[0]!;
  const gates = W.dims[1]!;
  const scaleOf = (q: { axis: number | undefined; scales: Float32Array }, name: string): [Value, Value] => {
    const s = q.axis === undefined ? new Float32Array(d * gates).fill(q.scales[0]!) : q.scales;
    const sv = g.addInitializer(Tensor.from(DataType.FLOAT, [d, gates], s), names.fresh(`${stem}_${name}s`));
    const zv = g.addInitializer(Tensor.from(DataType.INT8, [d, gates], new Int8Array(d * gates)), names.fresh(`${stem}_${name}zp`));
    return [sv, zv];
  };
  const [ws, wz] = scaleOf(wq, 'w');
  const [rs, rz] = scaleOf(rq, 'r');
  const wv = g.addInitializer(wq.q, names.fresh(`${stem}_w`));
  const rv = g.addInitializer(rq.q, names.fresh(`${stem}_r`));
  const ins: Array<Value | null> = [n.inputs[0] ?? null, wv, rv];
  for (let i = 3; i < 8; i++) ins.push(n.inputs[i] ?? null);
  ins.push(ws, wz, rs, rz);
  const outs = [...n.outputs];
  const q = new Node('DynamicQuantizeLSTM', [], [], 'com.microsoft');
  for (const v of ins) q.appendInput(v);
  for (const a of n.attributes) if (a.name !== 'layout') q.setAttr(a);
  g.insertBefore(n, q);
  const fresh = outs.map((o) => {
    const v = new Value(names.fresh(`${o.name}_dq`));
    if (o.type) v.type = o.type;
    q.appendOutput(v);
    return v;
  });
  outs.forEach((o, i) => o.replaceAllUsesWith(fresh[i]!));
  g.removeNode(n);
  return { before: W.byteLength + R.byteLength, after: wq.q.byteLength + rq.q.byteLength + 2 * d * gates * 5 };
}

function transpose2d(t: Tensor): Tensor {
  const [r, c] = t.dims as [number, number];
  const x = t.toFloat32();
  const y = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) y[j * r + i] = x[i * c + j]!;
  return Tensor.from(DataType.FLOAT, [c, r], y);
}

function transposeLast2(t: Tensor): Tensor {
  const [d, r, c] = t.dims as [number, number, number];
  const x = t.toFloat32();
  const y = new Float32Array(d * r * c);
  for (let k = 0; k < d; k++) {
    const o = k * r * c;
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) y[o + j * r + i] = x[o + i * c + j]!;
  }
  return Tensor.from(DataType.FLOAT, [d, c, r], y);
}

/** Removes float weights (initializers and Constant nodes) nobody reads any more. */
function dropUnused(g: Graph): void {
  for (const n of [...g.nodes]) if (n.opType === 'Constant' && n.outputs.every((o) => o.uses.length === 0 && !o.isGraphOutput)) g.removeNode(n);
  for (const v of [...g.initializers.values()]) if (v.uses.length === 0 && !v.isGraphOutput && !g.inputs.includes(v) && v.outputOf.size === 0) g.removeInitializer(v);
}


const pass = definePass<{ minElements: number; minGatherElements: number; reduceRange: boolean; weightType: 'int8' | 'uint8'; ops: string[]; excludeNodes: string[]; prepare: boolean }, QuantizeDynamicReport>({
  name: 'quantize-dynamic',
  description: 'Dynamic INT8: MatMul/Gemm with int8 weights in the DynamicQuantizeMatMul pattern, int8 embedding tables, DynamicQuantizeLSTM; Conv stays float.',
  idempotent: false,
  options: {
    minElements: { type: 'integer', default: 16384, min: 1, description: 'Smallest MatMul/Gemm weight (elements) that is quantized.' },
    minGatherElements: { type: 'integer', default: 4096, min: 1, description: 'Smallest embedding table (elements) that is quantized.' },
    reduceRange: { type: 'boolean', default: true, description: 'Weights in [-64, 64] (avoids AVX2 int16 saturation).' },
    weightType: { type: 'enum', values: ['int8', 'uint8'], default: 'int8', description: 'MatMul/Gemm weight storage: int8 (zero point 0) or uint8 (zero point 128, full range: the u8 x u8 kernel does not saturate).' },
    ops: { type: 'string[]', default: DEFAULT_OPS, description: 'Op types to quantize (MatMul, Gemm, Gather, LSTM).' },
    excludeNodes: { type: 'string[]', default: [], description: 'Node names left in float.' },
    prepare: { type: 'boolean', default: true, description: 'Run the default preset and upgrade to opset 13 first.' },
  },
  async run(model, o, ctx) {
    const r = await quantizeDynamic(model, { minElements: o.minElements, minGatherElements: o.minGatherElements, reduceRange: o.reduceRange, weightType: o.weightType, ops: o.ops, excludeNodes: o.excludeNodes, prepare: o.prepare }, ctx);
    const total = Object.values(r.quantized).reduce((x, y) => x + y, 0);
    return { report: r, changed: total > 0, stats: { quantized: total, float: r.float.length, weightBytesBefore: r.weightBytesBefore, weightBytesAfter: r.weightBytesAfter } };
  },
});

export default pass;
