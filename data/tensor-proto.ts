/**
 * Serialized ONNX `TensorProto` files (the backend suite's `test_data_set_N/input_K.pb`), decoded by the
 * codec (`decodeTensor`) and converted to host tensors (raw_data and the typed repeated fields alike).
 */
import { inputError, isOnnxForgeError } from '../core/errors.js';
import { dtypeName } from '../core/dtype.js';
import { decodeTensor } from '../onnx/index.js';
import { fromBytes, HostTensor, hostDType } from '../core/host-tensor.js';

/** Decodes one TensorProto file. Returns the tensor and the name stored in the proto (may be empty). */
export function readTensorProto(bytes: Uint8Array, file: string): { name: string; tensor: HostTensor } {
  try {
    const t = decodeTensor(bytes, file);
    const name = t.name ?? '';
    const type = hostDType(t.dataType);
    if (!type) throw inputError('TENSOR_BAD_DTYPE', `${file}: tensor type ${dtypeName(t.dataType)} is not supported as a model input`, { file });
    if (t.isExternal) throw inputError('TENSOR_EXTERNAL', `${file}: tensor ${name} keeps its data in an external file, which data sources do not follow`, { file, tensor: name });
    const dims = t.dims.map((d) => Number(d));
    if (type === 'string') return { name, tensor: { type, dims, data: t.strings() } };
    return { name, tensor: fromBytes(type, dims, t.bytes(), `${file} (${name || 'tensor'})`) };
  } catch (e) {
    throw isOnnxForgeError(e) ? e.withFile(file) : e;
  }
}
