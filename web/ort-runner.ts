/**
 * A {@link Runner} on onnxruntime-web, for the passes that ask the runtime (fold-constants evaluates
 * the ops its TypeScript evaluator does not cover with `ctx.runner`, as in the CLI). The ort module is
 * passed in (the page imports onnxruntime-web's WASM build), so this bundle does not carry onnxruntime.
 */
import type * as Ort from 'onnxruntime-web';
import { inputError } from '../core/errors.js';
import { hostDType, type Feed, type HostData, type HostTensor } from '../core/host-tensor.js';
import { serializeModel } from '../onnx/codec.js';
import type { ModelSession, Runner, SessionOptions, ValueInfo } from '../runtime/runner-types.js';

type OrtModule = Pick<typeof Ort, 'InferenceSession' | 'Tensor'>;

/** HostTensor -> ort.Tensor (shares the data). */
export function toOrt(ort: OrtModule, t: HostTensor): Ort.Tensor {
  return new ort.Tensor(t.type as Ort.Tensor.Type, t.data as Ort.Tensor.DataType, t.dims);
}

/** ort.Tensor -> HostTensor (shares the data). */
export function fromOrt(t: Ort.Tensor, name: string): HostTensor {
  const type = hostDType(t.type);
  if (!type) throw inputError('RUNTIME_UNSUPPORTED_TYPE', `output ${name} has type ${t.type}, which onnxforge cannot read`, { tensor: name });
  let data = t.data as HostData;
  if (type === 'float16' && !(data instanceof Uint16Array)) {
    const v = data as unknown as { buffer: ArrayBufferLike; byteOffset: number; length: number };
    data = new Uint16Array(v.buffer, v.byteOffset, v.length);
  }
  return { type, dims: [...t.dims], data };
}

function valueInfos(meta: readonly Ort.InferenceSession.ValueMetadata[]): ValueInfo[] {
  return meta.map((m) => (m.isTensor ? { name: m.name, type: m.type, shape: [...m.shape].map((d) => (typeof d === 'number' ? d : String(d))), isTensor: true } : { name: m.name, type: 'unknown', shape: [], isTensor: false }));
}

/** Session options onnxruntime-web understands (threads are global in the WASM build: env.wasm.numThreads). */
export function ortWebOptions(o: SessionOptions = {}): Ort.InferenceSession.SessionOptions {
  return { executionProviders: ['wasm'], graphOptimizationLevel: o.graphOptimizationLevel ?? 'all', logSeverityLevel: o.logSeverityLevel ?? 3 };
}

/** Opens onnxruntime-web sessions on in-memory models (file paths do not exist in a page). */
export function ortWebRunner(ort: OrtModule): Runner {
  return {
    async open(model, options = {}, name = '(in-memory model)'): Promise<ModelSession> {
      if (typeof model === 'string') throw inputError('RUNTIME_MODEL_UNREADABLE', `${model}: the browser runner opens models from memory, not paths`, { file: model });
      const bytes = model instanceof Uint8Array ? model : serializeModel(model);
      const s = await ort.InferenceSession.create(bytes, ortWebOptions(options));
      return {
        name,
        inputs: valueInfos(s.inputMetadata),
        outputs: valueInfos(s.outputMetadata),
        async run(feed: Feed, outputNames?: readonly string[]): Promise<Feed> {
          const feeds: Record<string, Ort.Tensor> = {};
          for (const [k, v] of Object.entries(feed)) feeds[k] = toOrt(ort, v);
          const res = outputNames ? await s.run(feeds, outputNames as string[]) : await s.run(feeds);
          const out: Feed = {};
          for (const [k, v] of Object.entries(res)) out[k] = fromOrt(v as Ort.Tensor, k);
          return out;
        },
        dispose: () => s.release(),
      };
    },
    profile() {
      return Promise.reject(inputError('USAGE_BAD_VALUE', 'per-operator profiles need onnxruntime-node (the CLI)'));
    },
  };
}
