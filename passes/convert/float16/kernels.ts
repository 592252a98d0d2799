/**
 * Which ops may run in float16, as measured, not assumed. `test/fp16/kernel-probe.ts` builds one
 * single-node model per op with float16 inputs and outputs and loads it in onnxruntime-node 1.30.0 (CPU
 * execution provider, x86-64) and onnxruntime-web 1.30.0 (WASM backend, `test/fp16/probe-wasm.ts`). Neither fails to load a
 * float16 node it has no kernel for: onnxruntime's `InsertCastTransformer` (logged as
 * `CastFloat16Transformer`) wraps the node in Cast-to-float32 / Cast-to-float16 and runs the float32
 * kernel. The probe reads onnxruntime's optimized model (CPU) and its verbose log (WASM) to tell a
 * native float16 kernel from a wrapped one; both providers gave the same answer for every probed op.
 *
 * The result: the CPU and WASM providers run natively in float16 only data movement, the
 * LayerNormalization family, RotaryEmbedding, MatMulNBits and a few element-wise selections (Max, Min,
 * Clip, Round, Sign, Mod, IsNaN). MatMul, Gemm, Conv, Add, Mul, Softmax, Erf, Tanh, the reductions and
 * every other arithmetic op are wrapped in Casts: in float16 they compute in float32 with two
 * conversions more per node.
 */

/** Ops with a native float16 kernel in onnxruntime's CPU EP and WASM backend (both 1.30.0), by `domain:op`. */
export const CPU_WASM_HALF_KERNELS: ReadonlySet<string> = new Set([
  // data movement and shape
  ':Transpose', ':Reshape', ':Flatten', ':Squeeze', ':Unsqueeze', ':Concat', ':Split', ':Slice', ':Gather', ':GatherElements', ':GatherND',
  ':ScatterND', ':Expand', ':Identity', ':Shape', ':ConstantOfShape', ':Cast', ':CastLike',
  // element-wise selections
  ':Max', ':Min', ':Clip', ':Round', ':Sign', ':Mod', ':IsNaN',
  // normalization
  ':LayerNormalization', ':SimplifiedLayerNormalization', 'com.microsoft:SkipLayerNormalization', 'com.microsoft:SkipSimplifiedLayerNormalization',
  // transformer contrib ops
  'com.microsoft:RotaryEmbedding', 'com.microsoft:MatMulNBits',
]);

/**
 * Ops with a native bfloat16 kernel in onnxruntime-node 1.30's CPU EP (same probe, float32 interface
 * with Casts). For bfloat16 there is no automatic float32 fallback: every other op fails to load
 * ("Could not find an implementation"), so a bfloat16 model for CPU can only compute these in bfloat16.
 */
export const CPU_BF16_KERNELS: ReadonlySet<string> = new Set([
  ':Transpose', ':Reshape', ':Flatten', ':Squeeze', ':Unsqueeze', ':Concat', ':Split', ':Slice', ':Gather', ':GatherElements', ':GatherND',
  ':ScatterND', ':Identity', ':Shape', ':ConstantOfShape', ':Cast', ':CastLike', ':Dropout', ':Sign',
  ':LayerNormalization', ':SimplifiedLayerNormalization', 'com.microsoft:SkipLayerNormalization', 'com.microsoft:SkipSimplifiedLayerNormalization',
]);

/**
 * Ops that only move or select elements: their precision follows their float data inputs (converting
 * them alone would buy nothing and cost two Casts). The rest of the float ops compute.
 */
export const DATA_MOVEMENT: ReadonlySet<string> = new Set([
  ':Transpose', ':Reshape', ':Flatten', ':Squeeze', ':Unsqueeze', ':Concat', ':Split', ':Slice', ':Gather', ':GatherElements', ':GatherND',
  ':ScatterND', ':ScatterElements', ':Expand', ':Identity', ':Tile', ':Pad', ':DepthToSpace', ':SpaceToDepth', ':Dropout', ':Where',
]);

/**
 * com.microsoft ops whose float16 form exists (onnxruntime registers them for float16 on CUDA,
 * WebGPU or CPU; the probe loaded each with float16 inputs). Other contrib ops stay float32.
 */
export const CONTRIB_HALF_OPS: ReadonlySet<string> = new Set([
  'com.microsoft:SkipLayerNormalization', 'com.microsoft:SkipSimplifiedLayerNormalization', 'com.microsoft:FastGelu', 'com.microsoft:BiasGelu',
  'com.microsoft:Gelu', 'com.microsoft:QuickGelu', 'com.microsoft:MultiHeadAttention', 'com.microsoft:Attention', 'com.microsoft:RotaryEmbedding',
  'com.microsoft:MatMulNBits', 'com.microsoft:BiasAdd', 'com.microsoft:BiasSplitGelu',
]);

/**
 * Standard ops whose type constraints do not include float16 (at any opset, or before the opset in the
 * value), and ops whose output type comes from an attribute (random generators, EyeLike): left float32.
 */
export const NO_HALF_SCHEMA: ReadonlyMap<string, number> = new Map([
  [':Range', Infinity],
  [':IsInf', 20],
  [':Mish', 18],
  [':NonMaxSuppression', Infinity],
  [':TfIdfVectorizer', Infinity],
  [':Multinomial', Infinity],
  [':RandomNormal', Infinity],
  [':RandomUniform', Infinity],
  [':RandomNormalLike', Infinity],
  [':RandomUniformLike', Infinity],
  [':EyeLike', Infinity],
  [':Bernoulli', Infinity],
  [':StringNormalizer', Infinity],
  [':DequantizeLinear', 19],
  [':QuantizeLinear', 19],
]);

/** Float input slots that stay float32 whatever the node's type (their constraint is tensor(float)). */
export const FLOAT32_SLOTS: ReadonlyMap<string, readonly number[]> = new Map([
  [':Resize', [1, 2]],
  [':Upsample', [1]],
]);

/** The registry key of a node's op: `domain:op` with the default domain written ''. */
export function opKey(domain: string, op: string): string {
  return `${domain}:${op}`;
}
