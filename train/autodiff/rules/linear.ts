/**
 * Matrix products.
 *
 * Gemm: Y = alpha * A' B' + beta * C with A' = transA ? A^T : A, B' = transB ? B^T : B.
 *   gA = alpha * g B'^T       (transA = 0)      gA = alpha * B' g^T   (transA = 1)
 *   gB = alpha * A'^T g       (transB = 0)      gB = alpha * g^T A'   (transB = 1)
 *   gC = unbroadcast(beta * g)
 * each written as one Gemm with the transposes as attributes.
 *
 * MatMul (ranks >= 2, batch dims broadcast): gA = unb(g B^T), gB = unb(A^T g) where ^T swaps the
 * last two axes and unb sums broadcast batch axes. When B is a 2-D weight and A has batch axes (a
 * linear layer over [batch, seq, in]), gB is one GEMM over the flattened rows instead of a batched
 * MatMul and a ReduceSum: gB = Gemm(Reshape(A, [-1, K]), Reshape(g, [-1, N]), transA = 1).
 */
import { Value } from '../../../ir/ir.js';
import { GradContext } from '../context.js';
import { RuleTable } from '../rule.js';

function gemm(c: GradContext): Array<Value | null> {
  const n = c.node;
  const e = c.emit;
  const a = n.input(0)!;
  const b = n.input(1)!;
  const g = c.gy();
  const alpha = n.getFloat('alpha', 1);
  const beta = n.getFloat('beta', 1);
  const transA = n.getInt('transA', 0);
  const transB = n.getInt('transB', 0);
  const out: Array<Value | null> = [null, null, null];
  if (c.need(0)) {
    out[0] = transA === 0
      ? e.op('Gemm', [g, b], { alpha, transA: 0, transB: transB ? 0 : 1 }, ['alpha'])
      : e.op('Gemm', [b, g], { alpha, transA: transB, transB: 1 }, ['alpha']);
  }
  if (c.need(1)) {
    out[1] = transB === 0
      ? e.op('Gemm', [a, g], { alpha, transA: transA ? 0 : 1, transB: 0 }, ['alpha'])
      : e.op('Gemm', [g, a], { alpha, transA: 1, transB: transA }, ['alpha']);
  }
  if (c.need(2) && n.input(2)) {
    const scaled = beta === 1 ? g : e.op('Mul', [g, c.scalar(beta, a)]);
    out[2] = c.unbroadcast(scaled, c.dims(n.input(2)), c.dims(n.output(0)));
  }
  return out;
}

function swapLast(c: GradContext, v: Value, rank: number): Value {
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1]!, perm[rank - 2]!];
  return c.emit.op('Transpose', [v], { perm });
}

function matmul(c: GradContext): Array<Value | null> {
  const n = c.node;
  const a = n.input(0)!;
  const b = n.input(1)!;
  const da = c.dims(a);
  const db = c.dims(b);
  if (da.length < 2 || db.length < 2) c.unsupported('MatMul gradients need inputs of rank 2 or more (1-D operands are not supported)');
  const outDims = c.dims(n.output(0));
  const g = c.gy();
  const res: Array<Value | null> = [null, null];
  if (c.need(0)) {
    const full = c.emit.op('MatMul', [g, swapLast(c, b, db.length)]);
    res[0] = c.unbroadcast(full, da, [...outDims.slice(0, -2), da[da.length - 2]!, da[da.length - 1]!]);
  }
  if (c.need(1) && db.length === 2 && da.length > 2) {
    const rows = [-1, da[da.length - 1]!];
    res[1] = c.emit.op('Gemm', [c.reshape(a, rows), c.reshape(g, [-1, db[1]!])], { transA: 1 });
  } else if (c.need(1)) {
    const full = c.emit.op('MatMul', [swapLast(c, a, da.length), g]);
    res[1] = c.unbroadcast(full, db, [...outDims.slice(0, -2), db[db.length - 2]!, db[db.length - 1]!]);
  }
  return res;
}

export const linearRules: RuleTable = {
  Gemm: { differentiable: [0, 1, 2], backward: gemm },
  MatMul: { differentiable: [0, 1], backward: matmul },
};
