/** Reverse-mode differentiation, losses, optimizers and training-step graphs over the IR. */
export { appendBackward } from './backward.js';
export type { BackwardOptions, BackwardResult } from './backward.js';
export { Emitter, GradContext, floatTensor } from './context.js';
export type { ShapeMap, ValueShape } from './context.js';
export { gradientOps, gradientRule, registerGradient } from './registry.js';
export type { GradRule, RuleTable } from './rule.js';
export { buildLoss } from './losses.js';
export type { LossSpec, LossTerm } from './losses.js';
export { appendOptimizer } from './optimizers.js';
export type { OptimizerSpec } from './optimizers.js';
export { buildTrainingGraph, defaultParams } from './training.js';
export type { ParamInfo, StateInfo, TrainingGraph, TrainingSpec } from './training.js';
