/**
 * upgrade-opset<to=N>: moves the default-domain opset of a model to N, rewriting each node whose
 * operator changed between the model's opset and N, following the ONNX operator changelog:
 *
 * - attributes that became inputs: Reshape shape (5), Slice starts/ends/axes (10), TopK k (10),
 *   Clip min/max (11), Pad pads/value (11), Dropout ratio (12), Squeeze/Unsqueeze axes (13),
 *   ReduceSum axes (13), Split split (13), the other ReduceX axes (18);
 * - changed semantics: Softmax/LogSoftmax/Hardmax (13: one axis, default -1, instead of coercing to
 *   2-D at `axis`, default 1), Upsample -> Resize and Resize-10 -> Resize-11 (explicit
 *   `asymmetric` coordinates, `floor` nearest rounding), BatchNormalization (`consumed_inputs` gone
 *   at 6/7, `spatial` gone at 9), legacy `broadcast`/`consumed_inputs` attributes of arithmetic
 *   (7), Concat's axis default (4), Split at 18 (`num_outputs` when no sizes), RoiAlign's coordinate
 *   default (16);
 * - operators whose later versions only add types or attributes with the old behaviour as default
 *   are listed as unchanged.
 *
 * An operator that is not in the table (or a form the rules cannot convert, like a training-mode
 * BatchNormalization) stops the upgrade before anything changes, naming the operator and node. Other
 * domains are left alone. The IR version is raised to what the new opset requires.
 */
import { DataType, encodeHalf } from '../../core/dtype.js';
import { inputError } from '../../core/errors.js';
import { Attribute, AttrType, constantOf, Model, Node, Value } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import { definePass } from '../pass.js';
import { elemTypeOf, insertNodeBefore, rankOf } from '../patterns.js';

/** Newest opset this pass knows the changelog up to (23 only added element types to existing operators). */
export const MAX_OPSET = 23;

interface Step {
  /** The operator version that introduced the change. */
  since: number;
  /** Why this node cannot be converted (checked for every node before anything changes). */
  check?(node: Node): string | undefined;
  apply?(node: Node, model: Model): void;
}

// ---------------------------------------------------------------------------------------------
// helpers

function int64Input(model: Model, node: Node, values: number[], tag: string): Value {
  const t = Tensor.from(DataType.INT64, [values.length], BigInt64Array.from(values.map((v) => BigInt(v))));
  const v = node.graph!.addInitializer(t, model.names.fresh(`${node.name || node.output(0).name}_${tag}`));
  v.setTensorType(DataType.INT64, [values.length]);
  return v;
}

function scalarInput(model: Model, node: Node, dtype: number, value: number, tag: string): Value {
  let t: Tensor;
  if (dtype === DataType.FLOAT) t = Tensor.from(dtype, [], Float32Array.of(value));
  else if (dtype === DataType.DOUBLE) t = Tensor.from(dtype, [], Float64Array.of(value));
  else if (dtype === DataType.FLOAT16 || dtype === DataType.BFLOAT16) t = Tensor.from(dtype, [], encodeHalf(dtype, [value]));
  else if (dtype === DataType.INT64) t = Tensor.from(dtype, [], BigInt64Array.of(BigInt(Math.trunc(value))));
  else t = Tensor.from(dtype, [], [Math.trunc(value)]);
  const v = node.graph!.addInitializer(t, model.names.fresh(`${node.name || node.output(0).name}_${tag}`));
  v.setTensorType(dtype, []);
  return v;
}

/** Moves an INTS attribute to input `index` (as an int64 initializer), padding with empty inputs. */
function attrToInput(name: string, index: number): (node: Node, model: Model) => void {
  return (node, model) => {
    const v = node.getInts(name);
    node.removeAttr(name);
    if (v === undefined) return;
    while (node.inputs.length < index) node.appendInput(null);
    node.setInput(index, int64Input(model, node, v, name));
  };
}

function hasAttr(node: Node, name: string): boolean {
  return node.attr(name) !== undefined;
}

const reduceAxes18: Step = { since: 18, apply: attrToInput('axes', 1) };

// ---------------------------------------------------------------------------------------------
// rules

const softmaxStep: Step = {
  since: 13,
  apply(node, model) {
    const axis = node.getInt('axis', 1);
    const x = node.input(0)!;
    const rank = rankOf(x);
    if (rank !== undefined && (axis === rank - 1 || axis === -1)) {
      node.setAttr(Attribute.int('axis', -1));
      return;
    }
    // Old semantics: flatten to [prod(d[:axis]), prod(d[axis:])], softmax over dim 1, reshape back.
    const flat = insertNodeBefore(model, node, 'Flatten', [x], `${x.name}_flat2d`);
    flat.setAttr(Attribute.int('axis', axis));
    const shape = insertNodeBefore(model, node, 'Shape', [x], `${x.name}_shape`);
    node.setInput(0, flat.output(0));
    node.setAttr(Attribute.int('axis', 1));
    const out = node.output(0);
    const inner = new Value(model.names.fresh(`${out.name}_2d`));
    node.setOutput(0, inner);
    const reshape = new Node('Reshape', [inner, shape.output(0)], [out]);
    node.graph!.insertAfter(node, reshape);
  },
};

const legacyBroadcast: Step = {
  since: 7,
  check(node) {
    if (node.getInt('broadcast', 0) === 1 && hasAttr(node, 'axis')) return `${node.opType} uses legacy broadcasting with an axis`;
    return undefined;
  },
  apply(node) {
    node.removeAttr('broadcast');
    node.removeAttr('axis');
    node.removeAttr('consumed_inputs');
  },
};

const dropConsumed: Step = { since: 6, apply: (n) => n.removeAttr('consumed_inputs') };

const resizeFromAttributes = (node: Node, model: Model, scales: Value | null) => {
  const mode = node.getString('mode', 'nearest');
  node.opType = 'Resize';
  const x = node.input(0);
  node.setInputs([x, null, scales]);
  node.removeAttr('scales');
  node.setAttr(Attribute.string('coordinate_transformation_mode', 'asymmetric'));
  if (mode === 'bilinear') node.setAttr(Attribute.string('mode', 'linear'));
  if (mode === 'nearest') node.setAttr(Attribute.string('nearest_mode', 'floor'));
};

function upsampleScales(node: Node): number[] | undefined {
  return node.getFloats('scales') ?? constantOf(node.input(1))?.toNumbers();
}

const oldResizeCheck = (node: Node): string | undefined => {
  const mode = node.getString('mode', 'nearest');
  if (mode !== 'nearest' && mode !== 'linear' && mode !== 'bilinear') return `${node.opType} mode ${mode}`;
  const s = upsampleScales(node);
  if (!s) return `${node.opType} scales are not constant`;
  if (mode === 'nearest' && s.some((v) => v < 1)) return `${node.opType} nearest with downscaling (rounding differs between versions)`;
  return undefined;
};

const STEPS: Record<string, Step[]> = {
  // attributes that became inputs
  Reshape: [{ since: 5, apply: attrToInput('shape', 1) }, { since: 13 }, { since: 14 }, { since: 19 }, { since: 21 }],
  Slice: [
    {
      since: 10,
      apply(node, model) {
        const starts = node.getInts('starts') ?? [];
        const ends = node.getInts('ends') ?? [];
        const axes = node.getInts('axes');
        for (const a of ['starts', 'ends', 'axes']) node.removeAttr(a);
        node.setInputs([node.input(0), int64Input(model, node, starts, 'starts'), int64Input(model, node, ends, 'ends'), ...(axes ? [int64Input(model, node, axes, 'axes')] : [])]);
      },
    },
    { since: 11 },
    { since: 13 },
  ],
  TopK: [{ since: 10, apply(node, model) { const k = node.getInt('k', 1); node.removeAttr('k'); node.setInputs([node.input(0), int64Input(model, node, [k], 'k')]); } }, { since: 11 }],
  Clip: [
    { since: 6, apply: (n) => n.removeAttr('consumed_inputs') },
    {
      since: 11,
      check(node) {
        if ((hasAttr(node, 'min') || hasAttr(node, 'max')) && elemTypeOf(node.input(0)) === undefined) return 'Clip input element type is unknown';
        return undefined;
      },
      apply(node, model) {
        const lo = node.getFloat('min');
        const hi = node.getFloat('max');
        node.removeAttr('min');
        node.removeAttr('max');
        const t = elemTypeOf(node.input(0)) ?? DataType.FLOAT;
        node.setInputs([node.input(0), lo === undefined ? null : scalarInput(model, node, t, lo, 'min'), hi === undefined ? null : scalarInput(model, node, t, hi, 'max')]);
        node.truncateInputs(hi === undefined ? (lo === undefined ? 1 : 2) : 3);
      },
    },
    { since: 12 },
    { since: 13 },
  ],
  Pad: [
    {
      since: 11,
      check(node) {
        if (node.getFloat('value', 0) !== 0 && elemTypeOf(node.input(0)) === undefined) return 'Pad input element type is unknown';
        return undefined;
      },
      apply(node, model) {
        const pads = node.getInts('pads') ?? node.getInts('paddings') ?? [];
        const value = node.getFloat('value', 0);
        node.removeAttr('pads');
        node.removeAttr('paddings');
        node.removeAttr('value');
        const t = elemTypeOf(node.input(0)) ?? DataType.FLOAT;
        node.setInputs([node.input(0), int64Input(model, node, pads, 'pads'), ...(value !== 0 ? [scalarInput(model, node, t, value, 'value')] : [])]);
      },
    },
    { since: 13 },
    { since: 18 },
    { since: 19 },
    { since: 21 },
  ],
  Dropout: [
    { since: 6, apply: (n) => n.removeAttr('consumed_inputs') },
    { since: 7, apply: (n) => n.removeAttr('is_test') },
    { since: 10 },
    {
      since: 12,
      apply(node, model) {
        const r = node.getFloat('ratio');
        node.removeAttr('ratio');
        if (r !== undefined) node.setInputs([node.input(0), scalarInput(model, node, DataType.FLOAT, r, 'ratio')]);
      },
    },
    { since: 13 },
    { since: 22 },
  ],
  Squeeze: [{ since: 11 }, { since: 13, apply: attrToInput('axes', 1) }, { since: 21 }],
  Unsqueeze: [{ since: 11 }, { since: 13, apply: attrToInput('axes', 1) }, { since: 21 }],
  ReduceSum: [{ since: 11 }, { since: 13, apply: attrToInput('axes', 1) }],
  ReduceMean: [{ since: 11 }, { since: 13 }, reduceAxes18],
  ReduceMax: [{ since: 11 }, { since: 12 }, { since: 13 }, reduceAxes18, { since: 20 }],
  ReduceMin: [{ since: 11 }, { since: 12 }, { since: 13 }, reduceAxes18, { since: 20 }],
  ReduceProd: [{ since: 11 }, { since: 13 }, reduceAxes18],
  ReduceL1: [{ since: 11 }, { since: 13 }, reduceAxes18],
  ReduceL2: [{ since: 11 }, { since: 13 }, reduceAxes18],
  ReduceLogSum: [{ since: 11 }, { since: 13 }, reduceAxes18],
  ReduceLogSumExp: [{ since: 11 }, { since: 13 }, reduceAxes18],
  ReduceSumSquare: [{ since: 11 }, { since: 13 }, reduceAxes18],
  Split: [
    { since: 2 },
    { since: 11 },
    { since: 13, apply: attrToInput('split', 1) },
    {
      since: 18,
      apply(node) {
        const sizes = node.input(1);
        if ((!sizes || sizes.name === '') && !hasAttr(node, 'num_outputs')) node.setAttr(Attribute.int('num_outputs', node.outputs.length));
      },
    },
  ],
  // changed semantics
  Softmax: [{ since: 11 }, softmaxStep],
  LogSoftmax: [{ since: 11 }, softmaxStep],
  Hardmax: [{ since: 11 }, softmaxStep],
  BatchNormalization: [
    dropConsumed,
    {
      since: 7,
      check(node) {
        if (node.outputs.length > 1 && node.outputs.slice(1).some((o) => o.name !== '' && (o.uses.length > 0 || o.isGraphOutput))) return 'BatchNormalization with training outputs';
        if (node.getInt('spatial', 1) !== 1) return 'BatchNormalization with spatial=0';
        return undefined;
      },
      apply: (n) => n.removeAttr('is_test'),
    },
    { since: 9, apply: (n) => n.removeAttr('spatial') },
    { since: 14, check: (n) => (n.outputs.length > 1 ? 'BatchNormalization with training outputs (opset 14 has 1 output in inference mode)' : undefined) },
    { since: 15 },
  ],
  Upsample: [
    { since: 7 },
    {
      since: 9,
      apply(node, model) {
        const s = node.getFloats('scales');
        if (s) {
          node.removeAttr('scales');
          node.setInputs([node.input(0), scalarVector(model, node, s)]);
        }
      },
    },
    {
      since: 10,
      check: oldResizeCheck,
      apply(node, model) {
        const s = upsampleScales(node)!;
        resizeFromAttributes(node, model, scalarVector(model, node, s));
      },
    },
  ],
  Resize: [
    {
      since: 11,
      check(node) {
        if (node.inputs.length === 2) return oldResizeCheck(node);
        return undefined;
      },
      apply(node, model) {
        if (node.inputs.length === 2) resizeFromAttributes(node, model, node.input(1));
      },
    },
    {
      since: 13,
      check(node) {
        if (node.getString('coordinate_transformation_mode') === 'tf_half_pixel_for_nn') return 'Resize with tf_half_pixel_for_nn (removed in opset 13)';
        return undefined;
      },
    },
    { since: 18 },
    { since: 19 },
  ],
  Concat: [{ since: 4, apply: (n) => (hasAttr(n, 'axis') ? undefined : n.setAttr(Attribute.int('axis', 1))) }, { since: 11 }, { since: 13 }],
  Cast: [{ since: 6, check: (n) => (n.attr('to')?.type === AttrType.STRING ? 'Cast with a string `to`' : undefined) }, { since: 9 }, { since: 13 }, { since: 19 }, { since: 21 }],
  RoiAlign: [{ since: 10 }, { since: 16, apply: (n) => (hasAttr(n, 'coordinate_transformation_mode') ? undefined : n.setAttr(Attribute.string('coordinate_transformation_mode', 'output_half_pixel'))) }, { since: 22 }],
  Gemm: [{ since: 6, apply: (n) => n.removeAttr('broadcast') }, { since: 7, apply: (n) => n.removeAttr('broadcast') }, { since: 9 }, { since: 11 }, { since: 13 }],
  LSTM: [{ since: 7, check: (n) => (hasAttr(n, 'output_sequence') ? 'LSTM with output_sequence' : undefined) }, { since: 14 }, { since: 22 }],
  GRU: [{ since: 7, check: (n) => (hasAttr(n, 'output_sequence') ? 'GRU with output_sequence' : undefined) }, { since: 14 }, { since: 22 }],
  RNN: [{ since: 7, check: (n) => (hasAttr(n, 'output_sequence') ? 'RNN with output_sequence' : undefined) }, { since: 14 }, { since: 22 }],
};

for (const op of ['Add', 'Sub', 'Mul', 'Div']) STEPS[op] = [dropConsumed, legacyBroadcast, { since: 13 }, { since: 14 }];
for (const op of ['Pow', 'And', 'Or', 'Xor', 'Equal', 'Greater', 'Less', 'PRelu']) STEPS[op] = [legacyBroadcast, { since: 13 }];
for (const op of ['Max', 'Min', 'Sum', 'Mean']) STEPS[op] = [dropConsumed, { since: 8 }, { since: 12 }, { since: 13 }];
for (const op of ['Relu', 'Sigmoid', 'Tanh', 'Sqrt', 'Exp', 'Log', 'Neg', 'Abs', 'Floor', 'Ceil', 'Reciprocal', 'LeakyRelu', 'Elu', 'Selu', 'HardSigmoid', 'Softplus', 'Softsign', 'ThresholdedRelu']) {
  STEPS[op] = [dropConsumed, { since: 13 }, { since: 14 }, { since: 22 }];
}
// Operators whose later versions only add element types, optional attributes with the old
// behaviour as default, or optional inputs: nothing to rewrite.
const UNCHANGED = [
  'Constant', 'Identity', 'Conv', 'ConvTranspose', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'GlobalMaxPool', 'LpPool', 'GlobalLpPool',
  'MatMul', 'Transpose', 'Shape', 'Size', 'Gather', 'GatherElements', 'GatherND', 'ScatterND', 'ScatterElements', 'Flatten', 'Expand',
  'ConstantOfShape', 'Not', 'Where', 'If', 'Loop', 'Scan', 'Erf', 'Sin', 'Cos', 'Tan', 'Asin', 'Acos', 'Atan', 'Sinh', 'Cosh', 'Asinh', 'Acosh',
  'Atanh', 'Sign', 'Round', 'Mod', 'IsNaN', 'IsInf', 'Range', 'NonZero', 'Tile', 'CumSum', 'Einsum', 'ArgMax', 'ArgMin', 'InstanceNormalization',
  'LRN', 'DepthToSpace', 'SpaceToDepth', 'Trilu', 'OneHot', 'Compress', 'ReverseSequence', 'Unique', 'NonMaxSuppression', 'MaxRoiPool',
  'QuantizeLinear', 'DequantizeLinear', 'QLinearConv', 'QLinearMatMul', 'ConvInteger', 'MatMulInteger', 'DynamicQuantizeLinear',
  'LayerNormalization', 'Gelu', 'HardSwish', 'Mish', 'Celu', 'GreaterOrEqual', 'LessOrEqual', 'BitShift', 'Det', 'EyeLike', 'RandomNormal',
  'RandomUniform', 'RandomNormalLike', 'RandomUniformLike', 'Multinomial', 'Bernoulli', 'SequenceAt', 'SequenceConstruct', 'SequenceEmpty',
  'SequenceErase', 'SequenceInsert', 'SequenceLength', 'ConcatFromSequence', 'SplitToSequence', 'Optional', 'OptionalHasElement',
  'OptionalGetElement', 'CastLike', 'GridSample', 'Col2Im', 'CenterCropPad', 'BlackmanWindow', 'HannWindow', 'HammingWindow', 'DFT', 'STFT',
  'MelWeightMatrix', 'GroupNormalization', 'AffineGrid', 'ImageDecoder', 'StringNormalizer', 'StringConcat', 'StringSplit', 'RegexFullMatch',
  'TfIdfVectorizer', 'BitwiseAnd', 'BitwiseOr', 'BitwiseXor', 'BitwiseNot', 'MeanVarianceNormalization', 'Shrink', 'Binarizer',
];
for (const op of UNCHANGED) STEPS[op] ??= [];

function scalarVector(model: Model, node: Node, values: number[]): Value {
  const t = Tensor.from(DataType.FLOAT, [values.length], Float32Array.from(values));
  const v = node.graph!.addInitializer(t, model.names.fresh(`${node.name || node.output(0).name}_scales`));
  v.setTensorType(DataType.FLOAT, [values.length]);
  return v;
}

/** IR version each opset needs (the lowest IR release that carries it). */
function irVersionFor(opset: number): number {
  if (opset >= 23) return 11;
  if (opset >= 21) return 10;
  if (opset >= 19) return 9;
  if (opset >= 15) return 8;
  if (opset >= 13) return 7;
  if (opset >= 11) return 6;
  if (opset >= 10) return 5;
  if (opset >= 9) return 4;
  return 3;
}

export interface UpgradeSummary {
  from: number;
  to: number;
  rewritten: number;
}

/** Upgrades `model` in place; throws UPGRADE_UNKNOWN_OP / UPGRADE_UNSUPPORTED before changing anything. */
export function upgradeOpset(model: Model, to: number): UpgradeSummary {
  const from = model.opset('') ?? 1;
  const file = model.sourcePath;
  if (to > MAX_OPSET) throw inputError('UPGRADE_TARGET_TOO_NEW', `upgrade-opset knows the operator changelog up to opset ${MAX_OPSET}; ${to} was asked`, { file });
  if (to < from) throw inputError('UPGRADE_DOWNGRADE', `the model has opset ${from}; upgrade-opset cannot lower it to ${to}`, { file });
  if (to === from) return { from, to, rewritten: 0 };
  const work: Array<{ node: Node; steps: Step[] }> = [];
  const unknown = new Map<string, string>();
  for (const g of model.graph.allGraphs()) {
    for (const node of g.nodes) {
      if (node.opDomain !== '') continue;
      const steps = STEPS[node.opType];
      if (!steps) {
        if (!unknown.has(node.opType)) unknown.set(node.opType, node.label);
        continue;
      }
      const due = steps.filter((s) => s.since > from && s.since <= to);
      for (const s of due) {
        const why = s.check?.(node);
        if (why) throw inputError('UPGRADE_UNSUPPORTED', `cannot upgrade node ${node.label} from opset ${from} to ${to}: ${why}`, { file, node: node.name ?? node.label });
      }
      if (due.some((s) => s.apply)) work.push({ node, steps: due });
    }
  }
  if (unknown.size) {
    const list = [...unknown.entries()].map(([op, label]) => `${op} (e.g. ${label})`).join(', ');
    throw inputError('UPGRADE_UNKNOWN_OP', `upgrade-opset does not know how ${list} changed between opset ${from} and ${to}; nothing was changed`, { file, node: [...unknown.values()][0] });
  }
  for (const { node, steps } of work) for (const s of steps) s.apply?.(node, model);
  model.setOpset('', to);
  const ir = Number(model.irVersion ?? 0);
  if (ir < irVersionFor(to)) model.irVersion = irVersionFor(to);
  for (const g of model.graph.allGraphs()) if (work.some((w) => w.node.graph === g)) g.toposort();
  return { from, to, rewritten: work.length };
}

export default definePass<{ to: number }>({
  name: 'upgrade-opset',
  description: 'Upgrade the default-domain opset to `to`, rewriting operators whose attributes became inputs or whose semantics changed.',
  options: { to: { type: 'integer', description: 'Target opset.', default: 20, min: 7, max: MAX_OPSET } },
  idempotent: true,
  run(model, options, ctx) {
    const from = model.opset('') ?? 1;
    if (from >= options.to) {
      // never a downgrade: a newer model already has what the opset-dependent fusions need
      ctx.explain({ reason: `the model already has opset ${from} (asked: ${options.to})` });
      return { changed: false, stats: { from, to: from, rewritten: 0 } };
    }
    const r = upgradeOpset(model, options.to);
    return { changed: true, stats: { from: r.from, to: r.to, rewritten: r.rewritten } };
  },
});
