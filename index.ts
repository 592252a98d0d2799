/** onnxforge's public API: the graph layer (IR, codec, checker, builder) and the pass framework. */
export * from './graph/index.js';
export * from './passes/pass.js';
export { PASSES, PRESETS, getPass, registerPreset } from './passes/registry.js';
