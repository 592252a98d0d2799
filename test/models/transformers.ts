/**
 * Transformer test models written the way exporters write them, built with GraphBuilder.
 *
 * Variants (one builder per variant, all listed in {@link TRANSFORMER_VARIANTS}):
 *
 * - `bert-ts14`   encoder, TorchScript exporter, opset 14: LayerNorm decomposed
 *                 (ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add), GELU by Erf, attention with
 *                 heads split by Reshape/Transpose whose shapes come from Shape/Gather/Unsqueeze/Concat
 *                 chains, mask `(1 - Cast(Unsqueeze(mask))) * finfo.min` added to the scores.
 * - `bert-ts17`   the same at opset 17 with LayerNormalization.
 * - `gpt2-ts14`   decoder, TorchScript, opset 14: pre-LN, Conv1D as MatMul+Add with [in, out]
 *                 weights, packed QKV split by Split, causal mask by Slice of a bool buffer + Where,
 *                 GELU by Tanh (`gelu_new`), LayerNorm decomposed, tied LM head.
 * - `gpt2-ts17`   the same at opset 17 with LayerNormalization.
 * - `bert-dynamo` encoder, dynamo exporter, opset 18: LayerNormalization, `aten` Reshapes with constant
 *                 shapes, the scaled-dot-product decomposition (sqrt of the scale multiplied into Q and
 *                 K^T), mask by Expand/Where, GELU by Erf with `x * 0.7071` and constants on the left.
 * - `llama-ts17`  decoder, TorchScript, opset 17: RMSNorm as Pow/ReduceMean/Add/Sqrt/Reciprocal/Mul,
 *                 rotary embeddings (Gather of cos/sin caches, Slice/Neg/Concat/Mul/Add), SiLU-gated
 *                 MLP, no biases, additive causal mask.
 * - `llama-dynamo` the same written by dynamo at opset 18: RMSNorm as Div(x, Sqrt(...)), ReduceMean
 *                 axes as an input, constant-shape Reshapes.
 *
 * Inputs are int64 `input_ids` [batch, seq] (+ int64 `attention_mask` for the encoders) with symbolic
 * dims. Weights are random from a seeded generator, with the outlier channels real transformers show:
 * a few hidden channels whose embeddings, LayerNorm scales and residual-branch weights are 10-50x
 * larger than the rest.
 */
import { DataType } from '../../core/dtype.js';
import { Tensor } from '../../core/tensor.js';
import type { Feed } from '../../core/host-tensor.js';
import { GraphBuilder } from '../../ir/builder.js';
import { mulberry32 } from '../../data/generate.js';
import type { Model, Value } from '../../ir/ir.js';

export interface TransformerConfig {
  vocab: number;
  hidden: number;
  heads: number;
  layers: number;
  ffn: number;
  maxPositions: number;
  seed: number;
}

export const DEFAULT_CONFIG: TransformerConfig = { vocab: 512, hidden: 128, heads: 4, layers: 2, ffn: 512, maxPositions: 256, seed: 19 };

export type Exporter = 'torchscript' | 'dynamo';

export interface TransformerVariant {
  name: string;
  kind: 'encoder' | 'decoder';
  exporter: Exporter;
  opset: number;
  /** Graph input names (int64 [batch, seq]). */
  inputs: string[];
  /** Normalization and activation forms, for tests that pick variants by what they contain. */
  norm: 'layer-norm-decomposed' | 'layer-norm' | 'rms-norm';
  gelu?: 'erf' | 'tanh';
  build(config?: Partial<TransformerConfig>): Model;
}

// ---------------------------------------------------------------------------------------------
// seeded random numbers

/** Uniform floats in [0, 1) from a seed (mulberry32, shared with data/generate.ts). */
export const seededUniform = mulberry32;

/** Standard normal samples (Box-Muller) from a seeded uniform generator. */
export function seededNormal(seed: number): () => number {
  const u = seededUniform(seed);
  return () => {
    const a = Math.max(u(), 1e-12);
    return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * u());
  };
}

/** Feeds for a variant: random token ids (and an all-but-the-tail attention mask when `padded`). */
export function transformerFeed(variant: TransformerVariant, batch: number, seq: number, options: { seed?: number; vocab?: number; padded?: boolean } = {}): Feed {
  const u = seededUniform(options.seed ?? 5);
  const vocab = options.vocab ?? DEFAULT_CONFIG.vocab;
  const feed: Feed = {};
  feed.input_ids = { type: 'int64', dims: [batch, seq], data: BigInt64Array.from({ length: batch * seq }, () => BigInt(Math.floor(u() * vocab))) };
  if (variant.inputs.includes('attention_mask')) {
    const mask = new BigInt64Array(batch * seq).fill(1n);
    if (options.padded) for (let b = 0; b < batch; b++) for (let s = Math.max(1, seq - 3 - b); s < seq; s++) mask[b * seq + s] = 0n;
    feed.attention_mask = { type: 'int64', dims: [batch, seq], data: mask };
  }
  return feed;
}

// ---------------------------------------------------------------------------------------------
// the writer: a GraphBuilder with the exporter's habits

const FINFO_MIN = -3.4028234663852886e38;

/**
 * Gain of the Q/K projections. Trained attention keeps its logits moderate; random full-gain Q/K
 * weights reading outlier channels give near one-hot softmaxes whose float rounding (kernel order)
 * grows to 1e-2 within two layers, so every correct rewrite would look wrong.
 */
const QK_GAIN = 0.35;

interface Style {
  exporter: Exporter;
  opset: number;
}

class Writer {
  readonly b: GraphBuilder;
  private readonly normal: () => number;
  private readonly outliers: number[];
  private n = 0;

  constructor(
    readonly cfg: TransformerConfig,
    readonly style: Style,
  ) {
    this.b = new GraphBuilder({ opset: style.opset, irVersion: style.opset >= 18 ? 8 : 7 });
    this.normal = seededNormal(cfg.seed);
    // a few outlier hidden channels, as in trained BERT/GPT-2/Llama checkpoints
    const u = seededUniform(cfg.seed + 1);
    const k = Math.max(2, Math.round(cfg.hidden / 48));
    const set = new Set<number>();
    while (set.size < k) set.add(Math.floor(u() * cfg.hidden));
    this.outliers = [...set].sort((a, b) => a - b);
  }

  private name(base: string): string {
    return `${base}.${this.n++}`;
  }

  /** Outlier magnitude of channel `c` (1 for ordinary channels, 10-50 for outliers). */
  private boost(c: number): number {
    const i = this.outliers.indexOf(c);
    return i < 0 ? 1 : 10 + (40 * i) / Math.max(1, this.outliers.length - 1);
  }

  /** Normal weights with std `std`; `outAxisHidden` scales columns of hidden outlier channels. */
  weight(base: string, dims: number[], std: number, outlierAxis?: number): Value {
    const size = dims.reduce((a, c) => a * c, 1);
    const data = new Float32Array(size);
    const inner = outlierAxis === undefined ? 1 : dims.slice(outlierAxis + 1).reduce((a, c) => a * c, 1);
    const len = outlierAxis === undefined ? 1 : dims[outlierAxis]!;
    for (let i = 0; i < size; i++) {
      const c = outlierAxis === undefined ? -1 : Math.floor(i / inner) % len;
      data[i] = this.normal() * std * (c >= 0 ? this.boost(c) : 1);
    }
    return this.b.initializer(this.name(base), Tensor.from(DataType.FLOAT, dims, data));
  }

  /** LayerNorm/RMSNorm scale: around 1, with outlier channels 10-50x. */
  gamma(base: string): Value {
    const h = this.cfg.hidden;
    const data = Float32Array.from({ length: h }, (_, c) => (1 + 0.1 * this.normal()) * this.boost(c) ** 0.5);
    return this.b.initializer(this.name(base), Tensor.from(DataType.FLOAT, [h], data));
  }

  bias(base: string, n: number, std = 0.02): Value {
    return this.b.initializer(this.name(base), Tensor.from(DataType.FLOAT, [n], Float32Array.from({ length: n }, () => this.normal() * std)));
  }

  f(v: number): Value {
    return this.b.initializer(this.name('const'), Tensor.from(DataType.FLOAT, [], Float32Array.of(v)));
  }

  i64(values: number[], scalar = false): Value {
    return this.b.initializer(this.name('const'), Tensor.from(DataType.INT64, scalar ? [] : [values.length], BigInt64Array.from(values.map(BigInt))));
  }

  op(type: string, inputs: Array<Value | null>, attrs: Record<string, number | number[] | string | Tensor> = {}, floats?: string[]): Value {
    return this.b.op(type, inputs, attrs, floats ? { floats } : {})[0]!;
  }

  /** Unsqueeze/ReduceMean axes: an attribute or an input, by opset. */
  unsqueeze(x: Value, axes: number[]): Value {
    return this.style.opset >= 13 ? this.op('Unsqueeze', [x, this.i64(axes)]) : this.op('Unsqueeze', [x], { axes });
  }

  reduceMean(x: Value, axes: number[]): Value {
    return this.style.opset >= 18 ? this.op('ReduceMean', [x, this.i64(axes)], { keepdims: 1 }) : this.op('ReduceMean', [x], { axes, keepdims: 1 });
  }

  /** Dimension `i` of `x` as a 1-element int64 vector (TorchScript: Shape -> Gather -> Unsqueeze). */
  dim(x: Value, i: number): Value {
    const s = this.op('Shape', [x]);
    const g = this.op('Gather', [s, this.i64([i], true)], { axis: 0 });
    return this.unsqueeze(g, [0]);
  }

  /** Reshape to `[x.dim0, x.dim1, ...rest]` the way each exporter writes it. */
  reshapeKeep2(x: Value, rest: number[]): Value {
    if (this.style.exporter === 'dynamo') return this.op('Reshape', [x, this.i64([0, -1, ...rest])]);
    const shape = this.op('Concat', [this.dim(x, 0), this.dim(x, 1), ...rest.map((r) => this.i64([r]))], { axis: 0 });
    return this.op('Reshape', [x, shape]);
  }

  /** Linear layer with [in, out] weights (TorchScript writes Add(bias, MatMul); Conv1D/dynamo MatMul + bias). */
  linear(x: Value, inDim: number, outDim: number, base: string, opts: { bias?: boolean; outlierOut?: boolean; biasFirst?: boolean; gain?: number } = {}): Value {
    const w = this.weight(`${base}.weight`, [inDim, outDim], (opts.gain ?? 1) / Math.sqrt(inDim), opts.outlierOut ? 1 : undefined);
    const mm = this.op('MatMul', [x, w]);
    if (opts.bias === false) return mm;
    const b = this.bias(`${base}.bias`, outDim);
    return opts.biasFirst ? this.op('Add', [b, mm]) : this.op('Add', [mm, b]);
  }

  layerNorm(x: Value, base: string, decomposed: boolean, eps = 1e-5): Value {
    const g = this.gamma(`${base}.weight`);
    const beta = this.bias(`${base}.bias`, this.cfg.hidden, 0.05);
    if (!decomposed) return this.op('LayerNormalization', [x, g, beta], { axis: -1, epsilon: eps }, ['epsilon']);
    const mean = this.reduceMean(x, [-1]);
    const d = this.op('Sub', [x, mean]);
    const sq = this.op('Pow', [d, this.f(2)]);
    const v = this.reduceMean(sq, [-1]);
    const s = this.op('Sqrt', [this.op('Add', [v, this.f(eps)])]);
    const n = this.op('Div', [d, s]);
    return this.op('Add', [this.op('Mul', [n, g]), beta]);
  }

  /** Llama RMSNorm: x * rsqrt(mean(x^2) + eps) * weight (Reciprocal or Div form). */
  rmsNorm(x: Value, base: string, form: 'reciprocal' | 'div', eps = 1e-6): Value {
    const g = this.gamma(`${base}.weight`);
    const ms = this.reduceMean(this.op('Pow', [x, this.f(2)]), [-1]);
    const s = this.op('Sqrt', [this.op('Add', [ms, this.f(eps)])]);
    const n = form === 'reciprocal' ? this.op('Mul', [x, this.op('Reciprocal', [s])]) : this.op('Div', [x, s]);
    return this.op('Mul', [g, n]);
  }

  geluErf(x: Value): Value {
    if (this.style.exporter === 'dynamo') {
      const e = this.op('Erf', [this.op('Mul', [x, this.f(Math.SQRT1_2)])]);
      const half = this.op('Mul', [this.f(0.5), x]);
      return this.op('Mul', [half, this.op('Add', [this.f(1), e])]);
    }
    const e = this.op('Erf', [this.op('Div', [x, this.f(Math.SQRT2)])]);
    return this.op('Mul', [this.op('Mul', [x, this.op('Add', [e, this.f(1)])]), this.f(0.5)]);
  }

  geluTanh(x: Value): Value {
    const half = this.op('Mul', [this.f(0.5), x]);
    const cube = this.op('Mul', [this.f(0.044715), this.op('Pow', [x, this.f(3)])]);
    const inner = this.op('Mul', [this.f(Math.sqrt(2 / Math.PI)), this.op('Add', [x, cube])]);
    return this.op('Mul', [half, this.op('Add', [this.f(1), this.op('Tanh', [inner])])]);
  }

  /** [B, S, H] -> [B, N, S, D] (or [B, N, D, S] with `keyT`, TorchScript's merged transposes). */
  splitHeads(x: Value, keyT = false): Value {
    const { heads } = this.cfg;
    const r = this.reshapeKeep2(x, [heads, this.cfg.hidden / heads]);
    return this.op('Transpose', [r], { perm: keyT ? [0, 2, 3, 1] : [0, 2, 1, 3] });
  }

  /** [B, N, S, D] -> [B, S, H]. */
  mergeHeads(x: Value): Value {
    const t = this.op('Transpose', [x], { perm: [0, 2, 1, 3] });
    return this.reshapeKeep2(t, [this.cfg.hidden]);
  }

  /** softmax(scores + mask) @ v with the exporter's scaling. `kT` is [B, N, D, S]. */
  sdpa(q: Value, kT: Value, v: Value, mask: (scores: Value) => Value): Value {
    const d = this.cfg.hidden / this.cfg.heads;
    let scores: Value;
    if (this.style.exporter === 'dynamo') {
      const s = Math.sqrt(1 / Math.sqrt(d));
      scores = this.op('MatMul', [this.op('Mul', [q, this.f(s)]), this.op('Mul', [kT, this.f(s)])]);
    } else {
      scores = this.op('Div', [this.op('MatMul', [q, kT]), this.f(Math.sqrt(d))]);
    }
    const p = this.op('Softmax', [mask(scores)], { axis: this.style.opset >= 13 ? -1 : 3 });
    return this.op('MatMul', [p, v]);
  }

  /** Causal mask as a bool [1, 1, S, S] slice of a [maxPos, maxPos] lower-triangular buffer. */
  causalBuffer(ids: Value): Value {
    const m = this.cfg.maxPositions;
    const data = new Uint8Array(m * m);
    for (let i = 0; i < m; i++) for (let j = 0; j <= i; j++) data[i * m + j] = 1;
    const buf = this.b.initializer(this.name('attn.bias'), Tensor.from(DataType.BOOL, [1, 1, m, m], data));
    const s = this.dim(ids, 1);
    const rows = this.op('Slice', [buf, this.i64([0]), s, this.i64([2])]);
    return this.op('Slice', [rows, this.i64([0]), s, this.i64([3])]);
  }

  embed(ids: Value, base: string): Value {
    const { vocab, hidden } = this.cfg;
    const wte = this.weight(`${base}.word_embeddings.weight`, [vocab, hidden], 0.05, 1);
    return this.op('Gather', [wte, ids], { axis: 0 });
  }

  /** Learned positions: Gather of a [maxPos, H] table by 0..seq-1 (Slice of a buffer or Range). */
  positions(ids: Value, base: string): Value {
    const { maxPositions, hidden } = this.cfg;
    const wpe = this.weight(`${base}.position_embeddings.weight`, [maxPositions, hidden], 0.02, 1);
    const seq = this.dim(ids, 1);
    let pos: Value;
    if (this.style.exporter === 'torchscript') {
      const buf = this.b.initializer(this.name('position_ids'), Tensor.from(DataType.INT64, [1, maxPositions], BigInt64Array.from({ length: maxPositions }, (_, i) => BigInt(i))));
      pos = this.op('Slice', [buf, this.i64([0]), seq, this.i64([1]), this.i64([1])]);
    } else {
      const n = this.op('Squeeze', [seq, this.i64([0])]);
      pos = this.unsqueeze(this.op('Range', [this.i64([0], true), n, this.i64([1], true)]), [0]);
    }
    return this.op('Gather', [wpe, pos], { axis: 0 });
  }

  model(out: Value, name: string, dims: Array<string | number>): Model {
    this.b.output(out, name, 'float32', dims);
    return this.b.model({ producerName: this.style.exporter === 'dynamo' ? 'pytorch-dynamo' : 'pytorch' });
  }
}

function cfgOf(c?: Partial<TransformerConfig>): TransformerConfig {
  const cfg = { ...DEFAULT_CONFIG, ...c };
  if (cfg.hidden % cfg.heads !== 0 || (cfg.hidden / cfg.heads) % 2 !== 0) throw new Error(`hidden ${cfg.hidden} must split into ${cfg.heads} heads of even size`);
  return cfg;
}

// ---------------------------------------------------------------------------------------------
// BERT-like encoder

export function bertEncoder(style: Style, c?: Partial<TransformerConfig>): Model {
  const cfg = cfgOf(c);
  const w = new Writer(cfg, style);
  const { b } = w;
  const decomposed = style.opset < 17;
  const ids = b.input('input_ids', 'int64', ['batch', 'sequence']);
  const mask = b.input('attention_mask', 'int64', ['batch', 'sequence']);
  let h = w.op('Add', [w.embed(ids, 'embeddings'), w.positions(ids, 'embeddings')]);
  h = w.layerNorm(h, 'embeddings.LayerNorm', decomposed, 1e-12);
  // extended attention mask: [B, 1, 1, T] (TorchScript) or [B, 1, S, T] by Expand/Where (dynamo)
  let addMask: (s: Value) => Value;
  if (style.exporter === 'torchscript') {
    const m = w.op('Cast', [w.unsqueeze(w.unsqueeze(mask, [1]), [2])], { to: DataType.FLOAT });
    const ext = w.op('Mul', [w.op('Sub', [w.f(1), m]), w.f(FINFO_MIN)]);
    addMask = (s) => w.op('Add', [s, ext]);
  } else {
    const m4 = w.unsqueeze(mask, [1, 2]);
    const shape = w.op('Concat', [w.dim(mask, 0), w.i64([1]), w.dim(mask, 1), w.dim(mask, 1)], { axis: 0 });
    const expanded = w.op('Cast', [w.op('Expand', [m4, shape])], { to: DataType.FLOAT });
    const inverted = w.op('Sub', [w.f(1), expanded]);
    const ext = w.op('Where', [w.op('Cast', [inverted], { to: DataType.BOOL }), w.f(FINFO_MIN), inverted]);
    addMask = (s) => w.op('Add', [s, ext]);
  }
  const biasFirst = style.exporter === 'torchscript';
  for (let l = 0; l < cfg.layers; l++) {
    const p = `encoder.layer.${l}`;
    const q = w.splitHeads(w.linear(h, cfg.hidden, cfg.hidden, `${p}.attention.self.query`, { biasFirst, gain: QK_GAIN }));
    const k = w.linear(h, cfg.hidden, cfg.hidden, `${p}.attention.self.key`, { biasFirst, gain: QK_GAIN });
    const kT = style.exporter === 'torchscript' ? w.splitHeads(k, true) : w.op('Transpose', [w.splitHeads(k)], { perm: [0, 1, 3, 2] });
    const v = w.splitHeads(w.linear(h, cfg.hidden, cfg.hidden, `${p}.attention.self.value`, { biasFirst }));
    const ctx = w.mergeHeads(w.sdpa(q, kT, v, addMask));
    const attn = w.linear(ctx, cfg.hidden, cfg.hidden, `${p}.attention.output.dense`, { biasFirst, outlierOut: true });
    h = w.layerNorm(w.op('Add', [attn, h]), `${p}.attention.output.LayerNorm`, decomposed, 1e-12);
    const inter = w.geluErf(w.linear(h, cfg.hidden, cfg.ffn, `${p}.intermediate.dense`, { biasFirst }));
    const out = w.linear(inter, cfg.ffn, cfg.hidden, `${p}.output.dense`, { biasFirst, outlierOut: true });
    h = w.layerNorm(w.op('Add', [out, h]), `${p}.output.LayerNorm`, decomposed, 1e-12);
  }
  return w.model(h, 'last_hidden_state', ['batch', 'sequence', cfg.hidden]);
}

// ---------------------------------------------------------------------------------------------
// GPT-2-like decoder

export function gpt2Decoder(style: Style, c?: Partial<TransformerConfig>): Model {
  const cfg = cfgOf(c);
  const w = new Writer(cfg, style);
  const { b } = w;
  const decomposed = style.opset < 17;
  const ids = b.input('input_ids', 'int64', ['batch', 'sequence']);
  const wte = w.weight('transformer.wte.weight', [cfg.vocab, cfg.hidden], 0.05, 1);
  let h = w.op('Add', [w.op('Gather', [wte, ids], { axis: 0 }), w.positions(ids, 'transformer.wpe')]);
  const causal = w.causalBuffer(ids);
  const masked = (s: Value) => w.op('Where', [causal, s, w.f(FINFO_MIN)]);
  for (let l = 0; l < cfg.layers; l++) {
    const p = `transformer.h.${l}`;
    const x = w.layerNorm(h, `${p}.ln_1`, decomposed);
    const qkv = w.linear(x, cfg.hidden, 3 * cfg.hidden, `${p}.attn.c_attn`, { gain: QK_GAIN });
    const [q, k, v] = b.op('Split', style.opset >= 13 ? [qkv, w.i64([cfg.hidden, cfg.hidden, cfg.hidden])] : [qkv], style.opset >= 13 ? { axis: 2 } : { axis: 2, split: [cfg.hidden, cfg.hidden, cfg.hidden] }, { outputs: 3 });
    const ctx = w.mergeHeads(w.sdpa(w.splitHeads(q!), w.splitHeads(k!, true), w.splitHeads(v!), masked));
    h = w.op('Add', [w.linear(ctx, cfg.hidden, cfg.hidden, `${p}.attn.c_proj`, { outlierOut: true }), h]);
    const y = w.layerNorm(h, `${p}.ln_2`, decomposed);
    const fc = w.geluTanh(w.linear(y, cfg.hidden, cfg.ffn, `${p}.mlp.c_fc`));
    h = w.op('Add', [w.linear(fc, cfg.ffn, cfg.hidden, `${p}.mlp.c_proj`, { outlierOut: true }), h]);
  }
  h = w.layerNorm(h, 'transformer.ln_f', decomposed);
  // tied LM head: x @ wte^T
  const logits = w.op('MatMul', [h, w.op('Transpose', [wte], { perm: [1, 0] })]);
  return w.model(logits, 'logits', ['batch', 'sequence', cfg.vocab]);
}

// ---------------------------------------------------------------------------------------------
// Llama-like decoder

export function llamaDecoder(style: Style, c?: Partial<TransformerConfig>): Model {
  const cfg = cfgOf(c);
  const w = new Writer(cfg, style);
  const { b } = w;
  const form = style.exporter === 'dynamo' ? 'div' : 'reciprocal';
  const d = cfg.hidden / cfg.heads;
  const ids = b.input('input_ids', 'int64', ['batch', 'sequence']);
  let h = w.embed(ids, 'model.embed_tokens');
  // rotary caches [maxPos, D]: cos/sin of pos * theta^(-2i/D), halves repeated
  const cos = new Float32Array(cfg.maxPositions * d);
  const sin = new Float32Array(cfg.maxPositions * d);
  for (let pos = 0; pos < cfg.maxPositions; pos++) {
    for (let i = 0; i < d / 2; i++) {
      const a = pos * 10000 ** (-(2 * i) / d);
      cos[pos * d + i] = cos[pos * d + i + d / 2] = Math.cos(a);
      sin[pos * d + i] = sin[pos * d + i + d / 2] = Math.sin(a);
    }
  }
  const seq = w.dim(ids, 1);
  const cosCache = b.initializer('model.rotary_emb.cos_cached', Tensor.from(DataType.FLOAT, [cfg.maxPositions, d], cos));
  const sinCache = b.initializer('model.rotary_emb.sin_cached', Tensor.from(DataType.FLOAT, [cfg.maxPositions, d], sin));
  const n = w.op('Squeeze', [seq, w.i64([0])]);
  const positions = w.unsqueeze(w.op('Range', [w.i64([0], true), n, w.i64([1], true)]), [0]);
  // [1, S, D] -> [1, 1, S, D]
  const cosP = w.unsqueeze(w.op('Gather', [cosCache, positions], { axis: 0 }), [1]);
  const sinP = w.unsqueeze(w.op('Gather', [sinCache, positions], { axis: 0 }), [1]);
  const rotate = (x: Value) => {
    const x1 = w.op('Slice', [x, w.i64([0]), w.i64([d / 2]), w.i64([3]), w.i64([1])]);
    const x2 = w.op('Slice', [x, w.i64([d / 2]), w.i64([Number.MAX_SAFE_INTEGER]), w.i64([3]), w.i64([1])]);
    const rot = w.op('Concat', [w.op('Neg', [x2]), x1], { axis: -1 });
    return w.op('Add', [w.op('Mul', [x, cosP]), w.op('Mul', [rot, sinP])]);
  };
  // additive causal mask [1, 1, S, S]: 0 on and below the diagonal, finfo.min above
  const m = cfg.maxPositions;
  const maskData = new Float32Array(m * m);
  for (let i = 0; i < m; i++) for (let j = i + 1; j < m; j++) maskData[i * m + j] = FINFO_MIN;
  const maskBuf = b.initializer('causal_mask', Tensor.from(DataType.FLOAT, [1, 1, m, m], maskData));
  const causal = w.op('Slice', [maskBuf, w.i64([0, 0]), w.op('Concat', [seq, seq], { axis: 0 }), w.i64([2, 3])]);
  const addMask = (s: Value) => w.op('Add', [s, causal]);
  for (let l = 0; l < cfg.layers; l++) {
    const p = `model.layers.${l}`;
    const x = w.rmsNorm(h, `${p}.input_layernorm`, form);
    const q = rotate(w.splitHeads(w.linear(x, cfg.hidden, cfg.hidden, `${p}.self_attn.q_proj`, { bias: false, gain: QK_GAIN })));
    const k = rotate(w.splitHeads(w.linear(x, cfg.hidden, cfg.hidden, `${p}.self_attn.k_proj`, { bias: false, gain: QK_GAIN })));
    const v = w.splitHeads(w.linear(x, cfg.hidden, cfg.hidden, `${p}.self_attn.v_proj`, { bias: false }));
    const kT = w.op('Transpose', [k], { perm: [0, 1, 3, 2] });
    const ctx = w.mergeHeads(w.sdpa(q, kT, v, addMask));
    h = w.op('Add', [h, w.linear(ctx, cfg.hidden, cfg.hidden, `${p}.self_attn.o_proj`, { bias: false, outlierOut: true })]);
    const y = w.rmsNorm(h, `${p}.post_attention_layernorm`, form);
    const gate = w.linear(y, cfg.hidden, cfg.ffn, `${p}.mlp.gate_proj`, { bias: false });
    const up = w.linear(y, cfg.hidden, cfg.ffn, `${p}.mlp.up_proj`, { bias: false });
    const act = w.op('Mul', [w.op('Mul', [gate, w.op('Sigmoid', [gate])]), up]);
    h = w.op('Add', [h, w.linear(act, cfg.ffn, cfg.hidden, `${p}.mlp.down_proj`, { bias: false, outlierOut: true })]);
  }
  h = w.rmsNorm(h, 'model.norm', form);
  const logits = w.linear(h, cfg.hidden, cfg.vocab, 'lm_head', { bias: false });
  return w.model(logits, 'logits', ['batch', 'sequence', cfg.vocab]);
}

// ---------------------------------------------------------------------------------------------
// the variant table

export const TRANSFORMER_VARIANTS: readonly TransformerVariant[] = [
  { name: 'bert-ts14', kind: 'encoder', exporter: 'torchscript', opset: 14, inputs: ['input_ids', 'attention_mask'], norm: 'layer-norm-decomposed', gelu: 'erf', build: (c) => bertEncoder({ exporter: 'torchscript', opset: 14 }, c) },
  { name: 'bert-ts17', kind: 'encoder', exporter: 'torchscript', opset: 17, inputs: ['input_ids', 'attention_mask'], norm: 'layer-norm', gelu: 'erf', build: (c) => bertEncoder({ exporter: 'torchscript', opset: 17 }, c) },
  { name: 'bert-dynamo', kind: 'encoder', exporter: 'dynamo', opset: 18, inputs: ['input_ids', 'attention_mask'], norm: 'layer-norm', gelu: 'erf', build: (c) => bertEncoder({ exporter: 'dynamo', opset: 18 }, c) },
  { name: 'gpt2-ts14', kind: 'decoder', exporter: 'torchscript', opset: 14, inputs: ['input_ids'], norm: 'layer-norm-decomposed', gelu: 'tanh', build: (c) => gpt2Decoder({ exporter: 'torchscript', opset: 14 }, c) },
  { name: 'gpt2-ts17', kind: 'decoder', exporter: 'torchscript', opset: 17, inputs: ['input_ids'], norm: 'layer-norm', gelu: 'tanh', build: (c) => gpt2Decoder({ exporter: 'torchscript', opset: 17 }, c) },
  { name: 'llama-ts17', kind: 'decoder', exporter: 'torchscript', opset: 17, inputs: ['input_ids'], norm: 'rms-norm', build: (c) => llamaDecoder({ exporter: 'torchscript', opset: 17 }, c) },
  { name: 'llama-dynamo', kind: 'decoder', exporter: 'dynamo', opset: 18, inputs: ['input_ids'], norm: 'rms-norm', build: (c) => llamaDecoder({ exporter: 'dynamo', opset: 18 }, c) },
];

export function transformerVariant(name: string): TransformerVariant {
  const v = TRANSFORMER_VARIANTS.find((x) => x.name === name);
  if (!v) throw new Error(`no transformer test model '${name}'; have ${TRANSFORMER_VARIANTS.map((x) => x.name).join(', ')}`);
  return v;
}
