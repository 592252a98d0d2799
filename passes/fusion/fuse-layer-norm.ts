/**
 * fuse-layer-norm: replaces the decomposed layer normalization exported by Paddle/PyTorch
 *
 *   m = ReduceMean(x, axes); d = x - m; v = ReduceMean(d^2, axes)    (d^2 as Pow(d, 2) or Mul(d, d))
 *   y = d / Sqrt(v + eps) [* gamma] [+ beta]
 *
 * by `LayerNormalization(x, gamma, beta, axis, epsilon)` (opset 17). `axes` must be the trailing
 * axes (e.g. [-1]); gamma and beta must be constants shaped like the normalized dims (leading 1s
 * allowed). Without gamma the scale is ones (its length is taken from beta or the declared shape).
 * Intermediates must have no users outside the pattern.
 */
import { DataType } from '../../core/dtype.js';
import { Attribute, constantOf, Model, Node, Value } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import { matched, noMatch, type Match, type Pattern } from '../pass.js';
import { patternPass, notApplicable, elemTypeOf, floatTensor, insertNodeBefore, isScalar, onlyUsedBy, rankOf, reduceAxes, replaceChain, scalarConstant, soleUser } from '../patterns.js';

interface LnMatch {
  x: Value;
  axis: number;
  eps: number;
  gamma?: Value;
  beta?: Value;
  /** Normalized size (for a synthesized scale/bias). */
  size?: number;
  last: Node;
  dead: Node[];
}

function producer(v: Value | null | undefined, op: string): Node | undefined {
  const p = v?.producer;
  return p && p.opType === op && p.opDomain === '' ? p : undefined;
}

/** Trailing-axes check: returns the LayerNormalization axis (negative) or a reason. */
function trailingAxis(axes: number[] | null | undefined, x: Value): number | string {
  if (!axes || axes.length === 0) return 'ReduceMean axes are not constant or reduce everything';
  const rank = rankOf(x);
  const norm = axes.map((a) => (a < 0 ? a : rank === undefined ? NaN : a - rank)).sort((a, b) => a - b);
  if (norm.some((a) => Number.isNaN(a))) return 'ReduceMean axes are positive and the input rank is unknown';
  for (let i = 0; i < norm.length; i++) if (norm[i] !== -norm.length + i) return `ReduceMean axes [${axes.join(',')}] are not the trailing axes`;
  return norm[0]!;
}

/** A constant shaped like the trailing `k` dims (leading 1s allowed). */
function normalizedConstant(v: Value | null | undefined, k: number): Tensor | undefined {
  const t = constantOf(v);
  if (!t || t.dims.length < k) return undefined;
  if (t.dims.slice(0, t.dims.length - k).some((d) => d !== 1)) return undefined;
  return t;
}

export const layerNormPattern: Pattern<LnMatch> = {
  name: 'layer-norm',
  anchors: ['Div'],
  match(div: Node): Match<LnMatch> {
    const d = div.input(0)!;
    const sub = producer(d, 'Sub');
    if (!sub) return notApplicable('Div numerator is not a Sub');
    const x = sub.input(0)!;
    const mean = producer(sub.input(1), 'ReduceMean');
    if (!mean || mean.input(0) !== x) return notApplicable('Sub does not subtract ReduceMean of its first operand');
    if (mean.getInt('keepdims', 1) !== 1) return noMatch('ReduceMean has keepdims=0');
    const sqrt = producer(div.input(1), 'Sqrt');
    if (!sqrt) return noMatch('Div denominator is not a Sqrt');
    const addEps = producer(sqrt.input(0), 'Add');
    if (!addEps) return noMatch('Sqrt input is not an Add of epsilon');
    let varV = addEps.input(0);
    let eps = scalarConstant(addEps.input(1));
    if (eps === undefined) {
      varV = addEps.input(1);
      eps = scalarConstant(addEps.input(0));
    }
    if (eps === undefined) return noMatch('epsilon is not a constant scalar');
    const var2 = producer(varV, 'ReduceMean');
    if (!var2 || var2.getInt('keepdims', 1) !== 1) return noMatch('variance is not a ReduceMean with keepdims');
    const sq = var2.input(0)?.producer;
    const isSquare = sq && ((sq.opType === 'Pow' && sq.input(0) === d && isScalar(sq.input(1), 2)) || (sq.opType === 'Mul' && sq.input(0) === d && sq.input(1) === d));
    if (!sq || !isSquare) return noMatch('variance does not reduce (x - mean)^2');
    const axes = reduceAxes(mean);
    const axes2 = reduceAxes(var2);
    if (JSON.stringify(axes) !== JSON.stringify(axes2)) return noMatch('the two ReduceMeans use different axes');
    const axis = trailingAxis(axes, x);
    if (typeof axis === 'string') return noMatch(axis);
    // single-use intermediates
    const inner: Array<[Value, Node]> = [
      [mean.output(0), sub],
      [sq.output(0), var2],
      [var2.output(0), addEps],
      [addEps.output(0), sqrt],
      [sqrt.output(0), div],
    ];
    for (const [v, n] of inner) if (!onlyUsedBy(v, n)) return noMatch(`${v.name} has users outside the pattern`);
    if (d.isGraphOutput || d.uses.some((u) => u.node !== sq && u.node !== div)) return noMatch(`${d.name} has users outside the pattern`);
    const k = -axis;
    const dead = [div, sqrt, addEps, var2, sq, sub, mean];
    let last = div;
    let gamma: Value | undefined;
    let beta: Value | undefined;
    const next = soleUser(div.output(0));
    if (next && next.opType === 'Mul') {
      const g = next.input(0) === div.output(0) ? next.input(1) : next.input(0);
      if (normalizedConstant(g, k)) {
        gamma = g!;
        last = next;
        dead.push(next);
      }
    }
    const after = soleUser(last.output(0));
    if (after && after.opType === 'Add') {
      const bv = after.input(0) === last.output(0) ? after.input(1) : after.input(0);
      if (normalizedConstant(bv, k)) {
        beta = bv!;
        last = after;
        dead.push(after);
      }
    }
    const ref = constantOf(gamma) ?? constantOf(beta);
    let size: number | undefined;
    if (ref) {
      if (ref.dataType !== DataType.FLOAT && ref.dataType !== DataType.DOUBLE && ref.dataType !== DataType.FLOAT16 && ref.dataType !== DataType.BFLOAT16) return noMatch(`scale is ${ref.dtype}`);
      if (gamma && beta && JSON.stringify(constantOf(gamma)!.dims.slice(-k)) !== JSON.stringify(constantOf(beta)!.dims.slice(-k))) return noMatch('gamma and beta shapes differ');
      size = ref.dims.slice(-k).reduce((a, b) => a * b, 1);
    } else {
      const s = x.shape;
      const dims = s?.slice(-k);
      if (!dims || dims.some((v) => typeof v !== 'number')) return noMatch('no gamma or beta and the normalized dims are unknown');
      size = (dims as number[]).reduce((a, b) => a * b, 1);
    }
    return matched({ x, axis, eps, gamma, beta, size, last, dead });
  },
  rewrite(div: Node, m: LnMatch, model: Model): void {
    const g = div.graph!;
    const dims = (v: Value | undefined) => {
      const t = constantOf(v)!;
      return t.dims.slice(t.dims.length + m.axis);
    };
    const shapeRef = m.gamma ?? m.beta;
    const normDims = shapeRef ? dims(shapeRef) : [m.size!];
    const dtype = constantOf(shapeRef)?.dataType ?? elemTypeOf(m.x) ?? DataType.FLOAT;
    const reshaped = (v: Value | undefined, fill: number, tag: string): Value => {
      const t = constantOf(v);
      let out: Tensor;
      if (t) {
        out = t.clone();
        out.dims = [...normDims];
      } else {
        const ones = new Float64Array(m.size!).fill(fill);
        out = floatTensor(dtype, normDims, ones);
      }
      const val = g.addInitializer(out, model.names.fresh(`${div.output(0).name}_${tag}`));
      val.setTensorType(out.dataType, normDims);
      return val;
    };
    const scale = reshaped(m.gamma, 1, 'ln_scale');
    const bias = m.beta ? reshaped(m.beta, 0, 'ln_bias') : null;
    const ln = insertNodeBefore(model, m.last, 'LayerNormalization', bias ? [m.x, scale, bias] : [m.x, scale], `${m.last.output(0).name}_ln`);
    ln.setAttr(Attribute.int('axis', m.axis));
    ln.setAttr(Attribute.float('epsilon', m.eps));
    replaceChain(m.last, ln, m.dead);
  },
};

export const PATTERNS = [layerNormPattern];

export default patternPass({
  name: 'fuse-layer-norm',
  description: 'Replace ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div[/Mul/Add] by LayerNormalization (opset 17).',
  patterns: PATTERNS,
  stats: { fused: 'layer-norm' },
  minOpset: 17,
});
