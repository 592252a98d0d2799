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
