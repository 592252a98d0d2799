/** The graph layer: IR, tensors, element types, builder, checker and the ONNX codec. */
export * from './errors.js';
export * from './dtype.js';
export * from './tensor.js';
export * from './ir.js';
export * from './builder.js';
export * from './checker.js';
export {
  loadModel,
  loadModelSync,
  saveModel,
  saveModelSync,
  serializeModel,
  decodeTensor,
  encodeTensor,
  cloneModel,
  MAX_PROTO_BYTES,
  printLoadWarning,
  type LoadOptions,
  type LoadWarning,
  type SaveOptions,
  type SaveResult,
} from './onnx/index.js';
