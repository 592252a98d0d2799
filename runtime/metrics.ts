/**
 * Metrics over model outputs, accumulated sample by sample (no outputs are kept):
 *
 * - output error vs a reference, per output: max |a - r|, max |a - r| / max(|r|, 1e-6), mean |a - r|,
 *   cosine similarity (a . r) / (|a| |r|), and SQNR = 10 log10(sum r^2 / sum (a - r)^2) dB
 *   (Infinity when identical), all over every element of every sample;
 * - top-1 accuracy (argmax over the last axis vs a class label) and top-1 agreement with a reference;
 * - user metrics loaded from a JS/TS module (`--metric ./metric.js[#export]`): a function
 *   `(outputs, label, ctx) => number | Record<string, number>`, averaged over samples unless the
 *   function carries its own `reduce(records)`.
 */
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { checkError, inputError } from '../core/errors.js';
import { Feed, formatDims, HostTensor, toFloat64 } from '../core/host-tensor.js';

export interface OutputError {
  name: string;
  elements: number;
  maxAbs: number;
  maxRel: number;
  meanAbs: number;
  cosine: number;
  sqnrDb: number;
}

const REL_FLOOR = 1e-6;

class ErrorAcc {
  n = 0;
  maxAbs = 0;
  maxRel = 0;
  sumAbs = 0;
  dot = 0;
  aa = 0;
  rr = 0;
  noise = 0;
  nan = false;
  add(a: Float64Array, r: Float64Array): void {
    for (let i = 0; i < a.length; i++) {
      const x = a[i]!;
      const y = r[i]!;
      if (Number.isNaN(x) !== Number.isNaN(y)) this.nan = true;
      const d = x === y ? 0 : Math.abs(x - y);
      if (d > this.maxAbs || Number.isNaN(d)) this.maxAbs = Number.isNaN(d) ? (this.nan ? Infinity : this.maxAbs) : d;
      const rel = d / Math.max(Math.abs(y), REL_FLOOR);
      if (rel > this.maxRel) this.maxRel = rel;
      if (!Number.isNaN(d)) {
        this.sumAbs += d;
        this.noise += d * d;
      }
      this.dot += x * y;
      this.aa += x * x;
      this.rr += y * y;
    }
    this.n += a.length;
  }
  result(name: string): OutputError {
    const denom = Math.sqrt(this.aa) * Math.sqrt(this.rr);
    return {
      name,
      elements: this.n,
      maxAbs: this.nan ? Infinity : this.maxAbs,
      maxRel: this.nan ? Infinity : this.maxRel,
      meanAbs: this.n ? this.sumAbs / this.n : 0,
      cosine: denom > 0 ? this.dot / denom : this.aa === this.rr ? 1 : 0,
      sqnrDb: this.noise === 0 && !this.nan ? Infinity : 10 * Math.log10(this.rr / this.noise),
    };
  }
}

/** Accumulates per-output error of a candidate against a reference over many samples. */
export class OutputComparison {
  private readonly acc = new Map<string, ErrorAcc>();
  samples = 0;

  add(candidate: Feed, reference: Feed, where = 'sample'): void {
    for (const [name, r] of Object.entries(reference)) {
      const a = candidate[name];
      if (!a) throw checkError('COMPARE_MISSING_OUTPUT', `${where}: output '${name}' is missing from the candidate model`, { tensor: name });
      if (a.dims.length !== r.dims.length || a.dims.some((d, i) => d !== r.dims[i])) {
        throw checkError('COMPARE_SHAPE_MISMATCH', `${where}: output '${name}' has shape ${formatDims(a.dims)} in the candidate and ${formatDims(r.dims)} in the reference`, { tensor: name });
      }
      let e = this.acc.get(name);
      if (!e) this.acc.set(name, (e = new ErrorAcc()));
      e.add(toFloat64(a), toFloat64(r));
    }
    this.samples++;
  }

  result(): OutputError[] {
    return [...this.acc.entries()].map(([k, v]) => v.result(k));
  }
}

/** Error of one tensor against a reference. */
export function compareTensors(a: HostTensor, r: HostTensor, name = 'output'): OutputError {
  const c = new OutputComparison();
  c.add({ [name]: a }, { [name]: r });
  return c.result()[0]!;
}

/** Argmax over the last axis, one per row. */
export function argmaxRows(t: HostTensor): Int32Array {
  const v = toFloat64(t);
  const k = t.dims.length ? t.dims[t.dims.length - 1]! : 1;
  const rows = k ? v.length / k : 0;
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    let bv = -Infinity;
    for (let j = 0; j < k; j++) {
      const x = v[r * k + j]!;
      if (x > bv) (bv = x), (best = j);
    }
    out[r] = best;
  }
  return out;
}

function classOf(label: unknown): number | undefined {
  if (typeof label === 'number') return label;
  if (label && typeof label === 'object') {
    const o = label as Record<string, unknown>;
    for (const k of ['class', 'label', 'target']) if (typeof o[k] === 'number') return o[k];
  }
  return undefined;
}

/** Top-1 accuracy of `output` (first output if absent) against numeric class labels. */
export class Top1Accuracy {
  correct = 0;
  total = 0;
  constructor(readonly output?: string) {}
  add(outputs: Feed, label: unknown, where = 'sample'): void {
    const cls = classOf(label);
    if (cls === undefined) throw inputError('METRIC_NO_LABEL', `${where}: top-1 accuracy needs a numeric class label`, { file: where });
    const t = this.output ? outputs[this.output] : Object.values(outputs)[0];
    if (!t) throw inputError('METRIC_NO_OUTPUT', `${where}: no output '${this.output}'`, { tensor: this.output });
    const pred = argmaxRows(t);
    this.total++;
    if (pred[0] === cls) this.correct++;
  }
  result(): number {
    return this.total ? this.correct / this.total : NaN;
  }
}

/** Fraction of rows whose argmax agrees with the reference model's. */
export class Top1Agreement {
  agree = 0;
  total = 0;
  add(outputs: Feed, reference: Feed): void {
    for (const [name, r] of Object.entries(reference)) {
      const a = outputs[name];
      if (!a) continue;
      const pa = argmaxRows(a);
      const pr = argmaxRows(r);
      for (let i = 0; i < pr.length; i++) if (pa[i] === pr[i]) this.agree++;
      this.total += pr.length;
    }
  }
  result(): number {
    return this.total ? this.agree / this.total : NaN;
  }
}

// ---------------------------------------------------------------------------------------------
// User metrics

export type MetricValue = number | Record<string, number>;

export interface MetricContext {
  id: string;
  /** Outputs of the reference model for the same sample, when comparing. */
  reference?: Feed;
}

export interface UserMetric {
  (outputs: Feed, label: unknown, ctx: MetricContext): MetricValue | Promise<MetricValue>;
  /** Combines per-sample records into the final result (default: mean of every key). */
  reduce?: (records: Record<string, number>[]) => Record<string, number>;
  /** True when the metric needs `ctx.reference`. */
  needsReference?: boolean;
}

/** Loads `path[#export]` (default export `default`, else the only exported function). */
export async function loadMetric(spec: string, cwd = process.cwd()): Promise<{ name: string; fn: UserMetric }> {
  const hash = spec.lastIndexOf('#');
  const path = hash > 0 ? spec.slice(0, hash) : spec;
  const exportName = hash > 0 ? spec.slice(hash + 1) : undefined;
  const abs = isAbsolute(path) ? path : resolve(cwd, path);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(abs).href)) as Record<string, unknown>;
  } catch (e) {
    throw inputError('METRIC_UNLOADABLE', `cannot load metric module ${path}: ${(e as Error).message.split('\n')[0]}`, { file: path });
  }
  let fn: unknown;
  let name = exportName ?? 'default';
  if (exportName) fn = mod[exportName];
  else if (typeof mod.default === 'function') fn = mod.default;
  else {
    const fns = Object.entries(mod).filter(([, v]) => typeof v === 'function');
    if (fns.length === 1) [name, fn] = fns[0]!;
    else throw inputError('METRIC_AMBIGUOUS', `${path} exports ${fns.length} functions; name one with ${path}#<export>`, { file: path });
  }
  if (typeof fn !== 'function') throw inputError('METRIC_NOT_A_FUNCTION', `${path}: export '${name}' is not a function`, { file: path });
  return { name, fn: fn as UserMetric };
}

/** Applies a user metric to each sample and reduces at the end. */
export class UserMetricAccumulator {
  private readonly records: Record<string, number>[] = [];
  constructor(readonly name: string, readonly fn: UserMetric) {}

  async add(outputs: Feed, label: unknown, ctx: MetricContext): Promise<void> {
    const v = await this.fn(outputs, label, ctx);
    if (typeof v === 'number') this.records.push({ [this.name]: v });
    else if (v && typeof v === 'object') this.records.push(v);
    else throw inputError('METRIC_BAD_VALUE', `metric ${this.name} returned ${typeof v} for ${ctx.id}; expected a number or a record of numbers`);
  }

  result(): Record<string, number> {
    if (this.fn.reduce) return this.fn.reduce(this.records);
    return meanRecords(this.records);
  }
}

export function meanRecords(records: readonly Record<string, number>[]): Record<string, number> {
  const sum: Record<string, number> = {};
  const count: Record<string, number> = {};
  for (const r of records) {
    for (const [k, v] of Object.entries(r)) {
      sum[k] = (sum[k] ?? 0) + v;
      count[k] = (count[k] ?? 0) + 1;
    }
  }
  const out: Record<string, number> = {};
  for (const k of Object.keys(sum)) out[k] = sum[k]! / count[k]!;
  return out;
}
