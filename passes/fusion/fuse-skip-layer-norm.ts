/**
 * fuse-skip-layer-norm (target microsoft): the residual Add before a LayerNormalization over the last
 * axis, optionally with the bias Add of the projection feeding it,
 *
 *   y = LayerNormalization(Add(Add(MatMul(..), bias), skip), gamma, beta, axis=-1)
 *
 * becomes `com.microsoft.SkipLayerNormalization(matmul_out, skip, gamma, beta, bias)`. When the sum
 * is read elsewhere too (pre-LN blocks keep it as the residual stream), those readers take the
 * operator's fourth output (input + skip + bias). Both Add operands must be computed [.., H] tensors
 * of the same rank (not constants, not broadcasts). There is no generic ONNX form: with target
 * generic the pass explains and leaves the model alone.
 */
import { DataType } from '../../core/dtype.js';
import { Attribute, constantOf, Model, Node, Value } from '../../ir/ir.js';
import { sharedShapes } from '../analyses.js';
import { matched, noMatch, type Match, type Pattern } from '../pass.js';
import { notApplicable, rankOf, replaceChain } from '../patterns.js';
import { msNode, producerOf, targetPass } from './transformer-target.js';

interface SkipLnMatch {
  input: Value;
  skip: Value;
  bias?: Value;
  gamma: Value;
  beta?: Value;
  eps: number;
  sum: Node;
  biasAdd?: Node;
}

/** `Add(MatMul(..), c)` with a constant [H] bias used only by this Add: [matmul output, bias]. */
function biasedProjection(v: Value, h: number | undefined): [Value, Value, Node] | undefined {
  const add = producerOf(v, 'Add');
  if (!add || v.isGraphOutput || v.uses.length !== 1) return undefined;
  for (const i of [0, 1]) {
    const mm = producerOf(add.input(i), 'MatMul');
    const b = constantOf(add.input(1 - i));
    if (mm && b && b.dims.length === 1 && b.dataType === DataType.FLOAT && (h === undefined || b.dims[0] === h)) return [add.input(i)!, add.input(1 - i)!, add];
  }
  return undefined;
}

/** The normalized size H from gamma, and a reason when gamma/beta are not constant [H] vectors. */
function affine(ln: Node): number | string {
  const g = constantOf(ln.input(1));
  if (!g || g.dims.length !== 1) return 'LayerNormalization scale is not a constant vector';
  const b = ln.input(2) ? constantOf(ln.input(2)) : undefined;
  if (ln.input(2) && (!b || b.dims.length !== 1 || b.dims[0] !== g.dims[0])) return 'LayerNormalization bias is not a constant vector like the scale';
  if (g.dataType !== DataType.FLOAT) return `LayerNormalization scale is ${g.dtype}`;
  return g.dims[0]!;
}

export const skipLayerNormPattern: Pattern<SkipLnMatch> = {
  name: 'skip-layer-norm',
  anchors: ['LayerNormalization'],
  match(ln: Node): Match<SkipLnMatch> {
    const sum = producerOf(ln.input(0), 'Add');
    if (!sum) return notApplicable('the LayerNormalization input is not an Add');
    if (ln.outputs.length > 1 && ln.outputs.slice(1).some((o) => o.uses.length > 0 || o.isGraphOutput)) return noMatch('LayerNormalization mean/inv_std_dev outputs are used');
    const rank = rankOf(ln.input(0));
    const axis = ln.getInt('axis', -1);
    if (axis !== -1 && !(rank !== undefined && axis === rank - 1)) return noMatch(`LayerNormalization axis ${axis} is not the last axis`);
    const h = affine(ln);
    if (typeof h === 'string') return noMatch(h);
    const [a, b] = [sum.input(0)!, sum.input(1)!];
    if (constantOf(a) || constantOf(b)) return noMatch('an operand of the residual Add is a constant (a bias, not a skip connection)');
    const ra = rankOf(a);
    const rb = rankOf(b);
    if (ra === undefined || rb === undefined) return noMatch('the rank of a residual Add operand is unknown');
    if (ra !== rb || ra < 2 || ra > 3) return noMatch(`residual Add operands have ranks ${ra} and ${rb}; SkipLayerNormalization takes two [B, S, H] (or [S, H]) tensors`);
    // a projection with its bias on either side: the bias moves into the operator
    const pa = biasedProjection(a, h);
    const pb = pa ? undefined : biasedProjection(b, h);
    if (sum.output(0).isGraphOutput) return noMatch(`the residual sum ${sum.output(0).name} is a graph output`);
    const eps = ln.getFloat('epsilon', 1e-5);
    const common = { gamma: ln.input(1)!, ...(ln.input(2) ? { beta: ln.input(2)! } : {}), eps, sum };
    if (pa) return matched({ input: pa[0], skip: b, bias: pa[1], biasAdd: pa[2], ...common });
    if (pb) return matched({ input: pb[0], skip: a, bias: pb[1], biasAdd: pb[2], ...common });
    return matched({ input: a, skip: b, ...common });
  },
  rewrite(ln: Node, m: SkipLnMatch, model: Model): void {
    const base = ln.output(0).name;
    const sumOut = m.sum.output(0);
    const others = sumOut.isGraphOutput || sumOut.uses.some((u) => u.node !== ln);
    const outs = [new Value(model.names.fresh(`${base}_skipln`))];
    if (others) outs.push(new Value(''), new Value(''), new Value(model.names.fresh(`${sumOut.name}_sum`)));
    const inputs = [m.input, m.skip, m.gamma, m.beta ?? null, m.bias ?? null];
    while (inputs[inputs.length - 1] === null) inputs.pop();
    const node = msNode(model, ln, 'SkipLayerNormalization', inputs, outs);
    node.setAttr(Attribute.float('epsilon', m.eps));
    if (others) {
      outs[3]!.type = sumOut.type;
      sumOut.replaceAllUsesWith(outs[3]!);
    }
    replaceChain(ln, node, [ln, m.sum, ...(m.biasAdd ? [m.biasAdd] : [])]);
  },
};

export const PATTERNS = { microsoft: [skipLayerNormPattern], generic: [] };

export default targetPass({
  name: 'fuse-skip-layer-norm',
  description: 'Replace Add(+bias) -> LayerNormalization over the last axis by com.microsoft.SkipLayerNormalization (target microsoft only).',
  patterns: PATTERNS,
  stats: { fused: 'skip-layer-norm' },
  prepare: (model, ctx) => void sharedShapes(model, ctx),
});
