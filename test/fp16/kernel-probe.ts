/**
 * Which ops onnxruntime really runs in float16: one single-node model per op, every float input and
 * output float16, loaded and run in onnxruntime-node (CPU EP) and in onnxruntime-web's WASM backend.
 * A missing kernel shows up as a load failure ("Could not find an implementation for ..."), which is
 * what a converted model would meet. `npx tsx test/fp16/kernel-probe.ts` prints the table;
 * kernels.test.ts holds passes/convert/float16/kernels.ts to the CPU column.
 */
import { DataType } from '../../core/dtype.js';
import { Tensor } from '../../core/tensor.js';
import { GraphBuilder, type AttrValue } from '../../ir/builder.js';
import type { Model, Value } from '../../ir/ir.js';

/** One input of a probe: 'h' a float16 activation, or a constant (initializer). */
type ProbeInput = { dims: number[] } | { const: Tensor } | { bool: number[] } | null;

export interface Probe {
  op: string;
  domain?: string;
  opset?: number;
  inputs: ProbeInput[];
  attrs?: Record<string, AttrValue>;
  floats?: string[];
  outputs?: number;
}

const H = (...dims: number[]): ProbeInput => ({ dims });
const I64 = (...v: number[]): ProbeInput => ({ const: Tensor.from(DataType.INT64, [v.length], BigInt64Array.from(v.map(BigInt))) });
const HC = (dims: number[]): ProbeInput => {
  const n = dims.reduce((a, b) => a * b, 1);
  return { const: Tensor.from(DataType.FLOAT16, dims, new Uint16Array(n).fill(0x3c00)) };
};

const unary = ['Relu', 'Sigmoid', 'Tanh', 'Erf', 'Exp', 'Log', 'Sqrt', 'Reciprocal', 'Neg', 'Abs', 'Floor', 'Ceil', 'Round', 'Sin', 'Cos', 'Softplus', 'Elu', 'LeakyRelu', 'HardSigmoid', 'HardSwish', 'Identity', 'Sign', 'Selu', 'Mish'];
const binary = ['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'PRelu', 'Mod'];

export const PROBES: Probe[] = [
  ...unary.map((op): Probe => ({ op, inputs: [H(2, 8)] })),
  ...binary.map((op): Probe => ({ op, inputs: [H(2, 8), H(2, 8)], ...(op === 'Mod' ? { attrs: { fmod: 1 } } : {}) })),
  { op: 'Gelu', opset: 20, inputs: [H(2, 8)] },
  { op: 'IsNaN', inputs: [H(2, 8)] },
  { op: 'IsInf', inputs: [H(2, 8)] },
  { op: 'Equal', inputs: [H(2, 8), H(2, 8)] },
  { op: 'Less', inputs: [H(2, 8), H(2, 8)] },
  { op: 'Greater', inputs: [H(2, 8), H(2, 8)] },
  { op: 'Where', inputs: [{ bool: [2, 8] }, H(2, 8), H(2, 8)] },
  { op: 'Sum', inputs: [H(2, 8), H(2, 8)] },
  { op: 'Mean', inputs: [H(2, 8), H(2, 8)] },
  { op: 'Clip', inputs: [H(2, 8), HC([]), HC([])] },
  { op: 'ReduceMean', inputs: [H(2, 8)], attrs: { axes: [-1] } },
  { op: 'ReduceSum', inputs: [H(2, 8), I64(-1)] },
  { op: 'ReduceMax', inputs: [H(2, 8)], attrs: { axes: [-1] } },
  { op: 'ReduceMin', inputs: [H(2, 8)], attrs: { axes: [-1] } },
  { op: 'ReduceProd', inputs: [H(2, 8)], attrs: { axes: [-1] } },
  { op: 'ReduceL2', inputs: [H(2, 8)], attrs: { axes: [-1] } },
  { op: 'ReduceSumSquare', inputs: [H(2, 8)], attrs: { axes: [-1] } },
  { op: 'ReduceLogSumExp', inputs: [H(2, 8)], attrs: { axes: [-1] } },
  { op: 'ArgMax', inputs: [H(2, 8)], attrs: { axis: -1 } },
  { op: 'TopK', inputs: [H(2, 8), I64(2)], outputs: 2 },
  { op: 'CumSum', inputs: [H(2, 8), { const: Tensor.from(DataType.INT64, [], BigInt64Array.of(1n)) }] },
  { op: 'Softmax', inputs: [H(2, 8)], attrs: { axis: -1 } },
  { op: 'LogSoftmax', inputs: [H(2, 8)], attrs: { axis: -1 } },
  { op: 'LayerNormalization', inputs: [H(2, 8), HC([8]), HC([8])], attrs: { axis: -1 } },
  { op: 'GroupNormalization', opset: 21, inputs: [H(1, 4, 3, 3), HC([4]), HC([4])], attrs: { num_groups: 2 } },
  { op: 'BatchNormalization', inputs: [H(1, 4, 3, 3), HC([4]), HC([4]), HC([4]), HC([4])] },
  { op: 'InstanceNormalization', inputs: [H(1, 4, 3, 3), HC([4]), HC([4])] },
  { op: 'MatMul', inputs: [H(2, 8), HC([8, 4])] },
  { op: 'Gemm', inputs: [H(2, 8), HC([8, 4]), HC([4])] },
  { op: 'Einsum', inputs: [H(2, 8), HC([8, 4])], attrs: { equation: 'ij,jk->ik' } },
  { op: 'Conv', inputs: [H(1, 4, 6, 6), HC([4, 4, 3, 3]), HC([4])], attrs: { pads: [1, 1, 1, 1] } },
  { op: 'ConvTranspose', inputs: [H(1, 4, 6, 6), HC([4, 4, 3, 3])] },
  { op: 'MaxPool', inputs: [H(1, 4, 6, 6)], attrs: { kernel_shape: [2, 2] } },
  { op: 'AveragePool', inputs: [H(1, 4, 6, 6)], attrs: { kernel_shape: [2, 2] } },
  { op: 'GlobalAveragePool', inputs: [H(1, 4, 6, 6)] },
  { op: 'GlobalMaxPool', inputs: [H(1, 4, 6, 6)] },
  { op: 'Resize', inputs: [H(1, 4, 6, 6), null, { const: Tensor.from(DataType.FLOAT, [4], Float32Array.of(1, 1, 2, 2)) }], attrs: { mode: 'nearest' } },
  { op: 'Transpose', inputs: [H(2, 8)], attrs: { perm: [1, 0] } },
  { op: 'Reshape', inputs: [H(2, 8), I64(4, 4)] },
  { op: 'Flatten', inputs: [H(2, 8)] },
  { op: 'Squeeze', inputs: [H(1, 8), I64(0)] },
  { op: 'Unsqueeze', inputs: [H(2, 8), I64(0)] },
  { op: 'Concat', inputs: [H(2, 8), H(2, 8)], attrs: { axis: 0 } },
  { op: 'Split', inputs: [H(2, 8), I64(4, 4)], attrs: { axis: 1 }, outputs: 2 },
  { op: 'Slice', inputs: [H(2, 8), I64(0), I64(4), I64(1)] },
  { op: 'Gather', inputs: [H(8, 4), I64(1, 2)], attrs: { axis: 0 } },
  { op: 'GatherElements', inputs: [H(2, 8), { const: Tensor.from(DataType.INT64, [2, 1], BigInt64Array.of(0n, 1n)) }], attrs: { axis: 1 } },
  { op: 'GatherND', inputs: [H(2, 8), { const: Tensor.from(DataType.INT64, [1, 1], BigInt64Array.of(1n)) }] },
  { op: 'ScatterND', inputs: [H(2, 8), { const: Tensor.from(DataType.INT64, [1, 1], BigInt64Array.of(1n)) }, HC([1, 8])] },
  { op: 'Expand', inputs: [H(1, 8), I64(3, 8)] },
  { op: 'Tile', inputs: [H(2, 8), I64(2, 1)] },
  { op: 'Pad', inputs: [H(2, 8), I64(0, 1, 0, 1)] },
  { op: 'Trilu', inputs: [H(8, 8)] },
  { op: 'DepthToSpace', inputs: [H(1, 4, 2, 2)], attrs: { blocksize: 2 } },
  { op: 'SpaceToDepth', inputs: [H(1, 4, 2, 2)], attrs: { blocksize: 2 } },
  { op: 'Shape', inputs: [H(2, 8)] },
  { op: 'Size', inputs: [H(2, 8)] },
  { op: 'Range', inputs: [HC([]), { const: Tensor.from(DataType.FLOAT16, [], Uint16Array.of(0x4800)) }, HC([])] },
  { op: 'ConstantOfShape', inputs: [I64(2, 3)], attrs: { value: Tensor.from(DataType.FLOAT16, [1], Uint16Array.of(0x3c00)) } },
  { op: 'Dropout', inputs: [H(2, 8)] },
  { op: 'Cast', inputs: [H(2, 8)], attrs: { to: DataType.FLOAT } },
  { op: 'CastLike', inputs: [H(2, 8), HC([1])] },
  // com.microsoft contrib ops a transformer pipeline emits
  { op: 'SkipLayerNormalization', domain: 'com.microsoft', inputs: [H(1, 2, 8), H(1, 2, 8), HC([8]), HC([8])] },
  { op: 'SkipSimplifiedLayerNormalization', domain: 'com.microsoft', inputs: [H(1, 2, 8), H(1, 2, 8), HC([8])] },
  { op: 'SimplifiedLayerNormalization', inputs: [H(1, 2, 8), HC([8])], attrs: { axis: -1 } },
  { op: 'FastGelu', domain: 'com.microsoft', inputs: [H(2, 8), HC([8])] },
  { op: 'BiasGelu', domain: 'com.microsoft', inputs: [H(2, 8), HC([8])] },
  { op: 'Gelu', domain: 'com.microsoft', inputs: [H(2, 8)] },
  { op: 'QuickGelu', domain: 'com.microsoft', inputs: [H(2, 8)] },
  { op: 'MultiHeadAttention', domain: 'com.microsoft', inputs: [H(1, 4, 8), H(1, 4, 8), H(1, 4, 8)], attrs: { num_heads: 2 } },
  { op: 'RotaryEmbedding', domain: 'com.microsoft', inputs: [H(1, 4, 8), { const: Tensor.from(DataType.INT64, [1, 4], BigInt64Array.of(0n, 1n, 2n, 3n)) }, HC([8, 2]), HC([8, 2])], attrs: { num_heads: 2 } },
  { op: 'MatMulNBits', domain: 'com.microsoft', inputs: [H(2, 32), { const: Tensor.from(DataType.UINT8, [4, 1, 16], new Uint8Array(64).fill(0x88)) }, HC([4, 1])], attrs: { K: 32, N: 4, bits: 4, block_size: 32 } },
];

/** A single-node model for `p`: float16 graph inputs and outputs (output types left to the runtime). */
export function probeModel(p: Probe, half: DataType.FLOAT16 | DataType.BFLOAT16 = DataType.FLOAT16): Model {
  const b = new GraphBuilder({ opset: p.opset ?? 17, opsets: { 'com.microsoft': 1 } });
  const ins: Array<Value | null> = p.inputs.map((x, i) => {
    if (x === null) return null;
    if ('dims' in x) return b.input(`x${i}`, half, x.dims);
    if ('bool' in x) return b.input(`x${i}`, DataType.BOOL, x.bool);
    const t = x.const.dataType === DataType.FLOAT16 && half !== DataType.FLOAT16 ? Tensor.fromBytes(half, x.const.dims, x.const.bytes()) : x.const;
    return b.initializer(`c${i}`, t);
  });
  const outs = b.op(p.op, ins, p.attrs ?? {}, { outputs: p.outputs ?? 1, ...(p.domain ? { domain: p.domain } : {}), ...(p.floats ? { floats: p.floats } : {}) });
  outs.forEach((o, i) => b.graph.addOutput(Object.assign(o, { name: `y${i}` })));
  return b.model();
}
