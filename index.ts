/**
 * onnxforge's public API: the graph layer (IR, codec, checker, builder), the pass framework (passes,
 * registry, presets, pipelines, the pass manager), pipeline files and jobs, the runtime (sessions,
 * latency, data sources, metrics) and reports.
 */
export * from './core/errors.js';
export * from './core/dtype.js';
export * from './core/tensor.js';
export * from './ir/ir.js';
export * from './ir/builder.js';
export * from './ir/checker.js';
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
export * from './passes/pass.js';
export { PASSES, getPass } from './passes/registry.js';
export { PRESETS, registerPreset, extendPreset } from './passes/presets.js';
export { optimize, PassManager, type OptimizeOptions, type OptimizeReport, type PassRecord, type PassSummary, type VerifyOptions } from './passes/manager.js';
export { step, parsePipeline, presetPipeline, formatPipeline, resolveOptions, type PipelineStep } from './passes/pipeline.js';
export { readPipelineFile, parsePipelineFile, starterPipeline, type PipelineFile } from './passes/pipeline-file.js';
export { runJob, type JobResult } from './workflows/job.js';
export { Session, type SessionOptions, type ValueInfo } from './runtime/session.js';
export { createSession, expandCompressedWeights, expandWeightsInModel, isWeightCompressed } from './passes/quantize/compressed.js';
export { WEIGHTS_TAG_KEY, type QuantizeWeightsOptions, type QuantizeWeightsReport } from './passes/quantize/quantize-weights.js';
export { type QuantizeDynamicOptions, type QuantizeDynamicReport } from './passes/quantize/quantize-dynamic.js';
export { quantizeStatic, quantizeWeights, quantizeDynamic, distillModel } from './passes/api.js';
export { toQOperator, type QOperatorReport } from './passes/quantize/qop.js';
export { createSessionFromModel } from './runtime/from-model.js';
export { measureLatency, latencyStats, type LatencyReport, type LatencyStats } from './runtime/latency.js';
export { evaluate } from './workflows/evaluate.js';
export { loadMetric, compareTensors, type UserMetric } from './runtime/metrics.js';
export type { Feed, HostTensor } from './core/host-tensor.js';
export { openDataSource, collectSamples, parseDataSpec, type Sample, type DataSourceSpec } from './data/index.js';
export { newReport, modelFacts, REPORT_SCHEMA, type ReportDocument } from './report/document.js';
export { readReport, writeReport } from './report/files.js';
export { renderMarkdown } from './report/markdown.js';
export { renderHtml } from './report/html.js';
export { measureModel, evaluateGate, readBaseline, gateWorkflow, BASELINE_SCHEMA, type Baseline, type Measurement, type GateResult, type GateOptions, type GateOutcome } from './workflows/gate.js';
export { quantizeStaticWorkflow, type QuantizeStaticWorkflowOptions } from './workflows/quantize/static.js';
export { quantizeWeightsWorkflow, type QuantizeWeightsWorkflowOptions } from './workflows/quantize/weights.js';
export { quantizeDynamicWorkflow, type QuantizeDynamicWorkflowOptions } from './workflows/quantize/dynamic.js';
export type { QuantizeWorkflowOptions } from './workflows/quantize/common.js';
export { renderQuantizeReport, renderQuantizeModeReport, type QuantizeCommandReport, type QuantizeModeReport } from './report/quantize.js';
export { pruneWorkflow, type PruneWorkflowOptions } from './workflows/prune.js';
export { renderPruneReport, type PruneCommandReport } from './report/prune.js';
export { distillWorkflow, type DistillWorkflowOptions, type DistillResult } from './workflows/distill.js';
export { renderDistillReport, type DistillCommandReport } from './report/distill.js';
export { optimizeWorkflow, type OptimizeWorkflowOptions } from './workflows/optimize.js';
export { variantsWorkflow, VARIANT_FILES, VARIANT_NAMES, DEFAULT_BUDGET, type VariantsWorkflowOptions, type VariantsReport, type VariantRow, type VariantBudget, type VariantName } from './workflows/variants.js';
export { renderVariantsHtml, renderVariantsMarkdown, renderVariantsTerminal } from './report/variants.js';
export { renderOptimizeSummary, type OptimizeResult } from './report/optimize.js';
export type { ProgressFactory, ProgressHandle } from './workflows/progress.js';
