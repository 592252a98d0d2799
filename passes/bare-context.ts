/**
 * bareContext: a pass context outside the pass manager with onnxruntime-node's runner. Kept apart from
 * pass.ts so that the pass contract (and every pass that needs no runtime) builds for the browser.
 */
import { nodeRunner } from '../runtime/runner.js';
import type { Pass, PassContext } from './pass.js';

/**
 * A context for calling a pass or its plain function outside the pass manager: quiet logger, no data,
 * onnxruntime-node's runner, no sub-pipelines (the manager's `createPassContext` adds them), reports
 * of earlier passes looked up in `reports`.
 */
export function bareContext(over: Partial<PassContext> & { reports?: ReadonlyMap<string, unknown> } = {}): PassContext {
  const { reports, ...rest } = over;
  return {
    logger: { info() {}, warn() {}, debug() {} },
    explain() {},
    explaining: false,
    data: {},
    runner: nodeRunner,
    reportOf: <R>(pass: Pass<any, R>) => reports?.get(pass.name) as R | undefined,
    ...rest,
  };
}
