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
 * - float Constant nodes and initializers left without readers are removed, so the float weights go.
 */
import { DataType } from '../../graph/dtype.js';
import { inputError } from '../../graph/errors.js';
import { Attribute, constantOf, Graph, Model, Node, Value } from '../../graph/ir.js';
import { Tensor } from '../../graph/tensor.js';
import type { ComputeUnit, Placement } from './placement.js';
import { ActivationParams, biasScaleFloor, quantizeBias, quantizeWeight } from './scales.js';

export interface EmitOptions {
  reduceRange: boolean;
  /**
   * Names of the new values: 'compact' (default) gives short ids (a12_q, w3_s, ...) and leaves the
   * Q/DQ nodes unnamed, which matters on small models where names weigh as much as int8 weights;
   * 'descriptive' derives them from the tensor names (conv1.w_s, relu_out_q, ...) and names nodes.
   */
  names?: 'compact' | 'descriptive';
}

export interface EmitStats {
  qdqPairs: number;
  weights: number;
  biases: number;
  clampedBias: number;
  removedConstants: number;
}

export interface EmitResult {
  stats: EmitStats;
  /** Placed tensor name -> name of the DequantizeLinear output that now carries it. */
  dequantized: Map<string, string>;
}

class Names {
  private readonly used = new Set<string>();
  private readonly counters = new Map<string, number>();
  constructor(
    g: Graph,
    readonly compact: boolean,
  ) {
    for (const v of g.inputs) this.used.add(v.name);
    for (const k of g.initializers.keys()) this.used.add(k);
    for (const n of g.allNodes()) {
      for (const o of n.outputs) this.used.add(o.name);
      if (n.name) this.used.add(n.name);
    }
  }
  /** The stem of a group of new names: the tensor name, or a short id of `kind` ('a', 'w', 'b'). */
  stem(kind: string, base: string): string {
    if (!this.compact) return base;
    const n = this.counters.get(kind) ?? 0;
    this.counters.set(kind, n + 1);
    return `${kind}${n}`;
  }

  /** A node name, or none in compact mode. */
  nodeName(node: Node, base: string): void {
    if (!this.compact) node.name = this.fresh(base);
  }

  fresh(base: string): string {
    let name = base;
    for (let i = 1; this.used.has(name); i++) name = `${base}_${i}`;
    this.used.add(name);
    return name;
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
  const stats: EmitStats = { qdqPairs: 0, weights: 0, biases: 0, clampedBias: 0, removedConstants: 0 };
  const touchedConstants = new Set<Value>();

  // weights and biases first: the bias needs the input scale, known from `params`
  const weightCache = new Map<string, { dq: Value; scales: Float32Array }>();
  for (const u of p.units) {
    if (u.weightIndex < 0) continue;
    const wv = u.node.inputs[u.weightIndex]!;
    // with a bias, the weight scale has a floor that keeps the int32 bias in range
    const hasBias = u.biasIndex >= 0 && !u.weightOnly;
    const xs = hasBias ? params.get(u.node.inputs[u.activationInputs[0]!]!) : undefined;
    if (hasBias && !xs) throw inputError('QUANT_INTERNAL', `no input scale for ${u.node.label}`, { node: u.node.name });
    const floor = hasBias ? biasScaleFloor(constantOf(u.node.inputs[u.biasIndex])!.toFloat32(), xs!.scale, u.axis !== undefined) : undefined;
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
    u.node.setInput(u.weightIndex, entry.dq);
    if (hasBias) {
      const bv = u.node.inputs[u.biasIndex]!;
      const b = constantOf(bv)!.toFloat32();
      const q = quantizeBias(b, xs!.scale, entry.scales);
      stats.clampedBias += q.clamped;
      const base = names.stem('b', bv.name);
      const qv = g.addInitializer(Tensor.from(DataType.INT32, [b.length], q.data), names.fresh(`${base}_i32`));
      const sv = g.addInitializer(Tensor.from(DataType.FLOAT, [b.length], q.scales), names.fresh(`${base}_s`));
      const out = new Value(names.fresh(`${base}_dq`));
      out.setTensorType(DataType.FLOAT, [b.length]);
      // zero point omitted: 0 by definition, and onnxruntime moves only the int32 data into QLinearConv
      const dq = new Node('DequantizeLinear', [qv, sv], [out]);
      names.nodeName(dq, `${base}_DQ`);
      dq.setAttr(Attribute.int('axis', 0));
      g.insertBefore(u.node, dq);
      touchedConstants.add(bv);
      u.node.setInput(u.biasIndex, out);
      stats.biases++;
    }
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

function quantizeWeightInput(g: Graph, names: Names, u: ComputeUnit, wv: Value, reduceRange: boolean, floor: Float32Array | undefined): { dq: Value; scales: Float32Array } {
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
  return { dq: out, scales: q.scales };
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
