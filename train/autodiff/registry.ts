/**
 * The one table of gradient rules, keyed by op type of the default ONNX domain. Rule files group op
 * families; `registerGradient` lets a caller add a rule (e.g. for a custom op) without editing them.
 */
import { convRules } from './rules/conv.js';
import { elementwiseRules } from './rules/elementwise.js';
import { linearRules } from './rules/linear.js';
import { normRules } from './rules/norm.js';
import { poolRules } from './rules/pool.js';
import { reduceRules } from './rules/reduce.js';
import { resizeRules } from './rules/resize.js';
import { shapeRules } from './rules/shape.js';
import { GradRule } from './rule.js';

const rules = new Map<string, GradRule>();
for (const table of [elementwiseRules, linearRules, convRules, poolRules, shapeRules, reduceRules, normRules, resizeRules]) {
  for (const [op, rule] of Object.entries(table)) rules.set(op, rule);
}

/** The rule for an op of the default domain, or undefined. */
export function gradientRule(opType: string, domain = ''): GradRule | undefined {
  return domain === '' || domain === 'ai.onnx' ? rules.get(opType) : rules.get(`${domain}::${opType}`);
}

/** Adds or replaces a rule (`domain` other than '' keys it as `domain::opType`). */
export function registerGradient(opType: string, rule: GradRule, domain = ''): void {
  rules.set(domain === '' || domain === 'ai.onnx' ? opType : `${domain}::${opType}`, rule);
}

/** Op types with a rule, sorted. */
export function gradientOps(): string[] {
  return [...rules.keys()].sort();
}

/** True when input slot `i` of `opType` carries a gradient. */
export function isDifferentiableSlot(rule: GradRule, i: number): boolean {
  return rule.differentiable === 'all' || rule.differentiable.includes(i);
}
