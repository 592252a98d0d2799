/**
 * Writing block-quantized weights into the graph, replacing the float node:
 *
 * - MatMul(A, B) / Gemm(A, B, C) -> com.microsoft MatMulNBits(A, B_packed, scales, zero_points?,
 *   g_idx = none, bias?) with K, N, bits, block_size, accuracy_level. Y = A x dequant(B)^T + bias,
 *   where dequant(B) is [N, K] (see blocks.ts for the layout).
 * - MatMul(A, B) -> MatMul(A, DequantizeLinear(B_int4, scales, zp?; axis 0, block_size)) with an
 *   Add for a Gemm bias: the standard ONNX form (opset 21) for runtimes without Microsoft ops.
 * - Gather(table, ids) on axis 0 -> com.microsoft GatherBlockQuantized(table_packed, ids, scales,
 *   zero_points?) with gather_axis 0, quantize_axis 1 (the last), block_size, bits: the table's rows
 *   are the blocked rows of blocks.ts, [V, D * bits / 8] uint8 (D a multiple of the block size).
 *
 * Every new node takes the replaced node's name and output value, so names of graph outputs and of
 * downstream tensors do not change.
 */
import { DataType } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';
import { Attribute, Graph, Node, Value } from '../../../ir/ir.js';
import type { NameAuthority } from '../../../ir/names.js';
import { BlockQuantized, defaultZeroPoints, packCodes, packZeroPoints, qdqLayout } from './blocks.js';

export const MS_DOMAIN = 'com.microsoft';

/** Inputs of the new nodes whose element type follows the activations (fp16 conversion casts them). */
export const FLOAT_INPUTS: Readonly<Record<string, readonly number[]>> = { MatMulNBits: [2, 5], GatherBlockQuantized: [2] };

/**
 * Puts `node` where `old` was: it takes over old's name, and its output takes over old's output 0
 * (every use, and the name, through the IR's replace primitive).
 */
export function replaceNode(g: Graph, old: Node, node: Node): void {
  const name = old.name ?? old.label;
  const at = g.nodes.indexOf(old);
  const out = old.outputs[0]!;
  const fresh = new Value(g.names.fresh(`${out.name}_q`));
  if (out.type) fresh.type = structuredClone(out.type);
  node.appendOutput(fresh);
  g.insertNode(node, at < 0 ? g.nodes.length : at);
  out.replaceAllUsesWith(fresh, { takeName: true });
  g.removeNode(old, true);
  node.name = name;
}

/** Replaces `node` (MatMul or Gemm; output 0 is kept) by MatMulNBits on `a`. */
export function emitMatMulNBits(g: Graph, names: NameAuthority, node: Node, a: Value, q: BlockQuantized, stem: string, accuracyLevel: number, bias?: Float32Array): Node {
  const blob = (q.blockSize * q.bits) / 8;
  const b = g.addInitializer(Tensor.fromBytes(DataType.UINT8, [q.N, q.kBlocks, blob], packCodes(q)), names.fresh(`${stem}_q${q.bits}`));
  const s = g.addInitializer(Tensor.from(DataType.FLOAT, [q.N, q.kBlocks], q.scales), names.fresh(`${stem}_scales`));
  const inputs: Array<Value | null> = [a, b, s];
  if (!defaultZeroPoints(q)) {
    const z = packZeroPoints(q);
    inputs.push(g.addInitializer(Tensor.fromBytes(DataType.UINT8, z.dims, z.bytes), names.fresh(`${stem}_zp`)));
  } else if (bias) inputs.push(null);
  if (bias) {
    inputs.push(null);
    inputs.push(g.addInitializer(Tensor.from(DataType.FLOAT, [q.N], bias), names.fresh(`${stem}_bias`)));
  }
  const n = new Node('MatMulNBits', inputs, [], MS_DOMAIN);
  n.setAttr(Attribute.int('K', q.K));
  n.setAttr(Attribute.int('N', q.N));
  n.setAttr(Attribute.int('bits', q.bits));
  n.setAttr(Attribute.int('block_size', q.blockSize));
  n.setAttr(Attribute.int('accuracy_level', accuracyLevel));
  replaceNode(g, node, n);
  return n;
}

/** Replaces `node` (MatMul or Gemm) by the ONNX form: MatMul(a, DequantizeLinear(int4 B)) (+ bias). */
export function emitQdqMatMul(g: Graph, names: NameAuthority, node: Node, a: Value, q: BlockQuantized, stem: string, bias?: Float32Array): Node[] {
  const l = qdqLayout(q);
  const dqInputs: Value[] = [g.addInitializer(l.data, names.fresh(`${stem}_q4`)), g.addInitializer(l.scale, names.fresh(`${stem}_scales`))];
  if (l.zeroPoint) dqInputs.push(g.addInitializer(l.zeroPoint, names.fresh(`${stem}_zp`)));
  const w = new Value(names.fresh(`${stem}_dq`));
  w.setTensorType(DataType.FLOAT, [q.K, q.N]);
  const dq = new Node('DequantizeLinear', dqInputs, [w]);
  dq.name = names.fresh(`${stem}_DequantizeLinear`);
  dq.setAttr(Attribute.int('axis', 0));
  dq.setAttr(Attribute.int('block_size', q.blockSize));
  g.insertNode(dq, 0);
  if (!bias) {
    const mm = new Node('MatMul', [a, w], []);
    replaceNode(g, node, mm);
    return [dq, mm];
  }
  const mid = new Value(names.fresh(`${stem}_mm`));
  const mm = new Node('MatMul', [a, w], [mid]);
  mm.name = names.fresh(`${stem}_MatMul`);
  const add = new Node('Add', [mid, g.addInitializer(Tensor.from(DataType.FLOAT, [q.N], bias), names.fresh(`${stem}_bias`))], []);
  const at = g.nodes.indexOf(node);
  g.insertNode(mm, at);
  replaceNode(g, node, add);
  return [dq, mm, add];
}

/** Replaces `node` (Gather on axis 0 of a [V, D] table) by GatherBlockQuantized. */
export function emitGatherBlockQuantized(g: Graph, names: NameAuthority, node: Node, ids: Value, q: BlockQuantized, stem: string): Node {
  const data = g.addInitializer(Tensor.fromBytes(DataType.UINT8, [q.N, (q.kBlocks * q.blockSize * q.bits) / 8], packCodes(q)), names.fresh(`${stem}_q${q.bits}`));
  const s = g.addInitializer(Tensor.from(DataType.FLOAT, [q.N, q.kBlocks], q.scales), names.fresh(`${stem}_scales`));
  const inputs: Value[] = [data, ids, s];
  if (!defaultZeroPoints(q)) {
    const z = packZeroPoints(q);
    inputs.push(g.addInitializer(Tensor.fromBytes(DataType.UINT8, z.dims, z.bytes), names.fresh(`${stem}_zp`)));
  }
  const n = new Node('GatherBlockQuantized', inputs, [], MS_DOMAIN);
  n.setAttr(Attribute.int('gather_axis', 0));
  n.setAttr(Attribute.int('quantize_axis', 1));
  n.setAttr(Attribute.int('block_size', q.blockSize));
  n.setAttr(Attribute.int('bits', q.bits));
  replaceNode(g, node, n);
  return n;
}

/** Constants the unpacked weights of one graph share (created on first use). */
export class UnpackConstants {
  private readonly cache = new Map<string, Value>();
  constructor(private readonly g: Graph) {}
  get(key: string, make: () => Tensor): Value {
    let v = this.cache.get(key);
    if (!v) this.cache.set(key, (v = this.g.addInitializer(make(), this.g.names.fresh(`int4_${key}`))));
    return v;
  }
}

/**
 * The codes of `q` for {@link unpackedWeight}: byte j of a block holds codes j (low nibble) and j +
 * blockSize/2. Written in order (for 'kn', every output of one code position at a time: writing
 * each output's codes with a stride of N took ~1.3x as long).
 */
function splitCodes(q: BlockQuantized, layout: 'kn' | 'nk'): Uint8Array {
  const { N, K, kBlocks, blockSize: bs, codes } = q;
  const per = q.bits === 4 ? bs / 2 : bs;
  const high = q.bits === 4 ? per : 0;
  const out = new Uint8Array(N * kBlocks * per);
  if (layout === 'nk') {
    for (let n = 0; n < N; n++) for (let b = 0; b < kBlocks; b++) splitRun(codes, n * K + b * bs, 1, high, out, (n * kBlocks + b) * per, per);
  } else {
    for (let b = 0; b < kBlocks; b++) for (let j = 0; j < per; j++) splitRun(codes, b * bs + j, K, high, out, (b * per + j) * N, N);
  }
  return out;
}

/** out[to + i] = codes[from + i * stride] | codes[from + i * stride + high] << 4 (high 0: 8-bit codes as they are), i < count. */
function splitRun(codes: Uint8Array, from: number, stride: number, high: number, out: Uint8Array, to: number, count: number): void {
  if (high === 0) for (let i = 0; i < count; i++) out[to + i] = codes[from + i * stride]!;
  else for (let i = 0; i < count; i++) out[to + i] = codes[from + i * stride]! | (codes[from + i * stride + high]! << 4);
}

/**
 * The block-quantized weight `q` as a float32 value computed from constants only, [K, N] (MatMul's B,
 * layout 'kn') or [N, K] (rows: an embedding table, Gemm's B with transB; layout 'nk'): 4-bit codes
 * split into low and high nibbles (Mod 16, BitShift 4) and concatenated back into blocks, minus the
 * zero points, times the scales. Every input is a constant, so onnxruntime folds the subgraph into one
 * float32 initializer when the session is created (and prepacks it for MatMul): the file holds the
 * codes, the running model a float32 weight at float32 speed. Needs opset 11 (BitShift).
 */
export function unpackedWeight(g: Graph, shared: UnpackConstants, q: BlockQuantized, stem: string, layout: 'kn' | 'nk'): Value {
  const { N, K, kBlocks, blockSize: bs, bits } = q;
  const names = g.names;
  const blockAxis = layout === 'nk' ? 2 : 1;
  const blockDims = (len: number) => (layout === 'nk' ? [N, kBlocks, len] : [kBlocks, len, N]);
  const add = (op: string, inputs: Value[], attrs: Attribute[] = []): Value => {
    const out = new Value(names.fresh(`${stem}_${op.toLowerCase()}`));
    const n = new Node(op, inputs, [out]);
    for (const a of attrs) n.setAttr(a);
    g.insertNode(n, 0);
    return out;
  };
  const per = bits === 4 ? bs / 2 : bs;
  const codes = g.addInitializer(Tensor.fromBytes(DataType.UINT8, blockDims(per), splitCodes(q, layout)), names.fresh(`${stem}_q${bits}`));
  let x: Value = codes;
  if (bits === 4) {
    const lo = add('Mod', [codes, shared.get('u8_16', () => Tensor.fromBytes(DataType.UINT8, [], Uint8Array.of(16)))]);
    const hi = add('BitShift', [codes, shared.get('u8_4', () => Tensor.fromBytes(DataType.UINT8, [], Uint8Array.of(4)))], [Attribute.string('direction', 'RIGHT')]);
    x = add('Concat', [lo, hi], [Attribute.int('axis', blockAxis)]);
  }
  x = add('Cast', [x], [Attribute.int('to', DataType.FLOAT)]);
  if (defaultZeroPoints(q)) {
    x = add('Sub', [x, shared.get(`zp${bits}`, () => Tensor.from(DataType.FLOAT, [], Float32Array.of(1 << (bits - 1))))]);
  } else {
    const zp = new Uint8Array(N * kBlocks);
    for (let n = 0; n < N; n++) for (let b = 0; b < kBlocks; b++) zp[layout === 'nk' ? n * kBlocks + b : b * N + n] = q.zeroPoints[n * kBlocks + b]!;
    x = add('Sub', [x, add('Cast', [g.addInitializer(Tensor.fromBytes(DataType.UINT8, blockDims(1), zp), names.fresh(`${stem}_zp`))], [Attribute.int('to', DataType.FLOAT)])]);
  }
  const sc = new Float32Array(N * kBlocks);
  for (let n = 0; n < N; n++) for (let b = 0; b < kBlocks; b++) sc[layout === 'nk' ? n * kBlocks + b : b * N + n] = q.scales[n * kBlocks + b]!;
  x = add('Mul', [x, g.addInitializer(Tensor.from(DataType.FLOAT, blockDims(1), sc), names.fresh(`${stem}_scales`))]);
  const dims = layout === 'nk' ? [N, K] : [K, N];
  return add('Reshape', [x, shared.get(`shape_${dims.join('x')}`, () => Tensor.from(DataType.INT64, [2], BigInt64Array.from(dims, BigInt)))]);
}
