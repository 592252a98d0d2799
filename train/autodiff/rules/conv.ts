/**
 * Convolutions (any spatial rank, groups, depthwise, strides, pads, dilations, auto_pad).
 *
 * Conv  Y[n,m,o] = sum_{c in group(m), t} X[n,c, o*s + t*d - pb] W[m,c',t] + B[m]
 *   gX = ConvTranspose(g, W; strides s, dilations d, pads [pb, pe'], output_padding op, group)
 *        where the full transposed extent (oY-1)s + (k-1)d + 1 is cropped to X's size: pe' = full - pb - X
 *        when non-negative, else output_padding = -(full - pb - X);
 *   gW = a Conv whose batch is the in-channel-per-group axis and whose kernel is g itself:
 *        Xr[c', j*N+n] = X[n, j*C/g + c'],  Gr[m, n] = g[n, m],
 *        gW = Transpose(Conv(Xr, Gr; group, strides d, dilations s, pads [pb, pe]) cropped to k, [1,0,...]);
 *   gB = ReduceSum(g, [0, spatial axes]).
 *   Two faster forms of gW (same values): pointwise convs (1x1, stride 1, no pad, group 1) use one
 *   MatMul, g as [M, N*P] times X as [N*P, C]; depthwise convs (group = C = M) sum, per kernel tap,
 *   g * (the strided window of the padded X) over batch and space: prod(k) Slice-Mul-ReduceSum.
 *
 * ConvTranspose  Y[n,m, i*s + t*d - pb] += X[n,c,i] W[c,m',t]  (its adjoint is a Conv)
 *   gX = Conv(g, W; strides s, dilations d, pads [pb, pe], group) cropped to X;
 *   gW = the same batch-as-channel Conv with the roles of X and g swapped;  gB as above.
 */
import { Value } from '../../../ir/ir.js';
import { GradContext } from '../context.js';
import { RuleTable } from '../rule.js';

interface Geometry {
  k: number[];
  s: number[];
  d: number[];
  pb: number[];
  pe: number[];
  group: number;
}

function attrs(c: GradContext, rank: number): { s: number[]; d: number[]; group: number; autoPad: string; pads: number[] | undefined } {
  const n = c.node;
  return {
    s: n.getInts('strides') ?? Array(rank).fill(1),
    d: n.getInts('dilations') ?? Array(rank).fill(1),
    group: n.getInt('group', 1),
    autoPad: n.getString('auto_pad', 'NOTSET'),
    pads: n.getInts('pads'),
  };
}

function split(total: number, upper: boolean): [number, number] {
  const half = Math.floor(total / 2);
  return upper ? [half, total - half] : [total - half, half];
}

function convGeometry(c: GradContext, xSp: number[], ySp: number[], k: number[]): Geometry {
  const r = xSp.length;
  const a = attrs(c, r);
  let pb = Array<number>(r).fill(0);
  let pe = Array<number>(r).fill(0);
  if (a.autoPad === 'SAME_UPPER' || a.autoPad === 'SAME_LOWER') {
    for (let i = 0; i < r; i++) {
      const total = Math.max(0, (ySp[i]! - 1) * a.s[i]! + (k[i]! - 1) * a.d[i]! + 1 - xSp[i]!);
      [pb[i], pe[i]] = split(total, a.autoPad === 'SAME_UPPER');
    }
  } else if (a.autoPad === 'NOTSET' && a.pads) {
    pb = a.pads.slice(0, r);
    pe = a.pads.slice(r);
  }
  return { k, s: a.s, d: a.d, pb, pe, group: a.group };
}

function convTransposeGeometry(c: GradContext, xSp: number[], ySp: number[], k: number[]): Geometry {
  const r = xSp.length;
  const a = attrs(c, r);
  const op = c.node.getInts('output_padding') ?? Array(r).fill(0);
  if (a.pads && a.autoPad === 'NOTSET' && !c.node.getInts('output_shape')) {
    return { k, s: a.s, d: a.d, pb: a.pads.slice(0, r), pe: a.pads.slice(r), group: a.group };
  }
  const pb: number[] = [];
  const pe: number[] = [];
  for (let i = 0; i < r; i++) {
    const total = a.s[i]! * (xSp[i]! - 1) + op[i]! + (k[i]! - 1) * a.d[i]! + 1 - ySp[i]!;
    const [b, e] = split(total, a.autoPad === 'SAME_UPPER');
    pb.push(b);
    pe.push(e);
  }
  return { k, s: a.s, d: a.d, pb, pe, group: a.group };
}

/** Size of a Conv output along each spatial axis. */
function convOut(inSp: number[], k: number[], s: number[], d: number[], pb: number[], pe: number[]): number[] {
  return inSp.map((x, i) => Math.floor((x + pb[i]! + pe[i]! - (k[i]! - 1) * d[i]! - 1) / s[i]!) + 1);
}

/** Crops the spatial axes (2..) of `v` from `have` to `want` when larger. */
function crop(c: GradContext, v: Value, have: number[], want: number[]): Value {
  const axes: number[] = [];
  const ends: number[] = [];
  want.forEach((w, i) => {
    if (have[i]! !== w) {
      if (have[i]! < w) c.unsupported(`internal size mismatch while cropping a convolution gradient (${have[i]} < ${w})`);
      axes.push(i + 2);
      ends.push(w);
    }
  });
  if (axes.length === 0) return v;
  const e = c.emit;
  return e.op('Slice', [v, e.int64s(axes.map(() => 0), 'starts'), e.int64s(ends, 'ends'), e.int64s(axes, 'axes')]);
}

/**
 * The weight-gradient Conv. `a` [N, Ca, spA] is read through a window of size `kernel` with stride `d`
 * and dilation-of-the-kernel `s`; `b` [N, Cb, spB] is the kernel. Returns [Cb, Ca/group, kernel].
 */
function batchAsChannelConv(c: GradContext, a: Value, aDims: number[], b: Value, bDims: number[], geo: Geometry): Value {
  const e = c.emit;
  const [n, ca] = [aDims[0]!, aDims[1]!];
  const spA = aDims.slice(2);
  const r = spA.length;
  const g = geo.group;
  const tail = [...Array(r).keys()].map((i) => i + 3);
  let ar: Value = c.reshape(a, [n, g, ca / g, ...spA]);
  ar = e.op('Transpose', [ar], { perm: [2, 1, 0, ...tail] });
  ar = c.reshape(ar, [ca / g, g * n, ...spA]);
  const br = e.op('Transpose', [b], { perm: [1, 0, ...tail.map((x) => x - 1)] });
  const spB = bDims.slice(2);
  const conv = e.op('Conv', [ar, br], { group: g, strides: geo.d, dilations: geo.s, pads: [...geo.pb, ...geo.pe] });
  const have = convOut(spA, spB, geo.d, geo.s, geo.pb, geo.pe);
  const cropped = crop(c, conv, have, geo.k);
  return e.op('Transpose', [cropped], { perm: [1, 0, ...tail.map((x) => x - 1)] });
}

function biasGrad(c: GradContext, g: Value, rank: number): Value {
  return c.reduceSum(g, [0, ...[...Array(rank - 2).keys()].map((i) => i + 2)], false);
}

function conv(c: GradContext): Array<Value | null> {
  const nd = c.node;
  const x = nd.input(0)!;
  const w = nd.input(1)!;
  const xd = c.dims(x);
  const wd = c.dims(w);
  const yd = c.dims(nd.output(0));
  const geo = convGeometry(c, xd.slice(2), yd.slice(2), wd.slice(2));
  const g = c.gy();
  const out: Array<Value | null> = [null, null, null];
  if (c.need(0)) {
    const pe: number[] = [];
    const op: number[] = [];
    yd.slice(2).forEach((o, i) => {
      const full = (o - 1) * geo.s[i]! + (geo.k[i]! - 1) * geo.d[i]! + 1;
      const end = full - geo.pb[i]! - xd[i + 2]!;
      pe.push(Math.max(0, end));
      op.push(Math.max(0, -end));
    });
    out[0] = c.emit.op('ConvTranspose', [g, w], {
      group: geo.group,
      strides: geo.s,
      dilations: geo.d,
      pads: [...geo.pb, ...pe],
      output_padding: op,
      kernel_shape: geo.k,
    });
  }
  if (c.need(1)) out[1] = pointwiseWeightGrad(c, x, xd, g, yd, geo) ?? depthwiseWeightGrad(c, x, xd, g, yd, geo) ?? batchAsChannelConv(c, x, xd, g, yd, geo);
  if (c.need(2) && nd.input(2)) out[2] = biasGrad(c, g, yd.length);
  return out;
}

function pointwiseWeightGrad(c: GradContext, x: Value, xd: number[], g: Value, yd: number[], geo: Geometry): Value | null {
  const plain = geo.group === 1 && geo.k.every((k) => k === 1) && geo.s.every((s) => s === 1) && [...geo.pb, ...geo.pe].every((p) => p === 0);
  if (!plain) return null;
  const e = c.emit;
  const [n, ch] = [xd[0]!, xd[1]!];
  const m = yd[1]!;
  const p = xd.slice(2).reduce((a, b) => a * b, 1);
  const gm = c.reshape(e.op('Transpose', [c.reshape(g, [n, m, p])], { perm: [1, 0, 2] }), [m, n * p]);
  const xm = c.reshape(e.op('Transpose', [c.reshape(x, [n, ch, p])], { perm: [0, 2, 1] }), [n * p, ch]);
  return c.reshape(e.op('MatMul', [gm, xm]), [m, ch, ...geo.k]);
}

function depthwiseWeightGrad(c: GradContext, x: Value, xd: number[], g: Value, yd: number[], geo: Geometry): Value | null {
  const ch = xd[1]!;
  if (!(geo.group === ch && yd[1] === ch && ch > 1)) return null;
  const e = c.emit;
  const r = geo.k.length;
  const spatial = [...Array(r).keys()].map((i) => i + 2);
  const padded = [...geo.pb, ...geo.pe].some((p) => p !== 0) ? e.op('Pad', [x, e.int64s([0, 0, ...geo.pb, 0, 0, ...geo.pe], 'pads')]) : x;
  const taps: Value[] = [];
  const total = geo.k.reduce((a, b) => a * b, 1);
  for (let t = 0; t < total; t++) {
    const idx: number[] = [];
    let rest = t;
    for (let i = r - 1; i >= 0; i--) {
      idx[i] = rest % geo.k[i]!;
      rest = Math.floor(rest / geo.k[i]!);
    }
    const starts = idx.map((k, i) => k * geo.d[i]!);
    const ends = starts.map((st, i) => st + (yd[i + 2]! - 1) * geo.s[i]! + 1);
    const win = e.op('Slice', [padded, e.int64s(starts, 'starts'), e.int64s(ends, 'ends'), e.int64s(spatial, 'axes'), e.int64s(geo.s, 'steps')]);
    taps.push(c.reduceSum(e.op('Mul', [win, g]), [0, ...spatial], false));
  }
  const stacked = e.op('Concat', taps.map((v) => c.reshape(v, [ch, 1])), { axis: 1 });
  return c.reshape(stacked, [ch, 1, ...geo.k]);
}

function convTranspose(c: GradContext): Array<Value | null> {
  const nd = c.node;
  const x = nd.input(0)!;
  const w = nd.input(1)!;
  const xd = c.dims(x);
  const wd = c.dims(w);
  const yd = c.dims(nd.output(0));
  const geo = convTransposeGeometry(c, xd.slice(2), yd.slice(2), wd.slice(2));
  const g = c.gy();
  const out: Array<Value | null> = [null, null, null];
  if (c.need(0)) {
    const conv = c.emit.op('Conv', [g, w], { group: geo.group, strides: geo.s, dilations: geo.d, pads: [...geo.pb, ...geo.pe], kernel_shape: geo.k });
    const have = convOut(yd.slice(2), geo.k, geo.s, geo.d, geo.pb, geo.pe);
    out[0] = crop(c, conv, have, xd.slice(2));
  }
  if (c.need(1)) out[1] = batchAsChannelConv(c, g, yd, x, xd, geo);
  if (c.need(2) && nd.input(2)) out[2] = biasGrad(c, g, yd.length);
  return out;
}

export const convRules: RuleTable = {
  Conv: { differentiable: [0, 1, 2], backward: conv },
  ConvTranspose: { differentiable: [0, 1, 2], backward: convTranspose },
};

export { convOut };
