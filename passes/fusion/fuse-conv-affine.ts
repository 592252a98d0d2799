/**
 * fuse-conv-affine: folds a per-output-channel Mul, Div, Add or Sub by a constant that follows a
 * Conv or ConvTranspose into the layer's weights and bias.
 *
 *   Mul(conv, s):  W' = W * s,  b' = b * s          Div(conv, s):  W' = W / s,  b' = b / s
 *   Add(conv, c):  b' = b + c                       Sub(conv, c):  b' = b - c
 *   Sub(c, conv):  W' = -W,     b' = c - b
 *
 * The constant must be a float/double constant broadcasting only along the channel axis (shape [],
 * [1], [C,1,1], [1,C,1,1], ...). The layer's output must be read only by the Mul/Add and not be a
 * graph output. PP-OCRv4's LCNetV3 blocks have Conv -> Mul(scale) -> Add(bias) after every conv.
 */
import { isConstant, Model, Node } from '../../ir/ir.js';
import { matched, noMatch, type Match, type Pattern } from '../pass.js';
import { patternPass, notApplicable, floatConstant, floatTensor, LinearKind, outputChannels, perAxisVector, replaceChain, scaleOutputChannels, setWeight, soleUser } from '../patterns.js';
import type { FloatConstant } from '../patterns.js';

interface AffineMatch {
  layer: Node;
  kind: LinearKind;
  wSrc: FloatConstant;
  wDims: number[];
  wType: number;
  group: number;
  b: Float64Array;
  /** Per-channel values of the constant operand. */
  c: Float64Array;
  /** The layer output is the first operand (matters for Sub and Div). */
  layerFirst: boolean;
}

export const affineIntoConv: Pattern<AffineMatch> = {
  name: 'affine-into-conv',
  anchors: ['Mul', 'Add', 'Sub', 'Div'],
  match(node: Node): Match<AffineMatch> {
    const a = node.input(0);
    const bIn = node.input(1);
    let layerFirst = true;
    let y = a;
    let other = bIn;
    const isLayer = (v: typeof a) => !!v?.producer && (v.producer.opType === 'Conv' || v.producer.opType === 'ConvTranspose') && v.producer.opDomain === '';
    if (!isLayer(a)) {
      if (!isLayer(bIn)) return notApplicable('neither operand is produced by Conv or ConvTranspose');
      layerFirst = false;
      y = bIn;
      other = a;
    }
    if (node.opType === 'Div' && !layerFirst) return noMatch('Div with the conv output as divisor');
    const layer = y!.producer!;
    if (soleUser(y!) !== node) return noMatch(`${layer.opType} output ${y!.name} has other users or is a graph output`);
    const cv = floatConstant(other, `${node.opType} operand`);
    if (typeof cv === 'string') return other?.producer && !isConstant(other) ? notApplicable(cv) : noMatch(cv); // computed operands are no near-miss
    const wv = floatConstant(layer.input(1), `${layer.opType} weight`);
    if (typeof wv === 'string') return noMatch(wv);
    if (cv.t.dataType !== wv.t.dataType) return noMatch(`${node.opType} operand is ${cv.t.dtype} but the weight is ${wv.t.dtype}`);
    const kind: LinearKind = layer.opType as LinearKind;
    const group = layer.getInt('group', 1);
    const wDims = wv.t.dims;
    if (wDims.length < 3) return noMatch(`${layer.opType} weight has rank ${wDims.length}`);
    const n = outputChannels(kind, wDims, group);
    const c = perAxisVector(cv.data, cv.t.dims, wDims.length, 1, n);
    if (typeof c === 'string') return noMatch(`${node.opType} operand: ${c}`);
    if (node.opType === 'Div' && c.some((x) => x === 0)) return noMatch('Div by a constant with zeros');
    let b: Float64Array = new Float64Array(n);
    const bv = layer.input(2);
    if (bv && bv.name !== '') {
      const bc = floatConstant(bv, `${layer.opType} bias`);
      if (typeof bc === 'string') return noMatch(bc);
      if (bc.data.length !== n) return noMatch(`${layer.opType} bias has ${bc.data.length} values, expected ${n}`);
      b = bc.data;
    }
    return matched({ layer, kind, wSrc: wv, wDims, wType: wv.t.dataType, group, b, c, layerFirst });
  },
  rewrite(node: Node, m: AffineMatch, model: Model): void {
    const n = m.c.length;
    let scale: Float64Array | undefined;
    const bias = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const b = m.b[i]!;
      const c = m.c[i]!;
      switch (node.opType) {
        case 'Mul':
          bias[i] = b * c;
          break;
        case 'Div':
          bias[i] = b / c;
          break;
        case 'Add':
          bias[i] = b + c;
          break;
        default:
          bias[i] = m.layerFirst ? b - c : c - b;
      }
    }
    if (node.opType === 'Mul') scale = m.c;
    else if (node.opType === 'Div') scale = m.c.map((x) => 1 / x);
    else if (node.opType === 'Sub' && !m.layerFirst) scale = new Float64Array(n).fill(-1);
    const wName = m.layer.input(1)!.name;
    if (scale) {
      const w = node.opType === 'Div' ? divideOutputChannels(m, m.c) : scaleOutputChannels(m.kind, m.wSrc.data, m.wDims, m.group, scale);
      setWeight(model, m.layer, 1, floatTensor(m.wType, m.wDims, w), `${wName}_affine`);
    }
    setWeight(model, m.layer, 2, floatTensor(m.wType, [n], bias), `${wName}_affine_bias`);
    replaceChain(node, m.layer, [node]);
  },
};

/** W / c per output channel (dividing, not multiplying by 1/c, to round like the original Div). */
function divideOutputChannels(m: AffineMatch, c: Float64Array): Float64Array {
  const ones = new Float64Array(c.length).fill(1);
  const w = scaleOutputChannels(m.kind, m.wSrc.data, m.wDims, m.group, ones);
  const inv = scaleOutputChannels(m.kind, new Float64Array(m.wSrc.data.length).fill(1), m.wDims, m.group, c);
  for (let i = 0; i < w.length; i++) w[i] = w[i]! / inv[i]!;
  return w;
}

export const PATTERNS = [affineIntoConv];

export default patternPass({
  name: 'fuse-conv-affine',
  description: 'Fold a per-channel constant Mul/Div/Add/Sub after Conv or ConvTranspose into its weights and bias.',
  patterns: PATTERNS,
  stats: { fused: 'affine-into-conv' },
});
