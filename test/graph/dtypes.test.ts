/**
 * Element types and the rarely used corners of the format:
 * - a built model with float8 (all five, FLOAT8E8M0 included), int4/uint4, int2/uint2, float4e2m1,
 *   bfloat16 and float16 initializers, metadata_props at node, graph, value, tensor and model level,
 *   a sparse initializer, a model-local function, a training_info and unknown fields round-trips
 *   structurally and byte for byte;
 * - the conversions: known bit patterns of every small float, float16 / bfloat16 rounding to nearest
 *   even, int4/int2 sign extension and packing, typed-field storage, and a cross-check against
 *   onnxruntime's own Cast for every bit pattern of the types it can cast.
 */
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { checkModel } from '../../ir/checker.js';
import {
  allDTypes,
  bfloat16ToFloat32,
  byteLengthOf,
  DataType,
  dtypeName,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  float8ToFloat32,
  packSubByte,
  unpackSubByte,
} from '../../core/dtype.js';
import { Graph, Model, Node, OnnxFunction, Value } from '../../ir/ir.js';
import { decodeTensor, encodeTensor, loadModelSync, serializeModel } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import { sameBytes } from './helpers.js';

// ---------------------------------------------------------------------------------------------
// protobuf helpers for unknown fields

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A length-delimited field with a made-up number (no ONNX message has field 1000 or 4242). */
function unknownField(fieldNo: number, payload: number[]): Uint8Array {
  return Uint8Array.from([...varint((fieldNo << 3) | 2), ...varint(payload.length), ...payload]);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// the model

const SMALL_TYPES: Array<[DataType, number[]]> = [
  [DataType.FLOAT8E4M3FN, [0x00, 0x38, 0xb8, 0x7e, 0x7f, 0x01]],
  [DataType.FLOAT8E4M3FNUZ, [0x00, 0x40, 0xc0, 0x7f, 0x80, 0x01]],
  [DataType.FLOAT8E5M2, [0x00, 0x3c, 0xbc, 0x7b, 0x7c, 0xfc]],
  [DataType.FLOAT8E5M2FNUZ, [0x00, 0x40, 0xc0, 0x7f, 0x80, 0x01]],
  [DataType.FLOAT8E8M0, [0x00, 0x7f, 0x80, 0xfe, 0xff, 0x01]],
];

function richModel(): Model {
  const b = new GraphBuilder({ opset: 21, irVersion: 10, opsets: { 'local.fn': 1 } });
  const x = b.input('x', 'float32', [2, 'batch']);
  x.metadataProps = [{ key: 'value.level', value: 'input x' }];
  for (const [t, bytes] of SMALL_TYPES) b.initializer(`w_${dtypeName(t)}`, Tensor.fromBytes(t, [bytes.length], Uint8Array.from(bytes)));
  b.initializer('w_int4', Tensor.fromBytes(DataType.INT4, [5], packSubByte(DataType.INT4, [-8, -1, 0, 7, 3])));
  b.initializer('w_uint4', Tensor.fromBytes(DataType.UINT4, [3], packSubByte(DataType.UINT4, [0, 15, 9])));
  b.initializer('w_int2', Tensor.fromBytes(DataType.INT2, [6], packSubByte(DataType.INT2, [-2, -1, 0, 1, 1, -2])));
  b.initializer('w_uint2', Tensor.fromBytes(DataType.UINT2, [5], packSubByte(DataType.UINT2, [0, 1, 2, 3, 3])));
  b.initializer('w_float4e2m1', Tensor.fromBytes(DataType.FLOAT4E2M1, [4], Uint8Array.of(0x21, 0xf7)));
  b.initializer('w_bfloat16', Tensor.from(DataType.BFLOAT16, [3], Uint16Array.of(0x3f80, 0xc000, 0x7fc0)));
  b.initializer('w_float16', Tensor.from(DataType.FLOAT16, [3], Uint16Array.of(0x3c00, 0xfbff, 0x0001)));
  // a float16 tensor stored in int32_data (as exporters without raw_data write it)
  const typed = new Tensor(DataType.FLOAT16, [2], 'w_f16_typed');
  typed.fields = { int32_data: Int32Array.of(0x3c00, 0xc000) };
  b.initializer('w_f16_typed', typed);
  const w = b.initializer('w', Tensor.from('float32', [2, 1], new Float32Array([0.5, -2])));
  w.metadataProps = [{ key: 'unused', value: 'initializer values are written as tensors' }];
  const tensorMd = b.graph.initializerTensor(w)!;
  tensorMd.metadataProps = [{ key: 'tensor.level', value: 'w' }];

  const mul = b.node('Mul', [x, w], {}, { name: 'mul', names: ['m'] });
  mul.metadataProps = [{ key: 'node.level', value: 'mul' }, { key: 'second', value: '2' }];
  const [f] = b.op('Twice', [mul.output(0)], { scale: 2 }, { domain: 'local.fn', name: 'call_twice', names: ['f'] });
  const y = b.output(f!, 'y', 'float32', [2, 'batch']);
  y.metadataProps = [{ key: 'value.level', value: 'output y' }];
  b.graph.metadataProps = [{ key: 'graph.level', value: 'main' }];
  // value_info with metadata
  const vinfo = mul.output(0);
  vinfo.setTensorType(DataType.FLOAT, [2, 'batch']);
  vinfo.metadataProps = [{ key: 'value.level', value: 'value_info m' }];
  b.graph.valueInfo.push(vinfo);

  // sparse initializer: a [3, 4] float tensor with two non-zeros at flat indices 1 and 10
  const sv = new Value('sp');
  sv.graph = b.graph;
  b.graph.sparseInitializers.push({
    value: sv,
    tensor: { values: Tensor.from('float32', [2], new Float32Array([1.5, -4]), 'sp'), indices: Tensor.from('int64', [2], BigInt64Array.of(1n, 10n), 'sp_indices'), dims: [3, 4] },
  });

  const m = b.model({ producerName: 'dtypes-test' });
  m.metadataProps = [{ key: 'model.level', value: 'yes' }, { key: 'empty', value: '' }];
  m.docString = 'every corner';

  // model-local function: Twice(a) = a + a, with an attribute declared
  const fn = new OnnxFunction();
  fn.name = 'Twice';
  fn.domain = 'local.fn';
  fn.attributeNames = ['scale'];
  fn.opsetImports = [{ domain: '', version: 21 }];
  fn.metadataProps = [{ key: 'function.level', value: 'Twice' }];
  const a = fn.body.addInput(new Value('a'));
  const add = new Node('Add', [a, a], [new Value('o')]);
  add.name = 'fn_add';
  fn.body.insertNode(add);
  fn.body.addOutput(add.output(0));
  m.functions.push(fn);

  // training_info: an initialization graph that produces a new value for w, bound by name
  const init = new Graph('init');
  const cst = new GraphBuilder({ graph: init }).constant('w_init', Tensor.from('float32', [2, 1], new Float32Array([1, 1])));
  init.addOutput(cst);
  m.trainingInfo.push({ initialization: init, initializationBinding: [{ key: 'w', value: 'w_init' }] });

  // unknown fields held by the IR (as if a newer ONNX had written them)
  m.unknownFields = [unknownField(1000, [1, 2, 3])];
  mul.unknownFields = [unknownField(4242, [9])];
  b.graph.unknownFields = [unknownField(777, [])];
  return m;
}

describe('a model using every element type and the rare message fields', () => {
  it('is valid and round-trips byte for byte', () => {
    const m = richModel();
    expect(checkModel(m)).toEqual([]);
    const bytes = serializeModel(m);
    const back = loadModelSync(bytes);
    expect(checkModel(back)).toEqual([]);
    expect(sameBytes(serializeModel(back), bytes)).toBe(true);
    // and once more from the re-decoded model
    expect(sameBytes(serializeModel(loadModelSync(serializeModel(back))), bytes)).toBe(true);
  });

  it('round-trips structurally: tensors, metadata, sparse, function, training_info, unknown fields', () => {
    const orig = richModel();
    const m = loadModelSync(serializeModel(orig));
    const g = m.graph;
    for (const [name, v] of orig.graph.initializers) {
      const t0 = orig.graph.initializerTensor(v)!;
      const t1 = g.initializerTensor(g.initializers.get(name)!)!;
      expect([t1.dataType, t1.dims, t1.name], name).toEqual([t0.dataType, t0.dims, name]);
      expect(sameBytes(t1.bytes(), t0.bytes()), name).toBe(true);
    }
    // the typed-field float16 stays in int32_data (not rewritten as raw_data)
    const typed = g.initializerTensor(g.initializers.get('w_f16_typed')!)!;
    expect(typed.raw).toBeUndefined();
    expect(Array.from(typed.toFloat32())).toEqual([1, -2]);

    expect(m.metadataProps).toEqual([{ key: 'model.level', value: 'yes' }, { key: 'empty', value: '' }]);
    expect(g.metadataProps).toEqual([{ key: 'graph.level', value: 'main' }]);
    expect(g.nodes.find((n) => n.name === 'mul')!.metadataProps).toEqual([{ key: 'node.level', value: 'mul' }, { key: 'second', value: '2' }]);
    expect(g.inputs[0]!.metadataProps).toEqual([{ key: 'value.level', value: 'input x' }]);
    expect(g.outputs[0]!.metadataProps).toEqual([{ key: 'value.level', value: 'output y' }]);
    expect(g.valueInfo.map((v) => [v.name, v.metadataProps])).toEqual([['m', [{ key: 'value.level', value: 'value_info m' }]]]);
    expect(g.initializerTensor(g.initializers.get('w')!)!.metadataProps).toEqual([{ key: 'tensor.level', value: 'w' }]);
    expect(g.inputs[0]!.shape).toEqual([2, 'batch']);

    expect(g.sparseInitializers.length).toBe(1);
    const sp = g.sparseInitializers[0]!;
    expect(sp.value.name).toBe('sp');
    expect(sp.tensor.dims?.map(Number)).toEqual([3, 4]);
    expect(Array.from(sp.tensor.values!.toFloat32())).toEqual([1.5, -4]);
    expect(Array.from(sp.tensor.indices!.data() as BigInt64Array)).toEqual([1n, 10n]);

    expect(m.functions.length).toBe(1);
    const fn = m.functions[0]!;
    expect([fn.name, fn.domain, fn.attributeNames, fn.opsetImports.map((o) => [o.domain, Number(o.version)])]).toEqual(['Twice', 'local.fn', ['scale'], [['', 21]]]);
    expect(fn.metadataProps).toEqual([{ key: 'function.level', value: 'Twice' }]);
    expect(fn.body.nodes.map((n) => [n.opType, n.inputs.map((v) => v?.name), n.outputs.map((v) => v.name)])).toEqual([['Add', ['a', 'a'], ['o']]]);
    const call = g.nodes.find((n) => n.name === 'call_twice')!;
    expect([call.opType, call.domain, call.getInt('scale')]).toEqual(['Twice', 'local.fn', 2]);

    expect(m.trainingInfo.length).toBe(1);
    const ti = m.trainingInfo[0]!;
    expect(ti.initializationBinding).toEqual([{ key: 'w', value: 'w_init' }]);
    expect(ti.initialization!.nodes.map((n) => n.opType)).toEqual(['Constant']);
    expect(ti.initialization!.outputs.map((v) => v.name)).toEqual(['w_init']);

    expect(m.unknownFields).toEqual([unknownField(1000, [1, 2, 3])]);
    expect(g.nodes.find((n) => n.name === 'mul')!.unknownFields).toEqual([unknownField(4242, [9])]);
    expect(g.unknownFields).toEqual([unknownField(777, [])]);
  });

  it('keeps an unknown field appended to the bytes of a saved model', () => {
    const bytes = serializeModel(richModel());
    const extra = unknownField(1234, [0xde, 0xad, 0xbe, 0xef]);
    const withExtra = concat(bytes, extra);
    const m = loadModelSync(withExtra);
    expect(m.unknownFields?.some((u) => sameBytes(u, extra))).toBe(true);
    expect(sameBytes(serializeModel(m), withExtra)).toBe(true);
    // a varint-typed unknown field as well
    const v = Uint8Array.from([...varint((2000 << 3) | 0), ...varint(300)]);
    const withVarint = concat(bytes, v);
    expect(sameBytes(serializeModel(loadModelSync(withVarint)), withVarint)).toBe(true);
  });

  it('keeps an unknown field appended to a TensorProto', () => {
    const t = Tensor.from(DataType.FLOAT8E5M2, [3], Uint8Array.of(1, 2, 3), 'q');
    const extra = unknownField(99, [7, 7]);
    const bytes = concat(encodeTensor(t), extra);
    const back = decodeTensor(bytes);
    expect(back.unknownFields).toEqual([extra]);
    expect(sameBytes(encodeTensor(back), bytes)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// conversions

describe('small float decoding: known bit patterns', () => {
  const cases: Array<[DataType, Array<[number, number]>]> = [
    [DataType.FLOAT8E4M3FN, [[0x00, 0], [0x80, -0], [0x38, 1], [0xb8, -1], [0x7e, 448], [0xfe, -448], [0x7f, NaN], [0xff, NaN], [0x01, 2 ** -9], [0x07, 7 * 2 ** -9], [0x08, 2 ** -6], [0x40, 2], [0x3c, 1.5]]],
    [DataType.FLOAT8E4M3FNUZ, [[0x00, 0], [0x80, NaN], [0x40, 1], [0xc0, -1], [0x7f, 240], [0xff, -240], [0x01, 2 ** -10], [0x08, 2 ** -7], [0x44, 1.5]]],
    [DataType.FLOAT8E5M2, [[0x00, 0], [0x3c, 1], [0xbc, -1], [0x7b, 57344], [0x7c, Infinity], [0xfc, -Infinity], [0x7d, NaN], [0x7e, NaN], [0x7f, NaN], [0x01, 2 ** -16], [0x04, 2 ** -14], [0x3e, 1.5]]],
    [DataType.FLOAT8E5M2FNUZ, [[0x00, 0], [0x80, NaN], [0x40, 1], [0xc0, -1], [0x7f, 57344], [0x01, 2 ** -17], [0x04, 2 ** -15]]],
    [DataType.FLOAT8E8M0, [[0x7f, 1], [0x80, 2], [0x7e, 0.5], [0x00, 2 ** -127], [0xfe, 2 ** 127], [0xff, NaN]]],
    [DataType.FLOAT4E2M1, [[0x0, 0], [0x1, 0.5], [0x2, 1], [0x3, 1.5], [0x4, 2], [0x5, 3], [0x6, 4], [0x7, 6], [0x8, -0], [0x9, -0.5], [0xf, -6]]],
  ];
  for (const [type, pairs] of cases) {
    it(dtypeName(type), () => {
      for (const [bits, want] of pairs) {
        const got = float8ToFloat32(type, bits);
        if (Number.isNaN(want)) expect(got, `0x${bits.toString(16)}`).toBeNaN();
        else expect(Object.is(got, want) || (want === 0 && got === 0), `0x${bits.toString(16)} -> ${got}, want ${want}`).toBe(true);
      }
    });
  }

  it('is monotonic over the positive patterns and symmetric in the sign bit', () => {
    for (const [type] of cases) {
      const signed = type !== DataType.FLOAT8E8M0;
      const top = type === DataType.FLOAT4E2M1 ? 0x8 : signed ? 0x80 : 0x100;
      let prev = -Infinity;
      for (let b = 0; b < top; b++) {
        const v = float8ToFloat32(type, b);
        if (Number.isNaN(v)) continue;
        expect(v, `${dtypeName(type)} 0x${b.toString(16)}`).toBeGreaterThan(prev === 0 && v === 0 ? -1 : prev);
        prev = v;
        if (signed && !(type === DataType.FLOAT8E4M3FNUZ || type === DataType.FLOAT8E5M2FNUZ) ) {
          expect(float8ToFloat32(type, b | top)).toBe(-v);
        }
      }
    }
  });

  it('Tensor.toFloat32 decodes whole tensors of each type', () => {
    const t = Tensor.fromBytes(DataType.FLOAT8E4M3FN, [3], Uint8Array.of(0x38, 0xb8, 0x7e));
    expect(Array.from(t.toFloat32())).toEqual([1, -1, 448]);
    const e8 = Tensor.fromBytes(DataType.FLOAT8E8M0, [2], Uint8Array.of(0x7f, 0x81));
    expect(Array.from(e8.toFloat32())).toEqual([1, 4]);
    const f4 = Tensor.fromBytes(DataType.FLOAT4E2M1, [3], Uint8Array.of(0x72, 0x0f));
    expect(Array.from(f4.toFloat32())).toEqual([1, 6, -6]);
    const bf = Tensor.from(DataType.BFLOAT16, [2], Uint16Array.of(0x3f80, 0xc0a0));
    expect(Array.from(bf.toFloat32())).toEqual([1, -5]);
  });
});

describe('float16 and bfloat16', () => {
  it('float32 -> float16 rounds to nearest, ties to even', () => {
    const table: Array<[number, number]> = [
      [1, 0x3c00],
      [1 + 2 ** -11, 0x3c00], // tie, even is 1.0
      [1 + 3 * 2 ** -11, 0x3c02], // tie between ...01 and ...10: even is ...10
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
      [2 - 2 ** -12, 0x4000], // rounds up and carries into the exponent
      [65504, 0x7bff],
      [65519, 0x7bff],
      [65520, 0x7c00], // tie at the top rounds to infinity
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie between 0 and the smallest subnormal: even is 0
      [3 * 2 ** -25, 0x0002], // tie between 1 and 2 ulps: even is 2
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -14 - 2 ** -25, 0x0400], // subnormal rounding up into the normals
      [-0, 0x8000],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [-2, 0xc000],
    ];
    for (const [v, bits] of table) expect(float32ToFloat16(v), String(v)).toBe(bits);
    expect(float32ToFloat16(NaN) & 0x7c00).toBe(0x7c00);
    expect(float32ToFloat16(NaN) & 0x3ff).not.toBe(0);
  });

  it('every float16 pattern decodes and re-encodes to itself', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = float16ToFloat32(h);
      if (Number.isNaN(v)) {
        expect((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0).toBe(true);
        continue;
      }
      if (float32ToFloat16(v) !== h) expect.fail(`0x${h.toString(16)} -> ${v} -> 0x${float32ToFloat16(v).toString(16)}`);
    }
  });

  it('float32 -> bfloat16 rounds to nearest, ties to even, and keeps NaN quiet', () => {
    expect(float32ToBfloat16(1)).toBe(0x3f80);
    expect(float32ToBfloat16(1 + 2 ** -8)).toBe(0x3f80);
    expect(float32ToBfloat16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(float32ToBfloat16(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    expect(float32ToBfloat16(-2)).toBe(0xc000);
    expect(float32ToBfloat16(3.4e38)).toBe(0x7f80); // rounds past the largest finite to infinity
    const nan = float32ToBfloat16(NaN);
    expect(Number.isNaN(bfloat16ToFloat32(nan))).toBe(true);
    for (let h = 0; h < 0x10000; h += 7) {
      const v = bfloat16ToFloat32(h);
      if (!Number.isNaN(v) && float32ToBfloat16(v) !== h) expect.fail(`0x${h.toString(16)}`);
    }
  });
});

describe('sub-byte packing', () => {
  it('int4: low nibble first, sign-extended', () => {
    expect(Array.from(packSubByte(DataType.INT4, [1, -1]))).toEqual([0xf1]);
    expect(Array.from(packSubByte(DataType.INT4, [-8, 7, 3]))).toEqual([0x78, 0x03]);
    expect(Array.from(unpackSubByte(DataType.INT4, Uint8Array.of(0x8f, 0x07), 3))).toEqual([-1, -8, 7]);
    const all = Array.from({ length: 16 }, (_, i) => i - 8);
    expect(Array.from(unpackSubByte(DataType.INT4, packSubByte(DataType.INT4, all), 16))).toEqual(all);
    const t = Tensor.fromBytes(DataType.INT4, [3], packSubByte(DataType.INT4, [-8, 7, -3]));
    expect(Array.from(t.toFloat32())).toEqual([-8, 7, -3]);
    expect(t.toNumbers()).toEqual([-8, 7, -3]);
    expect(t.byteLength).toBe(2);
  });

  it('uint4: no sign extension', () => {
    expect(Array.from(unpackSubByte(DataType.UINT4, Uint8Array.of(0x8f), 2))).toEqual([15, 8]);
    expect(Array.from(packSubByte(DataType.UINT4, [15, 0, 9]))).toEqual([0x0f, 0x09]);
  });

  it('int2 and uint2: four per byte', () => {
    expect(Array.from(packSubByte(DataType.INT2, [-2, -1, 0, 1]))).toEqual([0b01_00_11_10]);
    expect(Array.from(unpackSubByte(DataType.INT2, Uint8Array.of(0b01_00_11_10), 4))).toEqual([-2, -1, 0, 1]);
    expect(Array.from(packSubByte(DataType.UINT2, [0, 1, 2, 3, 3]))).toEqual([0b11_10_01_00, 0b11]);
    expect(Array.from(unpackSubByte(DataType.UINT2, Uint8Array.of(0xe4, 0x03), 5))).toEqual([0, 1, 2, 3, 3]);
    expect(byteLengthOf(DataType.INT2, 5)).toBe(2);
    expect(byteLengthOf(DataType.UINT2, 8)).toBe(2);
  });

  it('byte lengths of every type', () => {
    const want: Record<string, number> = { float32: 40, float16: 20, bfloat16: 20, float64: 80, int64: 80, bool: 10, int4: 5, uint4: 5, float4e2m1: 5, int2: 3, uint2: 3, float8e8m0: 10, complex64: 80, complex128: 160, string: 0 };
    for (const d of allDTypes()) if (want[d.name] !== undefined) expect(byteLengthOf(d.type, 10), d.name).toBe(want[d.name]);
  });

  it('typed-field storage converts to the same bytes as raw_data', () => {
    const viaFields = (type: DataType, dims: number[], int32: number[]) => Object.assign(new Tensor(type, dims), { fields: { int32_data: Int32Array.from(int32) } });
    expect(Array.from(viaFields(DataType.INT4, [3], [0x78, 0x03]).unpack())).toEqual([-8, 7, 3]);
    expect(Array.from(viaFields(DataType.FLOAT8E4M3FN, [2], [0x38, 0xb8]).toFloat32())).toEqual([1, -1]);
    expect(Array.from(viaFields(DataType.BFLOAT16, [2], [0x3f80, 0xc000]).toFloat32())).toEqual([1, -2]);
    expect(Array.from(viaFields(DataType.BOOL, [3], [1, 0, 1]).data() as Uint8Array)).toEqual([1, 0, 1]);
    const u32 = Object.assign(new Tensor(DataType.UINT32, [2]), { fields: { uint64_data: BigUint64Array.of(4294967295n, 7n) } });
    expect(Array.from(u32.data() as Uint32Array)).toEqual([4294967295, 7]);
  });
});

describe('conversions agree with onnxruntime (Cast of every bit pattern)', () => {
  /** Runs Cast(to=FLOAT) over an initializer holding `bytes` of `type`; returns the floats or why it cannot. */
  async function ortCast(type: DataType, count: number, bytes: Uint8Array): Promise<Float32Array> {
    const b = new GraphBuilder({ opset: 21, irVersion: 10 });
    const w = b.initializer('w', Tensor.fromBytes(type, [count], bytes));
    b.output(b.op('Cast', [w], { to: DataType.FLOAT })[0]!, 'y', 'float32', [count]);
    const s = await ort.InferenceSession.create(serializeModel(b.model()), { intraOpNumThreads: 1, logSeverityLevel: 4 });
    try {
      const out = await s.run({});
      return out.y!.data as Float32Array;
    } finally {
      await s.release();
    }
  }

  const eightBit = [DataType.FLOAT8E4M3FN, DataType.FLOAT8E4M3FNUZ, DataType.FLOAT8E5M2, DataType.FLOAT8E5M2FNUZ];
  for (const type of eightBit) {
    it(dtypeName(type), async () => {
      const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
      const got = await ortCast(type, 256, bytes);
      const mine = Tensor.fromBytes(type, [256], bytes).toFloat32();
      for (let i = 0; i < 256; i++) {
        if (Number.isNaN(got[i]!)) expect(mine[i], `0x${i.toString(16)}`).toBeNaN();
        else expect(mine[i], `0x${i.toString(16)}`).toBe(got[i]);
      }
    });
  }

  it('bfloat16 and float16 (all 65536 patterns)', async () => {
    const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const bytes = new Uint8Array(bits.buffer);
    for (const type of [DataType.BFLOAT16, DataType.FLOAT16]) {
      const got = await ortCast(type, 65536, bytes);
      const mine = Tensor.fromBytes(type, [65536], bytes).toFloat32();
      for (let i = 0; i < 65536; i++) {
        const g = got[i]!;
        const m = mine[i]!;
        if (Number.isNaN(g) ? !Number.isNaN(m) : !Object.is(g, m)) expect.fail(`${dtypeName(type)} 0x${i.toString(16)}: mine ${m}, onnxruntime ${g}`);
      }
    }
  });

  it('int4 and uint4 (every nibble in both positions)', async () => {
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    for (const type of [DataType.INT4, DataType.UINT4]) {
      const got = await ortCast(type, 512, bytes);
      expect(Array.from(Tensor.fromBytes(type, [512], bytes).toFloat32())).toEqual(Array.from(got));
    }
  });
});
