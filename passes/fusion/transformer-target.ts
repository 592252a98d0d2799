/**
 * What the transformer fusions (fuse-attention, fuse-skip-layer-norm, fuse-bias-gelu, fuse-rms-norm)
 * share: the `target` option — `microsoft` writes onnxruntime's com.microsoft contrib operators,
 * `generic` writes standard ONNX operators (opset 23 `Attention` and `RMSNormalization`) — and a pass
 * factory that runs the pattern set of the chosen target with the greedy driver.
 */
import { Model, Node, Value } from '../../ir/ir.js';
import { definePass, type OptionsSchema, type Pass, type PassContext, type Pattern } from '../pass.js';
import { applyPatterns } from '../patterns.js';

export type FusionTarget = 'microsoft' | 'generic';

export const MS_DOMAIN = 'com.microsoft';

/** Opset the generic forms need (Attention-23, RMSNormalization-23). */
export const GENERIC_OPSET = 23;

/** The producer of `v` when it is a default-domain `op` node. */
export function producerOf(v: Value | null | undefined, op: string): Node | undefined {
  const p = v?.producer;
  return p && p.opType === op && p.opDomain === '' ? p : undefined;
}

/** Declares the com.microsoft domain (version 1) when the model does not import it yet. */
export function useMicrosoftDomain(model: Model): void {
  if (model.opset(MS_DOMAIN) === undefined) model.setOpset(MS_DOMAIN, 1);
}

/** A node of the com.microsoft domain with fresh outputs, inserted before `before`. */
export function msNode(model: Model, before: Node, opType: string, inputs: Array<Value | null>, outputs: Value[]): Node {
  useMicrosoftDomain(model);
  const n = new Node(opType, inputs, outputs, MS_DOMAIN);
  before.graph!.insertBefore(before, n);
  return n;
}

export interface TargetPassSpec {
  name: string;
  description: string;
  /** Patterns per target; an empty list means the target has no such fusion (the pass explains). */
  patterns: Record<FusionTarget, readonly Pattern<any>[]>;
  /** stat name -> pattern name. */
  stats: Record<string, string>;
  /** Default-domain opset the generic patterns need (checked only for target generic). */
  genericOpset?: number;
  /** Options of this pass beside `target` and `maxIterations`. */
  options?: OptionsSchema;
  /** Runs once before the patterns (e.g. shape inference the matchers read: sharedShapes), with the pass's options. */
  prepare?(model: Model, ctx: PassContext, options: Record<string, unknown>): void;
}

/** A pass with `target` and `maxIterations` options that runs the chosen target's patterns. */
export function targetPass(spec: TargetPassSpec): Pass<{ target: FusionTarget; maxIterations: number } & Record<string, unknown>> {
  return definePass<{ target: FusionTarget; maxIterations: number } & Record<string, unknown>>({
    name: spec.name,
    description: spec.description,
    options: {
      target: { type: 'enum', values: ['microsoft', 'generic'], default: 'microsoft', description: 'microsoft: onnxruntime com.microsoft contrib operators; generic: standard ONNX operators (opset 23).' },
      maxIterations: { type: 'integer', description: 'Iteration cap of the rewrite driver.', default: 10, min: 1 },
      ...spec.options,
    },
    run(model, options, ctx) {
      const patterns = spec.patterns[options.target];
      if (patterns.length === 0) {
        ctx.explain({ reason: `no ${options.target} form of this fusion; it applies with target ${options.target === 'generic' ? 'microsoft' : 'generic'}` });
        return { changed: false };
      }
      if (options.target === 'generic' && spec.genericOpset !== undefined) {
        const v = model.opset('') ?? 0;
        if (v < spec.genericOpset) {
          ctx.explain({ reason: `target generic needs opset ${spec.genericOpset}, the model has ${v}; run upgrade-opset<to=${spec.genericOpset}> first` });
          return { changed: false };
        }
      }
      spec.prepare?.(model, ctx, options);
      const r = applyPatterns(model, patterns, ctx, { passName: spec.name, maxIterations: options.maxIterations });
      const stats: Record<string, number> = {};
      for (const [stat, pattern] of Object.entries(spec.stats)) stats[stat] = r.rewrites[pattern] ?? 0;
      return { changed: r.changed, stats: { ...stats, iterations: r.iterations, converged: r.converged ? 1 : 0 } };
    },
  });
}

/** The producers of `nodes`' inputs (take them before a rewrite clears the inputs of removed nodes). */
export function inputProducers(nodes: readonly Node[]): Node[] {
  const out: Node[] = [];
  for (const n of nodes) for (const i of n.inputs) if (i?.producer) out.push(i.producer);
  return out;
}

/**
 * After a rewrite: removes `candidates` (see {@link inputProducers}) that no longer have any user, and
 * their producers, transitively (the projections, head splits and shape chains a fused operator made dead).
 */
export function removeDeadProducers(candidates: readonly Node[]): void {
  const work = [...candidates];
  while (work.length) {
    const n = work.pop()!;
    if (!n.graph || n.outputs.some((o) => o.uses.length > 0 || o.isGraphOutput)) continue;
    const ins = n.inputs;
    n.graph.removeNode(n);
    for (const i of ins) if (i?.producer) work.push(i.producer);
  }
}
