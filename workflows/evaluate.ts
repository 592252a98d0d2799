/**
 * Runs a candidate model (and optionally a reference model) over a data source, accumulating output
 * errors against the reference and any user metrics, one sample at a time.
 */
import type { Sample } from '../data/index.js';
import { Feed } from '../core/host-tensor.js';
import { OutputComparison, OutputError, UserMetric, UserMetricAccumulator } from '../runtime/metrics.js';
import { Session } from '../runtime/session.js';

export interface EvaluateOptions {
  metrics?: { name: string; fn: UserMetric }[];
  onSample?: (done: number) => void;
}

export interface EvaluateReport {
  samples: number;
  /** Present when a reference was given. */
  outputs?: OutputError[];
  /** User metrics of the candidate (with ctx.reference when a reference was given). */
  metrics: Record<string, Record<string, number>>;
  /** User metrics of the reference itself (metrics that need a reference are skipped). */
  referenceMetrics?: Record<string, Record<string, number>>;
}

export async function evaluate(candidate: Pick<Session, 'run'>, reference: Pick<Session, 'run'> | undefined, samples: AsyncIterable<Sample>, options: EvaluateOptions = {}): Promise<EvaluateReport> {
  const metricDefs = options.metrics ?? [];
  const cand = metricDefs.map((m) => new UserMetricAccumulator(m.name, m.fn));
  const ref = reference ? metricDefs.filter((m) => !m.fn.needsReference).map((m) => new UserMetricAccumulator(m.name, m.fn)) : [];
  const cmp = reference ? new OutputComparison() : undefined;
  let n = 0;
  for await (const s of samples) {
    const out = await candidate.run(s.feed);
    let refOut: Feed | undefined;
    if (reference) {
      refOut = await reference.run(s.feed);
      cmp!.add(out, refOut, s.id);
      for (const m of ref) await m.add(refOut, s.label, { id: s.id, reference: refOut });
    }
    for (const m of cand) await m.add(out, s.label, refOut ? { id: s.id, reference: refOut } : { id: s.id });
    n++;
    options.onSample?.(n);
  }
  const report: EvaluateReport = { samples: n, metrics: Object.fromEntries(cand.map((m) => [m.name, m.result()])) };
  if (cmp) {
    report.outputs = cmp.result();
    report.referenceMetrics = Object.fromEntries(ref.map((m) => [m.name, m.result()]));
  }
  return report;
}
