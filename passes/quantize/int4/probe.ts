/**
 * Measurements on candidate models, against the float model on fixed calibration feeds:
 * - output error: sum of squared differences over every float output and feed, divided by the float
 *   outputs' energy (relative MSE; SQNR = -10 log10 of it);
 * Used to decide which layers keep 8 bits: {@link trialErrors} measures several settings of the
 * first and last weights in one session (the weights as graph inputs fed per trial).
 */
import type { Feed } from '../../../core/host-tensor.js';
import { DataType } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';
import { Attribute, Value, type Model } from '../../../ir/ir.js';
import { cloneModel } from '../../../onnx/codec.js';
import type { ModelSession, Runner } from '../../../runtime/runner-types.js';
import { concatFeeds, stackFeeds } from './activations.js';

export interface Reference {
  feeds: readonly Feed[];
  /** Float outputs per feed (float32 outputs only). */
  outputs: Array<Record<string, Float32Array>>;
  energy: number;
}

const SESSION = { intraOpNumThreads: 1, allowSpinning: false } as const;

function floatOutputs(out: Feed): Record<string, Float32Array> {
  const r: Record<string, Float32Array> = {};
  for (const [k, t] of Object.entries(out)) if (t.data instanceof Float32Array) r[k] = t.data;
  return r;
}

/** The reference from float outputs already computed on `feeds`. */
export function referenceOf(feeds: readonly Feed[], outputs: Array<Record<string, Float32Array>>): Reference {
  let energy = 0;
  for (const o of outputs) for (const v of Object.values(o)) for (let i = 0; i < v.length; i++) energy += v[i]! * v[i]!;
  return { feeds, outputs, energy };
}

/** The float model's outputs on `feeds`. */
export async function reference(model: Model, feeds: readonly Feed[], runner: Runner): Promise<Reference> {
  const s = await runner.open(model, SESSION, '(float model)');
  try {
    const outputs: Array<Record<string, Float32Array>> = [];
    for (const f of feeds) outputs.push(floatOutputs(await s.run(f)));
    return referenceOf(feeds, outputs);
  } finally {
    await s.dispose();
  }
}

async function errorOf(s: ModelSession, ref: Reference, extra: Feed = {}, groups?: readonly Feed[][]): Promise<number> {
  let sse = 0;
  let i = 0;
  for (const group of groups ?? ref.feeds.map((f) => [f])) {
    const wants = ref.outputs.slice(i, i + group.length);
    const o = floatOutputs(await s.run({ ...(group.length === 1 ? group[0]! : concatFeeds(group)), ...extra }));
    // a stacked run's outputs hold the feeds' outputs one after the other (batch axis first); else one run per feed
    const stacked = Object.keys(wants[0]!).every((k) => o[k]?.length === wants.reduce((a, w) => a + w[k]!.length, 0));
    const outs = [o];
    if (!stacked) {
      outs.length = 0;
      for (const f of group) outs.push(floatOutputs(await s.run({ ...f, ...extra })));
    }
    for (const k of Object.keys(wants[0]!)) {
      let at = 0;
      wants.forEach((w, j) => {
        const want = w[k]!;
        sse += squaredError(outs[stacked ? 0 : j]![k]!, stacked ? at : 0, want);
        at += want.length;
      });
    }
    i += group.length;
  }
  return ref.energy > 0 ? sse / ref.energy : sse;
}

/**
 * Sum of squared differences of got[from ..] and `want` (Infinity for a non-finite one). A plain
 * function, not a loop in the async errorOf: V8 compiles hot loops in async functions less well.
 */
function squaredError(got: Float32Array, from: number, want: Float32Array): number {
  let sse = 0;
  for (let e = 0; e < want.length; e++) {
    const d = got[from + e]! - want[e]!;
    sse += Number.isFinite(d) ? d * d : Infinity;
  }
  return sse;
}

/** Relative output error of `model` against the reference. */
export async function relativeError(model: Model, ref: Reference, runner: Runner): Promise<number> {
  const s = await runner.open(model, SESSION, '(candidate model)');
  try {
    return await errorOf(s, ref);
  } finally {
    await s.dispose();
  }
}

/**
 * A weight input of one node: node index in the model's node list (the same in a clone), input index,
 * and the dims of the float32 value given to it ([K, N] for MatMul and Gemm, whose transB and alpha
 * are then reset; [rows, D] for a Gather table).
 */
export interface WeightSlot {
  node: number;
  input: number;
  dims: [number, number];
}

/**
 * Relative output errors against `ref` of `model` with weights replaced, one per trial, in one
 * session: each `fixed` weight becomes a float32 constant, each of `varied` a graph input that trial t
 * feeds with trials[t][i]. (Stands for the quantized model: onnxruntime unpacks a block-quantized
 * weight to exactly these float32 values at load.)
 */
export async function trialErrors(model: Model, fixed: ReadonlyArray<[WeightSlot, Float32Array]>, varied: readonly WeightSlot[], trials: ReadonlyArray<readonly Float32Array[]>, ref: Reference, runner: Runner): Promise<number[]> {
  const m = cloneModel(model);
  const g = m.graph;
  const nodes = [...g.nodes];
  const put = (slot: WeightSlot, v: Value) => {
    const node = nodes[slot.node]!;
    node.setInput(slot.input, v);
    if (node.opType === 'Gemm') {
      node.setAttr(Attribute.int('transB', 0));
      node.setAttr(Attribute.float('alpha', 1));
    }
  };
  for (const [slot, data] of fixed) put(slot, g.addInitializer(Tensor.from(DataType.FLOAT, slot.dims, data), m.names.fresh('trial_weight')));
  const names = varied.map((slot) => {
    const v = new Value(m.names.fresh('trial_input'));
    v.setTensorType(DataType.FLOAT, slot.dims);
    g.addInput(v);
    put(slot, v);
    return v.name;
  });
  const s = await runner.open(m, SESSION, '(first/last layer trials)');
  try {
    const out: number[] = [];
    // the probe feeds stacked on the batch axis where the model allows it (stackFeeds), one run per group
    const groups = stackFeeds(model, ref.feeds);
    for (const t of trials) out.push(await errorOf(s, ref, Object.fromEntries(names.map((n, i) => [n, { type: 'float32' as const, dims: varied[i]!.dims, data: t[i]! }])), groups));
    return out;
  } finally {
    await s.dispose();
  }
}

export const sqnrDb = (relative: number): number => (relative > 0 ? -10 * Math.log10(relative) : Infinity);
