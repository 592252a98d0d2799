/**
 * Emission of a {@link Placement} in QDQ form (ai.onnx QuantizeLinear/DequantizeLinear, opset >= 13):
 *
 * - each placed tensor v becomes v -> Q(scale, zp: uint8) -> DQ(scale, zp) -> every former reader of v
 *   (graph outputs included: the DQ output takes the graph output's slot and name, so the producer
 *   feeds only the Q, as onnxruntime's fusion requires); scale is a float32 scalar, zp an explicit
 *   uint8 scalar;
 * - the weight of each compute unit becomes an int8 initializer behind DQ(scale[C], axis), the zero
 *   point left out (0 by definition for symmetric weights); reduce-range ([-64, 64]) applies only to
 *   units that run in int8, weight-only units keep [-127, 127]; the bias an int32 initializer behind DQ(s_x * s_w[C], axis 0) with the zero point left out
 *   (0 by definition; onnxruntime moves only the int32 data into QLinearConv/QGemm);
 * - float Constant nodes and initializers left without readers are removed, so the float weights go;
 * - bias correction (when the caller gives the mean of a unit's input per channel, mu): rounding the
 *   weights shifts the unit's mean output by delta_m = sum_{i,k} (w^q - w)[m, i, k] mu_i (the rounding
 *   errors are random, but the inputs they multiply are not zero-mean after a Relu or HardSwish); the
 *   bias becomes b_m - delta_m (a Conv or Gemm without one gets one), so the int8 layer's output is
 *   unbiased on the calibration data. At a convolution's borders some taps read zero padding, so tap k
 *   counts with the fraction f_k of output positions where it reads the input (from the input shapes
 *   seen): delta_m = sum_{i,k} (w^q - w)[m, i, k] mu_i f_k. A Conv with auto_pad gets no correction.
 */
import { DataType } from '../../core/dtype.js';
import { inputError } from '../../core/errors.js';
import { Attribute, constantOf, Graph, Model, Node, Value } from '../../ir/ir.js';
import type { NameAuthority } from '../../ir/names.js';
import { Tensor } from '../../core/tensor.js';
import type { ComputeUnit, Placement } from './placement.js';
import { ActivationParams, biasScaleFloor, quantizeBias, quantizeWeight, QuantizedWeight } from './scales.js';

export interface EmitOptions {
  reduceRange: boolean;
  /**
   * Names of the new values: 'compact' (default) gives short ids (a12_q, w3_s, ...) and leaves the
   * Q/DQ nodes unnamed, which matters on small models where names weigh as much as int8 weights;
   * 'descriptive' derives them from the tensor names (conv1.w_s, relu_out_q, ...) and names nodes.
   */
  names?: 'compact' | 'descriptive';
  /**
   * Per compute node, the mean of its activation input per input channel (Conv: axis 1; MatMul/Gemm:
   * last axis) and, for a Conv, the input shapes seen with their counts: enables bias correction.
   */
  inputMeans?: ReadonlyMap<Node, InputMeans>;
}

export interface InputMeans {
  /** Mean per input channel of the unit's input on the calibration data. */
  mean: Float64Array;
  shapes?: ReadonlyArray<{ dims: readonly number[]; count: number }>;
}

export interface EmitStats {
  qdqPairs: number;
  weights: number;
  biases: number;
  clampedBias: number;
  removedConstants: number;
  /** Units whose bias was corrected for the mean shift of their rounded weights. */
  biasCorrected: number;
}

export interface EmitResult {
  stats: EmitStats;
  /** Placed tensor name -> name of the DequantizeLinear output that now carries it. */
  dequantized: Map<string, string>;
}

/** New names for the emitted tensors and nodes, from the model's name authority (ir/names.ts). */
class Names {
  private readonly names: NameAuthority;
  constructor(
    g: Graph,
    readonly compact: boolean,
  ) {
    this.names = g.names;
  }
  /** The stem of a group of new names: the tensor name, or a short id of `kind` ('a0', 'w3', 'b1'). */
  stem(kind: string, base: string): string {
    return this.compact ? this.names.numbered(kind) : base;
  }

  /** A node name, or none in compact mode. */
  nodeName(node: Node, base: string): void {
    if (!this.compact) node.name = this.fresh(base);
  }

  fresh(base: string): string {
    return this.names.fresh(base);
  }
}

function scalar(dtype: DataType, v: number): Tensor {
  if (dtype === DataType.FLOAT) return Tensor.from(dtype, [], Float32Array.of(v));
  if (dtype === DataType.UINT8) return Tensor.from(dtype, [], Uint8Array.of(v));
  if (dtype === DataType.INT8) return Tensor.from(dtype, [], Int8Array.of(v));
  return Tensor.from(dtype, [], Int32Array.of(v));
}

export function emitQdq(model: Model, p: Placement, params: ReadonlyMap<Value, ActivationParams>, o: EmitOptions): EmitResult {
  const g = model.graph;
  const names = new Names(g, (o.names ?? 'compact') === 'compact');
  const stats: EmitStats = { qdqPairs: 0, weights: 0, biases: 0, clampedBias: 0, removedConstants: 0, biasCorrected: 0 };
  const touchedConstants = new Set<Value>();

  // weights and biases first: the bias needs the input scale, known from `params`
  const weightCache = new Map<string, { dq: Value; q: QuantizedWeight }>();
  for (const u of p.units) {
    if (u.weightIndex < 0) continue;
    const wv = u.node.inputs[u.weightIndex]!;
    const original = u.biasIndex >= 0 ? constantOf(u.node.inputs[u.biasIndex])!.toFloat32() : undefined;
    // with a bias, the weight scale has a floor that keeps the int32 bias in range
    const xs = u.weightOnly ? undefined : params.get(u.node.inputs[u.activationInputs[0]!]!);
    if (!u.weightOnly && !xs) throw inputError('QUANT_INTERNAL', `no input scale for ${u.node.label}`, { node: u.node.name });
    const floor = original && xs ? biasScaleFloor(original, xs.scale, u.axis !== undefined) : undefined;
    // weight-only units run a float kernel after the DequantizeLinear: no u8 x s8 int16 pair sums to
    // saturate, so they always get the full [-127, 127] range (det: map IoU 0.95 -> 0.99 all weight-only)
    const reduce = o.reduceRange && !u.weightOnly;
    const key = `${wv.name}|${u.axis ?? 'tensor'}|${floor ? Array.from(floor).join(',') : ''}|${reduce}`;
    let entry = weightCache.get(key);
    if (!entry) {
      entry = quantizeWeightInput(g, names, u, wv, reduce, floor);
      weightCache.set(key, entry);
      stats.weights++;
    }
    touchedConstants.add(wv);
    let bias = original;
    const mu = o.inputMeans?.get(u.node);
    const shift = mu ? weightShift(u, constantOf(wv)!, entry.q, mu) : undefined;
    if (shift) {
      bias = Float32Array.from(shift, (d, m) => (original ? original[m]! : 0) - d);
      stats.biasCorrected++;
    }
    u.node.setInput(u.weightIndex, entry.dq);
    if (!bias) continue;
    const biasIndex = u.biasIndex >= 0 ? u.biasIndex : 2;
    const bv = u.node.inputs[u.biasIndex] ?? undefined;
    const baseName = bv?.name ?? `${u.node.name ?? u.node.opType}_bias`;
    if (u.weightOnly) {
      // float kernel: the float bias stays, or becomes the corrected one
      if (bias !== original) {
        if (bv) touchedConstants.add(bv);
        u.node.setInput(biasIndex, g.addInitializer(Tensor.from(DataType.FLOAT, [bias.length], bias), names.fresh(`${names.stem('b', baseName)}_corrected`)));
      }
      continue;
    }
    if (bv) touchedConstants.add(bv);
    const base = names.stem('b', baseName);
    const q = quantizeBias(bias, xs!.scale, entry.q.scales);
    stats.clampedBias += q.clamped;
    const qv = g.addInitializer(Tensor.from(DataType.INT32, [bias.length], q.data), names.fresh(`${base}_i32`));
    const sv = g.addInitializer(Tensor.from(DataType.FLOAT, [bias.length], q.scales), names.fresh(`${base}_s`));
    const out = new Value(names.fresh(`${base}_dq`));
    out.setTensorType(DataType.FLOAT, [bias.length]);
    // zero point omitted: 0 by definition, and onnxruntime moves only the int32 data into QLinearConv
    const dq = new Node('DequantizeLinear', [qv, sv], [out]);
    names.nodeName(dq, `${base}_DQ`);
    dq.setAttr(Attribute.int('axis', 0));
    g.insertBefore(u.node, dq);
    u.node.setInput(biasIndex, out);
    stats.biases++;
  }

  // activations
  const dequantized = new Map<string, string>();
  const paramValues = new Map<Value, [Value, Value]>();
  for (const t of p.tensors) {
    const prm = params.get(t.inheritFrom ?? t.value) ?? params.get(t.value);
    if (!prm) throw inputError('QUANT_INTERNAL', `no quantization parameters for tensor '${t.value.name}'`, { tensor: t.value.name });
    const before = t.value.name;
    // tensors that inherit parameters (data movement) share their root's scale and zero point
    const root = t.inheritFrom ?? t.value;
    const shared = paramValues.get(root);
    const r = insertPair(g, names, t.value, prm, shared);
    if (!shared) paramValues.set(root, r.params);
    dequantized.set(before, r.dq);
    stats.qdqPairs++;
  }

  // drop float constants nobody reads any more
  for (const v of touchedConstants) {
    if (v.uses.length > 0 || v.isGraphOutput) continue;
    if (v.producer && v.producer.opType === 'Constant') {
      v.producer.graph?.removeNode(v.producer);
      stats.removedConstants++;
    } else if (v.graph?.initializers.get(v.name) === v && !v.graph.inputs.includes(v)) {
      v.graph.removeInitializer(v);
      stats.removedConstants++;
    }
  }
  g.toposort();
  return { stats, dequantized };
}

function quantizeWeightInput(g: Graph, names: Names, u: ComputeUnit, wv: Value, reduceRange: boolean, floor: Float32Array | undefined): { dq: Value; q: QuantizedWeight } {
  const t = constantOf(wv)!;
  const q = quantizeWeight(t.toFloat32(), t.dims, u.axis, reduceRange, floor);
  const base = names.stem('w', wv.name);
  const ch = q.scales.length;
  const qv = g.addInitializer(Tensor.from(DataType.INT8, t.dims, q.data), names.fresh(`${base}_i8`));
  const perChannel = q.axis !== undefined;
  const sv = g.addInitializer(perChannel ? Tensor.from(DataType.FLOAT, [ch], q.scales) : scalar(DataType.FLOAT, q.scales[0]!), names.fresh(`${base}_s`));
  const out = new Value(names.fresh(`${base}_dq`));
  out.setTensorType(DataType.FLOAT, t.dims);
  // zero point omitted: symmetric int8 weights have zero point 0 by definition
  const dq = new Node('DequantizeLinear', [qv, sv], [out]);
  names.nodeName(dq, `${base}_DQ`);
  if (perChannel) dq.setAttr(Attribute.int('axis', q.axis!));
  g.insertBefore(u.node, dq);
  return { dq: out, q };
}

/**
 * Mean output shift per output channel caused by rounding the weight, given the input's channel
 * means: Conv W[M, C/G, k...] (output m reads input channels of its group), Gemm W[K, N] or [N, K]
 * (transB), MatMul W[K, N]. Undefined when the unit cannot take a bias (MatMul, Gemm with beta != 1)
 * or the means do not match the weight.
 */
function weightShift(u: ComputeUnit, w: Tensor, q: QuantizedWeight, input: InputMeans): Float64Array | undefined {
  const n = u.node;
  const dims = w.dims;
  const mu = input.mean;
  const wf = w.toFloat32();
  const scaleOf = (ch: number) => q.scales[q.scales.length === 1 ? 0 : ch]!;
  if (n.opType === 'Conv') {
    const m = dims[0]!;
    const cg = dims[1]!;
    const groups = n.getInt('group', 1) ?? 1;
    if (mu.length !== cg * groups || m % groups !== 0) return undefined;
    const f = tapFractions(n, dims.slice(2), input.shapes ?? []);
    if (!f) return undefined;
    const k = f.length;
    const out = new Float64Array(m);
    for (let o = 0; o < m; o++) {
      const g0 = Math.floor(o / (m / groups)) * cg;
      const s = scaleOf(o);
      let acc = 0;
      for (let i = 0; i < cg; i++) {
        const base = (o * cg + i) * k;
        let e = 0;
        for (let j = 0; j < k; j++) e += (q.data[base + j]! * s - wf[base + j]!) * f[j]!;
        acc += e * mu[g0 + i]!;
      }
      out[o] = acc;
    }
    return out;
  }
  if (n.opType === 'Gemm') {
    if ((n.getFloat('beta', 1) ?? 1) !== 1 || (n.getFloat('alpha', 1) ?? 1) !== 1) return undefined;
    const transB = (n.getInt('transB', 0) ?? 0) !== 0;
    const [kk, nn] = transB ? [dims[1]!, dims[0]!] : [dims[0]!, dims[1]!];
    if (mu.length !== kk) return undefined;
    const out = new Float64Array(nn);
    for (let k = 0; k < kk; k++) {
      for (let j = 0; j < nn; j++) {
        const idx = transB ? j * kk + k : k * nn + j;
        out[j] += (q.data[idx]! * scaleOf(j) - wf[idx]!) * mu[k]!;
      }
    }
    return out;
  }
  return undefined;
}

/** v -> Q -> DQ -> (every former reader of v). */
function insertPair(g: Graph, names: Names, v: Value, prm: ActivationParams, shared?: [Value, Value]): { dq: string; params: [Value, Value] } {
  const base = names.stem('a', v.name);
  const sv = shared?.[0] ?? g.addInitializer(scalar(DataType.FLOAT, prm.scale), names.fresh(`${base}_s`));
  const zv = shared?.[1] ?? g.addInitializer(scalar(DataType.UINT8, prm.zeroPoint), names.fresh(`${base}_zp`));
  const qOut = new Value(names.fresh(`${base}_q`));
  qOut.setTensorType(DataType.UINT8, v.shape);
  const dqOut = new Value(names.fresh(`${base}_dq`));
  dqOut.setTensorType(DataType.FLOAT, v.shape);
  const wasOutput = v.isGraphOutput;
  const original = v.name;
  v.replaceAllUsesWith(dqOut);
  if (wasOutput && dqOut.name !== original) {
    // the graph output keeps its name (the model's interface): the DQ output carries it
    v.name = names.fresh(`${original}_float`);
    dqOut.name = original;
  }
  if (wasOutput) dqOut.type = v.type;
  const q = new Node('QuantizeLinear', [v, sv, zv], [qOut]);
  names.nodeName(q, `${base}_Q`);
  const dq = new Node('DequantizeLinear', [qOut, sv, zv], [dqOut]);
  names.nodeName(dq, `${base}_DQ`);
  if (v.producer) {
    g.insertAfter(v.producer, q);
    g.insertAfter(q, dq);
  } else {
    g.insertNode(q, 0);
    g.insertNode(dq, 1);
  }
  return { dq: dqOut.name, params: [sv, zv] };
}

/**
 * For each kernel tap (row-major over the kernel), the fraction of output positions at which it reads
 * the input rather than zero padding, over the input shapes seen (weighted by their counts and output
 * sizes). Undefined with auto_pad, or when no shape is known.
 */
function tapFractions(n: Node, kernel: readonly number[], shapes: ReadonlyArray<{ dims: readonly number[]; count: number }>): Float64Array | undefined {
  const r = kernel.length;
  const autoPad = n.getString('auto_pad', 'NOTSET') ?? 'NOTSET';
  if (autoPad !== 'NOTSET' || shapes.length === 0) return undefined;
  const strides = n.getInts('strides') ?? new Array<number>(r).fill(1);
  const dilations = n.getInts('dilations') ?? new Array<number>(r).fill(1);
  const pads = n.getInts('pads') ?? new Array<number>(2 * r).fill(0);
  let taps = 1;
  for (const k of kernel) taps *= k;
  const valid = new Float64Array(taps);
  let positions = 0;
  for (const sh of shapes) {
    if (sh.dims.length !== r + 2) return undefined;
    // per axis: output length and, per tap, how many outputs read inside the input
    const perAxis: number[][] = [];
    let outs = 1;
    for (let a = 0; a < r; a++) {
      const len = sh.dims[a + 2]!;
      const s = strides[a]!;
      const d = dilations[a]!;
      const pb = pads[a]!;
      const o = Math.floor((len + pb + pads[a + r]! - d * (kernel[a]! - 1) - 1) / s) + 1;
      if (!(o > 0)) return undefined;
      outs *= o;
      const counts: number[] = [];
      for (let t = 0; t < kernel[a]!; t++) {
        let c = 0;
        for (let x = 0; x < o; x++) {
          const idx = x * s - pb + t * d;
          if (idx >= 0 && idx < len) c++;
        }
        counts.push(c);
      }
      perAxis.push(counts);
    }
    const weight = sh.count * sh.dims[0]!;
    positions += weight * outs;
    for (let j = 0; j < taps; j++) {
      let rest = j;
      let c = weight;
      for (let a = r - 1; a >= 0; a--) {
        c *= perAxis[a]![rest % kernel[a]!]!;
        rest = Math.floor(rest / kernel[a]!);
      }
      valid[j] += c;
    }
  }
  return positions > 0 ? valid.map((v) => v / positions) : undefined;
}
