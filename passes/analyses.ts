/**
 * Analyses passes share through the context's cache (PassContext.analysis): computed once per pipeline
 * run and computed again only after a pass has changed the model.
 */
import { inferShapes, type ShapeAnalysis } from '../analysis/shape-inference.js';
import type { Model } from '../ir/ir.js';
import type { PassContext } from './pass.js';

/**
 * `inferShapes(model)`, or the analysis an earlier pass of this pipeline run took when no pass has
 * changed the model since. Inference is idempotent on graphs it walks in topological order (a second
 * run sets the types the first one set), so the model is left as a new run would leave it; an
 * analysis of a graph that does not sort (a cycle) is not reused. Call it before changing the model.
 */
/**
 * {@link sharedShapes} when `model` has a node of type `opType` (a fusion whose matchers read shapes
 * only past such a node: without one, no shape inference, ~1 ms a pass on the trained LM).
 */
export function sharedShapesIfAny(model: Model, ctx: PassContext, opType: string): void {
  for (const n of model.graph.allNodes()) if (n.opType === opType) return void sharedShapes(model, ctx);
}

export function sharedShapes(model: Model, ctx: PassContext): ShapeAnalysis {
  const compute = () => {
    const value = inferShapes(model);
    return { value, reuse: value.sorted };
  };
  return ctx.analysis ? ctx.analysis(model, 'shapes', compute) : compute().value;
}
