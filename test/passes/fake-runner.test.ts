/**
 * Passes reach onnxruntime only through `ctx.runner`: with a fake runner, fold-constants folds an op
 * the evaluator does not cover with the fake's answer, and calibration collects the fake's ranges,
 * without onnxruntime running at all.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { constantOf, Model } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import type { Feed } from '../../core/host-tensor.js';
import type { ModelSession, Runner, RunnableModel } from '../../runtime/runner.js';
import { optimize } from '../../passes/manager.js';
import { collectStats, EXTREME_OUTPUTS } from '../../calibration/collect.js';
import type { Sample } from '../../data/index.js';

/** A runner that answers every run with `answer(model)` and records what it was asked to open. */
function fakeRunner(answer: (m: Model) => Feed): { runner: Runner; opened: Model[] } {
  const opened: Model[] = [];
  const runner: Runner = {
    async open(model: RunnableModel, _options, name): Promise<ModelSession> {
      if (!(model instanceof Model)) throw new Error('the fake runner only takes IR models');
      opened.push(model);
      return {
        name: name ?? 'fake',
        inputs: [],
        outputs: [],
        run: async () => answer(model),
        dispose: async () => undefined,
      };
    },
    async profile() {
      throw new Error('no pass here profiles');
    },
  };
  return { runner, opened };
}

describe('a fake runner in the pass context', () => {
  it('fold-constants evaluates an op the TypeScript evaluator does not cover through ctx.runner', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', [2, 2]);
    const w = b.initializer('w', Tensor.from('float32', [2, 2], Float32Array.of(1, 2, 3, 4)));
    const [e] = b.op('Erf', [w], {}, { names: ['erf_w'] });
    const [y] = b.op('Mul', [x, e!]);
    b.output(y!, 'y');
    const model = b.model();
    // not erf: a value onnxruntime would never give, so the folded tensor shows where it came from
    const fake = fakeRunner(() => ({ erf_w: { type: 'float32', dims: [2, 2], data: Float32Array.of(9, 8, 7, 6) } }));
    const report = await optimize(model, 'fold-constants', { runner: fake.runner });
    expect(report.summary[0]!.stats.foldedByRuntime).toBe(1);
    expect(fake.opened).toHaveLength(1);
    expect(fake.opened[0]!.graph.nodes.map((n) => n.opType)).toEqual(['Erf']);
    expect(model.graph.nodes.map((n) => n.opType)).toEqual(['Mul']);
    const folded = model.graph.nodes[0]!.input(1)!;
    expect(folded.name).toBe('erf_w');
    expect(Array.from(constantOf(folded)!.toFloat32())).toEqual([9, 8, 7, 6]);
  });

  it('min/max calibration reads its ranges from the runner it is given', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', [1, 4]);
    const [r] = b.op('Relu', [x]);
    b.output(r!, 'y');
    const model = b.model();
    const fake = fakeRunner(() => ({
      [EXTREME_OUTPUTS[0]]: { type: 'float32', dims: [2], data: Float32Array.of(-3, 0.5) },
      [EXTREME_OUTPUTS[1]]: { type: 'float32', dims: [2], data: Float32Array.of(5, 7) },
    }));
    const samples: Sample[] = [0, 1].map((i) => ({ id: `s${i}`, feed: { x: { type: 'float32', dims: [1, 4], data: new Float32Array(4) } } }) as Sample);
    const source = async function* () {
      yield* samples;
    };
    const res = await collectStats(model, ['x', 'y'], source, { method: 'minmax', runner: fake.runner });
    expect(res.samples).toBe(2);
    expect(fake.opened).toHaveLength(1);
    // the augmented model the runner was asked to open reduces both tensors
    expect(fake.opened[0]!.graph.outputs.map((o) => o.name)).toEqual(['y', ...EXTREME_OUTPUTS]);
    expect([res.stats.get('x')!.min, res.stats.get('x')!.max]).toEqual([-3, 5]);
    expect([res.stats.get('y')!.min, res.stats.get('y')!.max]).toEqual([0.5, 7]);
  });
});
