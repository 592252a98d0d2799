import { describe, expect, it } from 'vitest';
import { DataType, float32ToFloat16 } from '../../core/dtype.js';
import type { Feed } from '../../core/host-tensor.js';
import { Tensor } from '../../core/tensor.js';
import { GraphBuilder } from '../../ir/builder.js';
import { Graph, Model, Value } from '../../ir/ir.js';
import { cloneModel } from '../../onnx/index.js';
import { convertFloat16, type ConvertFloat16Options } from '../../passes/convert/convert-float16.js';
import { getPass } from '../../passes/registry.js';
import { nodeRunner } from '../../runtime/runner.js';
import { TRANSFORMER_VARIANTS, transformerFeed } from '../models/transformers.js';
import { castStructure, compareRuns, expectValid } from './helpers.js';

const seeded = (seed: number) => {
  let a = seed >>> 0;
  return () => {
    a = (a * 1664525 + 1013904223) >>> 0;
    return a / 2 ** 32 - 0.5;
  };
};
const randTensor = (dims: number[], scale: number, seed: number) => {
  const r = seeded(seed);
  const n = dims.reduce((a, b) => a * b, 1);
  return Tensor.from(DataType.FLOAT, dims, Float32Array.from({ length: n }, () => r() * scale));
};
const floatFeed = (name: string, dims: number[], scale: number, seed: number, offset = 0): Feed => {
  const r = seeded(seed);
  const n = dims.reduce((a, b) => a * b, 1);
  return { [name]: { type: 'float32', dims, data: Float32Array.from({ length: n }, () => offset + r() * scale) } };
};

/** x [2, 64] -> LayerNorm written out (ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt, Div, Mul, Add) -> MatMul -> Relu. */
function decomposedLayerNorm(): Model {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [2, 64]);
  const axes = b.initializer('axes', Tensor.from(DataType.INT64, [1], BigInt64Array.of(-1n)));
  const [mean] = b.op('ReduceMean', [x], { axes: [-1] });
  const [d] = b.op('Sub', [x, mean!]);
  const [sq] = b.op('Pow', [d!, b.initializer('two', Tensor.from(DataType.FLOAT, [], Float32Array.of(2)))]);
  const [v] = b.op('ReduceMean', [sq!], { axes: [-1] });
  void axes;
  const [ve] = b.op('Add', [v!, b.initializer('eps', Tensor.from(DataType.FLOAT, [], Float32Array.of(1e-5)))]);
  const [sd] = b.op('Sqrt', [ve!]);
  const [n] = b.op('Div', [d!, sd!]);
  const [g] = b.op('Mul', [n!, b.initializer('gamma', randTensor([64], 2, 3))]);
  const [y] = b.op('Add', [g!, b.initializer('beta', randTensor([64], 0.2, 4))]);
  const [mm] = b.op('MatMul', [y!, b.initializer('w', randTensor([64, 32], 0.5, 5))]);
  b.output(b.op('Relu', [mm!])[0]!, 'out');
  return b.model();
}

async function convert(m: Model, o: ConvertFloat16Options) {
  const c = cloneModel(m);
  const r = await convertFloat16(c, o, { runner: nodeRunner });
  expectValid(c);
  castStructure(c, 0);
  return { c, r };
}

const reasonOf = (r: Awaited<ReturnType<typeof convertFloat16>>, op: string) => r.keptFloat.filter((k) => k.op === op).map((k) => k.reason);

describe('convert-float16', () => {
  it('is in the registry', () => {
    expect(getPass('convert-float16')?.name).toBe('convert-float16');
  });

  it('keeps the variance chain of a decomposed LayerNorm float32 and gives finite outputs on large-magnitude inputs', async () => {
    const m = decomposedLayerNorm();
    const { c, r } = await convert(m, { target: 'any' });
    expect(reasonOf(r, 'Pow')).toEqual(['variance']);
    expect(reasonOf(r, 'Sqrt')).toEqual(['variance']);
    expect(r.keptFloat.filter((k) => k.op === 'ReduceMean').map((k) => k.reason)).toEqual(['variance']);
    // the normalization itself, the affine part, the MatMul and Relu are float16
    for (const op of ['Sub', 'Div', 'Mul', 'MatMul', 'Relu']) expect(r.halfOps[op], op).toBeGreaterThan(0);
    // |x - mean| up to ~1500: its square (2e6) is far above 65504, float16 would give infinity there
    const large = [floatFeed('x', [2, 64], 3000, 11), floatFeed('x', [2, 64], 20000, 12, 5000)];
    expect(float32ToFloat16(1500 ** 2)).toBe(0x7c00);
    const small = [floatFeed('x', [2, 64], 2, 13)];
    const res = await compareRuns(m, c, [...small, ...large]);
    expect(res.fp32NonFinite).toBe(0);
    expect(res.nonFinite).toBe(0);
    expect(res.relErr.out!).toBeLessThan(5e-3);
  });

  it('keeps float32 what overflows or underflows float16 on the calibration ranges, with the tensor named', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', [4, 16]);
    const [big] = b.op('Mul', [x, b.initializer('k_big', Tensor.from(DataType.FLOAT, [], Float32Array.of(30000)))], {}, { names: ['big'] });
    const [back] = b.op('Div', [big!, b.initializer('k_back', Tensor.from(DataType.FLOAT, [], Float32Array.of(30000)))]);
    const [tiny] = b.op('Mul', [x, b.initializer('k_tiny', Tensor.from(DataType.FLOAT, [], Float32Array.of(3e-5)))], {}, { names: ['tiny'] });
    const [tinySq] = b.op('Abs', [tiny!], {}, { names: ['tiny_abs'] });
    const [sum] = b.op('Add', [back!, b.op('Relu', [x])[0]!]);
    b.output(sum!, 'y');
    b.output(tinySq!, 'z');
    const m = b.model();
    const calibration = [floatFeed('x', [4, 16], 1, 21), floatFeed('x', [4, 16], 1.5, 22)];
    const { c, r } = await convert(m, { target: 'any', calibration });
    expect(r.ranges).toMatchObject({ source: 'calibration', samples: 2 });
    const over = r.keptFloat.filter((k) => k.reason === 'overflow');
    expect(over.map((k) => k.op).sort()).toEqual(['Div', 'Mul']);
    expect(over.find((k) => k.op === 'Div')!.detail).toContain('big');
    expect(r.keptFloat.filter((k) => k.reason === 'underflow').map((k) => k.op).sort()).toEqual(['Abs', 'Mul']);
    expect(r.halfOps).toMatchObject({ Relu: 1, Add: 1 });
    const res = await compareRuns(m, c, calibration);
    expect(res.nonFinite).toBe(0);
    expect(res.relErr.y!).toBeLessThan(2e-3);
    expect(res.relErr.z!).toBeLessThan(1e-6);
  });

  it('leaves shape arithmetic and integer tensors alone', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', ['N', 8]);
    const [s] = b.op('Shape', [x]);
    const [n] = b.op('Gather', [s!, b.initializer('i0', Tensor.from(DataType.INT64, [], BigInt64Array.of(0n)))], { axis: 0 });
    const [nf] = b.op('Cast', [n!], { to: DataType.FLOAT });
    const [half] = b.op('Mul', [nf!, b.initializer('k', Tensor.from(DataType.FLOAT, [], Float32Array.of(2)))], {}, { names: ['twice'] });
    const [ni] = b.op('Cast', [half!], { to: DataType.INT64 });
    const [nu] = b.op('Unsqueeze', [ni!, b.initializer('ax', Tensor.from(DataType.INT64, [1], BigInt64Array.of(0n)))]);
    const [shape] = b.op('Concat', [nu!, b.initializer('m1', Tensor.from(DataType.INT64, [1], BigInt64Array.of(4n)))], { axis: 0 });
    const [r1] = b.op('Relu', [x]);
    const [h] = b.op('Tanh', [r1!]);
    b.output(b.op('Reshape', [h!, shape!])[0]!, 'y');
    const m = b.model();
    const { c, r } = await convert(m, { target: 'any', shapes: { N: [2] } });
    expect(reasonOf(r, 'Mul')).toEqual(['shape-computation']);
    expect(c.graph.findValue('twice')!.elemType).toBe(DataType.FLOAT);
    expect(r.halfOps).toMatchObject({ Relu: 1, Tanh: 1, Reshape: 1 });
    const res = await compareRuns(m, c, [floatFeed('x', [2, 8], 2, 31)]);
    expect(res.relErr.y!).toBeLessThan(1e-3);
  });

  it('keep-io-types: float32 interface by default, half inputs and outputs when off', async () => {
    const m = decomposedLayerNorm();
    const on = await convert(m, { target: 'any' });
    expect(on.c.graph.inputs[0]!.elemType).toBe(DataType.FLOAT);
    expect(on.c.graph.outputs[0]!.elemType).toBe(DataType.FLOAT);
    expect(on.c.graph.outputs[0]!.name).toBe('out');
    const off = await convert(m, { target: 'any', keepIoTypes: false });
    expect(off.c.graph.inputs[0]!.elemType).toBe(DataType.FLOAT16);
    expect(off.c.graph.outputs[0]!.elemType).toBe(DataType.FLOAT16);
    expect(off.c.graph.outputs[0]!.name).toBe('out');
    // with a float16 interface the input needs no Cast: one Cast fewer at the input
    const casts = (x: Model) => x.graph.nodes.filter((n) => n.opType === 'Cast').length;
    expect(casts(off.c)).toBe(casts(on.c) - 2);
  });

  it('target cpu converts only ops with native float16 kernels in onnxruntime CPU/WASM; weights are stored in float16 either way', async () => {
    const m = decomposedLayerNorm();
    const { c, r } = await convert(m, {});
    expect(r.target).toBe('cpu');
    expect(reasonOf(r, 'MatMul')).toEqual(['no-cpu-kernel']);
    expect(r.halfNodes).toBe(0);
    // the [64, 32] weight: float16 in the file, one Cast to float32 for the MatMul
    expect(r.rewrite.halfWeightsWithCast).toBe(1);
    const w = [...c.graph.initializers.values()].map((v) => c.graph.initializerTensor(v)!).find((t) => t.size === 64 * 32)!;
    expect(w.dataType).toBe(DataType.FLOAT16);
    const res = await compareRuns(m, c, [floatFeed('x', [2, 64], 2, 41)]);
    expect(res.relErr.out!).toBeLessThan(2e-3);
  });

  it('bfloat16: converts and runs in onnxruntime with bfloat16-sized error', async () => {
    const m = decomposedLayerNorm();
    const { c, r } = await convert(m, { bf16: true });
    expect(r.half).toBe('bfloat16');
    expect([...c.graph.initializers.values()].some((v) => c.graph.initializerTensor(v)!.dataType === DataType.BFLOAT16)).toBe(true);
    const res = await compareRuns(m, c, [floatFeed('x', [2, 64], 2, 51)]);
    expect(res.nonFinite).toBe(0);
    expect(res.relErr.out!).toBeLessThan(2e-2);
    expect(res.relErr.out!).toBeGreaterThan(1e-4);
  });

  it('refuses a model that already holds float16', async () => {
    const m = decomposedLayerNorm();
    await convertFloat16(m, { target: 'any' }, { runner: nodeRunner });
    await expect(convertFloat16(m, { target: 'any' }, { runner: nodeRunner })).rejects.toMatchObject({ code: 'FP16_ALREADY_HALF', kind: 'input' });
  });

  it('leaves If nodes and their bodies float32 and says so', async () => {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', [4]);
    const cond = b.input('c', 'bool', []);
    const branch = (k: number) => {
      const g = new Graph(`branch${k}`);
      const bb = new GraphBuilder({ graph: g });
      const [o] = bb.op('Mul', [x, bb.initializer(`k${k}`, Tensor.from(DataType.FLOAT, [], Float32Array.of(k)))]);
      bb.output(o!, `o${k}`, 'float32', [4]);
      return g;
    };
    const [r1] = b.op('Relu', [x]);
    const [sel] = b.op('If', [cond], { then_branch: branch(2), else_branch: branch(3) });
    b.output(b.op('Add', [sel!, r1!])[0]!, 'y');
    const m = b.model();
    const { r } = await convert(m, { target: 'any', randomSamples: 0 });
    expect(reasonOf(r, 'If')).toEqual(['subgraph']);
    expect(r.notes.join(' ')).toContain('If/Loop/Scan');
  });

  describe.each(TRANSFORMER_VARIANTS.filter((v) => ['bert-ts14', 'bert-dynamo', 'gpt2-ts17', 'llama-ts17'].includes(v.name)).map((v) => [v.name, v] as const))('%s', (_name, variant) => {
    it.each(['cpu', 'any'] as const)('target %s: valid, Casts only at boundaries, outputs within float16 tolerance, no NaN/Inf', async (target) => {
      const m = variant.build();
      const { c, r } = await convert(m, { target });
      const feeds = [transformerFeed(variant, 1, 16), transformerFeed(variant, 2, 32, { seed: 9, padded: true })];
      const res = await compareRuns(m, c, feeds);
      expect(res.nonFinite).toBe(res.fp32NonFinite);
      for (const [k, e] of Object.entries(res.relErr)) expect(e, k).toBeLessThan(2e-2);
      if (target === 'any') expect(r.halfNodes).toBeGreaterThan(r.keptFloat.length);
      // every Cast sits where a value crosses precisions: at most one per value and direction
      const casts = c.graph.nodes.filter((n) => n.opType === 'Cast').length - m.graph.nodes.filter((n) => n.opType === 'Cast').length;
      expect(casts).toBe(r.rewrite.castsAdded);
      expect(r.rewrite.halfBytes).toBeLessThan(r.rewrite.floatBytes * 0.51);
    });
  });
});

export type { Value };
