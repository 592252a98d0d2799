/**
 * Softmax family and reductions (opset 13+ semantics: one softmax axis).
 *
 *   Softmax:    gX = Y * (g - ReduceSum(g * Y, axis))
 *   LogSoftmax: gX = g - exp(Y) * ReduceSum(g, axis)
 *   ReduceSum / ReduceMean over axes A (attribute or input, keepdims, noop_with_empty_axes):
 *     gX = Expand(Reshape(g, dims of X with A set to 1), dims of X)  (times 1/prod(X[A]) for the mean)
 */
import { constantOf, Value } from '../../../ir/ir.js';
import { GradContext, normAxis, product } from '../context.js';
import { RuleTable } from '../rule.js';

function softmaxAxis(c: GradContext): number {
  const rank = c.dims(c.node.input(0)).length;
  if (c.opset < 13) c.unsupported('Softmax/LogSoftmax before opset 13 (2-D coercion) has no gradient rule');
  return normAxis(c.node.getInt('axis', -1), rank);
}

function softmax(c: GradContext): Array<Value | null> {
  const e = c.emit;
  const y = c.node.output(0);
  const axis = softmaxAxis(c);
  const gy = e.op('Mul', [c.gy(), y]);
  const s = c.reduceSum(gy, [axis], true);
  return [e.op('Mul', [y, e.op('Sub', [c.gy(), s])])];
}

function logSoftmax(c: GradContext): Array<Value | null> {
  const e = c.emit;
  const axis = softmaxAxis(c);
  const s = c.reduceSum(c.gy(), [axis], true);
  return [e.op('Sub', [c.gy(), e.op('Mul', [e.op('Exp', [c.node.output(0)]), s])])];
}

function reduceAxes(c: GradContext, rank: number): number[] {
  const n = c.node;
  let axes = n.getInts('axes');
  if (!axes && n.input(1)) {
    const t = constantOf(n.input(1));
    if (!t) c.unsupported(`the axes input ${n.input(1)!.name} must be a constant for a gradient`);
    axes = t.toNumbers().map(Number);
  }
  if (!axes || axes.length === 0) {
    if (n.getInt('noop_with_empty_axes', 0) === 1) return [];
    return [...Array(rank).keys()];
  }
  return axes.map((a) => normAxis(a, rank));
}

function reduce(mean: boolean) {
  return (c: GradContext): Array<Value | null> => {
    const e = c.emit;
    const x = c.node.input(0)!;
    const xd = c.dims(x);
    const axes = reduceAxes(c, xd.length);
    if (axes.length === 0) return [c.gy()];
    const kept = xd.map((d, i) => (axes.includes(i) ? 1 : d));
    let g = c.reshape(c.gy(), kept);
    if (mean) g = e.op('Mul', [g, c.scalar(1 / product(axes.map((a) => xd[a]!)), x)]);
    return [e.op('Expand', [g, e.int64s(xd, 'shape')])];
  };
}

export const reduceRules: RuleTable = {
  Softmax: { differentiable: [0], backward: softmax },
  LogSoftmax: { differentiable: [0], backward: logSoftmax },
  ReduceMean: { differentiable: [0], backward: reduce(true) },
  ReduceSum: { differentiable: [0], backward: reduce(false) },
};
