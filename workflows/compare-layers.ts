/**
 * Where two backends part on one model (`compare a.onnx --backend node,wasm --debug-layers`): every
 * float tensor the main graph computes becomes a graph output, the augmented model runs on both
 * backends on the same samples, and the tensors are compared in the graph's node order. The first
 * tensor whose relative error (max abs error over the reference's largest magnitude) passes the layer
 * tolerance is where they part; the rows list that one and the worst tensors.
 *
 * Exposing a tensor as an output can keep onnxruntime from fusing across it, so the augmented model
 * runs a little differently from the plain one on either backend; the comparison is between backends
 * on the same augmented model, which is what locates the layer.
 */
import { DataType } from '../core/dtype.js';
import type { Sample } from '../data/index.js';
import { inferShapes, elemTypeOf } from '../analysis/shape-inference.js';
import { cloneModel, loadModel, serializeModel } from '../onnx/index.js';
import { type Backend, openSession } from '../runtime/backend.js';
import { OutputComparison } from '../runtime/metrics.js';
import type { SessionOptions } from '../runtime/session.js';
import type { LayerDivergence, LayerDivergenceRow } from '../report/runtime.js';

export type { LayerDivergence, LayerDivergenceRow };

/** Default relative error past which a tensor counts as parted (float32 rounding differences stay far below). */
export const DEFAULT_LAYER_TOLERANCE = 1e-3;

export async function divergingLayers(
  modelPath: string,
  [refBackend, candBackend]: [Backend, Backend],
  samples: () => AsyncIterable<Sample>,
  options: { reference?: SessionOptions; candidate?: SessionOptions; tolerance?: number; rows?: number } = {},
): Promise<LayerDivergence> {
  const tolerance = options.tolerance ?? DEFAULT_LAYER_TOLERANCE;
  const model = cloneModel(await loadModel(modelPath));
  inferShapes(model);
  const g = model.graph;
  const order: Array<{ tensor: string; node: string; op: string }> = [];
  const present = new Set(g.outputs.map((o) => o.name));
  for (const n of g.nodes) {
    for (const v of n.outputs) {
      if (!v || !v.name || elemTypeOf(v) !== DataType.FLOAT) continue;
      order.push({ tensor: v.name, node: n.name || n.opType, op: n.opType });
      if (present.has(v.name)) continue;
      if (!v.type) v.setTensorType(DataType.FLOAT);
      g.addOutput(v);
      present.add(v.name);
    }
  }
  const bytes = serializeModel(model);
  const ref = await openSession(refBackend, bytes, options.reference ?? {}, `${modelPath} (all tensors, ${refBackend})`);
  const cand = await openSession(candBackend, bytes, options.candidate ?? {}, `${modelPath} (all tensors, ${candBackend})`);
  const cmp = new OutputComparison();
  const peak = new Map<string, number>();
  let n = 0;
  try {
    for await (const s of samples()) {
      const a = await ref.run(s.feed);
      const b = await cand.run(s.feed);
      cmp.add(b, a, s.id);
      for (const [k, t] of Object.entries(a)) {
        if (t.type !== 'float32') continue;
        let m = peak.get(k) ?? 0;
        for (const x of t.data as Float32Array) if (Math.abs(x) > m) m = Math.abs(x);
        peak.set(k, m);
      }
      n++;
    }
  } finally {
    await ref.dispose();
    await cand.dispose();
  }
  const errors = new Map(cmp.result().map((e) => [e.name, e]));
  const rows: LayerDivergenceRow[] = [];
  for (const [i, o] of order.entries()) {
    const e = errors.get(o.tensor);
    if (!e) continue;
    const p = peak.get(o.tensor) ?? 0;
    rows.push({ index: i, ...o, maxAbs: e.maxAbs, relative: p > 0 ? e.maxAbs / p : e.maxAbs, sqnrDb: e.sqnrDb });
  }
  const first = rows.find((r) => r.relative > tolerance);
  const worst = [...rows].sort((x, y) => y.relative - x.relative).slice(0, options.rows ?? 8);
  return { backends: [refBackend, candBackend], samples: n, tensors: rows.length, tolerance, ...(first ? { first } : {}), worst };
}
