/**
 * Finite-difference checks of gradient rules. A test builds a tiny forward model with GraphBuilder
 * (every tensor to differentiate is a graph input); the checker then
 *  - probes static shapes, appends the backward graph seeded with a random cotangent r of the output,
 *    and runs it in onnxruntime (float64 when onnxruntime has kernels for every op, else float32);
 *  - computes central differences of L(x) = sum(y(x) * r) (the sum in float64 in JS) by running the
 *    forward model once per perturbed element;
 *  - returns the largest error relative to the largest gradient magnitude (and at least 1).
 */
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../ir/builder.js';
import { Model, Node, Value } from '../../ir/ir.js';
import { cloneModel, serializeModel } from '../../onnx/index.js';
import { appendBackward } from '../../train/autodiff/backward.js';
import { probeShapes } from '../../train/trainer.js';
import { mulberry32 } from '../../data/generate.js';

export type FloatType = 'float32' | 'float64';

export interface CheckInput {
  dims: number[];
  /** Differentiate with respect to it (default true). */
  wrt?: boolean;
  /** Value generator (default uniform in [-1, 1)). */
  init?: (i: number, rand: () => number) => number;
}

export interface CheckResult {
  dtype: FloatType;
  /** max |analytic - numeric| / max(1, max |numeric|) over all checked elements. */
  error: number;
  checked: number;
  grads: Record<string, Float64Array>;
}

/** Deterministic PRNG (mulberry32), shared with the generated-input data source. */
export const rng = mulberry32;

type Build = (b: GraphBuilder, inputs: Record<string, Value>, dtype: FloatType) => Value;

function buildModel(build: Build, inputs: Record<string, CheckInput>, dtype: FloatType, opset: number): Model {
  const b = new GraphBuilder({ opset });
  const vals: Record<string, Value> = {};
  for (const [name, spec] of Object.entries(inputs)) vals[name] = b.input(name, dtype, spec.dims);
  const y = build(b, vals, dtype);
  b.output(y, 'y', dtype);
  return b.model();
}

function makeTensor(dtype: FloatType, data: Float64Array, dims: number[]): ort.Tensor {
  return dtype === 'float64' ? new ort.Tensor('float64', Float64Array.from(data), dims) : new ort.Tensor('float32', Float32Array.from(data), dims);
}

async function tryCreate(model: Model): Promise<ort.InferenceSession | undefined> {
  try {
    return await ort.InferenceSession.create(serializeModel(model), { graphOptimizationLevel: 'basic' });
  } catch {
    return undefined;
  }
}

export async function gradCheck(build: Build, inputs: Record<string, CheckInput>, opts: { seed?: number; opset?: number; forceFloat32?: boolean } = {}): Promise<CheckResult> {
  const rand = rng(opts.seed ?? 1);
  const opset = opts.opset ?? 17;
  let dtype: FloatType = opts.forceFloat32 ? 'float32' : 'float64';
  let model = buildModel(build, inputs, dtype, opset);
  let fwd = await tryCreate(model);
  if (!fwd) {
    dtype = 'float32';
    model = buildModel(build, inputs, dtype, opset);
    fwd = await ort.InferenceSession.create(serializeModel(model));
  }
  const data: Record<string, Float64Array> = {};
  for (const [name, spec] of Object.entries(inputs)) {
    const n = spec.dims.reduce((p, x) => p * x, 1);
    data[name] = Float64Array.from({ length: n }, (_, i) => (spec.init ? spec.init(i, rand) : rand() * 2 - 1));
  }
  const feeds = (over?: { name: string; values: Float64Array }): Record<string, ort.Tensor> => {
    const f: Record<string, ort.Tensor> = {};
    for (const [name, spec] of Object.entries(inputs)) f[name] = makeTensor(dtype, over?.name === name ? over.values : data[name]!, spec.dims);
    return f;
  };
  const inputShapes = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, { dims: v.dims }]));
  const shapes = await probeShapes(model, inputShapes);
  const yShape = shapes.get('y')!;
  const r = Float64Array.from({ length: yShape.dims.reduce((p, x) => p * x, 1) }, () => rand() * 2 - 1);

  // backward graph
  const gm = cloneModel(model);
  const g = gm.graph;
  const seed = new Value('seed_r');
  seed.setTensorType(yShape.dtype, yShape.dims);
  g.addInput(seed);
  const wrtNames = Object.entries(inputs).filter(([, s]) => s.wrt !== false).map(([k]) => k);
  const wrt = wrtNames.map((k) => g.inputs.find((v) => v.name === k)!);
  const y = g.outputs[0]!;
  const { grads } = appendBackward(g, { seeds: [[y, seed]], wrt, shapes });
  for (const w of wrt) {
    const gv = grads.get(w);
    if (!gv) throw new Error(`no gradient reached ${w.name}`);
    // expose under a stable name through an Identity
    const ident = new Node('Identity', [gv], [new Value(`grad_${w.name}`)]);
    g.insertNode(ident);
    g.addOutput(ident.output(0));
  }
  const bwd = await ort.InferenceSession.create(serializeModel(gm), { graphOptimizationLevel: 'basic' });
  const bf = feeds();
  bf.seed_r = makeTensor(dtype, r, yShape.dims);
  const bout = await bwd.run(bf);
  const analytic: Record<string, Float64Array> = {};
  g.outputs.slice(1).forEach((o, i) => (analytic[wrtNames[i]!] = Float64Array.from(bout[o.name]!.data as Float32Array)));

  const loss = async (f: Record<string, ort.Tensor>): Promise<number> => {
    const out = await fwd!.run(f);
    const yv = out.y!.data as Float32Array;
    let s = 0;
    for (let i = 0; i < yv.length; i++) s += yv[i]! * r[i]!;
    return s;
  };
  const eps = dtype === 'float64' ? 1e-6 : 1e-3;
  let maxErr = 0;
  let maxMag = 0;
  let checked = 0;
  for (const name of wrtNames) {
    const base = data[name]!;
    const an = analytic[name]!;
    for (let j = 0; j < base.length; j++) {
      const v = Float64Array.from(base);
      v[j] = base[j]! + eps;
      const lp = await loss(feeds({ name, values: v }));
      v[j] = base[j]! - eps;
      const lm = await loss(feeds({ name, values: v }));
      const num = (lp - lm) / (2 * eps);
      maxErr = Math.max(maxErr, Math.abs(num - an[j]!));
      maxMag = Math.max(maxMag, Math.abs(num));
      checked++;
    }
  }
  await fwd.release();
  await bwd.release();
  return { dtype, error: maxErr / Math.max(1, maxMag), checked, grads: analytic };
}

/** Tolerance for a check in the given precision. */
export function tolerance(dtype: FloatType): number {
  return dtype === 'float64' ? 1e-6 : 5e-4;
}
