/**
 * QOperator form of a QDQ model (the output of `quantizeStatic`): each node unit
 *
 *   DQ(x_q, s_x, z_x) [, DQ(w_q, s_w) [, DQ(b_i32)]] -> Op -> Q(s_y, z_y)
 *
 * becomes one integer operator reading the quantized tensors directly, so both formats share
 * calibration and placement:
 *
 * - Conv -> QLinearConv(x_q, s_x, z_x, w_q, s_w, z_w, s_y, z_y [, b_i32]) (z_w = int8 zeros, the
 *   QDQ weights are symmetric; the bias is the int32 tensor at scale s_x s_w, zero point 0);
 * - MatMul -> QLinearMatMul(a_q, s_a, z_a, b_q, s_b, z_b, s_y, z_y) (b per column allowed);
 * - Add, Mul -> com.microsoft QLinearAdd / QLinearMul; GlobalAveragePool -> com.microsoft
 *   QLinearGlobalAveragePool (channels_last 0); AveragePool -> com.microsoft QLinearAveragePool;
 * - a Relu between the op and a Q with zero point 0 is dropped (the Q's clamp at 0 is the Relu);
 * - data movement (Reshape, Transpose, Squeeze, Unsqueeze, Flatten, MaxPool, Slice) whose DQ and
 *   Q carry the same constant parameters runs on the uint8 tensor itself.
 *
 * A unit matches only when its DQ inputs are DequantizeLinear nodes with constant parameters, the
 * op's single output feeds exactly one QuantizeLinear and is not a graph output. Units that do not
 * match stay in QDQ form (DQ -> float op -> Q), so the model is always complete. DQ and Q nodes
 * left without readers are removed afterwards.
 */
import { DataType } from '../../core/dtype.js';
import { Attribute, constantOf, Graph, Model, Node, Value } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import type { NameAuthority } from '../../ir/names.js';

export interface QOperatorReport {
  /** Converted units by op type. */
  converted: Record<string, number>;
  /** Units left in QDQ form, with the reason (first mismatch). */
  kept: { node: string; op: string; reason: string }[];
}

interface Dq {
  node: Node;
  q: Value;
  scale: Value;
  zp: Value | null;
}

const MOVEMENT = new Set(['Reshape', 'Transpose', 'Squeeze', 'Unsqueeze', 'Flatten', 'MaxPool', 'Slice']);
const MS_BINARY: Record<string, string> = { Add: 'QLinearAdd', Mul: 'QLinearMul' };

function dqOf(v: Value | null | undefined): Dq | string {
  const n = v?.producer;
  if (!n || n.opType !== 'DequantizeLinear' || n.opDomain !== '') return `input ${v?.name ?? '?'} does not come from a DequantizeLinear`;
  const [q, scale, zp] = [n.inputs[0], n.inputs[1], n.inputs[2] ?? null];
  if (!q || !scale || !constantOf(scale) || (zp && !constantOf(zp))) return `DequantizeLinear ${n.label} has non-constant parameters`;
  return { node: n, q, scale, zp };
}

/** The single QuantizeLinear reading the op's output, or why there is none. */
function qOf(op: Node): Node | string {
  if (op.outputs.length !== 1) return 'the op has several outputs';
  const y = op.outputs[0]!;
  if (y.isGraphOutput) return 'the output is a graph output';
  let c = y.consumers();
  // a Relu between the op and a Q whose zero point is the uint8 minimum is implied by the Q's clamp
  const relu = c.length === 1 && y.uses.length === 1 && c[0]!.opType === 'Relu' && !c[0]!.outputs[0]!.isGraphOutput ? c[0]! : undefined;
  if (relu) c = relu.outputs[0]!.consumers();
  const from = relu ? relu.outputs[0]! : y;
  if (c.length !== 1 || c[0]!.opType !== 'QuantizeLinear' || from.uses.length !== 1) return 'the output does not feed exactly one QuantizeLinear';
  const q = c[0]!;
  if (!q.inputs[2] || !constantOf(q.inputs[1]) || !constantOf(q.inputs[2])) return 'the QuantizeLinear has implicit or non-constant parameters';
  if (relu) {
    const z = constantOf(q.inputs[2])!;
    if (z.dataType !== DataType.UINT8 || z.toNumbers().some((v) => v !== 0)) return 'a Relu precedes a QuantizeLinear whose zero point is not 0';
  }
  return q;
}

function sameConstant(a: Value | null, b: Value | null): boolean {
  if (a === b) return true;
  const x = constantOf(a);
  const y = constantOf(b);
  if (!x || !y || x.dataType !== y.dataType || x.size !== y.size) return false;
  const p = x.toNumbers();
  const q = y.toNumbers();
  return p.every((v, i) => v === q[i]);
}

/** Rewrites `model` (QDQ) into QOperator form in place. */
export function toQOperator(model: Model): QOperatorReport {
  const g = model.graph;
  const names = g.names;
  const report: QOperatorReport = { converted: {}, kept: [] };
  const keep = (n: Node, reason: string) => report.kept.push({ node: n.name ?? n.label, op: n.opType, reason });
  let usesMs = false;

  for (const n of [...g.nodes]) {
    if (n.opDomain !== '' || n.graph !== g) continue;
    const op = n.opType;
    if (op !== 'Conv' && op !== 'MatMul' && !(op in MS_BINARY) && op !== 'GlobalAveragePool' && op !== 'AveragePool' && !MOVEMENT.has(op)) continue;
    const q = qOf(n);
    if (typeof q === 'string') {
      if (!MOVEMENT.has(op)) keep(n, q);
      continue;
    }
    const [ys, yz] = [q.inputs[1]!, q.inputs[2]!];
    const out = q.outputs[0]!;
    let repl: Node | undefined;
    if (op === 'Conv' || op === 'MatMul') {
      const x = dqOf(n.inputs[0]);
      const w = dqOf(n.inputs[1]);
      if (typeof x === 'string' || typeof w === 'string') {
        keep(n, typeof x === 'string' ? x : (w as string));
        continue;
      }
      if (!x.zp) {
        keep(n, 'the activation DequantizeLinear has no explicit zero point');
        continue;
      }
      const wz = w.zp ?? zerosLike(g, names, w.scale);
      const ins: Array<Value | null> = [x.q, x.scale, x.zp, w.q, w.scale, wz, ys, yz];
      if (op === 'Conv' && n.inputs[2]) {
        const b = dqOf(n.inputs[2]);
        if (typeof b === 'string' || constantOf(b.q)?.dataType !== DataType.INT32) {
          keep(n, 'the bias is not an int32 DequantizeLinear');
          continue;
        }
        ins.push(b.q);
      }
      repl = new Node(op === 'Conv' ? 'QLinearConv' : 'QLinearMatMul', ins, []);
      if (op === 'Conv') for (const a of n.attributes) repl.setAttr(a);
    } else if (op in MS_BINARY || op === 'GlobalAveragePool' || op === 'AveragePool') {
      const ins: Array<Value | null> = [];
      let bad: string | undefined;
      for (const v of n.inputs) {
        const d = dqOf(v);
        if (typeof d === 'string' || !d.zp) {
          bad = typeof d === 'string' ? d : 'a DequantizeLinear has no explicit zero point';
          break;
        }
        ins.push(d.q, d.scale, d.zp);
      }
      if (bad || ins.length === 0) {
        keep(n, bad ?? 'no inputs');
        continue;
      }
      ins.push(ys, yz);
      repl = new Node(MS_BINARY[op] ?? `QLinear${op}`, ins, [], 'com.microsoft');
      for (const a of n.attributes) repl.setAttr(a);
      if (op === 'GlobalAveragePool' || op === 'AveragePool') repl.setAttr(Attribute.int('channels_last', 0));
      usesMs = true;
    } else {
      // data movement: same params on both sides -> the op runs on the quantized tensor
      const x = dqOf(n.inputs[0]);
      if (typeof x === 'string' || !x.zp || !sameConstant(x.scale, ys) || !sameConstant(x.zp, yz)) continue;
      const ins = [x.q, ...n.inputs.slice(1)];
      repl = new Node(op, ins, []);
      for (const a of n.attributes) repl.setAttr(a);
    }
    const y = new Value(names.numbered('qo'));
    y.type = out.type;
    repl.appendOutput(y);
    g.insertBefore(n, repl);
    out.replaceAllUsesWith(y);
    report.converted[op] = (report.converted[op] ?? 0) + 1;
    const relu = q.inputs[0]?.producer;
    removeIfDead(g, q);
    if (relu && relu !== n) removeIfDead(g, relu);
    removeIfDead(g, n);
  }
  // DQ/Q nodes and parameters nobody reads any more
  for (let changed = true; changed; ) {
    changed = false;
    for (const n of [...g.nodes]) {
      if ((n.opType === 'DequantizeLinear' || n.opType === 'QuantizeLinear') && removeIfDead(g, n)) changed = true;
    }
  }
  for (const v of [...g.initializers.values()]) if (v.uses.length === 0 && !v.isGraphOutput && !g.inputs.includes(v)) g.removeInitializer(v);
  if (usesMs && model.opset('com.microsoft') === undefined) model.setOpset('com.microsoft', 1);
  g.toposort();
  return report;
}

function removeIfDead(g: Graph, n: Node): boolean {
  if (n.graph !== g) return false;
  if (n.outputs.some((o) => o.uses.length > 0 || o.isGraphOutput)) return false;
  g.removeNode(n);
  return true;
}

/** int8 zeros shaped like a weight scale (per tensor or per channel). */
function zerosLike(g: Graph, names: NameAuthority, scale: Value): Value {
  const s = constantOf(scale)!;
  return g.addInitializer(Tensor.from(DataType.INT8, s.dims, new Int8Array(s.size)), names.numbered('wzp'));
}
