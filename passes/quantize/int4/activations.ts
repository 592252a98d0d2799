/**
 * Second moments of layer inputs on calibration data: for each named float tensor X whose last axis
 * has K elements, H = sum over every row x (all leading axes flattened) of x x^T, a K x K matrix.
 * GPTQ uses H as the Hessian of a layer's squared output error; tr(D H D^T) is the squared output
 * error of a weight change D on the same data.
 *
 * onnxruntime computes them: the model is run once per feed with, for each tensor, Reshape(X, [-1, K])
 * -> Gemm(X, X, transA = 1) added as an extra output, so each feed returns one K x K matrix per tensor
 * (computed by MLAS at the speed of the model's own MatMuls, not row by row in JS); the sums over feeds
 * are taken in float64. The same run returns the model's own float outputs, the reference the int4
 * pass measures its candidates against (no second float pass).
 */
import { DataType } from '../../../core/dtype.js';
import { inputError } from '../../../core/errors.js';
import type { Feed } from '../../../core/host-tensor.js';
import { Tensor } from '../../../core/tensor.js';
import { Attribute, Model, Node, Value } from '../../../ir/ir.js';
import { cloneModel } from '../../../onnx/codec.js';
import type { Runner } from '../../../runtime/runner-types.js';

export interface InputMoments {
  K: number;
  /** [K, K], symmetric. */
  hessian: Float64Array;
}

export interface MomentsRun {
  moments: Map<string, InputMoments>;
  /** The model's float32 outputs per feed (feeds in order). */
  outputs: Array<Record<string, Float32Array>>;
}

/** `model` with one extra [K, K] output per tensor: X^T X of the tensor flattened to [rows, K]. */
function momentsModel(model: Model, tensors: ReadonlyMap<string, number>): { model: Model; outputs: Map<string, string> } {
  const copy = cloneModel(model);
  const g = copy.graph;
  const byName = new Map<string, Value>();
  for (const v of g.inputs) byName.set(v.name, v);
  for (const n of g.nodes) for (const o of n.outputs) byName.set(o.name, o);
  const names = copy.names;
  const outputs = new Map<string, string>();
  for (const [t, K] of tensors) {
    const x = byName.get(t);
    if (!x) throw inputError('INT4_CALIB_SHAPE', `layer input '${t}' is not a node output or graph input of the prepared model`, { tensor: t });
    const shape = g.addInitializer(Tensor.from(DataType.INT64, [2], BigInt64Array.of(-1n, BigInt(K))), names.fresh(`${t}__rows_shape`));
    const rows = new Value(names.fresh(`${t}__rows`));
    const reshape = new Node('Reshape', [x, shape], [rows]);
    reshape.name = rows.name;
    const out = new Value(names.fresh(`${t}__moment`));
    out.setTensorType(DataType.FLOAT, [K, K]);
    const gemm = new Node('Gemm', [rows, rows], [out]);
    gemm.name = out.name;
    gemm.setAttr(Attribute.int('transA', 1));
    g.insertNode(reshape);
    g.insertNode(gemm);
    g.addOutput(out);
    outputs.set(t, out.name);
  }
  return { model: copy, outputs };
}

/** Feeds per run when they can be stacked on the batch axis. */
const STACK = 8;

/**
 * `feeds` stacked in groups of up to {@link STACK} along axis 0 when that is safe: every graph input's
 * first dimension is symbolic and every feed has the same inputs with the same dims (batch 1 windows of
 * one length, as calibration sets are). Otherwise one group per feed.
 */
function stackFeeds(model: Model, feeds: readonly Feed[]): Feed[][] {
  const single = feeds.map((f) => [f]);
  const first = feeds[0];
  if (!first) return single;
  const dynamicBatch = model.graph.inputs.filter((v) => !model.graph.initializers.has(v.name)).every((v) => {
    const d = v.shape?.[0];
    return d === undefined || typeof d === 'string';
  });
  const sig = (f: Feed) => Object.keys(f).sort().map((k) => `${k}:${f[k]!.type}:${f[k]!.dims.join('x')}`).join('|');
  if (!dynamicBatch || !feeds.every((f) => sig(f) === sig(first))) return single;
  const groups: Feed[][] = [];
  for (let i = 0; i < feeds.length; i += STACK) groups.push(feeds.slice(i, i + STACK));
  return groups;
}

function concatFeeds(group: readonly Feed[]): Feed {
  if (group.length === 1) return group[0]!;
  const out: Feed = {};
  for (const k of Object.keys(group[0]!)) {
    const parts = group.map((f) => f[k]!);
    const t = parts[0]!;
    const data = new (t.data.constructor as { new (n: number): typeof t.data })(parts.reduce((a, p) => a + p.data.length, 0));
    let at = 0;
    for (const p of parts) {
      (data as Float32Array).set(p.data as Float32Array, at);
      at += p.data.length;
    }
    out[k] = { type: t.type, dims: [parts.reduce((a, p) => a + p.dims[0]!, 0), ...t.dims.slice(1)], data };
  }
  return out;
}

/**
 * H for each tensor in `tensors` (name -> K) over `feeds`, running the model on groups of feeds
 * stacked on the batch axis where that is safe (one run per feed otherwise).
 */
export async function collectInputMoments(model: Model, tensors: ReadonlyMap<string, number>, feeds: readonly Feed[], runner: Runner, tick?: () => void): Promise<MomentsRun> {
  const moments = new Map<string, InputMoments>();
  for (const [name, K] of tensors) moments.set(name, { K, hessian: new Float64Array(K * K) });
  const result: MomentsRun = { moments, outputs: [] };
  if (feeds.length === 0) return result;
  const { model: augmented, outputs } = momentsModel(model, tensors);
  const modelOutputs = model.graph.outputs.map((o) => o.name);
  const wanted = [...modelOutputs, ...outputs.values()];
  const session = await runner.open(augmented, { graphOptimizationLevel: 'basic' }, '(model with layer input moments)');
  try {
    for (const group of stackFeeds(model, feeds)) {
      const res = await session.run(concatFeeds(group), wanted);
      for (const [name, m] of moments) {
        const t = res[outputs.get(name)!];
        if (!t || !(t.data instanceof Float32Array)) throw inputError('INT4_CALIB_NOT_FLOAT', `layer input '${name}' is not a float32 tensor on the calibration data`, { tensor: name });
        const h = m.hessian;
        const d = t.data;
        for (let i = 0; i < d.length; i++) h[i]! += d[i]!;
      }
      // the model's own outputs, split back per feed (rows of the batch axis)
      for (let j = 0; j < group.length; j++) {
        const outs: Record<string, Float32Array> = {};
        for (const o of modelOutputs) {
          const t = res[o];
          if (!t || !(t.data instanceof Float32Array)) continue;
          if (group.length === 1) outs[o] = t.data;
          else if (t.dims[0] === group.length) {
            const per = t.data.length / group.length;
            outs[o] = t.data.slice(j * per, (j + 1) * per);
          }
        }
        result.outputs.push(outs);
      }
      for (let j = 0; j < group.length; j++) tick?.();
    }
  } finally {
    await session.dispose();
  }
  return result;
}
