/**
 * fuse-conv-input-affine: folds a constant Mul or Add on a Conv's input into the Conv.
 *
 *   Conv(x * s) = Conv'(x)  with  W'[o, i, k..] = W[o, i, k..] * s[c(i)]        (always exact: zero
 *                                                                              padding commutes with scaling)
 *   Conv(x + c) = Conv(x) + b''  with  b''[o] = sum_{i,k} W[o, i, k..] * c[c(i)]   (only without padding:
 *                                                                              padded zeros would become c)
 *
 * where c(i) is the input channel that weight column i of output channel o reads (groups respected)
 * and s, c are scalars or per-input-channel constants ([C,1,1], [1,C,1,1], ...). The Mul/Add output
 * must be read only by the Conv. PP-OCRv4's LCNetV3 ends each block with `x * scale + bias` feeding
 * the next (pointwise) Conv.
 */
import { isConstant, Model, Node } from '../../ir/ir.js';
import { matched, noMatch, type Match, type Pattern } from '../pass.js';
import { patternPass, floatConstant, floatTensor, notApplicable, perAxisVector, setWeight, soleUser } from '../patterns.js';
import type { FloatConstant } from '../patterns.js';

interface InputAffineMatch {
  pre: Node;
  op: 'Mul' | 'Add';
  /** Which operand of `pre` is the data (the other is the constant). */
  dataIndex: number;
  /** Per input channel values (length C). */
  v: Float64Array;
  wSrc: FloatConstant;
  wDims: number[];
  wType: number;
  group: number;
  b: Float64Array;
}

export const inputAffineIntoConv: Pattern<InputAffineMatch> = {
  name: 'input-affine-into-conv',
  anchors: ['Conv'],
  match(conv: Node): Match<InputAffineMatch> {
    const x = conv.input(0);
    const pre = x?.producer;
    if (!x || !pre || (pre.opType !== 'Mul' && pre.opType !== 'Add') || pre.opDomain !== '') return notApplicable('Conv input is not a Mul or Add');
    if (soleUser(x) !== conv) return noMatch(`${x.name} has other users or is a graph output`);
    const c1 = floatConstant(pre.input(1), `${pre.opType} operand`);
    const c0 = floatConstant(pre.input(0), `${pre.opType} operand`);
    const cv = typeof c1 !== 'string' ? c1 : c0;
    if (typeof cv === 'string') return pre.inputs.every((i) => i?.producer && !isConstant(i)) ? notApplicable(c1 as string) : noMatch(typeof c1 === 'string' ? c1 : cv);
    if (typeof c1 !== 'string' && typeof c0 !== 'string') return noMatch('both operands are constant (left for constant folding)');
    const wv = floatConstant(conv.input(1), 'Conv weight');
    if (typeof wv === 'string') return noMatch(wv);
    if (cv.t.dataType !== wv.t.dataType) return noMatch(`${pre.opType} operand is ${cv.t.dtype} but the weight is ${wv.t.dtype}`);
    const wDims = wv.t.dims;
    const group = conv.getInt('group', 1);
    const cin = wDims[1]! * group;
    const v = perAxisVector(cv.data, cv.t.dims, wDims.length, 1, cin);
    if (typeof v === 'string') return noMatch(`${pre.opType} operand: ${v}`);
    if (pre.opType === 'Add') {
      const auto = conv.getString('auto_pad', 'NOTSET');
      const pads = conv.getInts('pads') ?? [];
      if ((auto !== 'NOTSET' && auto !== 'VALID') || pads.some((p) => p !== 0)) return noMatch('Conv pads its input: the padded zeros would not receive the Add');
    }
    let b: Float64Array = new Float64Array(wDims[0]!);
    const bv = conv.input(2);
    if (bv && bv.name !== '') {
      const bc = floatConstant(bv, 'Conv bias');
      if (typeof bc === 'string') return noMatch(bc);
      b = bc.data;
    }
    return matched({ pre, op: pre.opType, dataIndex: typeof c1 !== 'string' ? 0 : 1, v, wSrc: wv, wDims, wType: wv.t.dataType, group, b });
  },
  rewrite(conv: Node, m: InputAffineMatch, model: Model): void {
    const [mOut, cpg] = [m.wDims[0]!, m.wDims[1]!];
    const W = m.wSrc.data;
    const inner = W.length / (mOut * cpg);
    const perGroupOut = mOut / m.group;
    const wName = conv.input(1)!.name;
    if (m.op === 'Mul') {
      const w = new Float64Array(W.length);
      for (let o = 0; o < mOut; o++) {
        const g = Math.floor(o / perGroupOut);
        for (let i = 0; i < cpg; i++) {
          const f = m.v[g * cpg + i]!;
          const base = (o * cpg + i) * inner;
          for (let k = 0; k < inner; k++) w[base + k] = W[base + k]! * f;
        }
      }
      setWeight(model, conv, 1, floatTensor(m.wType, m.wDims, w), `${wName}_inscaled`);
    } else {
      const b = Float64Array.from(m.b);
      for (let o = 0; o < mOut; o++) {
        const g = Math.floor(o / perGroupOut);
        let acc = 0;
        for (let i = 0; i < cpg; i++) {
          const c = m.v[g * cpg + i]!;
          const base = (o * cpg + i) * inner;
          for (let k = 0; k < inner; k++) acc += W[base + k]! * c;
        }
        b[o] = b[o]! + acc;
      }
      setWeight(model, conv, 2, floatTensor(m.wType, [mOut], b), `${wName}_inshift_bias`);
    }
    conv.setInput(0, m.pre.input(m.dataIndex));
    if (m.pre.output(0).uses.length === 0 && !m.pre.output(0).isGraphOutput) m.pre.graph!.removeNode(m.pre);
  },
};

export const PATTERNS = [inputAffineIntoConv];

export default patternPass({
  name: 'fuse-conv-input-affine',
  description: "Fold a constant per-channel Mul (always) or Add (unpadded Conv only) on a Conv's input into its weights and bias.",
  patterns: PATTERNS,
  stats: { fused: 'input-affine-into-conv' },
});
