/**
 * Constant tensors as pruning sees them: read a node's constant input (initializer or `Constant`
 * node alike), slice it along one axis, and give a node a new constant input without touching any
 * tensor another node still reads. Tensor data is treated as immutable: every change writes a new
 * Tensor over a new buffer.
 */
import { DataType, dtypeInfo } from '../../core/dtype.js';
import { inputError } from '../../core/errors.js';
import { Attribute, constantOf, Node, Value } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';

/** The constant tensor read by `node` at input `i`, if that input is constant. */
export function constantInput(node: Node, i: number): Tensor | undefined {
  return constantOf(node.input(i));
}

/** Bytes per element for dtypes whose elements are whole bytes (undefined for packed and string types). */
export function elementWidth(dataType: number): number | undefined {
  const info = dtypeInfo(dataType);
  if (!info || info.packed || info.type === DataType.STRING || !info.view) return undefined;
  return info.view.BYTES_PER_ELEMENT;
}

/**
 * A copy of `t` keeping only the indices `keep` (ascending, unique) along `axis`. Works on raw bytes,
 * so any byte-aligned dtype is sliced exactly (no float conversion).
 */
export function sliceAxis(t: Tensor, axis: number, keep: readonly number[]): Tensor {
  const width = elementWidth(t.dataType);
  if (width === undefined) throw inputError('PRUNE_BAD_DTYPE', `tensor ${t.name ?? '(unnamed)'} has type ${t.dtype}, which pruning cannot slice`, { tensor: t.name });
  const dims = t.dims;
  if (axis < 0 || axis >= dims.length) throw inputError('PRUNE_BAD_AXIS', `tensor ${t.name ?? '(unnamed)'} [${dims.join(',')}] has no axis ${axis}`, { tensor: t.name });
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1) * width;
  const n = dims[axis]!;
  for (const k of keep) if (k < 0 || k >= n) throw inputError('PRUNE_BAD_INDEX', `index ${k} is outside axis ${axis} (size ${n}) of ${t.name ?? '(unnamed)'}`, { tensor: t.name });
  const src = t.bytes();
  const out = new Uint8Array(outer * keep.length * inner);
  let o = 0;
  for (let a = 0; a < outer; a++) {
    const base = a * n * inner;
    for (const k of keep) {
      const s = base + k * inner;
      out.set(src.subarray(s, s + inner), o);
      o += inner;
    }
  }
  const newDims = [...dims];
  newDims[axis] = keep.length;
  // copy into an aligned buffer so typed views stay zero-copy
  return Tensor.fromBytes(t.dataType, newDims, out, t.name);
}

/**
 * Makes input `i` of `node` hold `tensor`. When nothing else reads the old constant, it is replaced
 * where it lives (initializer tensor swapped, or the `Constant` node's attribute replaced by a new
 * one); otherwise a new constant of the same kind is created for this node alone. The old Tensor
 * object and its buffer are never modified.
 */
export function setConstantInput(node: Node, i: number, tensor: Tensor, suffix = 'pruned'): Value {
  const v = node.input(i);
  const g = node.graph;
  if (!v || !g) throw inputError('PRUNE_NO_CONSTANT', `node ${node.label} has no input ${i} to replace`, { node: node.name });
  const soleUse = v.uses.length === 1 && !v.isGraphOutput;
  const producer = v.producer;
  if (soleUse) {
    if (!producer && v.graph?.initializers.get(v.name) === v) {
      v.graph.setInitializerTensor(v, tensor);
      return v;
    }
    if (producer && producer.opType === 'Constant') {
      producer.attributes = [];
      tensor.name = v.name;
      producer.setAttr(Attribute.tensor('value', tensor));
      return v;
    }
  }
  const name = g.names.fresh(`${v.name}_${suffix}`);
  if (!producer && v.graph?.initializers.get(v.name) === v) {
    const nv = v.graph.addInitializer(tensor, name);
    node.setInput(i, nv);
    return nv;
  }
  const out = new Value(name);
  const c = new Node('Constant', [], [out]);
  c.name = name;
  tensor.name = name;
  c.setAttr(Attribute.tensor('value', tensor));
  g.insertBefore(node, c);
  node.setInput(i, out);
  return out;
}

/**
 * Gives the nodes in `users` the constant `tensor` in place of `v` (a constant value). When they are
 * all of `v`'s readers, `v` itself gets the new tensor (initializer swapped or the Constant node's
 * attribute replaced); otherwise one new constant is made for them. Old tensors are never modified.
 */
export function replaceConstant(v: Value, users: ReadonlyArray<{ node: Node; index: number }>, tensor: Tensor, suffix = 'pruned'): Value {
  const all = !v.isGraphOutput && v.uses.every((u) => users.some((x) => x.node === u.node && x.index === u.index));
  const producer = v.producer;
  const isInit = !producer && v.graph?.initializers.get(v.name) === v;
  if (all) {
    if (isInit) {
      v.graph!.setInitializerTensor(v, tensor);
      return v;
    }
    if (producer?.opType === 'Constant') {
      producer.attributes = [];
      tensor.name = v.name;
      producer.setAttr(Attribute.tensor('value', tensor));
      return v;
    }
  }
  const name = (v.graph ?? users[0]!.node.graph!).names.fresh(`${v.name}_${suffix}`);
  let nv: Value;
  if (isInit) nv = v.graph!.addInitializer(tensor, name);
  else {
    nv = new Value(name);
    const c = new Node('Constant', [], [nv]);
    c.name = name;
    tensor.name = name;
    c.setAttr(Attribute.tensor('value', tensor));
    const first = users[0]!.node;
    first.graph!.insertBefore(producer && producer.graph === first.graph ? producer : first, c);
  }
  for (const u of users) u.node.setInput(u.index, nv);
  return nv;
}
