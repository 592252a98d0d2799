/**
 * A byte-level GPT-style language model written the way torch's TorchScript exporter writes a
 * pre-LN decoder at opset 17:
 *
 *   input_ids int64 [batch, sequence]
 *   h = Gather(wte, ids) + Gather(wpe, Slice(position_ids, 0, seq))
 *   per block:  x = LayerNormalization(h)
 *               q, k, v = MatMul(x, W) + b          (three linear layers, [in, out] weights)
 *               heads: Reshape(.., Concat(Shape dims, [H, D])) -> Transpose (k to [B, H, D, T])
 *               p = Softmax(MatMul(q, kT) / sqrt(D) + causal_mask[:, :, :T, :T])
 *               h = h + (Reshape(Transpose(MatMul(p, v))) @ Wo + bo)
 *               h = h + (GELU_erf(LayerNormalization(h) @ W1 + b1) @ W2 + b2)
 *   logits = LayerNormalization(h) @ lm_head          float [batch, sequence, 256]
 *
 * GELU is x * (Erf(x / sqrt 2) + 1) * 0.5. The causal mask is a float [1, 1, context, context]
 * buffer of 0 (visible) and -1e4 (future), added to the scores; -1e4 is exactly zero weight after
 * the softmax in float32 and stays finite in float16. Sequences longer than `context` are not
 * supported (the Slices of the buffers end there).
 */
import { DataType } from '../../core/dtype.js';
import { inputError } from '../../core/errors.js';
import { Tensor } from '../../core/tensor.js';
import { mulberry32 } from '../../data/generate.js';
import { GraphBuilder } from '../../ir/builder.js';
import { Model, Value } from '../../ir/ir.js';

export interface LmConfig {
  /** Width of the residual stream. */
  dModel: number;
  heads: number;
  layers: number;
  /** Width of the MLP's hidden layer. */
  ffn: number;
  /** Longest sequence (rows of the position table and of the causal mask). */
  context: number;
  /** Seed of the initial weights. */
  seed: number;
}

/** Vocabulary: one token per byte value. */
export const LM_VOCAB = 256;

/** Additive mask value for future positions. */
export const LM_MASK_VALUE = -1e4;

export interface LanguageModelGraph {
  model: Model;
  /** Names of the trainable float initializers (weights, biases, LayerNorm scales and shifts). */
  params: string[];
}

/** Normal(0, 1) samples from a seeded uniform generator (Box-Muller). */
function normalSampler(seed: number): () => number {
  const u = mulberry32(seed);
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(1 - u()));
    const t = 2 * Math.PI * u();
    spare = r * Math.sin(t);
    return r * Math.cos(t);
  };
}

export function checkLmConfig(c: LmConfig): void {
  const ok = [c.dModel, c.heads, c.layers, c.ffn, c.context].every((x) => Number.isInteger(x) && x > 0);
  if (!ok || c.dModel % c.heads !== 0) {
    throw inputError('LM_BAD_OPTION', `language model config ${JSON.stringify(c)}: sizes must be positive integers and dModel a multiple of heads`);
  }
}

class LmWriter {
  readonly b = new GraphBuilder({ opset: 17, irVersion: 8, name: 'byte_lm' });
  readonly params: string[] = [];
  private readonly normal: () => number;
  private k = 0;

  constructor(
    readonly cfg: LmConfig,
    private readonly weights?: ReadonlyMap<string, Tensor>,
  ) {
    this.normal = normalSampler(cfg.seed);
  }

  /** A trainable float initializer: from `weights` when given, else `init(i)`. */
  param(name: string, dims: number[], init: (i: number) => number): Value {
    const size = dims.reduce((a, b) => a * b, 1);
    let t = this.weights?.get(name);
    if (t && t.dims.join(',') !== dims.join(',')) throw inputError('LM_BAD_OPTION', `weight ${name} is [${t.dims.join(',')}], the config needs [${dims.join(',')}]`, { tensor: name });
    t ??= Tensor.from(DataType.FLOAT, dims, Float32Array.from({ length: size }, (_, i) => init(i)));
    this.params.push(name);
    return this.b.initializer(name, t);
  }

  gaussian(name: string, dims: number[], std: number): Value {
    return this.param(name, dims, () => this.normal() * std);
  }

  f(x: number): Value {
    return this.b.initializer(`onnx::const_${this.k++}`, Tensor.from(DataType.FLOAT, [], Float32Array.of(x)));
  }

  i64(values: number[], scalar = false): Value {
    return this.b.initializer(`onnx::const_${this.k++}`, Tensor.from(DataType.INT64, scalar ? [] : [values.length], BigInt64Array.from(values.map(BigInt))));
  }

  op(type: string, inputs: Array<Value | null>, attrs: Record<string, number | number[] | string> = {}, floats?: string[]): Value {
    return this.b.op(type, inputs, attrs, floats ? { floats } : {})[0]!;
  }

  /** Dim `i` of `x` as a 1-element vector: Shape -> Gather -> Unsqueeze. */
  dim(x: Value, i: number): Value {
    const g = this.op('Gather', [this.op('Shape', [x]), this.i64([i], true)], { axis: 0 });
    return this.op('Unsqueeze', [g, this.i64([0])]);
  }

  /** [B, T, ...] -> [B, T, ...rest] with the shape built from x's own dims. */
  reshapeRows(x: Value, rest: number[]): Value {
    const shape = this.op('Concat', [this.dim(x, 0), this.dim(x, 1), ...rest.map((r) => this.i64([r]))], { axis: 0 });
    return this.op('Reshape', [x, shape]);
  }

  linear(x: Value, name: string, dIn: number, dOut: number, std: number): Value {
    const w = this.gaussian(`${name}.weight`, [dIn, dOut], std);
    const bias = this.param(`${name}.bias`, [dOut], () => 0);
    return this.op('Add', [this.op('MatMul', [x, w]), bias]);
  }

  layerNorm(x: Value, name: string): Value {
    const d = this.cfg.dModel;
    const g = this.param(`${name}.weight`, [d], () => 1);
    const beta = this.param(`${name}.bias`, [d], () => 0);
    return this.op('LayerNormalization', [x, g, beta], { axis: -1, epsilon: 1e-5 }, ['epsilon']);
  }

  gelu(x: Value): Value {
    const e = this.op('Erf', [this.op('Div', [x, this.f(Math.SQRT2)])]);
    return this.op('Mul', [this.op('Mul', [x, this.op('Add', [e, this.f(1)])]), this.f(0.5)]);
  }
}

/**
 * Builds the model for `config`. Weights come from `weights` by name when given (a trained model's
 * initializers, or a teacher's for a student), otherwise from a seeded GPT-2-style initialization
 * (normal with std 0.02; residual output projections 0.02 / sqrt(2 * layers); LayerNorm 1 and 0).
 */
export function buildLanguageModel(config: LmConfig, weights?: ReadonlyMap<string, Tensor>): LanguageModelGraph {
  checkLmConfig(config);
  const w = new LmWriter(config, weights);
  const { b } = w;
  const { dModel: d, heads, context } = config;
  const hd = d / heads;
  const std = 0.02;
  const residualStd = std / Math.sqrt(2 * config.layers);

  const ids = b.input('input_ids', 'int64', ['batch', 'sequence']);
  const seq = w.dim(ids, 1);
  const wte = w.gaussian('transformer.wte.weight', [LM_VOCAB, d], std);
  const wpe = w.gaussian('transformer.wpe.weight', [context, d], std / 2);
  const positionIds = b.initializer('transformer.position_ids', Tensor.from(DataType.INT64, [1, context], BigInt64Array.from({ length: context }, (_, i) => BigInt(i))));
  const pos = w.op('Slice', [positionIds, w.i64([0]), seq, w.i64([1]), w.i64([1])]);
  let h = w.op('Add', [w.op('Gather', [wte, ids], { axis: 0 }), w.op('Gather', [wpe, pos], { axis: 0 })]);

  const maskData = new Float32Array(context * context);
  for (let i = 0; i < context; i++) for (let j = i + 1; j < context; j++) maskData[i * context + j] = LM_MASK_VALUE;
  const maskBuffer = b.initializer('transformer.causal_mask', Tensor.from(DataType.FLOAT, [1, 1, context, context], maskData));
  const mask = w.op('Slice', [maskBuffer, w.i64([0, 0]), w.op('Concat', [seq, seq], { axis: 0 }), w.i64([2, 3])]);
  const scale = w.f(Math.sqrt(hd));

  for (let l = 0; l < config.layers; l++) {
    const p = `transformer.h.${l}`;
    const x = w.layerNorm(h, `${p}.ln_1`);
    const heads4 = (v: Value, perm: number[]) => w.op('Transpose', [w.reshapeRows(v, [heads, hd])], { perm });
    const q = heads4(w.linear(x, `${p}.attn.q_proj`, d, d, std), [0, 2, 1, 3]);
    const kT = heads4(w.linear(x, `${p}.attn.k_proj`, d, d, std), [0, 2, 3, 1]);
    const v = heads4(w.linear(x, `${p}.attn.v_proj`, d, d, std), [0, 2, 1, 3]);
    const scores = w.op('Add', [w.op('Div', [w.op('MatMul', [q, kT]), scale]), mask]);
    const ctx = w.op('MatMul', [w.op('Softmax', [scores], { axis: -1 }), v]);
    const merged = w.reshapeRows(w.op('Transpose', [ctx], { perm: [0, 2, 1, 3] }), [d]);
    h = w.op('Add', [h, w.linear(merged, `${p}.attn.c_proj`, d, d, residualStd)]);
    const y = w.layerNorm(h, `${p}.ln_2`);
    const fc = w.gelu(w.linear(y, `${p}.mlp.c_fc`, d, config.ffn, std));
    h = w.op('Add', [h, w.linear(fc, `${p}.mlp.c_proj`, config.ffn, d, residualStd)]);
  }
  const hf = w.layerNorm(h, 'transformer.ln_f');
  const logits = w.op('MatMul', [hf, w.gaussian('lm_head.weight', [d, LM_VOCAB], std)]);
  b.output(logits, 'logits', 'float32', ['batch', 'sequence', LM_VOCAB]);
  const model = b.model({ producerName: 'pytorch' });
  model.producerVersion = '2.1.0';
  return { model, params: w.params };
}

/** The float initializers of a model by name (weights to pass back to {@link buildLanguageModel}). */
export function modelWeights(model: Model): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const g = model.graph;
  for (const [name, v] of g.initializers) {
    const t = g.initializerTensor(v);
    if (t && t.dataType === DataType.FLOAT) out.set(name, t);
  }
  return out;
}

/** Parameter count of a config (weights and biases, embeddings included). */
export function lmParameterCount(c: LmConfig): number {
  const d = c.dModel;
  const block = 4 * (d * d + d) + (d * c.ffn + c.ffn) + (c.ffn * d + d) + 4 * d;
  return LM_VOCAB * d + c.context * d + c.layers * block + 2 * d + d * LM_VOCAB;
}
