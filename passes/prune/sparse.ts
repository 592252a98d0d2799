/**
 * Sparse storage for pruned weights. An ONNX SparseTensorProto holds `values` [NNZ] and `indices`:
 * here the linearized form, indices [NNZ] (row-major flat positions, ascending). A dense tensor of n
 * elements of w bytes costs n*w; the sparse form costs NNZ*(w + index width). Where that is smaller,
 * `toSparseStorage` rewrites initializers as sparse initializers and `Constant` nodes to
 * `sparse_value`. Whether onnxruntime loads a given index type is measured by the caller
 * (`deployedSizes` in `deploy.ts`), not assumed.
 */
import { DataType, dtypeInfo } from '../../core/dtype.js';
import { Attribute, AttrType, Model, SparseTensor } from '../../ir/ir.js';
import { cloneModel } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import { elementWidth } from './constants.js';

export type IndexType = 'int64' | 'int32' | 'int16' | 'int8';

const INDEX: Record<IndexType, { type: number; width: number; max: number; make: (n: number) => Int8Array | Int16Array | Int32Array | BigInt64Array }> = {
  int8: { type: DataType.INT8, width: 1, max: 127, make: (n) => new Int8Array(n) },
  int16: { type: DataType.INT16, width: 2, max: 32767, make: (n) => new Int16Array(n) },
  int32: { type: DataType.INT32, width: 4, max: 2 ** 31 - 1, make: (n) => new Int32Array(n) },
  int64: { type: DataType.INT64, width: 8, max: Number.MAX_SAFE_INTEGER, make: (n) => new BigInt64Array(n) },
};

const FLOAT_TYPES = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16, DataType.DOUBLE]);

/** The narrowest of `allowed` index types that can address `size` elements. */
export function indexTypeFor(size: number, allowed: readonly IndexType[]): IndexType | undefined {
  const order: IndexType[] = ['int8', 'int16', 'int32', 'int64'];
  return order.find((t) => allowed.includes(t) && size - 1 <= INDEX[t].max);
}

/** Encodes `t` as a sparse tensor with linearized indices (zeros, including -0, are dropped). */
export function sparseEncode(t: Tensor, indexType: IndexType): SparseTensor {
  const width = elementWidth(t.dataType)!;
  const vals = t.toFloat32();
  let nnz = 0;
  for (let i = 0; i < vals.length; i++) if (vals[i] !== 0) nnz++;
  const src = t.bytes();
  const out = new Uint8Array(nnz * width);
  const idx = INDEX[indexType].make(nnz);
  let k = 0;
  for (let i = 0; i < vals.length; i++) {
    if (vals[i] === 0) continue;
    out.set(src.subarray(i * width, (i + 1) * width), k * width);
    if (idx instanceof BigInt64Array) idx[k] = BigInt(i);
    else idx[k] = i;
    k++;
  }
  const name = t.name ?? '';
  return {
    values: Tensor.fromBytes(t.dataType, [nnz], out, name),
    indices: Tensor.from(INDEX[indexType].type, [nnz], idx, `${name}_indices`),
    dims: [...t.dims],
  };
}

export interface SparseEntry {
  name: string;
  elements: number;
  nonZero: number;
  denseBytes: number;
  sparseBytes: number;
  indexType: IndexType;
}

export interface SparseStorage {
  model: Model;
  converted: SparseEntry[];
}

function nonZeros(t: Tensor): number {
  const v = t.toFloat32();
  let n = 0;
  for (let i = 0; i < v.length; i++) if (v[i] !== 0) n++;
  return n;
}

/**
 * A copy of `model` where every float constant whose sparse form (with the narrowest allowed index
 * type) is smaller than its dense form by more than `minSaving` bytes is stored sparse. `measure`
 * says what "smaller" means: raw bytes by default, or e.g. gzip-compressed bytes of the tensor data
 * when the model ships compressed.
 */
export function toSparseStorage(model: Model, allowed: readonly IndexType[] = ['int64'], minSaving = 64, measure: (bytes: Uint8Array) => number = (b) => b.length): SparseStorage {
  const m = cloneModel(model);
  const converted: SparseEntry[] = [];
  const consider = (t: Tensor, name: string): SparseTensor | undefined => {
    if (!FLOAT_TYPES.has(t.dataType) || t.size < 16 || !dtypeInfo(t.dataType)?.view) return undefined;
    const it = indexTypeFor(t.size, allowed);
    if (!it) return undefined;
    const width = elementWidth(t.dataType)!;
    const nnz = nonZeros(t);
    const dense = t.size * width;
    const sparse = nnz * (width + INDEX[it].width);
    if (dense - sparse <= minSaving) return undefined;
    const s = sparseEncode(t, it);
    const vb = s.values!.bytes();
    const ib = s.indices!.bytes();
    const both = new Uint8Array(vb.length + ib.length);
    both.set(vb);
    both.set(ib, vb.length);
    const denseCost = measure(t.bytes());
    const sparseCost = measure(both);
    if (denseCost - sparseCost <= minSaving) return undefined;
    converted.push({ name, elements: t.size, nonZero: nnz, denseBytes: denseCost, sparseBytes: sparseCost, indexType: it });
    s.values!.name = name;
    return s;
  };
  const g = m.graph;
  for (const [name, v] of [...g.initializers]) {
    if (g.inputs.includes(v)) continue;
    const t = g.initializerTensor(v);
    const s = t ? consider(t, name) : undefined;
    if (!s) continue;
    g.removeInitializer(v);
    g.sparseInitializers.push({ value: v, tensor: s });
  }
  for (const n of g.allNodes()) {
    if (n.opType !== 'Constant' || n.opDomain !== '' || n.attributes.length !== 1) continue;
    const a = n.attributes[0]!;
    if (a.name !== 'value' || !a.t) continue;
    const s = consider(a.t, n.outputs[0]!.name);
    if (!s) continue;
    const sa = Object.assign(new Attribute(), { name: 'sparse_value', type: AttrType.SPARSE_TENSOR, sparseTensor: s });
    n.attributes = [sa];
  }
  return { model: m, converted };
}
