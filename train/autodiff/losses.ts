/**
 * Losses as graph pieces. Each returns its scalar value and the cotangent it sends into the model's
 * output (written analytically, which is shorter and cheaper than differentiating the loss graph):
 *
 *   mse:            L = sum((z - t)^2) / numel                g = 2 (z - t) / numel
 *   cross-entropy:  L = -sum(t * logsoftmax(z)) / rows          g = (softmax(z) * sum_c t - t) / rows
 *                   (t = OneHot(labels) for integer labels, or soft targets; classes on the last axis)
 *   kl-divergence:  p = softmax(z / T), q = softmax(teacher / T)
 *                   L = T^2 * sum(q * (log q - log p)) / rows   g = T (p - q) / rows
 * `rows` is the number of elements divided by the class count (the batch, for [N, C] logits).
 */
import { DataType } from '../../core/dtype.js';
import { inputError } from '../../core/errors.js';
import { Graph, Value } from '../../ir/ir.js';
import { Emitter, floatTensor, product, ShapeMap } from './context.js';

export type LossSpec =
  | { kind: 'mse'; output: string; target?: string; weight?: number }
  | { kind: 'cross-entropy'; output: string; labels?: string; soft?: boolean; weight?: number }
  | { kind: 'kl-divergence'; output: string; teacher?: string; temperature?: number; weight?: number };

export interface LossTerm {
  /** Scalar loss (unweighted). */
  loss: Value;
  /** Model output and the cotangent the (weighted) loss sends into it. */
  seed: readonly [Value, Value];
  /** Graph inputs the loss added (targets, labels, teacher logits). */
  inputs: Value[];
}

function addInput(graph: Graph, emit: Emitter, name: string, dtype: number, dims: number[]): Value {
  const v = new Value(emit.reserve(name));
  v.setTensorType(dtype, dims);
  graph.addInput(v);
  return v;
}

function findOutput(graph: Graph, name: string): Value {
  const v = graph.findValue(name);
  if (!v) throw inputError('TRAIN_NO_OUTPUT', `the loss reads ${name}, which the model does not produce`, { tensor: name });
  return v;
}

/** Appends the loss `spec` reading model value `spec.output`; `weight` scales the cotangent. */
export function buildLoss(graph: Graph, emit: Emitter, spec: LossSpec, shapes: ShapeMap): LossTerm {
  const z = findOutput(graph, spec.output);
  const info = shapes.get(z.name);
  if (!info) throw inputError('AUTODIFF_SHAPE', `the shape of ${z.name} is unknown`, { tensor: z.name });
  const { dims, dtype } = info;
  const w = spec.weight ?? 1;
  const k = (x: number) => emit.scalar(x, dtype);
  const sumAll = (v: Value) => emit.op('ReduceSum', [v], { keepdims: 0 });
  const classes = dims[dims.length - 1]!;
  const rows = product(dims) / classes;
  switch (spec.kind) {
    case 'mse': {
      const t = addInput(graph, emit, spec.target ?? `${spec.output}_target`, dtype, dims);
      const d = emit.op('Sub', [z, t]);
      const loss = emit.op('Mul', [sumAll(emit.op('Mul', [d, d])), k(1 / product(dims))]);
      return { loss, seed: [z, emit.op('Mul', [d, k((2 * w) / product(dims))])], inputs: [t] };
    }
    case 'cross-entropy': {
      let t: Value;
      let input: Value;
      if (spec.soft) {
        input = t = addInput(graph, emit, spec.labels ?? `${spec.output}_targets`, dtype, dims);
      } else {
        input = addInput(graph, emit, spec.labels ?? `${spec.output}_labels`, DataType.INT64, dims.slice(0, -1));
        // onnxruntime has OneHot kernels for float32 values only: build in float32, then Cast
        const values = emit.constant(floatTensor(DataType.FLOAT, [2], [0, 1]), 'onehot_values');
        t = emit.op('OneHot', [input, emit.int64s([classes], 'depth'), values], { axis: -1 });
        if (dtype !== DataType.FLOAT) t = emit.op('Cast', [t], { to: dtype });
      }
      const lsm = emit.op('LogSoftmax', [z], { axis: -1 });
      const loss = emit.op('Mul', [sumAll(emit.op('Mul', [t, lsm])), k(-1 / rows)]);
      const sm = emit.op('Exp', [lsm]);
      const mass = spec.soft ? emit.op('Mul', [sm, emit.op('ReduceSum', [t, emit.int64s([-1], 'axes')], { keepdims: 1 })]) : sm;
      const g = emit.op('Mul', [emit.op('Sub', [mass, t]), k(w / rows)]);
      return { loss, seed: [z, g], inputs: [input] };
    }
    case 'kl-divergence': {
      const T = spec.temperature ?? 1;
      if (!(T > 0)) throw inputError('TRAIN_BAD_TEMPERATURE', `the distillation temperature must be positive, not ${T}`);
      const teacher = addInput(graph, emit, spec.teacher ?? `${spec.output}_teacher`, dtype, dims);
      const zs = emit.op('Mul', [z, k(1 / T)]);
      const zt = emit.op('Mul', [teacher, k(1 / T)]);
      const logP = emit.op('LogSoftmax', [zs], { axis: -1 });
      const logQ = emit.op('LogSoftmax', [zt], { axis: -1 });
      const q = emit.op('Exp', [logQ]);
      const kl = sumAll(emit.op('Mul', [q, emit.op('Sub', [logQ, logP])]));
      const loss = emit.op('Mul', [kl, k((T * T) / rows)]);
      const g = emit.op('Mul', [emit.op('Sub', [emit.op('Exp', [logP]), q]), k((T * w) / rows)]);
      return { loss, seed: [z, g], inputs: [teacher] };
    }
  }
}
