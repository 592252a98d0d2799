/**
 * Feature matching through channel pruning: the teacher copy gathers, for each named tensor, the
 * channels the pruned student kept, so teacher and student features line up channel for channel.
 * Checked with onnxruntime: the gathered teacher tensor equals the student's tensor when the pruned
 * channels' consumers are the only difference (the first conv's kept channels are computed by the
 * same weights in both models).
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { constantOf } from '../../ir/ir.js';
import { cloneModel, serializeModel } from '../../onnx/index.js';
import { planChannels } from '../../passes/prune/prune-channels.js';
import { keptFeatureTeacher } from '../../train/distill.js';
import { Session } from '../../runtime/session.js';
import { f32, feedFor, PER_LAYER, weight, weights } from '../prune/helpers.js';

function model() {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', 'float32', [1, 3, 4, 4]);
  const [c] = b.op('Conv', [x, weight(b, 'w0', f32([16, 3, 1, 1], weights([16, 3, 1, 1], 1)))], {}, { name: 'conv0' });
  const [r] = b.op('Relu', [c!], {}, { name: 'relu0' });
  const [y] = b.op('Conv', [r!, weight(b, 'w1', f32([2, 16, 1, 1], weights([2, 16, 1, 1], 2)))], {}, { name: 'out' });
  b.output(y!, 'y', 'float32', [1, 2, 4, 4]);
  return b.model();
}

describe('keptFeatureTeacher', () => {
  it('gathers the kept channels of the teacher, equal to the pruned student tensor', async () => {
    const teacher = model();
    const student = cloneModel(teacher);
    const plan = planChannels(student, { ratio: 0.25, ...PER_LAYER });
    const relu = student.graph.nodes.find((n) => n.name === 'relu0')!.outputs[0]!.name;
    const { teacher: t2, features } = keptFeatureTeacher(teacher, [relu, 'not-a-tensor'], (n) => plan.keptChannels(n));
    plan.apply();
    expect(constantOf(student.graph.nodes.find((n) => n.name === 'conv0')!.input(1))!.dims[0]).toBe(12);
    expect(features).toEqual([[`${relu}__kept`, relu]]);
    expect(teacher.graph.findValue(`${relu}__kept`)).toBeUndefined();
    const feed = feedFor([1, 3, 4, 4], 3);
    const st = cloneModel(student);
    st.graph.addOutput(st.graph.findValue(relu)!);
    const a = await Session.create(serializeModel(t2), { intraOpNumThreads: 1 });
    const b = await Session.create(serializeModel(st), { intraOpNumThreads: 1 });
    const ta = (await a.run(feed, [`${relu}__kept`]))[`${relu}__kept`]!;
    const sb = (await b.run(feed, [relu]))[relu]!;
    await a.dispose();
    await b.dispose();
    expect(ta.dims).toEqual([1, 12, 4, 4]);
    expect(sb.dims).toEqual([1, 12, 4, 4]);
    expect(Array.from(ta.data as Float32Array)).toEqual(Array.from(sb.data as Float32Array));
  });
});
