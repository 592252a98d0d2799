/**
 * fuse-gelu: replaces the exported GELU subgraphs by `Gelu` (opset 20).
 *
 *   erf form:   0.5 * x * (1 + Erf(x / sqrt(2)))                          -> Gelu(x)
 *   tanh form:  0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))   -> Gelu(x, approximate='tanh')
 *
 * The products may be nested in any order (`(x*0.5)*(...)`, `x*((...)*0.5)`, ...): the matcher
 * flattens the Mul tree whose inner nodes have a single user, then requires exactly the factors x,
 * (1 + Erf|Tanh(...)) and constants whose product is 0.5. `x / sqrt(2)` may be `x * 0.7071...`;
 * `x^3` may be Pow(x, 3) or x*x*x.
 */
import { Attribute, Model, Node, Value } from '../../ir/ir.js';
import { matched, noMatch, type Match, type Pattern } from '../pass.js';
import { patternPass, notApplicable, insertNodeBefore, isScalar, onlyUsedBy, replaceChain, scalarConstant, soleUser } from '../patterns.js';

interface Factors {
  values: Value[];
  constant: number;
  nodes: Node[];
}

/** Flattens a Mul tree rooted at `root` (inner Muls must be used only by their parent). */
function mulFactors(root: Node): Factors {
  const out: Factors = { values: [], constant: 1, nodes: [root] };
  const visit = (v: Value, parent: Node) => {
    const c = scalarConstant(v);
    if (c !== undefined) {
      out.constant *= c;
      return;
    }
    const p = v.producer;
    if (p && p.opType === 'Mul' && p.opDomain === '' && soleUser(v) === parent) {
      out.nodes.push(p);
      visit(p.input(0)!, p);
      visit(p.input(1)!, p);
      return;
    }
    out.values.push(v);
  };
  visit(root.input(0)!, root);
  visit(root.input(1)!, root);
  return out;
}

const close = (a: number, b: number, tol = 1e-4) => Math.abs(a - b) <= tol * Math.abs(b);

/** `v` = x / sqrt(2) or x * (1/sqrt(2)): returns x. */
function overSqrt2(v: Value, nodes: Node[]): Value | undefined {
  const p = v.producer;
  if (!p) return undefined;
  if (p.opType === 'Div' && isScalar(p.input(1), Math.SQRT2, 1e-4)) {
    nodes.push(p);
    return p.input(0)!;
  }
  if (p.opType === 'Mul') {
    const f = mulFactors(p);
    if (f.values.length === 1 && close(f.constant, Math.SQRT1_2)) {
      nodes.push(...f.nodes);
      return f.values[0];
    }
  }
  return undefined;
}

/** `v` = sqrt(2/pi) * (x + 0.044715 * x^3): returns x. */
function tanhArgument(v: Value, nodes: Node[]): Value | undefined {
  const p = v.producer;
  if (!p || p.opType !== 'Mul') return undefined;
  const f = mulFactors(p);
  if (f.values.length !== 1 || !close(f.constant, Math.sqrt(2 / Math.PI))) return undefined;
  const add = f.values[0]!.producer;
  if (!add || add.opType !== 'Add' || soleUser(add.output(0)) === undefined) return undefined;
  for (const i of [0, 1]) {
    const x = add.input(i)!;
    const cube = add.input(1 - i)!.producer;
    if (!cube || cube.opType !== 'Mul' || !onlyUsedBy(cube.output(0), add)) continue;
    const g = mulFactors(cube);
    const local: Node[] = [...g.nodes];
    let ok = false;
    if (close(g.constant, 0.044715)) {
      if (g.values.length === 3 && g.values.every((y) => y === x)) ok = true;
      else if (g.values.length === 1) {
        const pw = g.values[0]!.producer;
        if (pw && pw.opType === 'Pow' && pw.input(0) === x && isScalar(pw.input(1), 3) && onlyUsedBy(pw.output(0), cube)) {
          local.push(pw);
          ok = true;
        } else if (pw && pw.opType === 'Mul' && onlyUsedBy(pw.output(0), cube)) {
          // x * (x * x) where the inner product is shared by nothing else
          const h = mulFactors(pw);
          if (h.values.length === 3 && h.values.every((y) => y === x) && h.constant === 1) {
            local.push(...h.nodes);
            ok = true;
          }
        }
      }
    }
    if (ok) {
      nodes.push(...f.nodes, add, ...local);
      return x;
    }
  }
  return undefined;
}

interface GeluMatch {
  x: Value;
  approximate: 'none' | 'tanh';
  dead: Node[];
}

export const geluPattern: Pattern<GeluMatch> = {
  name: 'gelu',
  anchors: ['Mul'],
  match(root: Node): Match<GeluMatch> {
    const f = mulFactors(root);
    if (f.values.length !== 2) return notApplicable(`the product has ${f.values.length} non-constant factors, GELU has 2`);
    if (!close(f.constant, 0.5, 1e-6)) return notApplicable(`the constant factor is ${f.constant}, not 0.5`);
    for (const i of [0, 1]) {
      const x = f.values[i]!;
      const t = f.values[1 - i]!;
      const add = t.producer;
      if (!add || add.opType !== 'Add' || soleUser(t) === undefined) continue;
      const oneAt = isScalar(add.input(0), 1) ? 0 : isScalar(add.input(1), 1) ? 1 : -1;
      if (oneAt < 0) continue;
      const fv = add.input(1 - oneAt)!;
      const fn = fv.producer;
      if (!fn || (fn.opType !== 'Erf' && fn.opType !== 'Tanh') || !onlyUsedBy(fv, add)) continue;
      const nodes: Node[] = [];
      const arg = fn.input(0)!;
      if (!onlyUsedBy(arg, fn)) continue;
      const inner = fn.opType === 'Erf' ? overSqrt2(arg, nodes) : tanhArgument(arg, nodes);
      if (inner !== x) continue;
      return matched({ x, approximate: fn.opType === 'Erf' ? 'none' : 'tanh', dead: [...f.nodes, add, fn, ...nodes] });
    }
    return notApplicable('no factor is 1 + Erf(x/sqrt 2) or 1 + Tanh(sqrt(2/pi)(x + 0.044715 x^3)) of the other factor');
  },
  rewrite(root: Node, m: GeluMatch, model: Model): void {
    const g = insertNodeBefore(model, root, 'Gelu', [m.x], `${root.output(0).name}_gelu`);
    if (m.approximate === 'tanh') g.setAttr(Attribute.string('approximate', 'tanh'));
    replaceChain(root, g, m.dead);
  },
};

export const PATTERNS = [geluPattern];

export default patternPass({
  name: 'fuse-gelu',
  description: 'Replace the erf or tanh GELU subgraph by Gelu (opset 20).',
  patterns: PATTERNS,
  stats: { fused: 'gelu' },
  minOpset: 20,
});
