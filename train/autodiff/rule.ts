/** The contract of a gradient rule (one per op type; rules live in `rules/*.ts`, one file per family). */
import { Value } from '../../ir/ir.js';
import { GradContext } from './context.js';

export interface GradRule {
  /** Input slots through which gradients can flow (others, like shapes and axes, are constants). */
  readonly differentiable: readonly number[] | 'all';
  /**
   * Emits the vector-Jacobian product: given the cotangents of the node's outputs, the gradient of
   * each input (index-aligned with the node's inputs; null where not needed or not differentiable).
   */
  backward(ctx: GradContext): Array<Value | null>;
}

export type RuleTable = Readonly<Record<string, GradRule>>;
