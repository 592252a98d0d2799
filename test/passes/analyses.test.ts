/**
 * Analyses shared by the passes of one pipeline run (PassContext.analysis, passes/analyses.ts): computed
 * once while no pass changes the model, again after a change; shape inference run twice sets the types
 * it set once (what makes sharing it exact).
 */
import { describe, expect, it } from 'vitest';
import { inferShapes } from '../../analysis/shape-inference.js';
import type { Model } from '../../ir/ir.js';
import { sharedShapes } from '../../passes/analyses.js';
import { bareContext } from '../../passes/bare-context.js';
import { optimize } from '../../passes/manager.js';
import { definePass, type PassContext } from '../../passes/pass.js';
import { TRANSFORMER_VARIANTS } from '../models/transformers.js';

const SMALL = { hidden: 64, ffn: 128, layers: 1, heads: 2, vocab: 64, maxPositions: 32 };

/** A pass that reads the analysis `key` (counting computations) and reports `changed`. */
function reader(name: string, counts: Map<string, number>, changed: boolean, reuse = true) {
  return definePass<Record<string, never>>({
    name,
    description: 'test: reads a shared analysis',
    options: {},
    run(model, _o, ctx: PassContext) {
      const compute = () => {
        counts.set(name, (counts.get(name) ?? 0) + 1);
        return { value: model.graph.nodes.length, reuse };
      };
      ctx.analysis ? ctx.analysis(model, 'count', compute) : compute();
      return { changed };
    },
  });
}

function typesOf(model: Model): string {
  const out: string[] = [];
  for (const g of model.graph.allGraphs()) for (const n of g.nodes) for (const o of n.outputs) out.push(`${o.name}:${JSON.stringify(o.type ?? null)}`);
  return out.join('\n');
}

describe('shared analyses', () => {
  it('are computed once while passes report no change, again after a change, and always when not reusable', async () => {
    const model = TRANSFORMER_VARIANTS[0]!.build(SMALL);
    const counts = new Map<string, number>();
    const steps = [reader('a', counts, false), reader('b', counts, false), reader('c', counts, true), reader('d', counts, false)].map((pass) => ({ pass, options: {} }));
    // maxIterations 1: c changes the model every time
    await optimize(model, steps, { maxIterations: 1, check: false });
    expect(Object.fromEntries(counts)).toEqual({ a: 1, d: 1 });
    const again = new Map<string, number>();
    const noReuse = [reader('x', again, false, false), reader('y', again, false, false)].map((pass) => ({ pass, options: {} }));
    await optimize(model, noReuse, { check: false });
    expect(Object.fromEntries(again)).toEqual({ x: 1, y: 1 });
  });

  it('run inference every time outside the manager', () => {
    const model = TRANSFORMER_VARIANTS[0]!.build(SMALL);
    const ctx = bareContext();
    expect(ctx.analysis).toBeUndefined();
    expect(sharedShapes(model, ctx)).not.toBe(sharedShapes(model, ctx));
  });

  for (const variant of TRANSFORMER_VARIANTS) {
    it(`shape inference is idempotent on ${variant.name}`, () => {
      const model = variant.build(SMALL);
      const first = inferShapes(model);
      const once = typesOf(model);
      expect(first.sorted).toBe(true);
      inferShapes(model);
      expect(typesOf(model)).toBe(once);
    });
  }
});
