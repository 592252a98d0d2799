/**
 * The gate's backend drift check (`gate --max-backend-drift X [--backend node,wasm]`): the model runs
 * on two backends on the same inputs (compareModels with one model and two backends) and the check
 * fails when any output's max abs difference between them passes X.
 */
import { inputError } from '../core/errors.js';
import type { GateCheck } from '../report/gate.js';
import type { Backend } from '../runtime/backend.js';
import { compareModels } from './bench.js';

export interface BackendDriftOptions {
  /** Largest allowed max abs difference of any output between the two backends. */
  max: number;
  /** The two backends (default node, wasm). */
  backends?: Backend[];
  inputs?: string;
  preprocess?: string;
  shapes?: Record<string, number[]>;
  /** Samples compared (default 4). */
  limit?: number;
}

export async function backendDriftCheck(model: string, o: BackendDriftOptions): Promise<GateCheck> {
  if (!(o.max >= 0)) throw inputError('USAGE_BAD_VALUE', `--max-backend-drift must be a non-negative number, got ${o.max}`, { field: 'max-backend-drift' });
  const backends = o.backends?.length ? o.backends : (['node', 'wasm'] as Backend[]);
  if (backends.length !== 2) throw inputError('USAGE_BAD_VALUE', `--max-backend-drift compares two backends (--backend node,wasm), got ${backends.join(',')}`, { field: 'backend' });
  const r = await compareModels({
    reference: model,
    backends,
    tolerance: o.max,
    inputs: o.inputs ?? 'random:2:0',
    limit: o.limit ?? 4,
    ...(o.preprocess ? { preprocess: o.preprocess } : {}),
    ...(o.shapes ? { shapes: o.shapes } : {}),
  });
  const worst = [...r.outputs].sort((a, b) => b.maxAbs - a.maxAbs)[0];
  const drift = worst?.maxAbs ?? 0;
  return {
    metric: `backend drift (${backends[1]} vs ${backends[0]}, max abs)`,
    baseline: '-',
    current: drift.toExponential(2),
    change: '-',
    budget: `<= ${o.max}`,
    verdict: r.pass ? 'pass' : 'fail',
    detail: `${r.samples} samples of ${r.inputs}; ${r.outputs.map((x) => `${x.name} ${x.maxAbs.toExponential(2)} (SQNR ${Number.isFinite(x.sqnrDb) ? x.sqnrDb.toFixed(1) : 'inf'} dB)`).join(', ')}`,
  };
}
