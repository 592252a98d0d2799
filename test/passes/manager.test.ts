import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { isOnnxForgeError, OnnxForgeError } from '../../core/errors.js';
import { Value } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import { optimize } from '../../passes/manager.js';
import { definePass } from '../../passes/pass.js';
import { formatPipeline, parsePipeline, presetPipeline, step } from '../../passes/pipeline.js';
import { extendPreset, PRESETS } from '../../passes/registry.js';
import { f32 } from './cleanup/helpers.js';

function model() {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', 'float32', [2, 3]);
  const [i] = b.op('Identity', [x]);
  const [t] = b.op('Transpose', [i!], { perm: [1, 0] });
  const [u] = b.op('Transpose', [t!], { perm: [1, 0] });
  const [y] = b.op('Relu', [u!]);
  b.op('Neg', [x]); // dead
  b.output(y!, 'y');
  return b.model();
}

async function rejects(p: Promise<unknown> | (() => unknown)): Promise<OnnxForgeError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (isOnnxForgeError(e)) return e;
    throw e;
  }
  throw new Error('expected an error');
}

describe('textual pipelines', () => {
  it('parses names and options against the schema, filling defaults', () => {
    const steps = parsePipeline('fold-constants<max-output-bytes=4096;no-lift>,eliminate-dead');
    expect(steps.map((s) => s.pass.name)).toEqual(['fold-constants', 'eliminate-dead']);
    expect(steps[0]!.options).toMatchObject({ 'max-output-bytes': 4096, lift: false, 'max-growth': 1, 'use-runtime': true });
    expect(formatPipeline(steps)).toBe('fold-constants<max-output-bytes=4096;no-lift>,eliminate-dead');
  });

  it('expands presets with @name and resolves presetPipeline', () => {
    expect(parsePipeline('@default').map((s) => s.pass.name)).toEqual(presetPipeline('default').split(','));
    expect(PRESETS.default!.pipeline).toContain('fold-constants');
  });

  it('rejects unknown passes, options and bad values with sentences', async () => {
    const e1 = await rejects(() => parsePipeline('fold-constant'));
    expect(e1.code).toBe('PIPELINE_UNKNOWN_PASS');
    expect(e1.message).toContain("Did you mean 'fold-constants'?");
    const e2 = await rejects(() => parsePipeline('fold-constants<size=3>'));
    expect(e2.code).toBe('PIPELINE_BAD_OPTION');
    expect(e2.message).toContain("Pass 'fold-constants' has no option 'size'");
    const e3 = await rejects(() => parsePipeline('fold-constants<max-output-bytes=-1>'));
    expect(e3.message).toBe("Option 'max-output-bytes' of pass 'fold-constants' must be at least 0, got \"-1\".");
    const e4 = await rejects(() => parsePipeline('fold-constants<lift=maybe>'));
    expect(e4.message).toContain('must be true or false');
    expect((await rejects(() => parsePipeline('eliminate-dead,,eliminate-identity'))).code).toBe('PIPELINE_SYNTAX');
    expect((await rejects(() => parsePipeline('fold-constants<x=1'))).code).toBe('PIPELINE_SYNTAX');
    expect((await rejects(() => presetPipeline('nope'))).code).toBe('PIPELINE_UNKNOWN_PRESET');
  });

  it('lets groups extend presets', () => {
    extendPreset('test-extended', 'eliminate-dead');
    extendPreset('test-extended', 'eliminate-identity');
    expect(presetPipeline('test-extended')).toBe('eliminate-dead,eliminate-identity');
  });
});

describe('pass manager', () => {
  it('runs to a fixed point and records time, nodes and bytes per pass', async () => {
    const m = model();
    const r = await optimize(m, 'eliminate-dead,merge-consecutive,eliminate-identity');
    expect(r.converged).toBe(true);
    expect(r.nodesBefore).toBe(5);
    expect(r.nodesAfter).toBe(1);
    expect(m.graph.nodes.map((n) => n.opType)).toEqual(['Relu']);
    // round 1 changes things, the last round changes nothing
    expect(r.iterations).toBeGreaterThanOrEqual(2);
    expect(r.records.filter((x) => x.iteration === r.iterations).every((x) => !x.changed)).toBe(true);
    const dead = r.summary.find((s) => s.pass === 'eliminate-dead')!;
    expect(dead.nodesRemoved).toBeGreaterThanOrEqual(1);
    for (const rec of r.records) expect(rec.ms).toBeGreaterThanOrEqual(0);
  });

  it('stops at the iteration cap and says it did not converge', async () => {
    let runs = 0;
    const flip = definePass({
      name: 'always-changes',
      description: 'reports a change every time',
      options: {},
      run: () => ({ changed: ++runs > 0 }),
    });
    const r = await optimize(model(), [step(flip)], { maxIterations: 3 });
    expect(r.converged).toBe(false);
    expect(r.iterations).toBe(3);
    expect(runs).toBe(3);
  });

  it('collects explanations only when asked', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [2, 3]);
    const [c] = b.op('Cast', [x], { to: 11 });
    b.output(c!, 'y', 'float64', [2, 3]);
    const quiet = await optimize(b.model(), 'eliminate-identity');
    expect(quiet.explanations).toEqual([]);
    const r = await optimize(b.model(), 'eliminate-identity', { explain: true });
    expect(r.explanations).toContainEqual(expect.objectContaining({ pass: 'eliminate-identity', reason: 'it changes the type' }));
  });

  it('with verify, names the pass that makes outputs drift and stops', async () => {
    const breaks = definePass({
      name: 'breaks-relu',
      description: 'replaces Relu by Neg (wrong on purpose)',
      options: {},
      run(m) {
        let changed = false;
        for (const n of m.graph.nodes) if (n.opType === 'Relu') {
          n.opType = 'Neg';
          changed = true;
        }
        return { changed };
      },
    });
    const m = model();
    const e = await rejects(optimize(m, [step('eliminate-identity'), step(breaks)], { verify: { feeds: [{ x: f32([2, 3]) }] } }));
    expect(e.code).toBe('VERIFY_DRIFT');
    expect(e.kind).toBe('check');
    expect(e.message).toContain("pass 'breaks-relu' changed output 'y'");
  });

  it('with verify, accepts passes that keep outputs and reports the largest difference', async () => {
    const r = await optimize(model(), '@default', { verify: { feeds: [{ x: f32([2, 3]) }] } });
    expect(r.verification).toMatchObject({ samples: 1, maxAbsDiff: 0 });
  });

  it('names the pass that leaves an invalid model', async () => {
    const bad = definePass({
      name: 'drops-producer',
      description: 'reads a value nothing defines (wrong on purpose)',
      options: {},
      run(m) {
        const n = m.graph.nodes.find((x) => x.opType === 'Relu');
        n?.setInput(0, new Value('defined_nowhere'));
        return { changed: !!n };
      },
    });
    const e = await rejects(optimize(model(), [step(bad)]));
    expect(e.code).toBe('PASS_BROKE_MODEL');
    expect(e.message).toContain("pass 'drops-producer'");
  });

  it('refuses passes whose minimum opset the model does not meet', async () => {
    let ran = false;
    const newer = definePass({ name: 'needs-18', description: 'opset 18 only', options: {}, minOpset: 18, run: () => ({ changed: (ran = true) }) });
    const r = await optimize(model(), [step(newer)], { explain: true });
    expect(ran).toBe(false);
    expect(r.explanations[0]!.reason).toContain('needs opset 18');
  });

  it('initializer weights count in bytes', async () => {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float32', [4]);
    const [y] = b.op('Add', [x, b.initializer('w', Tensor.from('float32', [4], new Float32Array(4)))]);
    b.initializer('dead', Tensor.from('float32', [4], new Float32Array(4)));
    b.output(y!, 'y');
    const r = await optimize(b.model(), 'eliminate-dead');
    expect(r.bytesBefore).toBe(32);
    expect(r.bytesAfter).toBe(16);
  });
});
