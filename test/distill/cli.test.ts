/**
 * `onnxforge distill` through `main(argv)`: a run on generated data writes the student and a report
 * (JSON document with input/output facts, latency and agreement); each bad input exits 2 with one
 * error line naming its code and writes nothing.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { DataType } from '../../core/dtype.js';
import { Model } from '../../ir/ir.js';
import { loadModelSync, saveModel } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import { mulberry32 } from '../../data/generate.js';
import { runCli } from '../helpers/run-cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'distill-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function mlp(seed: number, classes = 3, middle?: string): Model {
  const rand = mulberry32(seed);
  const w = (dims: number[]) => Tensor.from(DataType.FLOAT, dims, Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => (rand() * 2 - 1) * 1.5));
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', ['N', 8]);
  let h = b.op('Relu', [b.op('Gemm', [x, b.initializer('w1', w([8, 16])), b.initializer('b1', w([16]))])[0]!])[0]!;
  if (middle) h = b.op(middle, [h])[0]!;
  const z = b.op('Gemm', [h, b.initializer('w2', w([16, classes]))])[0]!;
  b.output(b.op('Softmax', [z], { axis: -1 })[0]!, 'probs');
  return b.model();
}

async function write(name: string, m: Model): Promise<string> {
  const p = path.join(tmp, name);
  await saveModel(m, p);
  return p;
}

const run = (...argv: string[]) => runCli(argv);

describe('onnxforge distill', () => {
  it('distills on generated data, writes the student and a report', async () => {
    const teacher = await write('teacher.onnx', mlp(1));
    const student = await write('student.onnx', mlp(2));
    const out = path.join(tmp, 'out.onnx');
    const report = path.join(tmp, 'report.json');
    const r = await run('distill', '--teacher', teacher, '--student', student, '--data', 'random:96:3', '--shape', 'N=1', '--epochs', '4', '--lr', '0.02', '--batch', '16', '--holdout', '0.25', '--latency-runs', '5', '--threads', '1', '--report', report, '-o', out);
    expect(r.err).not.toMatch(/error/);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/teacher vs student/);
    expect(r.out).toMatch(/agreement with teacher/);
    expect(loadModelSync(out).graph.outputs.map((v) => v.name)).toEqual(['probs']);
    const doc = JSON.parse(fs.readFileSync(report, 'utf8'));
    expect(doc.schema).toBe('onnxforge.report/1');
    expect(doc.command).toBe('distill');
    expect(doc.latency).toHaveLength(3);
    expect(doc.details.distill.epochs).toHaveLength(5);
    expect(doc.details.agreement.samples).toBe(24);
  }, 60_000);

  it('--prune-channels builds the student from the teacher with prune-channels\' defaults: 16 units in blocks of 8 stay whole, and it says so', async () => {
    const teacher = await write('teacher2.onnx', mlp(1));
    const out = path.join(tmp, 'pruned.onnx');
    const r = await run('distill', '--teacher', teacher, '--prune-channels', '0.25', '--data', 'random:32:3', '--shape', 'N=1', '--epochs', '1', '--latency-runs', '2', '--json', '-o', out);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.out);
    expect([rep.pruning.scope, rep.pruning.cost, rep.pruning.maxRatio, rep.pruning.roundTo]).toEqual(['global', 'flops', 0.5, 8]);
    expect(rep.pruning.channelsAfter).toBe(rep.pruning.channelsBefore);
    expect(r.err).toContain('roundTo=1');
    expect(fs.existsSync(out)).toBe(true);
  }, 60_000);

  it('--prune-options reach the pruning pass', async () => {
    const teacher = await write('teacher3.onnx', mlp(1));
    const out = path.join(tmp, 'pruned-layer.onnx');
    const r = await run('distill', '--teacher', teacher, '--prune-channels', '0.25', '--prune-options', 'scope=layer;roundTo=1', '--data', 'random:32:3', '--shape', 'N=1', '--epochs', '1', '--latency-runs', '2', '--json', '-o', out);
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.out);
    expect(rep.pruning.scope).toBe('layer');
    expect(rep.pruning.roundTo).toBe(1);
    expect(rep.pruning.channelsAfter).toBe(rep.pruning.channelsBefore - 4);
  }, 60_000);

  const bad: Array<[string, () => Promise<string[]>, string]> = [
    ['outputs of different shapes', async () => ['--student', await write('s4.onnx', mlp(2, 4))], 'DISTILL_SHAPE_MISMATCH'],
    ['an op without a gradient rule', async () => ['--student', await write('sin.onnx', mlp(2, 3, 'Sin'))], 'AUTODIFF_NO_RULE'],
    ['a diverging loss', async () => ['--student', await write('s.onnx', mlp(2)), '--optimizer', 'sgd', '--lr', '1e30', '--schedule', 'constant', '--epochs', '4'], 'DISTILL_DIVERGED'],
    ['both --student and --prune-channels', async () => ['--student', await write('s2.onnx', mlp(2)), '--prune-channels', '0.3'], 'USAGE_CONFLICT'],
    ['neither --student nor --prune-channels', async () => [], 'USAGE_CONFLICT'],
    ['--prune-options without --prune-channels', async () => ['--student', await write('s5.onnx', mlp(2)), '--prune-options', 'scope=global'], 'USAGE_MISSING'],
    ['a bad --prune-options value', async () => ['--prune-channels', '0.3', '--prune-options', 'scope=sideways'], 'PIPELINE_BAD_OPTION'],
    ['a --prune-options value out of range', async () => ['--prune-channels', '0.3', '--prune-options', 'maxRatio=1.5'], 'PIPELINE_BAD_OPTION'],
    ['a bad distill option value', async () => ['--prune-channels', '0.3', '--flip', '2'], 'DISTILL_BAD_OPTION'],
  ];
  for (const [name, args, code] of bad) {
    it(`${name}: exit 2, nothing written`, async () => {
      const teacher = await write('t.onnx', mlp(1));
      const out = path.join(tmp, `bad-${code}.onnx`);
      const report = path.join(tmp, `bad-${code}.json`);
      const r = await run('distill', '--teacher', teacher, ...(await args()), '--data', 'random:32:3', '--shape', 'N=1', '--batch', '8', '--report', report, '-o', out);
      expect(r.code).toBe(2);
      expect(r.err).toContain(`error[${code}]`);
      expect(r.err.trim().split('\n')).toHaveLength(1);
      expect(fs.existsSync(out)).toBe(false);
      expect(fs.existsSync(report)).toBe(false);
    }, 60_000);
  }
});
