/**
 * BatchNormalization in inference mode (running statistics are constants):
 *   Y = scale * (X - mean) / sqrt(var + eps) + B
 *   gX = g * scale / sqrt(var + eps)        (per channel, broadcast over [N, C, ...])
 *   gScale = ReduceSum(g * (X - mean) / sqrt(var + eps), [0, 2, ...]);  gB = ReduceSum(g, [0, 2, ...])
 * mean and var get no gradient.
 */
import { Value } from '../../../ir/ir.js';
import { GradContext } from '../context.js';
import { RuleTable } from '../rule.js';

function batchNorm(c: GradContext): Array<Value | null> {
  const n = c.node;
  const e = c.emit;
  if (n.getInt('training_mode', 0) !== 0) c.unsupported('BatchNormalization in training mode has no gradient rule (use inference mode)');
  const x = n.input(0)!;
  const xd = c.dims(x);
  const chan = xd[1]!;
  const bshape = [1, chan, ...xd.slice(2).map(() => 1)];
  const eps = n.getFloat('epsilon', 1e-5);
  const inv = c.reshape(e.op('Reciprocal', [e.op('Sqrt', [e.op('Add', [n.input(4), c.scalar(eps, x)])])]), bshape);
  const reduceAxes = [0, ...xd.slice(2).map((_, i) => i + 2)];
  const out: Array<Value | null> = [null, null, null, null, null];
  if (c.need(0)) out[0] = e.op('Mul', [c.gy(), e.op('Mul', [inv, c.reshape(n.input(1)!, bshape)])]);
  if (c.need(1)) {
    const xhat = e.op('Mul', [e.op('Sub', [x, c.reshape(n.input(3)!, bshape)]), inv]);
    out[1] = c.reduceSum(e.op('Mul', [c.gy(), xhat]), reduceAxes, false);
  }
  if (c.need(2)) out[2] = c.reduceSum(c.gy(), reduceAxes, false);
  return out;
}

export const normRules: RuleTable = {
  BatchNormalization: { differentiable: [0, 1, 2], backward: batchNorm },
};
