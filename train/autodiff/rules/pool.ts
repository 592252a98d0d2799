/**
 * Pooling.
 *
 * GlobalAveragePool: gX = Expand(g, X) / prod(spatial dims of X).
 * AveragePool: the adjoint of a sum over windows is a ConvTranspose with a ones kernel, applied to
 *   g / D per channel (N*C moved to the batch axis), where D is the window divisor: prod(k), or with
 *   count_include_pad = 0 the number of real elements, D = prod(k) * AveragePool_{include pad}(ones).
 *   Pads and output_padding crop the transposed extent to X (ceil_mode windows are cropped the same).
 * MaxPool: recompute MaxPool with its Indices output (flat offsets into X, batch and channel
 *   included) and scatter-add g into zeros: ScatterElements(reduction = add) on the flattened tensor.
 */
import { Value } from '../../../ir/ir.js';
import { floatTensor, GradContext, product } from '../context.js';
import { RuleTable } from '../rule.js';

function globalAveragePool(c: GradContext): Array<Value | null> {
  const x = c.node.input(0)!;
  const xd = c.dims(x);
  const e = c.emit;
  const scaled = e.op('Mul', [c.gy(), c.scalar(1 / product(xd.slice(2)), x)]);
  return [e.op('Expand', [scaled, e.int64s(xd, 'shape')])];
}

function averagePool(c: GradContext): Array<Value | null> {
  const n = c.node;
  const e = c.emit;
  const x = n.input(0)!;
  const xd = c.dims(x);
  const yd = c.dims(n.output(0));
  const r = xd.length - 2;
  const k = n.getInts('kernel_shape')!;
  const s = n.getInts('strides') ?? Array(r).fill(1);
  const d = n.getInts('dilations') ?? Array(r).fill(1);
  const autoPad = n.getString('auto_pad', 'NOTSET');
  let pb = Array<number>(r).fill(0);
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    for (let i = 0; i < r; i++) {
      const total = Math.max(0, (yd[i + 2]! - 1) * s[i]! + (k[i]! - 1) * d[i]! + 1 - xd[i + 2]!);
      const half = Math.floor(total / 2);
      pb[i] = autoPad === 'SAME_UPPER' ? half : total - half;
    }
  } else if (autoPad === 'NOTSET') {
    const pads = n.getInts('pads');
    if (pads) pb = pads.slice(0, r);
  }
  const hasPad = n.getInts('pads')?.some((p) => p !== 0) || autoPad.startsWith('SAME');
  let scaled: Value;
  if (n.getInt('count_include_pad', 0) === 0 && hasPad) {
    // D = prod(k) * AveragePool(ones) with count_include_pad = 1 (counts the real elements per window)
    const ones = e.op('ConstantOfShape', [e.int64s([1, 1, ...xd.slice(2)], 'shape')], { value: floatTensor(c.dtype(x), [1], [1]) });
    const attrs: Record<string, number | number[] | string> = {};
    for (const a of n.attributes) if (a.name) attrs[a.name] = a.value as number | number[] | string;
    attrs.count_include_pad = 1;
    const frac = e.op('AveragePool', [ones], attrs);
    const count = e.op('Mul', [frac, c.scalar(product(k), x)]);
    scaled = e.op('Div', [c.gy(), count]);
  } else {
    scaled = e.op('Mul', [c.gy(), c.scalar(1 / product(k), x)]);
  }
  const perChannel = c.reshape(scaled, [yd[0]! * yd[1]!, 1, ...yd.slice(2)]);
  const ones = e.constant(floatTensor(c.dtype(x), [1, 1, ...k], new Array(product(k)).fill(1)), 'ones');
  const pe: number[] = [];
  const op: number[] = [];
  for (let i = 0; i < r; i++) {
    const full = (yd[i + 2]! - 1) * s[i]! + (k[i]! - 1) * d[i]! + 1;
    const end = full - pb[i]! - xd[i + 2]!;
    pe.push(Math.max(0, end));
    op.push(Math.max(0, -end));
  }
  const gx = e.op('ConvTranspose', [perChannel, ones], { strides: s, dilations: d, pads: [...pb, ...pe], output_padding: op, kernel_shape: k });
  return [c.reshape(gx, xd)];
}

function maxPool(c: GradContext): Array<Value | null> {
  const n = c.node;
  const e = c.emit;
  const x = n.input(0)!;
  const xd = c.dims(x);
  if (n.getInt('storage_order', 0) !== 0) c.unsupported('MaxPool with storage_order = 1 has no gradient rule');
  let indices: Value;
  if (n.outputs.length === 2) {
    indices = n.output(1);
  } else {
    const attrs: Record<string, number | number[] | string> = {};
    for (const a of n.attributes) if (a.name) attrs[a.name] = a.value as number | number[] | string;
    indices = e.ops('MaxPool', [x], attrs, 2)[1]!;
  }
  const total = product(xd);
  const flatIdx = c.reshape(indices, [-1]);
  const flatG = c.reshape(c.gy(), [-1]);
  const zeros = c.zeros([total], x);
  const scattered = e.op('ScatterElements', [zeros, flatIdx, flatG], { axis: 0, reduction: 'add' });
  return [c.reshape(scattered, xd)];
}

export const poolRules: RuleTable = {
  GlobalAveragePool: { differentiable: [0], backward: globalAveragePool },
  AveragePool: { differentiable: [0], backward: averagePool },
  MaxPool: { differentiable: [0], backward: maxPool },
};
