/** A minimal PassContext for calling passes directly in tests (explanations are collected). */
import type { Explanation, PassContext } from '../../../passes/pass.js';
import { bareContext } from '../../../passes/bare-context.js';

export interface TestContext extends PassContext {
  explanations: Explanation[];
}

export function testContext(pass = 'test', explaining = true): TestContext {
  const explanations: Explanation[] = [];
  return {
    ...bareContext(),
    explain: (e) => explanations.push({ pass, ...e }),
    explaining,
    explanations,
  };
}
