/**
 * The float16/bfloat16 codec of graph/dtype.ts, bit for bit against onnxruntime's Cast: float32 ->
 * float16 and float32 -> bfloat16 on every rounding boundary (every finite value, the midpoint to its
 * upper neighbour and one float32 ulp either side of both, in both signs: the subnormal range, the
 * overflow threshold 65520 and the carries into the exponent included), and float16/bfloat16 ->
 * float32 on all 65536 bit patterns. Then the places that used to carry their own copy: upgrade-opset
 * writing a Clip/Pad attribute as a float16 input (1.9999 must become 2.0, not 1.0).
 */
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../ir/builder.js';
import { bfloat16ToFloat32, DataType, encodeHalf, float16ToFloat32, float32ToBfloat16, float32ToFloat16, roundToFloat16 } from '../../core/dtype.js';
import { fromTensor, normalize, toTensor } from '../../analysis/eval/values.js';
import { constantOf } from '../../ir/ir.js';
import { serializeModel } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import { upgradeOpset } from '../../passes/convert/upgrade-opset.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float32 next to `x` towards +inf (dir 1) or -inf (dir -1). */
function nextFloat32(x: number, dir: 1 | -1): number {
  f32[0] = x;
  if (x === 0) u32[0] = dir > 0 ? 1 : 0x80000001;
  else u32[0]! += (x > 0) === dir > 0 ? 1 : -1;
  return f32[0]!;
}

/**
 * Every rounding boundary of a 16-bit format whose positive finite patterns are 0..last: each value,
 * the midpoint to the next pattern (exact in float32: one bit more than the format), and one float32
 * ulp either side of both; negated too. The midpoint after `last` is the overflow threshold.
 */
function boundaries(decode: (bits: number) => number, last: number, top: number): Float32Array {
  const out: number[] = [];
  for (let h = 0; h <= last; h++) {
    const v = decode(h);
    const m = (v + (h === last ? top : decode(h + 1))) / 2;
    for (const x of [v, nextFloat32(v, 1), nextFloat32(v, -1), m, nextFloat32(m, 1), nextFloat32(m, -1)]) out.push(x, -x);
  }
  out.push(Infinity, -Infinity, NaN, -NaN, 3e38, -3e38, 1e-45, -1e-45);
  return Float32Array.from(out);
}

async function run(model: ReturnType<GraphBuilder['model']>, feeds: Record<string, ort.Tensor> = {}): Promise<Record<string, ort.Tensor>> {
  const s = await ort.InferenceSession.create(serializeModel(model), { logSeverityLevel: 4, intraOpNumThreads: 1, graphOptimizationLevel: 'disabled' });
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

/**
 * onnxruntime's Cast float32 -> `to`, read back as 16-bit patterns. onnxruntime-node has no bfloat16
 * tensors, so bfloat16 is cast on to float32 (exact: the upper 16 bits) and the bits taken from there;
 * a NaN comes back as some NaN and is compared as NaN.
 */
async function ortCast(to: DataType.FLOAT16 | DataType.BFLOAT16, data: Float32Array): Promise<Uint16Array> {
  const b = new GraphBuilder({ opset: 21 });
  const x = b.input('x', 'float32', [data.length]);
  const [h] = b.op('Cast', [x], { to });
  if (to === DataType.FLOAT16) {
    b.output(h!, 'y', DataType.FLOAT16, [data.length]);
    const r = await run(b.model(), { x: new ort.Tensor('float32', data, [data.length]) });
    const d = r.y!.data as Uint16Array;
    return new Uint16Array(d.buffer, d.byteOffset, d.length);
  }
  const [y] = b.op('Cast', [h!], { to: DataType.FLOAT });
  b.output(y!, 'y', 'float32', [data.length]);
  const r = await run(b.model(), { x: new ort.Tensor('float32', data, [data.length]) });
  const d = r.y!.data as Float32Array;
  const bits = new Uint32Array(d.buffer, d.byteOffset, d.length);
  return Uint16Array.from(bits, (w) => w >>> 16);
}

/** onnxruntime's Cast of every 16-bit pattern of `from` to float32 (the patterns as an initializer). */
async function ortDecode(from: DataType.FLOAT16 | DataType.BFLOAT16): Promise<Float32Array> {
  const b = new GraphBuilder({ opset: 21 });
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const x = b.initializer('all', Tensor.from(from, [all.length], all));
  const [y] = b.op('Cast', [x], { to: DataType.FLOAT });
  b.output(y!, 'y', 'float32', [all.length]);
  return (await run(b.model())).y!.data as Float32Array;
}

function isNaN16(bits: number, bf: boolean): boolean {
  return bf ? (bits & 0x7f80) === 0x7f80 && (bits & 0x7f) !== 0 : (bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0;
}

/** The inputs whose encodings differ from onnxruntime's (NaN matches any NaN). */
function mismatches(data: Float32Array, ours: (v: number) => number, theirs: Uint16Array, bf: boolean): string[] {
  const bad: string[] = [];
  for (let i = 0; i < data.length; i++) {
    const a = ours(data[i]!);
    const b = theirs[i]!;
    if (a === b || (isNaN16(a, bf) && isNaN16(b, bf))) continue;
    bad.push(`${data[i]}: ours 0x${a.toString(16)}, onnxruntime 0x${b.toString(16)}`);
  }
  return bad;
}

describe('float16/bfloat16 codec against onnxruntime Cast', () => {
  it('float32 -> float16 on every rounding boundary, subnormals and overflow (65520) included', async () => {
    const data = boundaries(float16ToFloat32, 0x7bff, 65536);
    expect(data).toContain(65520);
    expect(data).toContain(2 ** -25); // half the smallest subnormal
    expect(data.length).toBeGreaterThan(380_000);
    const bad = mismatches(data, float32ToFloat16, await ortCast(DataType.FLOAT16, data), false);
    expect(bad.slice(0, 10)).toEqual([]);
    expect(isNaN16(float32ToFloat16(NaN), false)).toBe(true);
  });

  it('float32 -> bfloat16 on every rounding boundary, subnormals and overflow included', async () => {
    const data = boundaries(bfloat16ToFloat32, 0x7f7f, 2 ** 128);
    const bad = mismatches(data, float32ToBfloat16, await ortCast(DataType.BFLOAT16, data), true);
    expect(bad.slice(0, 10)).toEqual([]);
    expect(isNaN16(float32ToBfloat16(NaN), true)).toBe(true);
  });

  it('float16 and bfloat16 -> float32 on all 65536 patterns', async () => {
    for (const [type, decode] of [
      [DataType.FLOAT16, float16ToFloat32],
      [DataType.BFLOAT16, bfloat16ToFloat32],
    ] as const) {
      const theirs = await ortDecode(type);
      const bad: string[] = [];
      for (let h = 0; h < 65536; h++) {
        const a = decode(h);
        const b = theirs[h]!;
        if (Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b))) continue;
        bad.push(`0x${h.toString(16)}: ${a} vs ${b}`);
      }
      expect(bad.slice(0, 10), DataType[type]).toEqual([]);
    }
  });

  it('the array and rounding helpers are the same codec', () => {
    const v = [1.9999, 65519, 65520, -(2 ** -25), 3 * 2 ** -25, 1e-8, NaN];
    expect(Array.from(encodeHalf(DataType.FLOAT16, v))).toEqual(v.map(float32ToFloat16));
    expect(Array.from(encodeHalf(DataType.BFLOAT16, v))).toEqual(v.map(float32ToBfloat16));
    expect(roundToFloat16(1.9999)).toBe(2);
    expect(roundToFloat16(65520)).toBe(Infinity);
    // the evaluator rounds float16 results and writes float16 tensors with it
    const t = Tensor.from(DataType.FLOAT16, [2], encodeHalf(DataType.FLOAT16, [1, 2]));
    const e = fromTensor(t);
    e.data[0] = 1.9999;
    e.data[1] = 65520;
    normalize(e);
    expect(Array.from(e.data)).toEqual([2, Infinity]);
    expect(Array.from(toTensor(e).data() as Uint16Array)).toEqual([0x4000, 0x7c00]);
  });
});

describe('upgrade-opset writes float16 attributes with the codec', () => {
  /** Clip(min, max) then Pad(value) on a float16 input, with attributes (opset 9). */
  function oldModel(): ReturnType<GraphBuilder['model']> {
    const b = new GraphBuilder({ opset: 9, irVersion: 4 });
    const x = b.input('x', 'float16', [1, 1, 2, 2]);
    const [c] = b.op('Clip', [x], { min: -0.5, max: 1.9999 }, { floats: ['min', 'max'], name: 'clip' });
    const [p] = b.op('Pad', [c!], { pads: [0, 0, 1, 1, 0, 0, 0, 0], value: 1.9999 }, { floats: ['value'], name: 'pad' });
    b.output(p!, 'y', 'float16', [1, 1, 3, 3]);
    return b.model();
  }

  /** The same computation at opset 13, with onnxruntime casting the float32 constants to float16. */
  function twin(): ReturnType<GraphBuilder['model']> {
    const b = new GraphBuilder({ opset: 13 });
    const x = b.input('x', 'float16', [1, 1, 2, 2]);
    const half = (name: string, v: number) => b.op('Cast', [b.initializer(name, Tensor.from(DataType.FLOAT, [], Float32Array.of(v)))], { to: DataType.FLOAT16 })[0]!;
    const [c] = b.op('Clip', [x, half('lo', -0.5), half('hi', 1.9999)]);
    const pads = b.initializer('pads', Tensor.from(DataType.INT64, [8], BigInt64Array.of(0n, 0n, 1n, 1n, 0n, 0n, 0n, 0n)));
    const [p] = b.op('Pad', [c!, pads, half('pv', 1.9999)]);
    b.output(p!, 'y', 'float16', [1, 1, 3, 3]);
    return b.model();
  }

  it('a Clip max and a Pad value of 1.9999 become float16 2.0, and onnxruntime agrees bit for bit', async () => {
    const m = oldModel();
    upgradeOpset(m, 13);
    const clip = m.graph.nodes.find((n) => n.opType === 'Clip')!;
    const pad = m.graph.nodes.find((n) => n.opType === 'Pad')!;
    const bits = (t: Tensor | undefined) => Array.from(t!.data() as Uint16Array);
    expect(bits(constantOf(clip.input(2)))).toEqual([0x4000]); // 2.0 (the old encoder gave 0x3c00, 1.0)
    expect(bits(constantOf(clip.input(1)))).toEqual([0xb800]); // -0.5
    expect(bits(constantOf(pad.input(2)))).toEqual([0x4000]);
    const x = new ort.Tensor('float16', encodeHalf(DataType.FLOAT16, [-3, 0.25, 1.9990234375, 7]), [1, 1, 2, 2]);
    const got = (await run(m, { x })).y!.data as Uint16Array;
    const want = (await run(twin(), { x })).y!.data as Uint16Array;
    expect(Array.from(got)).toEqual(Array.from(want));
    expect(Array.from(got, float16ToFloat32)).toEqual([2, 2, 2, 2, -0.5, 0.25, 2, 1.9990234375, 2]);
  });
});
