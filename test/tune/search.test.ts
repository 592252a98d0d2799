import { describe, expect, it } from 'vitest';
import { search, failedBudgets, markFront } from '../../workflows/tune/search.js';
import { withLadder, type SpaceEntry } from '../../workflows/tune/space.js';
import type { TrialExecutor, TrialResult, TrialSpec } from '../../workflows/tune/types.js';
import type { TuneRow } from '../../report/tune.js';

/** Deterministic results by pipeline; records what ran and how many ran at once. */
class FakeExecutor implements TrialExecutor {
  readonly describe = 'fake';
  ran: string[] = [];
  running = 0;
  maxRunning = 0;
  constructor(private readonly table: Record<string, Partial<TrialResult>>) {}
  async run(trials: readonly TrialSpec[], onResult: (r: TrialResult) => void): Promise<TrialResult[]> {
    const out: TrialResult[] = [];
    for (const t of trials) {
      this.running++;
      this.maxRunning = Math.max(this.maxRunning, this.running);
      this.ran.push(t.pipeline);
      await new Promise((r) => setTimeout(r, 5));
      this.running--;
      const base = this.table[t.pipeline] ?? { outcome: 'error', error: { code: 'X', message: 'no row' } };
      const r: TrialResult = { id: t.id, outcome: 'ok', accuracyInput: 0.9, seconds: 1, worker: 'fake', ...base };
      onResult(r);
      out.push(r);
    }
    return out;
  }
  async close(): Promise<void> {}
}

const spec = (e: SpaceEntry): TrialSpec => ({
  id: `id:${e.pipeline}`,
  pipeline: e.pipeline,
  model: { hash: 'h', name: 'm.onnx', bytes: 1 },
  eval: { kind: 'spec', spec: 'random:1' },
  metric: 'm',
  target: 'node',
  threads: 1,
  shapes: {},
  latencyRuns: 1,
});

const entry = (label: string, pipeline: string, more: Partial<SpaceEntry> = {}): SpaceEntry => withLadder({ label, family: 'x', pipeline, ...more });
const ok = (size: number, latency: number, accuracy: number): Partial<TrialResult> => ({ sizeRatio: size, latencyRatio: latency, accuracy });

describe('tune search', () => {
  it('does not try a larger pruning ratio after a smaller one lost too much accuracy, nor refine a mode that failed', async () => {
    const space = [
      entry('static', 'quantize-static'),
      entry('static minmax', 'quantize-static<method=minmax>', { after: 'static' }),
      entry('p1', 'prune-channels<ratio=0.1>'),
      entry('p2', 'prune-channels<ratio=0.2>'),
      entry('p3', 'prune-channels<ratio=0.3>'),
      entry('p1q', 'prune-channels<ratio=0.1>,quantize-static'),
      entry('p2q', 'prune-channels<ratio=0.2>,quantize-static'),
    ];
    const ex = new FakeExecutor({
      'quantize-static': ok(0.3, 0.8, 0.85), // drop 0.05: fails 0.02
      'prune-channels<ratio=0.1>': ok(0.8, 0.8, 0.89),
      'prune-channels<ratio=0.2>': ok(0.7, 0.7, 0.8), // fails accuracy
      'prune-channels<ratio=0.1>,quantize-static': ok(0.25, 0.7, 0.7), // fails accuracy
    });
    const out = await search({ space, spec, executor: ex, objective: 'size', budgets: { maxAccuracyDrop: 0.02 }, trials: 20, concurrency: 1 });
    expect(ex.ran).toEqual(['quantize-static', 'prune-channels<ratio=0.1>', 'prune-channels<ratio=0.2>', 'prune-channels<ratio=0.1>,quantize-static']);
    expect(out.skipped.get('static minmax')).toMatch(/refines 'static', which failed the accuracy budget/);
    expect(out.skipped.get('p3')).toMatch(/ratio 0.2 already lost too much accuracy/);
    expect(out.skipped.get('p2q')).toMatch(/ratio 0.1 already lost/);
    expect(out.winner?.label).toBe('p1');
    expect(out.stopped).toBe('the space was exhausted');
  });

  it('refines a mode that met the budget, waits for it under concurrency, and stops at --trials', async () => {
    const space = [entry('a', 'quantize-static'), entry('b', 'quantize-weights'), entry('a2', 'quantize-static<method=minmax>', { after: 'a' }), entry('c', 'convert-float16')];
    const ex = new FakeExecutor({ 'quantize-static': ok(0.3, 0.8, 0.9), 'quantize-weights': ok(0.26, 1.5, 0.9), 'quantize-static<method=minmax>': ok(0.29, 0.7, 0.9), 'convert-float16': ok(0.5, 1, 0.9) });
    const out = await search({ space, spec, executor: ex, objective: 'latency', budgets: { maxAccuracyDrop: 0.02 }, trials: 3, concurrency: 2 });
    expect(ex.maxRunning).toBe(2);
    expect(new Set(ex.ran)).toEqual(new Set(['quantize-static', 'quantize-weights', 'quantize-static<method=minmax>']));
    expect(ex.ran.indexOf('quantize-static<method=minmax>')).toBe(2);
    expect(out.stopped).toBe('reached --trials 3');
    expect(out.winner?.label).toBe('a2');
  });

  it('stops when the front stops moving, reuses resumed results, and lists the closest when no trial meets the budgets', async () => {
    const space = Array.from({ length: 10 }, (_, i) => entry(`t${i}`, `fold-constants<max-output-bytes=${i + 1}>`));
    const table = Object.fromEntries(space.map((e, i) => [e.pipeline, ok(i === 0 ? 0.2 : 0.5 + i / 100, 1, 0.9)]));
    const ex = new FakeExecutor(table);
    const previous = new Map([[`id:${space[0]!.pipeline}`, { id: `id:${space[0]!.pipeline}`, outcome: 'ok' as const, ...ok(0.2, 1, 0.9), accuracyInput: 0.9, seconds: 3, worker: 'old' }]]);
    const out = await search({ space, spec, executor: ex, objective: 'size', budgets: { maxAccuracyDrop: 0.02 }, trials: 24, concurrency: 1, patience: 3, previous });
    expect(out.rows[0]!.reused).toBe(true);
    expect(ex.ran).not.toContain(space[0]!.pipeline);
    expect(out.rows).toHaveLength(4);
    expect(out.stopped).toBe('the front did not move for 3 trials');

    const ex2 = new FakeExecutor(table);
    const none = await search({ space: space.slice(0, 4), spec, executor: ex2, objective: 'size', budgets: { maxSizeRatio: 0.1 }, trials: 24, concurrency: 1 });
    expect(none.winner).toBeUndefined();
    expect(none.closest.map((r) => r.label)).toEqual(['t0', 't1', 't2']);
  });

  it('judges budgets and marks the front; objective ties within 2% go to the other dimension', () => {
    const r = (label: string, p: Partial<TrialResult>): TuneRow => {
      const result: TrialResult = { id: label, outcome: 'ok', accuracyInput: 0.9, seconds: 1, worker: 'w', ...p };
      return { n: 1, label, family: 'x', pipeline: label, result, failed: failedBudgets(result, { maxAccuracyDrop: 0.02, maxLatencyRatio: 1.2 }), onFront: false, reused: false };
    };
    const rows = [r('small-slow', ok(0.3, 1.3, 0.9)), r('small', ok(0.300, 0.9, 0.89)), r('tie-faster', ok(0.305, 0.6, 0.89)), r('big', ok(0.6, 0.5, 0.9)), r('bad', { outcome: 'error' })];
    expect(rows[0]!.failed).toEqual(['latency']);
    expect(rows[4]!.failed).toEqual(['outcome']);
    const win = markFront(rows, 'size');
    expect(win?.label).toBe('tie-faster');
    expect(rows.filter((x) => x.onFront).map((x) => x.label).sort()).toEqual(['big', 'small', 'tie-faster']);
  });
});
