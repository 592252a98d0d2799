/**
 * fuse-hardswish: recognises the decomposed hard activations and replaces them by one node.
 *
 *   HardSigmoid(x) = max(0, min(1, alpha*x + beta))     from  Clip(x + 3, 0, 6) / 6   (alpha=1/6, beta=0.5)
 *                                                       or    Clip(x + 3, 0, 6) * (1/6)
 *   HardSwish(x)   = x * HardSigmoid_{1/6,0.5}(x)        from  x * Clip(x + 3, 0, 6) / 6  (PaddleOCR),
 *                                                             (x * Clip(x+3,0,6)) * (1/6), x * HardSigmoid(x)
 *
 * HardSwish needs opset 14, so the pass requires it (run `upgrade-opset<to=14>` first). Not exact in
 * float: `(x+3)/6` and `x/6 + 0.5` round differently (about one ulp). Intermediate values must have no
 * other users; Clip bounds may be attributes (opset < 11) or constant inputs.
 */
import { Attribute, Model, Node, Value } from '../../ir/ir.js';
import { matched, noMatch, type Match, type Pattern } from '../pass.js';
import { patternPass, notApplicable, insertNodeBefore, isScalar, otherInput, replaceChain, scalarConstant, soleUser } from '../patterns.js';

/** If `v` = Clip(x + 3, 0, 6) with single-use intermediates, returns x and the nodes. */
function matchRelu6Shift(v: Value | null | undefined): Match<{ x: Value; nodes: Node[] }> {
  const clip = v?.producer;
  if (!v || !clip || clip.opType !== 'Clip') return noMatch('operand is not a Clip');
  const lo = clip.inputs.length > 1 ? scalarConstant(clip.input(1)) : clip.getFloat('min');
  const hi = clip.inputs.length > 2 ? scalarConstant(clip.input(2)) : clip.getFloat('max');
  if (lo !== 0 || hi !== 6) return noMatch(`Clip bounds are ${lo}, ${hi}, not 0, 6`);
  const s = clip.input(0)!;
  const add = s.producer;
  if (!add || add.opType !== 'Add') return noMatch('Clip input is not an Add');
  if (soleUser(s) !== clip) return noMatch(`${s.name} has other users`);
  let x: Value | null | undefined;
  if (isScalar(add.input(1), 3)) x = add.input(0);
  else if (isScalar(add.input(0), 3)) x = add.input(1);
  if (!x) return noMatch('Add does not add the constant 3');
  return matched({ x, nodes: [clip, add] });
}

/** `v` / 6 or `v` * (1/6): returns the dividend. */
function divBy6(node: Node): Value | undefined {
  if (node.opType === 'Div' && isScalar(node.input(1), 6)) return node.input(0) ?? undefined;
  if (node.opType === 'Mul') {
    if (isScalar(node.input(1), 1 / 6, 1e-6)) return node.input(0) ?? undefined;
    if (isScalar(node.input(0), 1 / 6, 1e-6)) return node.input(1) ?? undefined;
  }
  return undefined;
}

interface HsMatch {
  x: Value;
  dead: Node[];
  op: 'HardSwish' | 'HardSigmoid';
}

export const hardSigmoidPattern: Pattern<HsMatch> = {
  name: 'hardsigmoid',
  anchors: ['Div', 'Mul'],
  match(node: Node): Match<HsMatch> {
    const d = divBy6(node);
    if (!d) return notApplicable('not a division by 6');
    if (soleUser(d) !== node) return noMatch(`${d.name} has other users`);
    const r = matchRelu6Shift(d);
    if (!r.ok) return r;
    return matched({ x: r.value.x, dead: [node, ...r.value.nodes], op: 'HardSigmoid' });
  },
  rewrite: rewriteActivation,
};

export const hardSwishPattern: Pattern<HsMatch> = {
  name: 'hardswish',
  anchors: ['Div', 'Mul'],
  match(node: Node): Match<HsMatch> {
    // x * HardSigmoid(x; 1/6, 0.5)
    if (node.opType === 'Mul') {
      for (const i of [0, 1]) {
        const h = node.input(i);
        const hs = h?.producer;
        if (hs && hs.opType === 'HardSigmoid' && soleUser(h!) === node && otherInput(node, h!) === hs.input(0)) {
          if (Math.abs(hs.getFloat('alpha', 0.2) - 1 / 6) > 1e-6 || Math.abs(hs.getFloat('beta', 0.5) - 0.5) > 1e-7) return noMatch('HardSigmoid alpha/beta are not 1/6, 0.5');
          return matched({ x: hs.input(0)!, dead: [node, hs], op: 'HardSwish' });
        }
      }
    }
    // (x * Clip(x+3,0,6)) / 6
    const d = divBy6(node);
    if (!d) return notApplicable('not x * HardSigmoid(x) nor a division by 6');
    const mul = d.producer;
    if (!mul || mul.opType !== 'Mul' || soleUser(d) !== node) return noMatch('the dividend is not a single-use Mul');
    let why = '';
    for (const i of [0, 1]) {
      const r = matchRelu6Shift(mul.input(i));
      if (!r.ok) {
        if (mul.input(i)?.producer?.opType === 'Clip') why = `: ${r.reason}`;
        continue;
      }
      if (mul.input(1 - i) === r.value.x && soleUser(mul.input(i)!) === mul) {
        return matched({ x: r.value.x, dead: [node, mul, ...r.value.nodes], op: 'HardSwish' });
      }
    }
    return noMatch(`the dividend is not x * Clip(x + 3, 0, 6)${why}`);
  },
  rewrite: rewriteActivation,
};

function rewriteActivation(node: Node, m: HsMatch, model: Model): void {
  const n = insertNodeBefore(model, node, m.op, [m.x], `${node.output(0).name}_${m.op.toLowerCase()}`);
  if (m.op === 'HardSigmoid') {
    n.setAttr(Attribute.float('alpha', 1 / 6));
    n.setAttr(Attribute.float('beta', 0.5));
  }
  replaceChain(node, n, m.dead);
}

/** HardSwish first, so x*Clip(x+3)/6 becomes one HardSwish rather than HardSigmoid then Mul. */
export const PATTERNS = [hardSwishPattern, hardSigmoidPattern];

export default patternPass({
  name: 'fuse-hardswish',
  description: 'Replace x*Clip(x+3,0,6)/6 by HardSwish and Clip(x+3,0,6)/6 by HardSigmoid (opset 14).',
  patterns: PATTERNS,
  stats: { hardswish: 'hardswish', hardsigmoid: 'hardsigmoid' },
  minOpset: 14,
});
