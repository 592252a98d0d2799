/**
 * A synthetic LLM-shaped model for the scale benchmark and tests, built with the project's builder
 * and written without ever holding its weights in memory: token embedding (Gather), decoder blocks
 * (LayerNormalization, attention with Q/K/V/O MatMuls, softmax(QK^T / sqrt(d)) V without a causal
 * mask (the checks run one token), a SiLU-gated MLP with gate/up/down MatMuls, residual Adds), a final
 * LayerNormalization and the LM head MatMul. Every weight is random (uniform, variance 1/fan_in,
 * from a generator seeded by the weight's name, so a copy with fewer layers has the same first
 * layers) and is written straight to the external data file in chunks of {@link CHUNK_FLOATS}.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DataType } from '../core/dtype.js';
import { Tensor } from '../core/tensor.js';
import { GraphBuilder } from '../ir/builder.js';
import type { Value } from '../ir/ir.js';
import { writeModelReferences } from '../onnx/stream.js';

export interface SyntheticLlm {
  /** Model width (4096 in the benchmark). */
  d: number;
  /** MLP width. */
  ff: number;
  vocab: number;
  layers: number;
}

/** The benchmark's shape: Llama-7B-like widths (d 4096, MLP 11008, vocabulary 32000). */
export const LLM_7B_SHAPE: Omit<SyntheticLlm, 'layers'> = { d: 4096, ff: 11008, vocab: 32000 };

const CHUNK_FLOATS = 4 << 20;

/** float32 bytes of one decoder block and of the embedding + head. */
export function llmBytes(s: SyntheticLlm): { layer: number; ends: number; total: number } {
  const layer = 4 * (4 * s.d * s.d + 3 * s.d * s.ff) + 4 * 4 * s.d;
  const ends = 4 * (2 * s.vocab * s.d) + 2 * 4 * s.d;
  return { layer, ends, total: ends + s.layers * layer };
}

/** Layers for a model of about `bytes` float32 bytes (at least 1). */
export function layersFor(bytes: number, shape: Omit<SyntheticLlm, 'layers'>): number {
  const { layer, ends } = llmBytes({ ...shape, layers: 0 });
  return Math.max(1, Math.round((bytes - ends) / layer));
}

function seedOf(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  return h >>> 0 || 1;
}

/** Writes `count` uniform floats in [-a, a] (xorshift32 from the name's seed) to `fd` at `pos`, in chunks. */
function writeRandom(fd: number, pos: number, count: number, a: number, name: string, buf: ArrayBuffer): void {
  const u32 = new Uint32Array(buf);
  const f32 = new Float32Array(buf);
  const bytes = new Uint8Array(buf);
  let s = seedOf(name);
  for (let done = 0; done < count; ) {
    const n = Math.min(CHUNK_FLOATS, count - done);
    for (let i = 0; i < n; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      u32[i] = ((s >>> 9) | 0x3f800000) >>> 0;
      f32[i] = (f32[i]! - 1.5) * 2 * a;
    }
    let w = 0;
    while (w < n * 4) w += fs.writeSync(fd, bytes, w, n * 4 - w, pos + done * 4 + w);
    done += n;
  }
}

/**
 * Writes the model to `file` and its weights to `<file>.data`; returns the data bytes. Memory: the
 * graph and one chunk.
 */
export function writeSyntheticLlm(file: string, s: SyntheticLlm): { dataBytes: number; modelBytes: number } {
  const b = new GraphBuilder({ opset: 17 });
  const location = `${path.basename(file)}.data`;
  const fd = fs.openSync(path.join(path.dirname(file), location), 'w');
  const buf = new ArrayBuffer(CHUNK_FLOATS * 4);
  let offset = 0;
  const weight = (name: string, dims: number[], fanIn: number): Value => {
    const t = new Tensor(DataType.FLOAT, dims, name);
    const length = t.byteLength;
    writeRandom(fd, offset, t.size, Math.sqrt(3 / fanIn), name, buf);
    t.dataLocation = 1;
    t.external = {
      entries: [
        { key: 'location', value: location },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(length) },
      ],
      location,
      offset,
      length,
    };
    offset += length;
    return b.initializer(name, t);
  };
  const ones = (name: string) => b.initializer(name, Tensor.from('float32', [s.d], new Float32Array(s.d).fill(1)));
  const zeros = (name: string) => b.initializer(name, Tensor.from('float32', [s.d], new Float32Array(s.d)));
  const norm = (x: Value, name: string) => b.op('LayerNormalization', [x, ones(`${name}.scale`), zeros(`${name}.bias`)], { axis: -1, epsilon: 1e-5 }, { floats: ['epsilon'] })[0]!;
  const mm = (x: Value, w: Value) => b.op('MatMul', [x, w])[0]!;
  try {
    const ids = b.input('input_ids', 'int64', [1, 'seq']);
    let x = b.op('Gather', [weight('embed_tokens', [s.vocab, s.d], 1), ids], { axis: 0 })[0]!;
    const invSqrtD = b.initializer('inv_sqrt_d', Tensor.from('float32', [], new Float32Array([1 / Math.sqrt(s.d)])));
    for (let l = 0; l < s.layers; l++) {
      const p = `layers.${l}`;
      const h = norm(x, `${p}.attn_norm`);
      const q = mm(h, weight(`${p}.q_proj`, [s.d, s.d], s.d));
      const k = mm(h, weight(`${p}.k_proj`, [s.d, s.d], s.d));
      const v = mm(h, weight(`${p}.v_proj`, [s.d, s.d], s.d));
      const kt = b.op('Transpose', [k], { perm: [0, 2, 1] })[0]!;
      const scores = b.op('Mul', [mm(q, kt), invSqrtD])[0]!;
      const attn = mm(b.op('Softmax', [scores], { axis: -1 })[0]!, v);
      x = b.op('Add', [x, mm(attn, weight(`${p}.o_proj`, [s.d, s.d], s.d))])[0]!;
      const h2 = norm(x, `${p}.mlp_norm`);
      const gate = mm(h2, weight(`${p}.gate_proj`, [s.d, s.ff], s.d));
      const up = mm(h2, weight(`${p}.up_proj`, [s.d, s.ff], s.d));
      const silu = b.op('Mul', [gate, b.op('Sigmoid', [gate])[0]!])[0]!;
      const down = mm(b.op('Mul', [silu, up])[0]!, weight(`${p}.down_proj`, [s.ff, s.d], s.ff));
      x = b.op('Add', [x, down])[0]!;
    }
    const logits = mm(norm(x, 'final_norm'), weight('lm_head', [s.d, s.vocab], s.d));
    b.output(logits, 'logits', 'float32', [1, 'seq', s.vocab]);
  } finally {
    fs.closeSync(fd);
  }
  const modelBytes = writeModelReferences(b.model({ producerName: 'onnxforge synthetic LLM' }), file);
  return { dataBytes: offset, modelBytes };
}
