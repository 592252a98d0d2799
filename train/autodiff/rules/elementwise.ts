/**
 * Broadcasting arithmetic and pointwise activations.
 *
 *   Add: gA = unb(g), gB = unb(g)          Sub: gA = unb(g), gB = -unb(g)
 *   Mul: gA = unb(g*B), gB = unb(g*A)      Div: gA = unb(g/B), gB = unb(-g*Y/B)
 * where unb sums over the axes broadcasting expanded (see GradContext.unbroadcast).
 *
 *   Relu: g * [Y > 0]                      Clip: g * [X == Y] (inside the bounds)
 *   Sigmoid: g * Y * (1 - Y)               Tanh: g * (1 - Y^2)
 *   HardSigmoid: g * alpha * [0 < alpha X + beta < 1]
 *   HardSwish (alpha 1/6, beta 1/2): g * (hs(X) + X * alpha * [0 < alpha X + beta < 1])
 *   Neg: -g    Exp: g * Y    Log: g / X    Identity: g
 *   Sqrt: g / (2 Y)    Reciprocal: -g * Y^2    Erf: g * 2/sqrt(pi) * exp(-X^2)
 *   Pow: gX = unb(g * E * X^(E-1)),  gE = unb(g * Y * ln X)  (the exponent's gradient needs X > 0)
 *   Where(C, X, Y): gX = unb(Where(C, g, 0)),  gY = unb(Where(C, 0, g))  (C gets none)
 */
import { Value } from '../../../ir/ir.js';
import { GradContext } from '../context.js';
import { RuleTable } from '../rule.js';

function binary(ctx: GradContext, ga: () => Value, gb: () => Value): Array<Value | null> {
  const n = ctx.node;
  const out = ctx.dims(n.output(0));
  return [
    ctx.need(0) ? ctx.unbroadcast(ga(), ctx.dims(n.input(0)), out) : null,
    ctx.need(1) ? ctx.unbroadcast(gb(), ctx.dims(n.input(1)), out) : null,
  ];
}

function mask(ctx: GradContext, cond: Value): Value {
  const x = ctx.node.input(0);
  return ctx.emit.op('Where', [cond, ctx.gy(), ctx.scalar(0, x)]);
}

/** [0 < alpha X + beta < 1] as a bool tensor, and alpha X + beta. */
function hardRegion(ctx: GradContext, alpha: number, beta: number): { inside: Value; z: Value } {
  const e = ctx.emit;
  const x = ctx.node.input(0)!;
  const z = e.op('Add', [e.op('Mul', [x, ctx.scalar(alpha, x)]), ctx.scalar(beta, x)]);
  const inside = e.op('And', [e.op('Greater', [z, ctx.scalar(0, x)]), e.op('Less', [z, ctx.scalar(1, x)])]);
  return { inside, z };
}

export const elementwiseRules: RuleTable = {
  Add: { differentiable: [0, 1], backward: (c) => binary(c, () => c.gy(), () => c.gy()) },
  Sub: { differentiable: [0, 1], backward: (c) => binary(c, () => c.gy(), () => c.emit.op('Neg', [c.gy()])) },
  Mul: {
    differentiable: [0, 1],
    backward: (c) =>
      binary(
        c,
        () => c.emit.op('Mul', [c.gy(), c.node.input(1)]),
        () => c.emit.op('Mul', [c.gy(), c.node.input(0)]),
      ),
  },
  Div: {
    differentiable: [0, 1],
    backward: (c) =>
      binary(
        c,
        () => c.emit.op('Div', [c.gy(), c.node.input(1)]),
        () => c.emit.op('Neg', [c.emit.op('Div', [c.emit.op('Mul', [c.gy(), c.node.output(0)]), c.node.input(1)])]),
      ),
  },
  Relu: {
    differentiable: [0],
    backward: (c) => [mask(c, c.emit.op('Greater', [c.node.output(0), c.scalar(0, c.node.output(0))]))],
  },
  Clip: {
    differentiable: [0],
    backward: (c) => [mask(c, c.emit.op('Equal', [c.node.input(0), c.node.output(0)]))],
  },
  Sigmoid: {
    differentiable: [0],
    backward: (c) => {
      const y = c.node.output(0);
      const oneMinus = c.emit.op('Sub', [c.scalar(1, y), y]);
      return [c.emit.op('Mul', [c.gy(), c.emit.op('Mul', [y, oneMinus])])];
    },
  },
  Tanh: {
    differentiable: [0],
    backward: (c) => {
      const y = c.node.output(0);
      const d = c.emit.op('Sub', [c.scalar(1, y), c.emit.op('Mul', [y, y])]);
      return [c.emit.op('Mul', [c.gy(), d])];
    },
  },
  HardSigmoid: {
    differentiable: [0],
    backward: (c) => {
      const alpha = c.node.getFloat('alpha', 0.2);
      const { inside } = hardRegion(c, alpha, c.node.getFloat('beta', 0.5));
      const x = c.node.input(0);
      return [c.emit.op('Where', [inside, c.emit.op('Mul', [c.gy(), c.scalar(alpha, x)]), c.scalar(0, x)])];
    },
  },
  HardSwish: {
    differentiable: [0],
    backward: (c) => {
      const e = c.emit;
      const x = c.node.input(0)!;
      const alpha = 1 / 6;
      const { inside, z } = hardRegion(c, alpha, 0.5);
      const hs = e.op('Clip', [z, c.scalar(0, x), c.scalar(1, x)]);
      const slope = e.op('Where', [inside, e.op('Mul', [x, c.scalar(alpha, x)]), c.scalar(0, x)]);
      return [e.op('Mul', [c.gy(), e.op('Add', [hs, slope])])];
    },
  },
  Neg: { differentiable: [0], backward: (c) => [c.emit.op('Neg', [c.gy()])] },
  Exp: { differentiable: [0], backward: (c) => [c.emit.op('Mul', [c.gy(), c.node.output(0)])] },
  Log: { differentiable: [0], backward: (c) => [c.emit.op('Div', [c.gy(), c.node.input(0)])] },
  Identity: { differentiable: [0], backward: (c) => [c.gy()] },
  Sqrt: {
    differentiable: [0],
    backward: (c) => {
      const y = c.node.output(0);
      return [c.emit.op('Div', [c.gy(), c.emit.op('Mul', [y, c.scalar(2, y)])])];
    },
  },
  Reciprocal: {
    differentiable: [0],
    backward: (c) => {
      const y = c.node.output(0);
      return [c.emit.op('Neg', [c.emit.op('Mul', [c.gy(), c.emit.op('Mul', [y, y])])])];
    },
  },
  Erf: {
    differentiable: [0],
    backward: (c) => {
      const e = c.emit;
      const x = c.node.input(0)!;
      const bell = e.op('Exp', [e.op('Neg', [e.op('Mul', [x, x])])]);
      return [e.op('Mul', [c.gy(), e.op('Mul', [bell, c.scalar(2 / Math.sqrt(Math.PI), x)])])];
    },
  },
  Pow: {
    differentiable: [0, 1],
    backward: (c) => {
      const e = c.emit;
      const x = c.node.input(0)!;
      const p = c.node.input(1)!;
      if (c.dtype(p) !== c.dtype(x)) c.unsupported('Pow with an exponent of another element type than the base has no gradient rule');
      return binary(
        c,
        () => e.op('Mul', [c.gy(), e.op('Mul', [p, e.op('Pow', [x, e.op('Sub', [p, c.scalar(1, p)])])])]),
        () => e.op('Mul', [c.gy(), e.op('Mul', [c.node.output(0), e.op('Log', [x])])]),
      );
    },
  },
  Where: {
    differentiable: [1, 2],
    backward: (c) => {
      const e = c.emit;
      const n = c.node;
      const out = c.dims(n.output(0));
      const zero = c.scalar(0, n.output(0));
      const cond = n.input(0);
      return [
        null,
        c.need(1) ? c.unbroadcast(e.op('Where', [cond, c.gy(), zero]), c.dims(n.input(1)), out) : null,
        c.need(2) ? c.unbroadcast(e.op('Where', [cond, zero, c.gy()]), c.dims(n.input(2)), out) : null,
      ];
    },
  },
};
