/** Small ONNX models built as bytes for runtime tests (plain proto objects through the wire codec). */
import { encode, ProtoObject } from '../../onnx/wire.js';

type Dim = number | string;

export function valueInfo(name: string, elemType: number, dims: Dim[] | null): ProtoObject {
  const tensor_type: ProtoObject = { elem_type: elemType };
  if (dims) tensor_type.shape = { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) };
  return { name, type: { tensor_type } };
}

export function rawTensor(name: string, dataType: number, dims: number[], data: ArrayBufferView): ProtoObject {
  return { name, dims, data_type: dataType, raw_data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

export function model(graph: ProtoObject, opset = 17): Uint8Array {
  return encode({ ir_version: 8, producer_name: 'onnxforge-test', opset_import: [{ domain: '', version: opset }], graph }, 'ModelProto');
}

/** y = Relu(x) for x: float32 [N, 4] (N symbolic). */
export function reluModel(): Uint8Array {
  return model({
    name: 'relu',
    node: [{ op_type: 'Relu', input: ['x'], output: ['y'], name: 'relu0' }],
    input: [valueInfo('x', 1, ['N', 4])],
    output: [valueInfo('y', 1, ['N', 4])],
  });
}

/** y = x * scale + bias over float32 [1, 8], logits-like output for metric tests. */
export function affineModel(scale: number, bias: number): Uint8Array {
  return model({
    name: 'affine',
    node: [
      { op_type: 'Mul', input: ['x', 's'], output: ['m'], name: 'mul' },
      { op_type: 'Add', input: ['m', 'b'], output: ['y'], name: 'add' },
    ],
    initializer: [rawTensor('s', 1, [], new Float32Array([scale])), rawTensor('b', 1, [], new Float32Array([bias]))],
    input: [valueInfo('x', 1, [1, 8])],
    output: [valueInfo('y', 1, [1, 8])],
  });
}

/** Two inputs of different types: a float [B, 3] and int64 ids [B]; output sum over a Gather. */
export function mixedModel(): Uint8Array {
  return model({
    name: 'mixed',
    node: [
      { op_type: 'Cast', input: ['ids'], output: ['idf'], name: 'cast', attribute: [{ name: 'to', type: 2, i: 1 }] },
      { op_type: 'Unsqueeze', input: ['idf', 'ax'], output: ['idu'], name: 'unsq' },
      { op_type: 'Add', input: ['x', 'idu'], output: ['y'], name: 'add' },
    ],
    initializer: [rawTensor('ax', 7, [1], new BigInt64Array([1n]))],
    input: [valueInfo('x', 1, ['B', 3]), valueInfo('ids', 7, ['B'])],
    output: [valueInfo('y', 1, ['B', 3])],
  });
}

/**
 * A Loop with a trip count of 2^62 and a constant-true condition: it never finishes. With
 * `growMemory`, each iteration also emits a 1 MiB scan output, which onnxruntime keeps until the
 * loop ends, so memory grows without bound.
 */
export function endlessLoopModel(growMemory: boolean): Uint8Array {
  const bodyNodes: ProtoObject[] = [
    { op_type: 'Identity', input: ['cond_in'], output: ['cond_out'], name: 'keep_going' },
    { op_type: 'Add', input: ['v_in', 'one'], output: ['v_out'], name: 'inc' },
  ];
  const bodyOutputs = [valueInfo('cond_out', 9, []), valueInfo('v_out', 1, [1])];
  if (growMemory) {
    bodyNodes.push({ op_type: 'Expand', input: ['v_in', 'big_shape'], output: ['chunk'], name: 'grow' });
    bodyOutputs.push(valueInfo('chunk', 1, [262144]));
  }
  const body: ProtoObject = {
    name: 'body',
    node: bodyNodes,
    initializer: [rawTensor('one', 1, [1], new Float32Array([1])), rawTensor('big_shape', 7, [1], new BigInt64Array([262144n]))],
    input: [valueInfo('iter', 7, []), valueInfo('cond_in', 9, []), valueInfo('v_in', 1, [1])],
    output: bodyOutputs,
  };
  const outputs = [valueInfo('y', 1, [1])];
  if (growMemory) outputs.push(valueInfo('scan', 1, null));
  return model({
    name: growMemory ? 'endless_alloc' : 'endless_loop',
    node: [
      {
        op_type: 'Loop',
        input: ['trip', 'cond'],
        output: growMemory ? ['y', 'scan'] : ['y'],
        name: 'loop',
        attribute: [{ name: 'body', type: 5, g: body }],
      },
    ].map((n) => ({ ...n, input: [...n.input, 'x'] })),
    initializer: [rawTensor('trip', 7, [], new BigInt64Array([1n << 62n])), rawTensor('cond', 9, [], new Uint8Array([1]))],
    input: [valueInfo('x', 1, [1])],
    output: outputs,
  });
}
