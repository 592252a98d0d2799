/**
 * Lossless storage of large float32 constants that hold few distinct values (an attention mask
 * buffer of 0 and -1e4 is 11% of the trained LM's int4 file): the values as uint8 codes, Cast to
 * float32, times a step and plus an offset where needed — chosen only when every value comes back
 * bit-exact in float32. The subgraph reads constants only, so onnxruntime folds it back into the
 * original float32 initializer at load; downstream nodes see the same name and values.
 */
import { DataType } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';
import { Attribute, Model, Node, Value } from '../../../ir/ir.js';

export interface CompactedConstant {
  tensor: string;
  dims: number[];
  floatBytes: number;
  bytes: number;
  /** How the values are rebuilt, e.g. `0 + -10000 * code` or `code`. */
  form: string;
}

/** The codes and the affine map back, when every value is offset + step * code exactly (code 0..255). */
function affineCodes(values: Float32Array): { codes: Uint8Array; offset: number; step: number } | undefined {
  const distinct = new Set<number>();
  for (const v of values) {
    if (Object.is(v, -0) || Number.isNaN(v)) return undefined;
    distinct.add(v);
    if (distinct.size > 256) return undefined;
  }
  const sorted = [...distinct].sort((a, b) => a - b);
  let offset = 0;
  let step = 1;
  if (!sorted.every((v) => Number.isInteger(v) && v >= 0 && v <= 255)) {
    if (sorted.length !== 2) return undefined;
    // two values: the one that is 0 (else the smaller) is code 0, the other code 1
    offset = sorted.includes(0) ? 0 : sorted[0]!;
    const other = sorted[0] === offset ? sorted[1]! : sorted[0]!;
    step = Math.fround(other - offset);
    if (Math.fround(offset + Math.fround(step * 1)) !== other) return undefined;
  }
  const codes = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) codes[i] = step === 1 && offset === 0 ? values[i]! : values[i] === offset ? 0 : 1;
  return { codes, offset, step };
}

/** Rewrites the float32 initializers of the main graph with at least `minElements` values and few distinct ones. */
export function compactConstants(model: Model, minElements: number): CompactedConstant[] {
  const g = model.graph;
  const out: CompactedConstant[] = [];
  for (const v of [...g.initializers.values()]) {
    const t = g.initializerTensor(v);
    if (!t || t.dataType !== DataType.FLOAT || t.size < minElements || g.inputs.includes(v) || v.isGraphOutput || v.uses.length === 0) continue;
    const a = affineCodes(t.toFloat32());
    if (!a) continue;
    const names = model.names;
    const codes = g.addInitializer(Tensor.fromBytes(DataType.UINT8, t.dims, a.codes), names.fresh(`${v.name}_codes`));
    const add = (op: string, inputs: Value[], attrs: Attribute[] = []): Value => {
      const o = new Value(names.fresh(`${v.name}_${op.toLowerCase()}`));
      const n = new Node(op, inputs, [o]);
      for (const at of attrs) n.setAttr(at);
      g.insertNode(n, 0);
      return o;
    };
    const scalar = (x: number, label: string) => g.addInitializer(Tensor.from(DataType.FLOAT, [], Float32Array.of(x)), names.fresh(`${v.name}_${label}`));
    let x = add('Cast', [codes], [Attribute.int('to', DataType.FLOAT)]);
    if (a.step !== 1) x = add('Mul', [x, scalar(a.step, 'step')]);
    if (a.offset !== 0) x = add('Add', [x, scalar(a.offset, 'offset')]);
    x.setTensorType(DataType.FLOAT, t.dims);
    // the rebuilt value takes the initializer's name (downstream names do not change)
    const name = v.name;
    v.replaceAllUsesWith(x);
    g.removeInitializer(v);
    g.renameValue(x, name);
    const bytes = t.size + (a.step !== 1 ? 4 : 0) + (a.offset !== 0 ? 4 : 0);
    out.push({ tensor: x.name, dims: [...t.dims], floatBytes: t.byteLength, bytes, form: a.step === 1 && a.offset === 0 ? 'code' : `${a.offset} + ${a.step} * code` });
  }
  if (out.length) g.toposort();
  return out;
}
