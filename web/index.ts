/**
 * `onnxforge/web`: the parts of onnxforge that run in a browser (built by `npm run build:web` into one
 * ES module with no Node built-ins): the codec on bytes, the IR and its builder, the checker, the
 * passes that need no onnxruntime-node (portable catalog: cleanup, fusions, opset upgrade, int8
 * weight compression, int4 weights, float16 conversion, magnitude pruning) with the pass engine,
 * `inspect`'s summary, and the optimize and weights/int4/fp16 quantization workflows producing the CLI's bytes. A runner on onnxruntime-web
 * (`ortWebRunner(ort)`) gives passes the runtime they ask for; the caller supplies the ort module.
 * Nothing reachable from here imports node:* or onnxruntime-node (a dependency-cruiser rule checks).
 */
export { loadModelBytes, decodeModel, serializeModel, decodeTensor, encodeTensor, MAX_PROTO_BYTES, MAX_SUBGRAPH_DEPTH, type LoadOptions, type LoadWarning } from '../onnx/codec.js';
export { Model, Graph, Node, Value, constantOf } from '../ir/ir.js';
export { GraphBuilder } from '../ir/builder.js';
export { Tensor } from '../core/tensor.js';
export { DataType } from '../core/dtype.js';
export { OnnxForgeError, isOnnxForgeError } from '../core/errors.js';
export { checkModel, assertValid, type CheckIssue } from '../ir/checker.js';
export { optimize, createPassContext, passReport, PassManager, type EngineOptions, type OptimizeReport, type PassRecord } from '../passes/engine.js';
export { parsePipelineIn, presetPipelineIn, formatPipeline, resolveOptions, type PipelineStep } from '../passes/pipeline-core.js';
export type { PassCatalog } from '../passes/catalog.js';
export { portableCatalog, PORTABLE_PASSES, isPortablePreset } from '../passes/portable.js';
export { PRESETS, type Preset } from '../passes/presets.js';
export { summarize, renderSummary, type ModelSummary } from '../report/inspect.js';
export type { Runner, ModelSession } from '../runtime/runner-types.js';
export { ortWebRunner, ortWebOptions, toOrt, fromOrt } from './ort-runner.js';
export { loadWebModel, decodeWebModel, missingDataFiles, missingDataError, DataFileSource, type DataFile, externalDataFiles, inspectModel, optimizeModel, quantizeWeightsModel, quantizeInt4Model, convertFloat16Model, type WebQuantizeOptions, type WebLoadOptions, type WebWorkflowOptions, type WebOptimizeOptions, type WebResult } from './workflows.js';
