/**
 * BatchNormalization in inference mode (running statistics are constants):
 *   Y = scale * (X - mean) / sqrt(var + eps) + B
 *   gX = g * scale / sqrt(var + eps)        (per channel, broadcast over [N, C, ...])
 *   gScale = ReduceSum(g * (X - mean) / sqrt(var + eps), [0, 2, ...]);  gB = ReduceSum(g, [0, 2, ...])
 * mean and var get no gradient.
 *
 * LayerNormalization (opset 17) over the axes A = [axis, rank) with n = prod(X[A]) elements:
 *   mu = sum_A X / n,  xc = X - mu,  rstd = 1 / sqrt(sum_A xc^2 / n + eps),  xhat = xc * rstd
 *   gh = g * Scale
 *   gX = rstd * (gh - sum_A gh / n - xhat * sum_A (gh * xhat) / n)
 *   gScale = unb(g * xhat),  gB = unb(g)
 * The statistics are recomputed from X (ReduceSum, valid at every opset from 13), not read from
 * the node's optional Mean / InvStdDev outputs; cotangents into those outputs are unsupported.
 */
import { Value } from '../../../ir/ir.js';
import { GradContext, normAxis, product } from '../context.js';
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

function layerNorm(c: GradContext): Array<Value | null> {
  const n = c.node;
  const e = c.emit;
  if (c.gradOutputs.slice(1).some((g) => g !== null)) c.unsupported('LayerNormalization: the Mean / InvStdDev outputs reach the loss, which has no gradient rule');
  const x = n.input(0)!;
  const xd = c.dims(x);
  const axis = normAxis(n.getInt('axis', -1), xd.length);
  const axes = [...Array(xd.length - axis).keys()].map((i) => axis + i);
  const inv = c.scalar(1 / product(xd.slice(axis)), x);
  const mean = (v: Value) => e.op('Mul', [c.reduceSum(v, axes, true), inv]);
  const xc = e.op('Sub', [x, mean(x)]);
  const variance = mean(e.op('Mul', [xc, xc]));
  const rstd = e.op('Reciprocal', [e.op('Sqrt', [e.op('Add', [variance, c.scalar(n.getFloat('epsilon', 1e-5), x)])])]);
  const xhat = e.op('Mul', [xc, rstd]);
  const g = c.gy();
  const out: Array<Value | null> = [null, null, null];
  if (c.need(0)) {
    const gh = e.op('Mul', [g, n.input(1)]);
    const centered = e.op('Sub', [gh, mean(gh)]);
    const proj = e.op('Mul', [xhat, mean(e.op('Mul', [gh, xhat]))]);
    out[0] = e.op('Mul', [rstd, e.op('Sub', [centered, proj])]);
  }
  if (c.need(1)) out[1] = c.unbroadcast(e.op('Mul', [g, xhat]), c.dims(n.input(1)), xd);
  if (c.need(2) && n.input(2)) out[2] = c.unbroadcast(g, c.dims(n.input(2)), xd);
  return out;
}

export const normRules: RuleTable = {
  BatchNormalization: { differentiable: [0, 1, 2], backward: batchNorm },
  LayerNormalization: { differentiable: [0, 1, 2], backward: layerNorm },
};
