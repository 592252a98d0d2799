/**
 * Fidelity of a byte-level language model on a fixed set of windows of a corpus split:
 *   bits per byte      = mean over scored positions of -log2 softmax(logits)[next byte]
 *   next-byte accuracy = share of positions where the arg-max logit is the next byte
 * Window i of `contexts` starts at floor(i * (len - seq - 1) / (contexts - 1)) of the split, holds
 * `seq` input bytes and scores every position (the first with one byte of context, the last with
 * `seq`). The log-softmax is taken in float64 in JS from the model's float logits, so two models are
 * compared on exactly the same positions and arithmetic. Any model with the `input_ids` int64
 * [batch, sequence] -> `logits` [batch, sequence, 256] interface works (fp32, fp16 outputs, int4 ...).
 */
import { inputError } from '../../core/errors.js';
import { toFloat64 } from '../../core/host-tensor.js';
import { createSession, ModelSource, Session, SessionOptions } from '../../runtime/session.js';
import { evenWindows, idsTensor, LmSplit, loadLmCorpus } from './data.js';
import { LM_VOCAB } from './model.js';

export interface FidelityOptions {
  /** Corpus split (default 'eval'). */
  split?: LmSplit;
  /** Number of windows (default 256). */
  contexts?: number;
  /** Bytes per window (default 128). */
  seq?: number;
  /** Windows per run (default 8). */
  batch?: number;
  /** Session options (default: onnxruntime defaults with graph optimization 'all'). */
  session?: SessionOptions;
  /** Evaluate this byte string instead of a corpus split (tests, custom text). */
  bytes?: Uint8Array;
}

export interface LanguageModelFidelity {
  bitsPerByte: number;
  nextByteAccuracy: number;
  /** Scored positions. */
  tokens: number;
}

/** Accumulates bits and hits over logits rows [rows, 256] against target bytes. */
export class FidelityMeter {
  private nats = 0;
  private hits = 0;
  private n = 0;

  add(logits: ArrayLike<number>, targets: ArrayLike<number>): void {
    const rows = targets.length;
    if (logits.length !== rows * LM_VOCAB) throw inputError('LM_BAD_OPTION', `logits hold ${logits.length} values, expected ${rows} x ${LM_VOCAB}`);
    for (let r = 0; r < rows; r++) {
      const base = r * LM_VOCAB;
      let max = -Infinity;
      let arg = 0;
      for (let j = 0; j < LM_VOCAB; j++) {
        const v = logits[base + j]!;
        if (v > max) {
          max = v;
          arg = j;
        }
      }
      let sum = 0;
      for (let j = 0; j < LM_VOCAB; j++) sum += Math.exp(logits[base + j]! - max);
      const t = targets[r]!;
      this.nats += Math.log(sum) + max - logits[base + t]!;
      if (arg === t) this.hits++;
      this.n++;
    }
  }

  result(): LanguageModelFidelity {
    return { bitsPerByte: this.nats / this.n / Math.LN2, nextByteAccuracy: this.hits / this.n, tokens: this.n };
  }
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw inputError('LM_BAD_OPTION', `${name} must be a positive integer, got ${v}`);
  return v;
}

/** Fidelity of an open session (see the module comment); the session is not disposed. */
export async function sessionFidelity(session: Session, options: FidelityOptions = {}): Promise<LanguageModelFidelity> {
  const seq = positiveInt('seq', options.seq ?? 128);
  const contexts = positiveInt('contexts', options.contexts ?? 256);
  const batch = positiveInt('batch', options.batch ?? 8);
  const bytes = options.bytes ?? loadLmCorpus()[options.split ?? 'eval'];
  const offsets = evenWindows(bytes.length, contexts, seq + 1);
  const meter = new FidelityMeter();
  for (let i = 0; i < offsets.length; i += batch) {
    const chunk = offsets.slice(i, i + batch);
    const out = await session.run({ input_ids: { type: 'int64', dims: [chunk.length, seq], data: idsTensor(bytes, chunk, seq) } }, ['logits']);
    const logits = out.logits;
    if (!logits) throw inputError('LM_BAD_OPTION', `${session.name} has no output named logits`, { file: session.name });
    const targets = Array.from(idsTensor(bytes, chunk, seq, 1), Number);
    meter.add(toFloat64(logits), targets);
  }
  return meter.result();
}

/**
 * Bits per byte and next-byte accuracy of a language model (a path or model bytes) on fixed windows
 * of the held-out split, in onnxruntime-node. Deterministic: same model, same numbers.
 */
export async function languageModelFidelity(model: ModelSource, options: FidelityOptions = {}): Promise<LanguageModelFidelity> {
  const session = await createSession(model, options.session ?? {});
  try {
    return await sessionFidelity(session, options);
  } finally {
    await session.dispose();
  }
}
