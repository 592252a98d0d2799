/**
 * fuse-rms-norm: Llama's RMSNorm as exporters write it,
 *
 *   y = gamma * (x * Reciprocal(Sqrt(ReduceMean(x^2, [-1]) + eps)))     (TorchScript, rsqrt)
 *   y = gamma * (x / Sqrt(ReduceMean(x^2, [-1]) + eps))                 (dynamo)
 *
 * (x^2 as Pow(x, 2) or Mul(x, x); gamma on either side; ReduceMean axes as attribute or input) becomes
 * - target microsoft: onnxruntime's `SimplifiedLayerNormalization(x, gamma)` (which onnxruntime registers
 *   in the ONNX domain), or, when x is a residual
 *   `Add(a, b)` of two computed tensors, `com.microsoft.SkipSimplifiedLayerNormalization(a, b, gamma)`
 *   whose fourth output (a + b) replaces the sum for its other readers;
 * - target generic: ONNX `RMSNormalization(x, gamma)` (opset 23).
 * gamma must be a constant [H] vector; the intermediates must have no readers outside the pattern.
 */
import { DataType } from '../../core/dtype.js';
import { Attribute, constantOf, Model, Node, Value } from '../../ir/ir.js';
import { sharedShapesIfAny } from '../analyses.js';
import { matched, noMatch, type Match, type Pattern } from '../pass.js';
import { insertNodeBefore, isScalar, notApplicable, onlyUsedBy, rankOf, reduceAxes, replaceChain, scalarConstant } from '../patterns.js';
import { FusionTarget, GENERIC_OPSET, MS_DOMAIN, msNode, producerOf, targetPass } from './transformer-target.js';

interface RmsMatch {
  x: Value;
  gamma: Value;
  eps: number;
  dead: Node[];
  /** Residual operands when x = Add(a, b) (microsoft target). */
  skip?: [Value, Value];
}

/** `Sqrt(ReduceMean(x^2, [-1]) + eps)`: [x, eps, nodes] or a reason. */
function rootMeanSquare(v: Value | null | undefined): [Value, number, Node[]] | string {
  const sqrt = producerOf(v, 'Sqrt');
  if (!sqrt) return 'the denominator is not a Sqrt';
  const add = producerOf(sqrt.input(0), 'Add');
  if (!add) return 'the Sqrt input is not an Add of epsilon';
  const e1 = scalarConstant(add.input(1));
  const e0 = scalarConstant(add.input(0));
  const eps = e1 ?? e0;
  if (eps === undefined) return 'epsilon is not a constant scalar';
  const rm = producerOf(e1 !== undefined ? add.input(0) : add.input(1), 'ReduceMean');
  if (!rm || rm.getInt('keepdims', 1) !== 1) return 'the mean square is not a ReduceMean with keepdims';
  const axes = reduceAxes(rm);
  const sq = rm.input(0)?.producer;
  if (!sq || sq.opDomain !== '') return 'the ReduceMean does not read a square';
  const x = sq.input(0)!;
  if (!((sq.opType === 'Pow' && isScalar(sq.input(1), 2)) || (sq.opType === 'Mul' && sq.input(1) === x))) return 'the ReduceMean does not read x^2';
  const r = rankOf(x);
  if (!axes || axes.length !== 1 || !(axes[0] === -1 || (r !== undefined && axes[0] === r - 1))) return `ReduceMean axes [${axes?.join(',') ?? 'all'}] are not the last axis`;
  for (const [val, user] of [[sq.output(0), rm], [rm.output(0), add], [add.output(0), sqrt]] as const) if (!onlyUsedBy(val, user)) return `${val.name} has readers outside the RMSNorm`;
  return [x, eps, [sqrt, add, rm, sq]];
}

function matchRms(mul: Node, target: FusionTarget): Match<RmsMatch> {
  let gamma: Value | undefined;
  let n: Value | undefined;
  for (const i of [0, 1]) {
    const g = constantOf(mul.input(i));
    if (g && g.dims.length === 1 && g.dataType === DataType.FLOAT) {
      gamma = mul.input(i)!;
      n = mul.input(1 - i)!;
    }
  }
  if (!gamma || !n) return notApplicable('no Mul operand is a constant vector (gamma)');
  const p = n.producer;
  if (!p || p.opDomain !== '' || (p.opType !== 'Mul' && p.opType !== 'Div') || !onlyUsedBy(n, mul)) return notApplicable('gamma does not scale a normalized tensor');
  let rms: ReturnType<typeof rootMeanSquare> = 'not an RMSNorm';
  let dead: Node[] = [mul, p];
  if (p.opType === 'Div') rms = rootMeanSquare(p.input(1));
  else {
    for (const i of [0, 1]) {
      const rec = producerOf(p.input(1 - i), 'Reciprocal');
      const div1 = producerOf(p.input(1 - i), 'Div');
      const inv = rec ? rec.input(0) : div1 && isScalar(div1.input(0), 1) ? div1.input(1) : undefined;
      if (!inv) continue;
      rms = rootMeanSquare(inv);
      if (typeof rms === 'string') continue;
      if (rms[0] === p.input(i)) {
        if (!onlyUsedBy(p.input(1 - i)!, p)) return noMatch(`${p.input(1 - i)!.name} has readers outside the RMSNorm`);
        dead.push((rec ?? div1)!);
        break;
      }
      rms = 'the reciprocal root mean square is not of the other factor';
    }
  }
  if (typeof rms === 'string') return p.opType === 'Div' || rms !== 'not an RMSNorm' ? noMatch(rms) : notApplicable(rms);
  const [x, eps, nodes] = rms;
  if (p.opType === 'Div' && p.input(0) !== x) return noMatch('the numerator is not the tensor whose mean square is taken');
  const h = constantOf(gamma)!.dims[0]!;
  const dims = x.shape;
  const last = dims?.[dims.length - 1];
  if (typeof last === 'number' && last !== h) return noMatch(`gamma has ${h} values, the last dim is ${last}`);
  dead = [...dead, ...nodes];
  if (target === 'microsoft') {
    const add = producerOf(x, 'Add');
    if (add && !x.isGraphOutput && !constantOf(add.input(0)) && !constantOf(add.input(1)) && rankOf(add.input(0)) === 3 && rankOf(add.input(1)) === 3) {
      return matched({ x, gamma, eps, dead, skip: [add.input(0)!, add.input(1)!] });
    }
  }
  return matched({ x, gamma, eps, dead });
}

function rewriteRms(mul: Node, m: RmsMatch, model: Model, target: FusionTarget): void {
  const base = mul.output(0).name;
  let node: Node;
  if (target === 'generic') {
    node = insertNodeBefore(model, mul, 'RMSNormalization', [m.x, m.gamma], `${base}_rms`);
  } else if (m.skip) {
    const sum = m.x;
    const others = sum.uses.some((u) => !m.dead.includes(u.node));
    const outs = [new Value(model.names.fresh(`${base}_skiprms`))];
    if (others) outs.push(new Value(''), new Value(''), new Value(model.names.fresh(`${sum.name}_sum`)));
    node = msNode(model, mul, 'SkipSimplifiedLayerNormalization', [m.skip[0], m.skip[1], m.gamma], outs);
    if (others) {
      outs[3]!.type = sum.type;
      for (const u of [...sum.uses]) if (!m.dead.includes(u.node)) u.node.setInput(u.index, outs[3]!);
    }
    m.dead.push(sum.producer!);
  } else {
    // onnxruntime registers SimplifiedLayerNormalization in the ONNX domain (its other contrib ops are com.microsoft)
    node = insertNodeBefore(model, mul, 'SimplifiedLayerNormalization', [m.x, m.gamma], `${base}_rms`);
  }
  node.setAttr(Attribute.float('epsilon', m.eps));
  if (node.opType !== 'SkipSimplifiedLayerNormalization') node.setAttr(Attribute.int('axis', -1));
  replaceChain(mul, node, m.dead);
}

function rmsPattern(target: FusionTarget): Pattern<RmsMatch> {
  return { name: 'rms-norm', anchors: ['Mul'], match: (n) => matchRms(n, target), rewrite: (n, m, model) => rewriteRms(n, m, model, target) };
}

export const PATTERNS = { microsoft: [rmsPattern('microsoft')], generic: [rmsPattern('generic')] };

export default targetPass({
  name: 'fuse-rms-norm',
  description: `Replace the exported RMSNorm (Pow/ReduceMean/Add/Sqrt/Reciprocal or Div/Mul) by ${MS_DOMAIN} (Skip)SimplifiedLayerNormalization, or ONNX RMSNormalization (opset ${GENERIC_OPSET}) with target generic.`,
  patterns: PATTERNS,
  stats: { fused: 'rms-norm' },
  genericOpset: GENERIC_OPSET,
  // the matcher reads shapes only past the mean square's ReduceMean
  prepare: (model, ctx) => sharedShapesIfAny(model, ctx, 'ReduceMean'),
});
