/**
 * Serialized ONNX `TensorProto` files (the backend suite's `test_data_set_N/input_K.pb`), decoded with
 * the project's wire codec and converted to host tensors through the IR's `Tensor` (which handles
 * raw_data as well as the typed repeated fields).
 */
import { inputError, isOnnxForgeError } from '../../graph/errors.js';
import { decode } from '../../graph/onnx/wire.js';
import { Tensor } from '../../graph/tensor.js';
import { dtypeName } from '../../graph/dtype.js';
import { fromBytes, HostTensor, hostDType } from '../../runtime/host-tensor.js';

const FIELDS = ['float_data', 'int32_data', 'int64_data', 'double_data', 'uint64_data', 'string_data'] as const;

/** Decodes one TensorProto file. Returns the tensor and the name stored in the proto (may be empty). */
export function readTensorProto(bytes: Uint8Array, file: string): { name: string; tensor: HostTensor } {
  let p: Record<string, unknown>;
  try {
    p = decode(bytes, 'TensorProto');
  } catch (e) {
    throw isOnnxForgeError(e) ? e.withFile(file) : e;
  }
  const dataType = Number(p.data_type ?? 0);
  const type = hostDType(dataType);
  if (!type) throw inputError('TENSOR_BAD_DTYPE', `${file}: tensor type ${dtypeName(dataType)} is not supported as a model input`, { file });
  const dims = ((p.dims as (number | bigint)[] | undefined) ?? []).map((d) => Number(d));
  const name = typeof p.name === 'string' ? p.name : '';
  if (p.data_location === 1) throw inputError('TENSOR_EXTERNAL', `${file}: tensor ${name} keeps its data in an external file, which data sources do not follow`, { file, tensor: name });
  const t = new Tensor(dataType, dims, name);
  if (p.raw_data instanceof Uint8Array) t.raw = p.raw_data;
  for (const f of FIELDS) if (p[f] !== undefined) (t.fields ??= {})[f] = p[f] as ArrayLike<number>;
  if (type === 'string') return { name, tensor: { type, dims, data: t.strings() } };
  let bytesOut: Uint8Array;
  try {
    bytesOut = t.bytes();
  } catch (e) {
    throw isOnnxForgeError(e) ? e.withFile(file) : e;
  }
  return { name, tensor: fromBytes(type, dims, bytesOut, `${file} (${name || 'tensor'})`) };
}
