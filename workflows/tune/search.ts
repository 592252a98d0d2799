/**
 * The tune search over an ordered space (space.ts), independent of where trials run: it keeps up to
 * `concurrency` trials in flight on the executor (one `run([spec])` call each), judges every result
 * against the budgets, and decides what to try next from what earlier trials showed:
 *
 * - a refinement (`after`) waits for the entry it refines and is skipped when that entry errored or
 *   failed the accuracy budget (a mode that lost too much accuracy is not refined);
 * - a pruning ratio waits for the smaller ratios of its ladder and is skipped once one of them failed
 *   the accuracy budget (a ratio that lost too much is not tried larger);
 * - it stops after `trials` trials, when the space is exhausted, or when the frontier stopped moving:
 *   `patience` trials in a row left the Pareto front of the budget-meeting trials (size, latency,
 *   accuracy) unchanged while a winner exists.
 *
 * Resumed results (same trial id) are reused without running and count as trials.
 */
import type { TuneBudgets, TuneRow } from '../../report/tune.js';
import type { SpaceEntry, TuneObjective } from './space.js';
import type { TrialExecutor, TrialResult, TrialSpec } from './types.js';

export interface SearchOptions {
  space: readonly SpaceEntry[];
  spec: (e: SpaceEntry) => TrialSpec;
  executor: TrialExecutor;
  objective: TuneObjective;
  budgets: TuneBudgets;
  /** Most trials (resumed ones included). */
  trials: number;
  /** Trials in a row that leave the front unchanged before the search stops (default 6). */
  patience?: number;
  /** Trials in flight at once (the executor's parallelism). */
  concurrency: number;
  /** Finished results from an earlier run, by trial id (`--resume`). */
  previous?: ReadonlyMap<string, TrialResult>;
  /** Called with every finished row (resumed ones too) and all rows so far. */
  onRow?: (row: TuneRow, rows: readonly TuneRow[]) => void;
  onStart?: (e: SpaceEntry) => void;
}

export interface SearchOutcome {
  rows: TuneRow[];
  /** Space entries skipped, with why; the rest of the entries not run were not reached. */
  skipped: Map<string, string>;
  stopped: string;
  winner?: TuneRow;
  closest: TuneRow[];
}

/** Relative difference of objective values treated as a tie (then the other dimension decides). */
export const OBJECTIVE_TIE = 0.02;
const EPS = 1e-9;

export function accuracyDrop(r: TrialResult): number | undefined {
  return r.accuracy !== undefined && r.accuracyInput !== undefined ? r.accuracyInput - r.accuracy : undefined;
}

/** The budgets a result fails ('error' fails all of them). */
export function failedBudgets(r: TrialResult, b: TuneBudgets): string[] {
  if (r.outcome !== 'ok') return ['outcome'];
  const f: string[] = [];
  const drop = accuracyDrop(r);
  if (b.maxAccuracyDrop !== undefined && (drop === undefined || drop > b.maxAccuracyDrop + EPS)) f.push('accuracy');
  if (b.maxLatencyRatio !== undefined && (r.latencyRatio === undefined || r.latencyRatio > b.maxLatencyRatio + EPS)) f.push('latency');
  if (b.maxSizeRatio !== undefined && (r.sizeRatio === undefined || r.sizeRatio > b.maxSizeRatio + EPS)) f.push('size');
  return f;
}

export function objectiveOf(r: TrialResult, o: TuneObjective): number {
  const v = o === 'size' ? r.sizeRatio : r.latencyRatio;
  return v ?? Infinity;
}

const otherOf = (r: TrialResult, o: TuneObjective) => objectiveOf(r, o === 'size' ? 'latency' : 'size');

/** Is a better than b for the objective (ties within OBJECTIVE_TIE go to the other dimension, then accuracy)? */
export function better(a: TrialResult, b: TrialResult, o: TuneObjective): boolean {
  const va = objectiveOf(a, o);
  const vb = objectiveOf(b, o);
  if (Math.abs(va - vb) > OBJECTIVE_TIE * Math.min(va, vb)) return va < vb;
  const oa = otherOf(a, o);
  const ob = otherOf(b, o);
  if (oa !== ob) return oa < ob;
  return (a.accuracy ?? -Infinity) > (b.accuracy ?? -Infinity);
}

/**
 * Marks the Pareto front of the budget-meeting rows over size, latency and accuracy (no other row is
 * at least as good on all three and better on one); returns the winner (best objective, which is on it).
 */
export function markFront(rows: TuneRow[], o: TuneObjective): TuneRow | undefined {
  const ok = rows.filter((r) => r.failed.length === 0);
  const dims = (r: TuneRow) => [r.result.sizeRatio ?? Infinity, r.result.latencyRatio ?? Infinity, -(r.result.accuracy ?? -Infinity)];
  const dominates = (q: TuneRow, r: TuneRow) => {
    const [a, b] = [dims(q), dims(r)];
    return a.every((x, i) => x <= b[i]!) && a.some((x, i) => x < b[i]!);
  };
  for (const r of rows) r.onFront = r.failed.length === 0 && !ok.some((q) => q !== r && dominates(q, r));
  let win: TuneRow | undefined;
  for (const r of ok) if (!win || better(r.result, win.result, o)) win = r;
  return win;
}

/** With no winner: ok rows ranked by how far they miss the budgets (sum of relative excesses). */
export function closestRows(rows: readonly TuneRow[], b: TuneBudgets, n = 3): TuneRow[] {
  const miss = (r: TuneRow) => {
    const t = r.result;
    const drop = accuracyDrop(t) ?? Infinity;
    let m = 0;
    if (b.maxAccuracyDrop !== undefined) m += Math.max(0, drop - b.maxAccuracyDrop) / Math.max(b.maxAccuracyDrop, 0.01);
    if (b.maxLatencyRatio !== undefined) m += Math.max(0, (t.latencyRatio ?? Infinity) - b.maxLatencyRatio) / b.maxLatencyRatio;
    if (b.maxSizeRatio !== undefined) m += Math.max(0, (t.sizeRatio ?? Infinity) - b.maxSizeRatio) / b.maxSizeRatio;
    return m;
  };
  return rows
    .filter((r) => r.result.outcome === 'ok')
    .map((r) => ({ r, m: miss(r) }))
    .sort((x, y) => x.m - y.m)
    .slice(0, n)
    .map((x) => x.r);
}

type State = 'pending' | 'running' | 'done' | 'skipped';

export async function search(o: SearchOptions): Promise<SearchOutcome> {
  const patience = o.patience ?? 6;
  const state = new Map<string, State>(o.space.map((e) => [e.label, 'pending']));
  const skipped = new Map<string, string>();
  const rows: TuneRow[] = [];
  const byLabel = new Map<string, TuneRow>();
  let started = 0;
  let unchanged = 0;
  let front = '';
  let stopped = '';
  const lostAccuracy = (label: string) => {
    const r = byLabel.get(label);
    return r !== undefined && (r.result.outcome !== 'ok' || r.failed.includes('accuracy'));
  };

  /** Whether an entry may start now ('wait' while what it depends on runs), or why it is skipped. */
  const readiness = (e: SpaceEntry): 'ready' | 'wait' | { skip: string } => {
    if (e.after !== undefined) {
      const s = state.get(e.after);
      if (s === 'pending' || s === 'running') return 'wait';
      if (s === 'skipped') return { skip: `refines '${e.after}', which was skipped` };
      if (lostAccuracy(e.after)) return { skip: `refines '${e.after}', which ${byLabel.get(e.after)!.result.outcome === 'ok' ? 'failed the accuracy budget' : 'errored'}` };
    }
    if (e.ladder) {
      for (const x of o.space) {
        if (x === e || x.ladder?.key !== e.ladder.key || x.ladder.value >= e.ladder.value) continue;
        const s = state.get(x.label);
        if (s === 'pending' || s === 'running') return 'wait';
        if (s === 'done' && lostAccuracy(x.label)) return { skip: `pruning ratio ${x.ladder.value} already lost too much accuracy ('${x.label}')` };
      }
    }
    return 'ready';
  };

  const record = (e: SpaceEntry, result: TrialResult, reused: boolean) => {
    const row: TuneRow = { n: rows.length + 1, label: e.label, family: e.family, pipeline: e.pipeline, result, failed: failedBudgets(result, o.budgets), onFront: false, reused };
    const drop = accuracyDrop(result);
    if (drop !== undefined) row.accuracyDrop = drop;
    rows.push(row);
    byLabel.set(e.label, row);
    state.set(e.label, 'done');
    const win = markFront(rows, o.objective);
    const sig = rows.filter((r) => r.onFront).map((r) => r.label).sort().join('\n');
    if (sig === front) unchanged++;
    else unchanged = 0;
    front = sig;
    if (win && unchanged >= patience && !stopped) stopped = `the front did not move for ${patience} trials`;
    o.onRow?.(row, rows);
  };

  const inflight = new Set<Promise<void>>();
  const next = (): SpaceEntry | 'wait' | undefined => {
    let waiting = false;
    for (const e of o.space) {
      if (state.get(e.label) !== 'pending') continue;
      const r = readiness(e);
      if (r === 'wait') {
        waiting = true;
        continue;
      }
      if (r !== 'ready') {
        state.set(e.label, 'skipped');
        skipped.set(e.label, r.skip);
        return next();
      }
      return e;
    }
    return waiting ? 'wait' : undefined;
  };

  for (;;) {
    while (!stopped && inflight.size < Math.max(1, o.concurrency)) {
      const e = next();
      if (e === undefined || e === 'wait') break;
      if (started >= o.trials) {
        stopped = `reached --trials ${o.trials}`;
        break;
      }
      started++;
      state.set(e.label, 'running');
      const spec = o.spec(e);
      const prev = o.previous?.get(spec.id);
      if (prev && prev.outcome === 'ok') {
        record(e, prev, true);
        continue;
      }
      o.onStart?.(e);
      const p: Promise<void> = o.executor.run([spec], () => undefined).then((results) => {
        const r = results.find((x) => x.id === spec.id) ?? { id: spec.id, outcome: 'error' as const, error: { code: 'TUNE_WORKER_DIED', message: 'the executor returned no result' }, seconds: 0, worker: o.executor.describe };
        record(e, r, false);
        inflight.delete(p);
      });
      inflight.add(p);
    }
    if (inflight.size === 0) break;
    await Promise.race(inflight);
  }
  if (!stopped) stopped = [...state.values()].every((s) => s === 'done' || s === 'skipped') ? 'the space was exhausted' : `reached --trials ${o.trials}`;
  const winner = markFront(rows, o.objective);
  return { rows, skipped, stopped, ...(winner ? { winner } : {}), closest: winner ? [] : closestRows(rows, o.budgets) };
}
