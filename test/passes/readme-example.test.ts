/** The custom-pass example of the README ("Writing a pass"), run as written (imports adapted to the repository). */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { cloneModel } from '../../onnx/index.js';
import { optimize } from '../../passes/manager.js';
import { definePass } from '../../passes/pass.js';
import { presetPipeline, step } from '../../passes/pipeline.js';
import '../../passes/registry.js';
import { outputsOf, f32, maxAbsDiff } from './cleanup/helpers.js';

/** Replaces Relu(Relu(x)) by Relu(x): Relu is idempotent. */
export const collapseRelu = definePass<{ 'max-rewrites': number }>({
  name: 'collapse-relu',
  description: 'Relu(Relu(x)) = Relu(x).',
  options: { 'max-rewrites': { type: 'integer', min: 1, default: 1000, description: 'Stop after this many rewrites.' } },
  run(model, options, ctx) {
    let rewrites = 0;
    for (const node of [...model.graph.allNodes()]) {
      const inner = node.input(0)?.producer;
      if (node.opType !== 'Relu' || inner?.opType !== 'Relu') continue;
      if (rewrites >= options['max-rewrites']) {
        ctx.explain({ node: node.label, reason: 'max-rewrites reached' });
        continue;
      }
      node.setInput(0, inner.input(0));
      if (inner.outputs[0]!.uses.length === 0) inner.graph!.removeNode(inner);
      rewrites++;
    }
    return { changed: rewrites > 0, stats: { rewrites } };
  },
});

function chain() {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', 'float32', [1, 3]);
  const [a] = b.op('Relu', [x]);
  const [c] = b.op('Relu', [a!]);
  const [d] = b.op('Relu', [c!]);
  const [i] = b.op('Identity', [d!]);
  b.output(b.op('Neg', [i!])[0]!, 'y');
  return b.model();
}

describe('README custom-pass example', () => {
  it('optimize() with the default preset and verification', async () => {
    const model = chain();
    const report = await optimize(model, presetPipeline('default'), {
      verify: { feeds: [{ x: { type: 'float32', dims: [1, 3], data: new Float32Array(3) } }] },
    });
    expect(report.nodesBefore).toBe(5);
    expect(report.nodesAfter).toBe(4);
    expect(report.verification?.maxAbsDiff).toBe(0);
  });

  it('the custom pass collapses Relu chains and keeps outputs', async () => {
    const model = chain();
    const feed = { x: f32([1, 3]) };
    const before = await outputsOf(cloneModel(model), feed);
    const report = await optimize(model, [step(collapseRelu), step('eliminate-dead')]);
    expect(model.graph.nodes.map((n) => n.opType)).toEqual(['Relu', 'Identity', 'Neg']);
    expect(report.summary[0]!.stats.rewrites).toBe(2);
    expect(maxAbsDiff(await outputsOf(model, feed), before)).toBe(0);
  });

  it('its option is validated against the schema', () => {
    expect(() => step(collapseRelu, { 'max-rewrites': 0 })).toThrow("Option 'max-rewrites' of pass 'collapse-relu' must be at least 1, got 0.");
  });
});
