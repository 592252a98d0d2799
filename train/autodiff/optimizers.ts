/**
 * Optimizers as graph pieces: each parameter's update, with the optimizer state as graph inputs and
 * the updated state as graph outputs (so a runtime feeds step k's outputs into step k+1).
 *
 *   SGD:  g' = g + wd p;  buf' = mu buf + g' (momentum > 0);  d = nesterov ? g' + mu buf' : buf' (or g');
 *         p' = p - lr d
 *   Adam: g' = g + wd p (L2; or decoupled: p' also gets - lr wd p, i.e. AdamW);
 *         m' = b1 m + (1 - b1) g';  v' = b2 v + (1 - b2) g'^2;
 *         p' = p - lr (m' / (1 - b1^t)) / (sqrt(v' / (1 - b2^t)) + eps)    with t = the `step` input (1, 2, ...)
 */
import { Graph, Value } from '../../ir/ir.js';
import { Emitter } from './context.js';

export type OptimizerSpec =
  | { kind: 'sgd'; momentum?: number; weightDecay?: number; nesterov?: boolean }
  | { kind: 'adam'; beta1?: number; beta2?: number; epsilon?: number; weightDecay?: number; decoupled?: boolean };

export interface OptimizerParam {
  name: string;
  value: Value;
  grad: Value;
  dims: number[];
  dtype: number;
}

export interface StateSlot {
  param: string;
  /** Graph input holding the state before the step, and graph output holding it after. */
  input: Value;
  output: Value;
  dims: number[];
  dtype: number;
}

export interface OptimizerResult {
  updated: Map<string, Value>;
  state: StateSlot[];
}

function stateInput(graph: Graph, emit: Emitter, name: string, dims: number[], dtype: number): Value {
  const v = new Value(emit.reserve(name));
  v.setTensorType(dtype, dims);
  graph.addInput(v);
  return v;
}

export function appendOptimizer(graph: Graph, emit: Emitter, params: readonly OptimizerParam[], spec: OptimizerSpec, lr: Value, step: Value): OptimizerResult {
  const updated = new Map<string, Value>();
  const state: StateSlot[] = [];
  const dtype = params[0]?.dtype ?? 1;
  const k = (x: number) => emit.scalar(x, dtype);
  const wd = spec.weightDecay ?? 0;
  if (spec.kind === 'sgd') {
    const mu = spec.momentum ?? 0;
    for (const p of params) {
      let g = wd ? emit.op('Add', [p.grad, emit.op('Mul', [p.value, k(wd)])]) : p.grad;
      if (mu) {
        const buf = stateInput(graph, emit, `${p.name}.momentum`, p.dims, p.dtype);
        const next = emit.op('Add', [emit.op('Mul', [buf, k(mu)]), g]);
        state.push({ param: p.name, input: buf, output: next, dims: p.dims, dtype: p.dtype });
        g = spec.nesterov ? emit.op('Add', [g, emit.op('Mul', [next, k(mu)])]) : next;
      }
      updated.set(p.name, emit.op('Sub', [p.value, emit.op('Mul', [g, lr])]));
    }
    return { updated, state };
  }
  const b1 = spec.beta1 ?? 0.9;
  const b2 = spec.beta2 ?? 0.999;
  const eps = spec.epsilon ?? 1e-8;
  // bias corrections, shared by every parameter
  const c1 = emit.op('Sub', [k(1), emit.op('Pow', [k(b1), step])]);
  const c2 = emit.op('Sub', [k(1), emit.op('Pow', [k(b2), step])]);
  const stepSize = emit.op('Div', [lr, c1]);
  const sqrtC2 = emit.op('Sqrt', [c2]);
  for (const p of params) {
    const g = wd && !spec.decoupled ? emit.op('Add', [p.grad, emit.op('Mul', [p.value, k(wd)])]) : p.grad;
    const m = stateInput(graph, emit, `${p.name}.adam_m`, p.dims, p.dtype);
    const v = stateInput(graph, emit, `${p.name}.adam_v`, p.dims, p.dtype);
    const m2 = emit.op('Add', [emit.op('Mul', [m, k(b1)]), emit.op('Mul', [g, k(1 - b1)])]);
    const v2 = emit.op('Add', [emit.op('Mul', [v, k(b2)]), emit.op('Mul', [emit.op('Mul', [g, g]), k(1 - b2)])]);
    state.push({ param: p.name, input: m, output: m2, dims: p.dims, dtype: p.dtype });
    state.push({ param: p.name, input: v, output: v2, dims: p.dims, dtype: p.dtype });
    const denom = emit.op('Add', [emit.op('Div', [emit.op('Sqrt', [v2]), sqrtC2]), k(eps)]);
    let delta = emit.op('Mul', [emit.op('Div', [m2, denom]), stepSize]);
    if (wd && spec.decoupled) delta = emit.op('Add', [delta, emit.op('Mul', [p.value, emit.op('Mul', [lr, k(wd)])])]);
    updated.set(p.name, emit.op('Sub', [p.value, delta]));
  }
  return { updated, state };
}
