/**
 * The distill command's report (`onnxforge.distill/1`, built by workflows/distill.ts), its terminal
 * rendering, and the common report document (`onnxforge.report/1`, for .md/.html) made from it.
 */
import type { Model } from '../ir/ir.js';
import type { DistillModelReport } from '../passes/distill/distill.js';
import type { ChannelReport } from '../passes/prune/prune-channels.js';
import { modelFacts, newReport } from './document.js';
import { formatBytes, renderTable } from './table.js';

export interface DistillCommandReport {
  schema: 'onnxforge.distill/1';
  teacher: string;
  student: string;
  output: string;
  pruning?: Omit<ChannelReport, 'groups'>;
  size: { teacherBytes: number; studentBeforeBytes: number; studentBytes: number };
  latency: { teacherMs: number; studentBeforeMs: number; studentMs: number; ratio: number; runs: number; threads: number };
  /** Top-1 agreement with the teacher on the evaluation (or held-out) inputs (NaN without them: see notes). */
  agreement: { before: number; after: number; samples: number };
  /** Parts of the report left out, and why. */
  notes?: string[];
  accuracy?: { metric: string; teacher: Record<string, number>; studentBefore: Record<string, number>; student: Record<string, number> }[];
  distill: DistillModelReport;
  wallMs: number;
}

export function distillDocument(r: DistillCommandReport, teacher: Model, student: Model, lat: { name: string; samples: number[]; stats: { p50: number; p90: number; mean: number; min: number } }[]): ReturnType<typeof newReport> {
  const doc = newReport('distill', `distill ${r.teacher} -> ${r.output}`);
  doc.input = modelFacts(teacher, r.size.teacherBytes, r.teacher);
  doc.output = modelFacts(student, r.size.studentBytes, r.output);
  doc.latency = lat.map((l) => ({ model: l.name, samplesMs: l.samples, p50: l.stats.p50, p90: l.stats.p90, mean: l.stats.mean, min: l.stats.min }));
  doc.accuracy = [{ metric: 'agreement with teacher', value: r.agreement.after, reference: r.agreement.before }];
  for (const a of r.accuracy ?? []) for (const [k, v] of Object.entries(a.student)) doc.accuracy.push({ metric: `${a.metric}.${k}`, value: v, ...(a.teacher[k] !== undefined ? { reference: a.teacher[k] } : {}) });
  doc.notes = r.distill.epochs.map((e) => (e.epoch === 0 ? `before training: agreement ${fmt(e.agreement, 4)}` : `epoch ${e.epoch}: mean loss ${fmt(e.meanLoss, 5)}, agreement ${fmt(e.agreement, 4)}, ${fmt(e.seconds, 1)} s`));
  doc.details = r;
  return doc;
}

const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : Number.isNaN(x) ? '-' : String(x));

export function renderDistillReport(r: DistillCommandReport): string {
  const d = r.distill;
  const parts: string[] = [];
  parts.push(
    renderTable(
      ['epoch', 'mean loss', `agreement (${d.heldOut} held out)`, 'lr (end)', 's'],
      d.epochs.map((e) => [e.epoch === 0 ? 'before' : String(e.epoch), fmt(e.meanLoss, 5), fmt(e.agreement, 4), e.epoch ? e.lr.toExponential(2) : '', fmt(e.seconds, 1)]),
      {
        title: `distill ${r.teacher} -> ${r.output}: ${d.trainingRecords} records (${d.cache.onDisk ? 'cached on disk' : 'in memory'}), batch ${d.batch}, ${d.steps} steps, T ${d.temperature}${d.labels ? `, alpha ${d.alpha}` : ''}; logits ${d.student.logits} (${d.student.via === 'output' ? 'the output' : `${d.student.via} input`})`,
      },
    ),
  );
  parts.push(
    renderTable(
      ['', 'teacher', 'student before', 'student after', 'after / teacher'],
      [
        ['size', formatBytes(r.size.teacherBytes), formatBytes(r.size.studentBeforeBytes), formatBytes(r.size.studentBytes), fmt(r.size.studentBytes / r.size.teacherBytes, 3)],
        [`latency p50 (${r.latency.threads} thread, ${r.latency.runs} interleaved runs)`, `${fmt(r.latency.teacherMs, 3)} ms`, `${fmt(r.latency.studentBeforeMs, 3)} ms`, `${fmt(r.latency.studentMs, 3)} ms`, fmt(r.latency.ratio, 3)],
        [`agreement with teacher (${r.agreement.samples} samples)`, '1', fmt(r.agreement.before, 4), fmt(r.agreement.after, 4), ''],
      ],
      { title: 'teacher vs student' },
    ),
  );
  for (const a of r.accuracy ?? []) {
    const keys = [...new Set([...Object.keys(a.teacher), ...Object.keys(a.student)])];
    parts.push(renderTable(['metric', 'teacher', 'student before', 'student after'], keys.map((k) => [k, fmt(a.teacher[k] ?? NaN, 4), fmt(a.studentBefore[k] ?? NaN, 4), fmt(a.student[k] ?? NaN, 4)]), { title: `task accuracy: ${a.metric}` }));
  }
  for (const n of r.notes ?? []) parts.push(`note: ${n}`);
  return parts.join('\n\n');
}
