/**
 * fuse-batchnorm: folds an inference BatchNormalization into the Conv, ConvTranspose, Gemm or
 * (2-D) MatMul that feeds it.
 *
 *   s = scale / sqrt(var + epsilon)          (per output channel)
 *   W' = W * s                               (each output channel's weights)
 *   b' = (b - mean) * s + bias               (b = 0 when the layer has no bias)
 *
 * Gemm also folds alpha into B and beta into C (both become 1). A MatMul whose output is 2-D becomes
 * a Gemm with the folded bias. Preconditions (each failure is explained): the BN parameters and the
 * layer's weights are float/double constants (initializers or Constant nodes), the layer's output is
 * read only by the BN and is not a graph output, the BN is in inference mode (one output, no
 * `spatial=0`, no `training_mode=1`). New weights become new initializers; the old ones are left for
 * dead-code elimination. Exact in real arithmetic; in float it rounds once more per weight.
 */
import { Attribute, Model, Node } from '../../ir/ir.js';
import { matched, noMatch, type Match, type Pattern } from '../pass.js';
import {
  patternPass,
  notApplicable,
  floatConstant,
  floatTensor,
  LinearKind,
  outputChannels,
  perAxisVector,
  rankOf,
  replaceChain,
  scaleOutputChannels,
  setWeight,
  soleUser,
  insertNodeBefore,
} from '../patterns.js';
import type { FloatConstant } from '../patterns.js';

interface BnParams {
  s: Float64Array;
  t: Float64Array;
}

/** Reads a BN node's folded scale and shift (s, t with y = x * s + t), or why not. */
export function batchNormParams(bn: Node): Match<BnParams> {
  if (bn.getInt('spatial', 1) !== 1) return noMatch('BatchNormalization has spatial=0');
  if (bn.getInt('training_mode', 0) !== 0) return noMatch('BatchNormalization is in training mode');
  for (let i = 1; i < bn.outputs.length; i++) {
    const o = bn.outputs[i]!;
    if (o.name !== '' && (o.uses.length > 0 || o.isGraphOutput)) return noMatch(`BatchNormalization output ${i} (${o.name}) is used`);
  }
  const names = ['scale', 'bias', 'mean', 'var'];
  const vals: Float64Array[] = [];
  for (let i = 0; i < 4; i++) {
    const c = floatConstant(bn.input(i + 1), `BN ${names[i]}`);
    if (typeof c === 'string') return noMatch(c);
    vals.push(c.data);
  }
  const n = vals[0]!.length;
  if (vals.some((v) => v.length !== n)) return noMatch('BN parameters have different lengths');
  const eps = bn.getFloat('epsilon', 1e-5);
  const s = new Float64Array(n);
  const t = new Float64Array(n);
  for (let c = 0; c < n; c++) {
    s[c] = vals[0]![c]! / Math.sqrt(vals[3]![c]! + eps);
    t[c] = vals[1]![c]! - vals[2]![c]! * s[c]!;
  }
  return matched({ s, t });
}

interface BnMatch extends BnParams {
  layer: Node;
  kind: LinearKind;
  wSrc: FloatConstant;
  wDims: number[];
  wType: number;
  group: number;
  /** Existing bias (length = channels) or zeros; already scaled by beta for Gemm. */
  b: Float64Array;
  alpha: number;
}

const LAYERS = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);

export const bnIntoLayer: Pattern<BnMatch> = {
  name: 'batchnorm-into-layer',
  anchors: ['BatchNormalization'],
  match(bn: Node): Match<BnMatch> {
    const x = bn.input(0);
    const layer = x?.producer;
    if (!x || !layer || !LAYERS.has(layer.opType) || layer.opDomain !== '') return notApplicable('BN input is not produced by Conv, ConvTranspose, Gemm or MatMul');
    if (soleUser(x) !== bn) return noMatch(`${layer.opType} output ${x.name} has other users or is a graph output`);
    if (layer.outputs.length !== 1) return noMatch(`${layer.opType} has extra outputs`);
    const p = batchNormParams(bn);
    if (!p.ok) return p;
    const wv = floatConstant(layer.input(1), `${layer.opType} weight`);
    if (typeof wv === 'string') return noMatch(wv);
    const wDims = wv.t.dims;
    const n = p.value.s.length;
    let kind: LinearKind;
    const group = layer.getInt('group', 1);
    let alpha = 1;
    let b: Float64Array = new Float64Array(n);
    if (layer.opType === 'Conv' || layer.opType === 'ConvTranspose') {
      kind = layer.opType;
      if (wDims.length < 3) return noMatch(`${layer.opType} weight has rank ${wDims.length}`);
    } else {
      if (rankOf(x) !== 2) return noMatch(`${layer.opType} output is not known to be 2-D (BN normalizes axis 1)`);
      if (wDims.length !== 2) return noMatch(`${layer.opType} B is not 2-D`);
      if (layer.opType === 'MatMul') kind = 'GemmB';
      else {
        kind = layer.getInt('transB', 0) ? 'GemmBT' : 'GemmB';
        alpha = layer.getFloat('alpha', 1);
      }
    }
    if (outputChannels(kind, wDims, group) !== n) return noMatch(`${layer.opType} has ${outputChannels(kind, wDims, group)} output channels but BN has ${n}`);
    const biasIndex = 2;
    const bv = layer.input(biasIndex);
    if (bv && bv.name !== '') {
      const c = floatConstant(bv, `${layer.opType} bias`);
      if (typeof c === 'string') return noMatch(c);
      const vec = perAxisVector(c.data, c.t.dims, layer.opType === 'Gemm' ? 2 : 1, layer.opType === 'Gemm' ? 1 : 0, n);
      if (typeof vec === 'string') return noMatch(`${layer.opType} bias: ${vec}`);
      const beta = layer.opType === 'Gemm' ? layer.getFloat('beta', 1) : 1;
      b = vec.map((v) => v * beta);
    }
    return matched({ ...p.value, layer, kind, wSrc: wv, wDims, wType: wv.t.dataType, group, b, alpha });
  },
  rewrite(bn: Node, m: BnMatch, model: Model): void {
    const s = m.alpha === 1 ? m.s : m.s.map((v) => v * m.alpha);
    const w = scaleOutputChannels(m.kind, m.wSrc.data, m.wDims, m.group, s);
    const bias = new Float64Array(m.s.length);
    for (let c = 0; c < bias.length; c++) bias[c] = m.b[c]! * m.s[c]! + m.t[c]!;
    const wName = m.layer.input(1)!.name;
    let layer = m.layer;
    if (layer.opType === 'MatMul') {
      const gemm = insertNodeBefore(model, layer, 'Gemm', [layer.input(0), null, null], `${layer.output(0).name}_gemm`);
      if (layer.name) gemm.name = layer.name;
      replaceChain(layer, gemm, [layer]);
      layer = gemm;
    }
    setWeight(model, layer, 1, floatTensor(m.wType, m.wDims, w), `${wName}_bnfused`);
    setWeight(model, layer, 2, floatTensor(m.wType, [bias.length], bias), `${wName}_bnfused_bias`);
    if (layer.opType === 'Gemm') {
      layer.setAttr(Attribute.float('alpha', 1));
      layer.setAttr(Attribute.float('beta', 1));
    }
    replaceChain(bn, layer, [bn]);
  },
};

export const PATTERNS = [bnIntoLayer];

export default patternPass({
  name: 'fuse-batchnorm',
  description: 'Fold BatchNormalization into the preceding Conv, ConvTranspose, Gemm or 2-D MatMul (W*s, (b-mean)*s+bias).',
  patterns: PATTERNS,
  stats: { fused: 'batchnorm-into-layer' },
});
