/**
 * Every command writes a versioned JSON report. `optimize` and `run` write the common document
 * (`onnxforge.report/1`) directly; the others keep their own typed schema (`onnxforge.quantize/1`,
 * `prune/1`, `distill/1`, `bench/1`, `compare/1`, `gate/1`, `inspect/1`) with the detail their tables need.
 * These adapters map each of them onto the common document, so `onnxforge report <file>` renders any
 * of them. A schema name with a version this onnxforge does not know is refused.
 */
import { inputError } from '../core/errors.js';
import type { AccuracyEntry, LayerEntry, LatencyEntry, ModelFacts, OutputErrorEntry, ReportDocument } from './document.js';
import { newReport } from './document.js';

type J = Record<string, any>;

const base = (p: unknown) => (typeof p === 'string' ? (p.split(/[\\/]/).pop() ?? p) : 'model');

function facts(bytes: unknown, file?: unknown): ModelFacts | undefined {
  if (typeof bytes !== 'number') return undefined;
  const f: ModelFacts = { bytes };
  if (typeof file === 'string') f.file = file;
  return f;
}

function latency(model: string, ms: unknown): LatencyEntry | undefined {
  if (typeof ms !== 'number') return undefined;
  return { model, samplesMs: [], p50: ms, p90: ms, mean: ms, min: ms };
}

function outputs(list: unknown): OutputErrorEntry[] | undefined {
  if (!Array.isArray(list)) return undefined;
  return list.map((o: J) => ({ name: String(o.name), maxAbsError: Number(o.maxAbs ?? o.maxAbsError ?? NaN), sqnrDb: Number(o.sqnrDb), cosine: Number(o.cosine) }));
}

/** Picks the headline number of a metric record ({accuracy} or {<name>} or its first key). */
function headline(rec: unknown, name: string): number | undefined {
  if (!rec || typeof rec !== 'object') return undefined;
  const r = rec as Record<string, number>;
  for (const k of [name, 'accuracy', 'lineAccuracy', 'iou']) if (typeof r[k] === 'number') return r[k];
  const first = Object.values(r).find((v) => typeof v === 'number');
  return first;
}

function withDefined<T extends object>(doc: T, key: keyof T, v: unknown): void {
  if (v !== undefined) (doc as Record<keyof T, unknown>)[key] = v;
}

const ADAPTERS: Record<string, (x: J) => ReportDocument> = {
  'onnxforge.quantize/1': (x) => {
    const d = newReport('quantize', `quantize ${base(x.input)}`);
    withDefined(d, 'input', facts(x.size?.fp32Bytes, x.input));
    withDefined(d, 'output', facts(x.size?.int8Bytes, x.output));
    const l = [latency('fp32', x.latency?.fp32Ms), latency('int8', x.latency?.int8Ms)].filter((e): e is LatencyEntry => !!e);
    if (l.length) d.latency = l;
    withDefined(d, 'outputs', outputs(x.outputs));
    if (Array.isArray(x.accuracy)) {
      d.accuracy = x.accuracy.flatMap((a: J): AccuracyEntry[] => {
        const v = headline(a.int8, a.metric);
        const r = headline(a.fp32, a.metric);
        return v === undefined ? [] : [{ metric: String(a.metric), value: v, ...(r !== undefined ? { reference: r } : {}) }];
      });
    }
    const layers: LayerEntry[] = [];
    if (Array.isArray(x.layers)) for (const l of x.layers as J[]) layers.push({ name: String(l.tensor ?? l.name), op: String(l.producer ?? ''), sqnrDb: Number(l.sqnrDb), precision: 'int8' });
    for (const f of (x.quantization?.float ?? []) as J[]) layers.push({ name: String(f.node), op: String(f.op), precision: 'float', reason: String(f.reason) });
    if (layers.length) d.layers = layers;
    d.details = x;
    return d;
  },
  'onnxforge.prune/1': (x) => {
    const d = newReport('prune', `prune (${x.mode})`);
    const before = x.flops?.before;
    const after = x.flops?.after;
    withDefined(d, 'input', facts(x.sizes?.original?.raw));
    // the file written: dense unless --storage sparse was given and onnxruntime ran that variant
    withDefined(d, 'output', facts(x.storage?.bytes ?? x.sizes?.dense?.raw));
    if (x.sizes?.best) {
      const b = x.sizes.best as Record<string, { bytes: number; variant: string }>;
      const o = (x.sizes.original ?? {}) as Record<string, number>;
      const of = (k: string) => (o[k] ? ` = ${(b[k]!.bytes / o[k]!).toFixed(3)}x of ${o[k]} B` : '');
      d.notes = [...(d.notes ?? []), `Deployed size: raw ${b.raw?.bytes} B (${b.raw?.variant}${of('raw')}), gzip ${b.gzip?.bytes} B (${b.gzip?.variant}${of('gzip')}), brotli ${b.brotli?.bytes} B (${b.brotli?.variant}${of('brotli')}).`];
    }
    if (x.optimized) d.notes = [...(d.notes ?? []), `Then ${x.optimized.pipeline}: nodes ${x.optimized.nodesBefore} -> ${x.optimized.nodesAfter}${x.mode === 'magnitude' ? `; weight sparsity after it ${(Number(x.optimized.weightSparsity) * 100).toFixed(1)}%` : ''}.`];
    const l = [latency('before', x.latency?.beforeMs), latency('after', x.latency?.afterMs)].filter((e): e is LatencyEntry => !!e);
    if (l.length) d.latency = l;
    if (x.accuracy) {
      const v = headline(x.accuracy.after, x.accuracy.metric);
      const r = headline(x.accuracy.before, x.accuracy.metric);
      if (v !== undefined) d.accuracy = [{ metric: String(x.accuracy.metric), value: v, ...(r !== undefined ? { reference: r } : {}) }];
    }
    if (before && after && typeof before.totalFlops === 'number' && typeof after.totalFlops === 'number') {
      d.notes = [...(d.notes ?? []), `FLOPs ${before.totalFlops.toExponential(3)} -> ${after.totalFlops.toExponential(3)} (${(after.totalFlops / before.totalFlops).toFixed(3)}x); parameters ${before.totalParams} -> ${after.totalParams}.`];
    }
    d.details = x;
    return d;
  },
  'onnxforge.distill/1': (x) => {
    const d = newReport('distill', `distill ${base(x.student)} from ${base(x.teacher)}`);
    withDefined(d, 'input', facts(x.size?.teacherBytes, x.teacher));
    withDefined(d, 'output', facts(x.size?.studentBytes, x.output));
    const l = [latency('teacher', x.latency?.teacherMs), latency('student', x.latency?.studentMs)].filter((e): e is LatencyEntry => !!e);
    if (l.length) d.latency = l;
    if (Array.isArray(x.accuracy)) {
      d.accuracy = x.accuracy.flatMap((a: J): AccuracyEntry[] => {
        const v = headline(a.student, a.metric);
        const r = headline(a.teacher, a.metric);
        return v === undefined ? [] : [{ metric: String(a.metric), value: v, ...(r !== undefined ? { reference: r } : {}) }];
      });
    }
    if (x.agreement) d.notes = [`Agreement with the teacher: ${Number(x.agreement.before).toFixed(4)} before distillation, ${Number(x.agreement.after).toFixed(4)} after (${x.agreement.samples} samples).`];
    d.details = x;
    return d;
  },
  'onnxforge.bench/1': (x) => {
    const d = newReport('bench', `bench ${(x.models ?? []).map((m: J) => base(m.model)).join(' vs ')}`);
    d.latency = (x.models ?? []).map((m: J) => ({ model: base(m.model), samplesMs: Array.isArray(m.samples) ? m.samples : [], p50: m.stats?.p50, p90: m.stats?.p90, mean: m.stats?.mean, min: m.stats?.min }));
    d.details = x;
    return d;
  },
  'onnxforge.compare/1': (x) => {
    const d = newReport('compare', `compare ${base(x.candidate)} with ${base(x.reference)}`);
    withDefined(d, 'outputs', outputs(x.outputs));
    d.budgets = [{ metric: 'max abs error', budget: `<= ${x.tolerance}`, value: String(Math.max(...((x.outputs ?? []) as J[]).map((o) => Number(o.maxAbs)))), verdict: x.pass ? 'pass' : 'fail' }];
    d.details = x;
    return d;
  },
  'onnxforge.gate/1': (x) => {
    const d = newReport('gate', `gate ${x.model}`);
    d.budgets = ((x.checks ?? []) as J[]).map((c) => ({ metric: String(c.metric), budget: String(c.budget), value: `${c.current} (${c.change})`, verdict: c.verdict }));
    d.details = x;
    return d;
  },
  'onnxforge.inspect/1': (x) => {
    const d = newReport('inspect', `inspect ${x.file ?? 'model'}`);
    const paramBytesByOp: Record<string, number> = {};
    for (const [k, g] of Object.entries((x.parameters?.byOpType ?? {}) as Record<string, J>)) paramBytesByOp[k] = Number(g.bytes);
    d.input = { bytes: Number(x.fileBytes ?? x.parameters?.bytes ?? 0), nodes: Number(x.nodes), opCounts: x.opCounts ?? {}, paramBytesByOp, ...(x.file ? { file: x.file } : {}) };
    d.details = x;
    return d;
  },
};

/** Maps a command's own report onto the common document; undefined when `schema` is the common one. */
export function adaptReport(x: J, file: string): ReportDocument | undefined {
  const schema = x.schema;
  if (typeof schema !== 'string' || schema === 'onnxforge.report/1') return undefined;
  const adapter = ADAPTERS[schema];
  if (adapter) return adapter(x);
  const m = /^onnxforge\.([a-z-]+)\/(\d+)$/.exec(schema);
  if (m) {
    const known = Object.keys(ADAPTERS).filter((k) => k.startsWith(`onnxforge.${m[1]}/`));
    throw inputError('REPORT_SCHEMA_VERSION', `${file}: report schema ${schema} is not supported by this onnxforge${known.length ? ` (it reads ${known.join(', ')})` : ''}`, { file });
  }
  return undefined;
}

export const ADAPTED_SCHEMAS = Object.keys(ADAPTERS);
