/**
 * Resize (nearest and linear; any axes, scales or sizes).
 *
 * These modes are separable and linear in X: along each resized axis a, Y = A_a X with A_a of shape
 * [out_a, in_a], so gX = A_a^T g applied axis by axis. A_a^T is obtained exactly by resizing the
 * identity: Resize(eye(in_a) laid out as [in_a, 1, in_a, 1], the same attributes, scale or size only
 * on axis 2) gives [in_a, 1, out_a, 1], i.e. row i is the image of the basis vector e_i. Its inputs are
 * constants, so onnxruntime folds it once. g is then contracted with A_a by a MatMul over its last
 * axis (Transposes move axis a last and back).
 */
import { constantOf, Value } from '../../../ir/ir.js';
import { floatTensor, GradContext } from '../context.js';
import { RuleTable } from '../rule.js';

function resize(c: GradContext): Array<Value | null> {
  const n = c.node;
  const e = c.emit;
  const mode = n.getString('mode', 'nearest');
  if (mode !== 'nearest' && mode !== 'linear') c.unsupported(`Resize mode ${mode} has no gradient rule (nearest and linear do)`);
  if (n.getString('coordinate_transformation_mode', 'half_pixel') === 'tf_crop_and_resize') c.unsupported('Resize with tf_crop_and_resize has no gradient rule');
  if (n.attr('axes')) c.unsupported('Resize with the axes attribute has no gradient rule');
  if (n.getInt('antialias', 0) !== 0) c.unsupported('Resize with antialias has no gradient rule');
  const x = n.input(0)!;
  const xd = c.dims(x);
  const yd = c.dims(n.output(0));
  const rank = xd.length;
  const scalesInput = n.inputs.length > 2 ? n.input(2) : null;
  const sizesInput = n.inputs.length > 3 ? n.input(3) : null;
  const scalesT = scalesInput ? constantOf(scalesInput) : undefined;
  const scales = scalesT && scalesT.dims[0] !== 0 ? scalesT.toNumbers().map(Number) : undefined;
  if (scalesInput && !scalesT) c.unsupported(`the scales input ${scalesInput.name} must be a constant for a gradient`);
  if (sizesInput && !constantOf(sizesInput)) c.unsupported(`the sizes input ${sizesInput.name} must be a constant for a gradient`);
  const attrs: Record<string, number | string> = {};
  for (const a of n.attributes) if (a.name) attrs[a.name] = a.value as number | string;
  const dtype = c.dtype(x);
  let g = c.gy();
  const cur = [...yd];
  for (let a = 0; a < rank; a++) {
    const scale = scales ? scales[a]! : yd[a]! / xd[a]!;
    if (xd[a] === yd[a] && scale === 1) continue;
    const inA = xd[a]!;
    const outA = yd[a]!;
    const eye = new Array<number>(inA * inA).fill(0);
    for (let i = 0; i < inA; i++) eye[i * inA + i] = 1;
    const basis = e.constant(floatTensor(dtype, [inA, 1, inA, 1], eye), 'eye');
    const roi = e.constant(floatTensor(dtype, [0], []), 'roi');
    const resized = scales
      ? e.op('Resize', [basis, roi, e.constant(floatTensor(1, [4], [1, 1, scale, 1]), 'scales')], attrs)
      : e.op('Resize', [basis, roi, e.constant(floatTensor(1, [0], []), 'scales'), e.int64s([inA, 1, outA, 1], 'sizes')], attrs);
    const at = c.reshape(resized, [inA, outA]);
    const perm = [...Array(rank).keys()].filter((i) => i !== a);
    perm.push(a);
    const inv = new Array<number>(rank);
    perm.forEach((p, i) => (inv[p] = i));
    const moved = a === rank - 1 ? g : e.op('Transpose', [g], { perm });
    const contracted = e.op('MatMul', [moved, e.op('Transpose', [at], { perm: [1, 0] })]);
    g = a === rank - 1 ? contracted : e.op('Transpose', [contracted], { perm: inv });
    cur[a] = inA;
  }
  return [g];
}

export const resizeRules: RuleTable = {
  Resize: { differentiable: [0], backward: resize },
};
