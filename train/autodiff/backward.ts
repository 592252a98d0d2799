/**
 * Reverse-mode differentiation over the IR: appends to a graph the nodes that compute the gradients
 * of a set of forward values (seeded with given cotangents) with respect to chosen values.
 *
 * 1. Values that depend on a `wrt` value are found going forward (through every input slot).
 * 2. Values whose cotangent is needed are found going backward from the seeds, through differentiable
 *    slots only (a Reshape's shape input or a Clip's bounds never ask for a gradient).
 * 3. Nodes with an output in both sets are visited in reverse topological order; each asks its rule
 *    (see `registry.ts`) for the vector-Jacobian product. Cotangents reaching a value along several
 *    paths are added with one `Sum`.
 * A node on that path with no rule is an error naming it: AUTODIFF_NO_RULE.
 */
import { inputError } from '../../core/errors.js';
import { Graph, Node, Value } from '../../ir/ir.js';
import { Emitter, GradContext, ShapeMap } from './context.js';
import { gradientRule, isDifferentiableSlot } from './registry.js';

export interface BackwardOptions {
  /** Forward values and their cotangents (for a scalar loss: the loss and a constant 1). */
  seeds: ReadonlyArray<readonly [Value, Value]>;
  /** Values to differentiate with respect to (graph inputs, usually parameters). */
  wrt: readonly Value[];
  /** Static shapes of the forward values, by name. */
  shapes: ShapeMap;
  emitter?: Emitter;
}

export interface BackwardResult {
  /** Gradient of each `wrt` value that the seeds depend on (absent when no path connects them). */
  grads: Map<Value, Value>;
  /** Forward nodes whose rules were applied, in the order visited. */
  visited: Node[];
}

export function appendBackward(graph: Graph, opts: BackwardOptions): BackwardResult {
  const emit = opts.emitter ?? new Emitter(graph);
  const opset = graph.owningModel()?.opset('') ?? 17;
  graph.toposort();
  const forward = [...graph.nodes];

  const dependent = new Set<Value>(opts.wrt);
  for (const n of forward) {
    if (n.inputs.some((v) => v && dependent.has(v))) for (const o of n.outputs) dependent.add(o);
  }

  const wanted = new Set<Value>(opts.seeds.map(([v]) => v));
  for (let i = forward.length - 1; i >= 0; i--) {
    const n = forward[i]!;
    if (!n.outputs.some((o) => wanted.has(o))) continue;
    const rule = gradientRule(n.opType, n.opDomain);
    n.inputs.forEach((v, slot) => {
      if (v && dependent.has(v) && (!rule || isDifferentiableSlot(rule, slot))) wanted.add(v);
    });
  }

  const pending = new Map<Value, Value[]>();
  const add = (v: Value, g: Value) => {
    const list = pending.get(v);
    if (list) list.push(g);
    else pending.set(v, [g]);
  };
  const total = (v: Value): Value | null => {
    const list = pending.get(v);
    if (!list || list.length === 0) return null;
    if (list.length === 1) return list[0]!;
    const s = emit.op('Sum', list);
    pending.set(v, [s]);
    return s;
  };
  for (const [v, g] of opts.seeds) add(v, g);

  const visited: Node[] = [];
  for (let i = forward.length - 1; i >= 0; i--) {
    const n = forward[i]!;
    if (!n.outputs.some((o) => wanted.has(o) && dependent.has(o))) continue;
    const gradOutputs = n.outputs.map((o) => total(o));
    if (gradOutputs.every((g) => g === null)) continue;
    const rule = gradientRule(n.opType, n.opDomain);
    if (!rule) {
      throw inputError('AUTODIFF_NO_RULE', `node ${n.label} has no gradient rule, and the loss depends on the parameters through it`, { node: n.name, op: n.opType });
    }
    const needs = n.inputs.map((v, slot) => v !== null && wanted.has(v) && dependent.has(v) && isDifferentiableSlot(rule, slot));
    if (!needs.some(Boolean)) continue;
    const ctx = new GradContext(n, gradOutputs, needs, emit, opts.shapes, opset);
    const grads = rule.backward(ctx);
    n.inputs.forEach((v, slot) => {
      const g = grads[slot];
      if (v && g && needs[slot]) add(v, g);
    });
    visited.push(n);
  }

  const grads = new Map<Value, Value>();
  for (const w of opts.wrt) {
    const g = total(w);
    if (g) grads.set(w, g);
  }
  return { grads, visited };
}
