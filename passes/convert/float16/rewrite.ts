/**
 * Applies a precision plan (plan.ts) to the main graph. Every float32 value gets a home precision:
 * half for outputs of half nodes, float32 for the rest; constants are stored in half when a half node
 * reads them (converted here, at conversion time, never by a Cast node) or, with `halfWeights`, when
 * they are large weights of float32 nodes. Each reader that wants the other precision is served by one
 * conversion per value and precision, shared by all such readers:
 *
 * - a constant: a converted copy (an initializer), except a large half-stored weight read by float32
 *   nodes of the default domain, which gets one Cast to float32 (onnxruntime folds it into a float32
 *   initializer at load; contrib ops such as MatMulNBits prepack constant inputs, so theirs stay as they are);
 * - the output of an existing Cast from a non-float type: that Cast's `to` is changed when every
 *   reader wants the new precision, else a sibling Cast from the same source is added (no Cast→Cast);
 * - any other value: one Cast node right after its producer (a region boundary).
 *
 * Readers that accept any type (Shape, Size, Cast) read the value as it is; a Cast to float32 reading a
 * half value is the boundary Cast itself. Graph inputs and outputs keep float32 with `keepIoTypes`
 * (outputs keep their names: the half value is renamed and a Cast writes the output).
 */
import { DataType, encodeHalf } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';
import { Attribute, constantOf, Graph, Node, Value } from '../../../ir/ir.js';
import { FLOAT32_SLOTS, opKey } from './kernels.js';
import { HalfType, isFloat32, Plan, rangeProblem } from './plan.js';

export interface RewriteOptions {
  half: HalfType;
  keepIoTypes: boolean;
  /** Store float32 constants of at least `minWeightElements` elements read only by float32 nodes in half (with one Cast). */
  halfWeights: boolean;
  minWeightElements: number;
}

export interface RewriteStats {
  /** Cast nodes added, and existing Casts whose `to` changed. */
  castsAdded: number;
  castsRetargeted: number;
  /** Constants stored in half precision, with their float32 and half bytes. */
  constantsConverted: number;
  floatBytes: number;
  halfBytes: number;
  /** Half-stored weights read by float32 nodes through one Cast. */
  halfWeightsWithCast: number;
  /** Values that changed type to half. */
  halfValues: number;
}

type Prec = 'half' | 'float';

/** A half tensor holding `t`'s float32 values. */
export function toHalfTensor(t: Tensor, half: HalfType, name: string): Tensor {
  const out = Tensor.from(half, t.dims, encodeHalf(half, t.toFloat32()), name);
  return out;
}

function castNode(input: Value, to: number, output: Value): Node {
  const n = new Node('Cast', [input], [output]);
  n.name = output.name;
  n.setAttr(Attribute.int('to', to));
  return n;
}

/** The precision each reader of `v` wants, by use. */
function wanted(u: { node: Node; index: number }, plan: Plan): Prec | 'any' {
  const n = u.node;
  if (n.opType === 'Shape' || n.opType === 'Size') return 'any';
  if (n.opType === 'Cast') return 'any';
  if (FLOAT32_SLOTS.get(opKey(n.opDomain, n.opType))?.includes(u.index)) return 'float';
  return plan.half.has(n) ? 'half' : 'float';
}

export function applyPlan(g: Graph, plan: Plan, o: RewriteOptions): RewriteStats {
  const names = g.names;
  const stats: RewriteStats = { castsAdded: 0, castsRetargeted: 0, constantsConverted: 0, floatBytes: 0, halfBytes: 0, halfWeightsWithCast: 0, halfValues: 0 };
  const setType = (v: Value, t: number) => {
    if (v.type?.tensor) v.type.tensor.elemType = t;
    else v.setTensorType(t);
  };

  // a graph output whose producer computes in the other precision than the interface: the producer
  // writes a renamed value, a Cast writes the output under its name (float32 with keepIoTypes, else half)
  for (const out of [...g.outputs]) {
    const p = out.producer;
    if (!p || p.graph !== g || p.opType === 'Cast' || !isFloat32(out) || plan.half.has(p) !== o.keepIoTypes) continue;
    const inner = new Value(names.fresh(`${out.name}_${o.keepIoTypes ? 'half' : 'fp32'}`), structuredClone(out.type));
    p.setOutput(out.outputIndex, inner);
    for (const u of [...out.uses]) u.node.setInput(u.index, inner);
    g.insertAfter(p, castNode(inner, o.keepIoTypes ? DataType.FLOAT : o.half, out));
    if (!o.keepIoTypes) setType(out, o.half);
    stats.castsAdded++;
  }

  // every float32 value of the main graph, once: inputs, constants and node outputs
  const values = new Set<Value>();
  for (const v of g.inputs) if (isFloat32(v)) values.add(v);
  for (const v of g.initializers.values()) if (isFloat32(v) && !g.inputs.includes(v)) values.add(v);
  for (const n of g.nodes) for (const v of n.outputs) if (isFloat32(v)) values.add(v);

  for (const v of values) {
    const c = constantOf(v);
    const p = v.producer;
    const uses = [...v.uses].filter((u) => u.node.graph === g);
    const want = uses.map((u) => wanted(u, plan));
    let home: Prec;
    if (c) {
      // contrib readers (MatMulNBits scales, GatherBlockQuantized) prepack constant inputs at load: a Cast there would defeat it
      const large = o.halfWeights && c.size >= o.minWeightElements && !rangeProblem(v, { half: o.half, headroom: 1 }) && uses.every((u) => u.node.opDomain === '');
      home = want.includes('half') || (large && uses.length > 0 && !v.isGraphOutput) ? 'half' : 'float';
      // a constant read by half and float32 readers: stored once in half only when it is large
      if (home === 'half' && want.includes('float') && !large) home = 'float';
    } else if (p) {
      home = plan.half.has(p) ? 'half' : 'float';
    } else {
      home = o.keepIoTypes ? 'float' : 'half';
    }

    // change the value itself to its home precision
    let asHalf: Value | undefined;
    let asFloat: Value | undefined;
    if (home === 'half') {
      if (c) {
        const name = names.fresh(`${v.name}_${o.half === DataType.FLOAT16 ? 'fp16' : 'bf16'}`);
        const ht = toHalfTensor(c, o.half, name);
        asHalf = g.addInitializer(ht, name);
        stats.constantsConverted++;
        stats.floatBytes += c.byteLength;
        stats.halfBytes += ht.byteLength;
        // float32 readers of a half-stored weight read it through one Cast (created on demand)
      } else {
        setType(v, o.half);
        stats.halfValues++;
        asHalf = v;
      }
    } else {
      asFloat = v;
    }

    const halfValue = (): Value => {
      if (asHalf) return asHalf;
      if (c) {
        const name = names.fresh(`${v.name}_${o.half === DataType.FLOAT16 ? 'fp16' : 'bf16'}`);
        const ht = toHalfTensor(c, o.half, name);
        stats.constantsConverted++;
        stats.floatBytes += c.byteLength;
        stats.halfBytes += ht.byteLength;
        return (asHalf = g.addInitializer(ht, name));
      }
      // an existing Cast from a non-float source: retarget it or add a sibling, never Cast -> Cast
      if (p && p.opType === 'Cast' && p.opDomain === '' && !isFloat32(p.input(0)) && p.input(0)) {
        if (uses.every((u, i) => want[i] !== 'float') && !v.isGraphOutput) {
          p.setAttr(Attribute.int('to', o.half));
          setType(v, o.half);
          stats.castsRetargeted++;
          stats.halfValues++;
          asFloat = undefined;
          return (asHalf = v);
        }
        const h = new Value(names.fresh(`${v.name}_half`));
        h.setTensorType(o.half, v.shape);
        g.insertAfter(p, castNode(p.input(0)!, o.half, h));
        stats.castsAdded++;
        return (asHalf = h);
      }
      const h = new Value(names.fresh(`${v.name}_half`));
      h.setTensorType(o.half, v.shape);
      insertAfterProducer(g, v, castNode(v, o.half, h));
      stats.castsAdded++;
      return (asHalf = h);
    };
    const floatValue = (): Value => {
      if (asFloat) return asFloat;
      const f = new Value(names.fresh(`${v.name}_fp32`));
      f.setTensorType(DataType.FLOAT, v.shape);
      insertAfterProducer(g, asHalf!, castNode(asHalf!, DataType.FLOAT, f));
      stats.castsAdded++;
      if (c) stats.halfWeightsWithCast++;
      return (asFloat = f);
    };

    uses.forEach((u, i) => {
      const w = want[i]!;
      const target = w === 'any' ? (asHalf ?? asFloat!) : w === 'half' ? halfValue() : floatValue();
      if (u.node.input(u.index) !== target) u.node.setInput(u.index, target);
    });
    // a half-homed graph input (keepIoTypes off)
    if (!p && !c && home === 'half') setType(v, o.half);
    // remove a constant nobody reads any more
    if (c && v.uses.length === 0 && !v.isGraphOutput) {
      if (v.producer) g.removeNode(v.producer);
      else g.removeInitializer(v);
    }
  }

  // half nodes: attributes that carry a float32 tensor (ConstantOfShape's value) and graph outputs
  for (const n of plan.half) {
    if (n.opType === 'ConstantOfShape') {
      const t = n.getTensor('value');
      if (t && t.dataType === DataType.FLOAT) n.setAttr(Attribute.tensor('value', toHalfTensor(t, o.half, t.name ?? '')));
    }
  }
  g.toposort();
  return stats;
}

/** Inserts `n` right after the producer of `v` (or first, for graph inputs and initializers). */
function insertAfterProducer(g: Graph, v: Value, n: Node): void {
  if (v.producer && v.producer.graph === g) g.insertAfter(v.producer, n);
  else g.insertNode(n, 0);
}
