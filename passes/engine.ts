/**
 * The pass engine (manager.ts binds it to the registry and onnxruntime-node; `onnxforge/web` to the
 * passes that need no onnxruntime-node and onnxruntime-web): runs a pipeline over a model in memory until nothing changes (a fixed point, with
 * an iteration cap), timing each pass and recording node count and tensor bytes before and after it.
 * With `verify`, it runs the model with onnxruntime before the first pass and after every pass that
 * changed something, on the given inputs, and stops with a check error (exit code 1) naming the pass
 * when outputs drift past the tolerance — the caller then writes nothing. Models are read and written
 * only by the caller: `optimize()` never touches files.
 */
import { checkModel } from '../ir/checker.js';
import { float16ToFloat32 } from '../core/dtype.js';
import { checkError, internalError, isOnnxForgeError } from '../core/errors.js';
import type { Graph, Model, Value } from '../ir/ir.js';
import type { Explanation, Logger, Pass, PassContext, PassResult, SubPipelines } from './pass.js';
import type { PassCatalog } from './catalog.js';
import { formatPipeline, parsePipelineIn, type PipelineStep } from './pipeline-core.js';
import type { Runner, Threads } from '../runtime/runner-types.js';
import { countNodes, weightBytes } from '../ir/edits.js';
import type { Feed, HostTensor } from '../core/host-tensor.js';

export interface VerifyOptions {
  /** Inputs to run the model on (one feed per sample). */
  feeds: Feed[];
  /** Relative tolerance (default 1e-3). */
  rtol?: number;
  /** Absolute tolerance (default 1e-5). */
  atol?: number;
}

export interface OptimizeOptions {
  /** Maximum rounds of the whole pipeline (default 10). */
  maxIterations?: number;
  verify?: VerifyOptions;
  /** Collect "did not apply because ..." notes. */
  explain?: boolean;
  /** Check the model structurally after each pass and name the pass that broke it (default true). */
  check?: boolean;
  logger?: Logger;
  data?: Record<string, unknown>;
  /** How passes reach onnxruntime (default onnxruntime-node); a fake one in tests. */
  runner?: Runner;
  /** Helper threads passes may hand independent jobs to (the manager gives Node's with onnxruntime-node's runner; none in the browser). */
  threads?: Threads;
  /**
   * Reports of passes by pass name, shared with an enclosing run (a sub-pipeline sees its parent's);
   * created when absent. Each pass's last report is also on its {@link PassRecord}.
   */
  reports?: Map<string, unknown>;
  /** Called after each pass run (progress display). */
  onPass?: (r: PassRecord) => void;
}

/** What the engine needs besides the options: where pass names resolve, and the runner (no default here). */
export interface EngineOptions extends OptimizeOptions {
  catalog: PassCatalog;
  runner: Runner;
}

export interface PassRecord {
  pass: string;
  iteration: number;
  changed: boolean;
  ms: number;
  nodesBefore: number;
  nodesAfter: number;
  bytesBefore: number;
  bytesAfter: number;
  stats: Record<string, number | string>;
  /** Largest output difference against the model before this pass (with verify). */
  maxAbsDiff?: number;
  /** The pass's typed report, when it returns one (not enumerable: left out of JSON; see passReport). */
  report?: unknown;
}

export interface PassSummary {
  pass: string;
  runs: number;
  changedRuns: number;
  ms: number;
  nodesRemoved: number;
  bytesSaved: number;
  stats: Record<string, number | string>;
}

export interface OptimizeReport {
  pipeline: string;
  converged: boolean;
  iterations: number;
  nodesBefore: number;
  nodesAfter: number;
  bytesBefore: number;
  bytesAfter: number;
  ms: number;
  records: PassRecord[];
  summary: PassSummary[];
  explanations: Explanation[];
  verification?: { samples: number; rtol: number; atol: number; maxAbsDiff: number };
}

const quietLogger: Logger = { info: () => {}, warn: () => {}, debug: () => {} };

/**
 * The context the manager hands a pass: `options`' logger, data and runner, sub-pipelines that run
 * through this manager (sharing the reports), and the reports of passes that ran before.
 */
export function createPassContext(options: EngineOptions, pass = '(caller)', onExplain?: (e: Explanation) => void): PassContext {
  const reports = options.reports ?? new Map<string, unknown>();
  const { catalog } = options;
  const pipelines: SubPipelines = {
    run: async (model, pipeline, o = {}) => {
      await optimize(model, pipeline, { logger: options.logger, data: o.data ?? options.data, runner: options.runner, ...(options.threads ? { threads: options.threads } : {}), reports, catalog });
    },
    hasPreset: (name) => Object.prototype.hasOwnProperty.call(catalog.presets, name),
    hasPass: (name) => catalog.getPass(name) !== undefined,
  };
  return {
    logger: options.logger ?? quietLogger,
    explaining: !!options.explain,
    explain: (e) => onExplain?.({ pass, ...e }),
    data: options.data ?? {},
    runner: options.runner,
    ...(options.threads ? { threads: options.threads } : {}),
    pipelines,
    reportOf: <R>(p: Pass<any, R>) => reports.get(p.name) as R | undefined,
  };
}

/** The last report `pass` returned in a run (typed by the pass). */
export function passReport<R>(report: OptimizeReport, pass: Pass<any, R>): R | undefined {
  for (let i = report.records.length - 1; i >= 0; i--) {
    const r = report.records[i]!;
    if (r.pass === pass.name && r.report !== undefined) return r.report as R;
  }
  return undefined;
}

/** Runs `pipeline` (text or steps) on `model` in place and reports what each pass did. */
export async function optimize(model: Model, pipeline: string | readonly PipelineStep[], options: EngineOptions): Promise<OptimizeReport> {
  const steps = typeof pipeline === 'string' ? parsePipelineIn(options.catalog, pipeline) : pipeline;
  return new PassManager(steps, options).run(model);
}

interface Drift {
  maxAbsDiff: number;
  worst?: { output: string; index: number; got: number; want: number };
}

export class PassManager {
  constructor(
    readonly steps: readonly PipelineStep[],
    readonly options: EngineOptions,
  ) {}

  async run(model: Model): Promise<OptimizeReport> {
    const o = this.options;
    const cap = o.maxIterations ?? 10;
    const explanations: Explanation[] = [];
    const reports = o.reports ?? new Map<string, unknown>();
    const t0 = performance.now();
    const report: OptimizeReport = {
      pipeline: formatPipeline(this.steps),
      converged: false,
      iterations: 0,
      nodesBefore: countNodes(model),
      nodesAfter: 0,
      bytesBefore: weightBytes(model),
      bytesAfter: 0,
      ms: 0,
      records: [],
      summary: [],
      explanations,
    };
    const checking = o.check ?? true;
    let baselineIssues = checking ? issueKeys(model) : new Set<string>();
    const verifier = o.verify ? await Verifier.create(o.runner, model, o.verify) : undefined;
    let maxDiff = 0;
    // shared analyses (PassContext.analysis), dropped whenever a pass changes the model
    const analyses = new Map<string, { model: Model; value: unknown }>();
    const analysis = <T>(m: Model, key: string, compute: () => { value: T; reuse: boolean }): T => {
      const hit = analyses.get(key);
      if (hit && hit.model === m) return hit.value as T;
      const r = compute();
      if (r.reuse) analyses.set(key, { model: m, value: r.value });
      else analyses.delete(key);
      return r.value;
    };
    // what every pass's context shares (createPassContext's, made once; explain names the pass)
    const base = createPassContext({ ...o, reports });
    // the size after one pass is the size before the next, and a pass that reports no change left the
    // model as it was (the fixed point relies on that too): sizes are measured after changes only
    let nodesNow = report.nodesBefore;
    let bytesNow = report.bytesBefore;
    try {
      for (let it = 1; it <= cap; it++) {
        report.iterations = it;
        let any = false;
        for (const s of this.steps) {
          if (it > 1 && s.pass.idempotent === false) continue;
          const name = s.pass.name;
          const ctx: PassContext = {
            ...base,
            explain: (e) => {
              if (o.explain && it === 1) explanations.push({ pass: name, ...e });
            },
            analysis,
          };
          if (s.pass.minOpset !== undefined && (model.opset('') ?? 0) < s.pass.minOpset) {
            ctx.explain({ reason: `needs opset ${s.pass.minOpset}, the model has ${model.opset('') ?? 'none'}` });
            continue;
          }
          const nodesBefore = nodesNow;
          const bytesBefore = bytesNow;
          const start = performance.now();
          let res: PassResult;
          try {
            res = await s.pass.run(model, s.options, ctx);
          } catch (e) {
            if (isOnnxForgeError(e)) throw e;
            throw internalError('PASS_FAILED', `pass '${name}' failed: ${(e as Error).message}`, { pass: name });
          }
          const ms = performance.now() - start;
          if (res.changed) {
            nodesNow = countNodes(model);
            bytesNow = weightBytes(model);
          }
          const rec: PassRecord = {
            pass: name,
            iteration: it,
            changed: res.changed,
            ms,
            nodesBefore,
            nodesAfter: nodesNow,
            bytesBefore,
            bytesAfter: bytesNow,
            stats: res.stats ?? {},
          };
          if (res.report !== undefined) {
            // not enumerable: a record's JSON stays the numbers; passReport() reads the typed report
            Object.defineProperty(rec, 'report', { value: res.report, enumerable: false });
            reports.set(name, res.report);
          }
          if (res.changed) {
            any = true;
            analyses.clear();
            if (checking) {
              const now = issueKeys(model);
              const fresh = [...now].filter((k) => !baselineIssues.has(k));
              if (fresh.length) throw internalError('PASS_BROKE_MODEL', `pass '${name}' left an invalid model: ${fresh[0]}${fresh.length > 1 ? ` (and ${fresh.length - 1} more)` : ''}`, { pass: name });
              baselineIssues = now;
            }
            if (verifier) {
              const d = await verifier.check(model, name);
              rec.maxAbsDiff = d.maxAbsDiff;
              maxDiff = Math.max(maxDiff, d.maxAbsDiff);
            }
          }
          report.records.push(rec);
          o.onPass?.(rec);
        }
        if (!any) {
          report.converged = true;
          break;
        }
      }
    } finally {
      await verifier?.dispose();
    }
    report.nodesAfter = countNodes(model);
    report.bytesAfter = weightBytes(model);
    report.ms = performance.now() - t0;
    report.summary = summarize(report.records);
    if (verifier) report.verification = { samples: verifier.samples, rtol: verifier.rtol, atol: verifier.atol, maxAbsDiff: maxDiff };
    return report;
  }
}

function issueKeys(model: Model): Set<string> {
  return new Set([...checkModel(model).map((i) => `${i.code}: ${i.message}`), ...scopeIssues(model)]);
}

/**
 * Values read but defined nowhere in scope (a node input or graph output whose producer was removed,
 * or that no graph input or initializer provides): the checker only sees what the loader recorded.
 */
export function scopeIssues(model: Model): string[] {
  const out: string[] = [];
  const visit = (g: Graph, outer: Set<Value>) => {
    const defined = new Set(outer);
    for (const v of g.inputs) defined.add(v);
    for (const v of g.initializers.values()) defined.add(v);
    for (const n of g.nodes) for (const o of n.outputs) defined.add(o);
    for (const n of g.nodes) {
      for (const v of n.inputs) if (v && !defined.has(v)) out.push(`IR_UNDEFINED_INPUT: node ${n.label} reads '${v.name}', which nothing in scope defines`);
      for (const sg of n.subgraphs()) visit(sg, defined);
    }
    for (const v of g.outputs) if (!defined.has(v)) out.push(`IR_UNDEFINED_OUTPUT: graph output '${v.name}' is defined nowhere in scope`);
  };
  visit(model.graph, new Set());
  return out;
}

export function summarize(records: readonly PassRecord[]): PassSummary[] {
  const by = new Map<string, PassSummary>();
  for (const r of records) {
    let s = by.get(r.pass);
    if (!s) {
      s = { pass: r.pass, runs: 0, changedRuns: 0, ms: 0, nodesRemoved: 0, bytesSaved: 0, stats: {} };
      by.set(r.pass, s);
    }
    s.runs++;
    if (r.changed) s.changedRuns++;
    s.ms += r.ms;
    s.nodesRemoved += r.nodesBefore - r.nodesAfter;
    s.bytesSaved += r.bytesBefore - r.bytesAfter;
    for (const [k, v] of Object.entries(r.stats)) {
      const prev = s.stats[k];
      s.stats[k] = typeof v === 'number' && typeof prev === 'number' ? prev + v : typeof v === 'number' && prev === undefined ? v : v;
    }
  }
  return [...by.values()];
}

/** Runs models with onnxruntime and compares outputs with those of the previous accepted model. */
class Verifier {
  samples: number;
  private constructor(
    private readonly runner: Runner,
    private readonly feeds: Feed[],
    private previous: Feed[],
    readonly rtol: number,
    readonly atol: number,
  ) {
    this.samples = feeds.length;
  }

  static async create(runner: Runner, model: Model, v: VerifyOptions): Promise<Verifier> {
    if (v.feeds.length === 0) throw checkError('VERIFY_NO_INPUTS', 'verification needs at least one input sample');
    const outs = await runAll(runner, model, v.feeds, 'the original model');
    return new Verifier(runner, v.feeds, outs, v.rtol ?? 1e-3, v.atol ?? 1e-5);
  }

  async check(model: Model, pass: string): Promise<Drift> {
    let outs: Feed[];
    try {
      outs = await runAll(this.runner, model, this.feeds, `the model after pass '${pass}'`);
    } catch (e) {
      throw checkError('VERIFY_RUN_FAILED', `verification failed after pass '${pass}': ${(e as Error).message}`, { pass });
    }
    let max = 0;
    for (let i = 0; i < outs.length; i++) {
      for (const [name, want] of Object.entries(this.previous[i]!)) {
        const got = outs[i]![name];
        if (!got) throw checkError('VERIFY_OUTPUT_MISSING', `pass '${pass}' removed model output '${name}'`, { pass, tensor: name });
        const d = compare(got, want, this.rtol, this.atol);
        max = Math.max(max, d.maxAbsDiff);
        if (d.bad) {
          throw checkError(
            'VERIFY_DRIFT',
            `pass '${pass}' changed output '${name}' past the tolerance (rtol ${this.rtol}, atol ${this.atol}): ${d.bad}`,
            { pass, tensor: name },
          );
        }
      }
    }
    this.previous = outs;
    return { maxAbsDiff: max };
  }

  async dispose(): Promise<void> {}
}

async function runAll(runner: Runner, model: Model, feeds: Feed[], label: string): Promise<Feed[]> {
  const s = await runner.open(model, { graphOptimizationLevel: 'disabled', logSeverityLevel: 3 }, label);
  try {
    const outs: Feed[] = [];
    for (const f of feeds) outs.push(await s.run(f));
    return outs;
  } finally {
    await s.dispose();
  }
}

function values(t: HostTensor): ArrayLike<number> | undefined {
  if (t.type === 'string') return undefined;
  if (t.type === 'float16') {
    const bits = t.data as Uint16Array;
    const out = new Float64Array(bits.length);
    for (let i = 0; i < bits.length; i++) out[i] = float16ToFloat32(bits[i]!);
    return out;
  }
  const d = t.data as ArrayLike<number | bigint>;
  if (d.length > 0 && typeof d[0] === 'bigint') return Float64Array.from(d as ArrayLike<bigint>, (x) => Number(x));
  return d as ArrayLike<number>;
}

/** Compares two outputs: NaN equals NaN, infinities must match, else |a-b| <= atol + rtol*|b|. */
export function compare(got: HostTensor, want: HostTensor, rtol: number, atol: number): { maxAbsDiff: number; bad?: string } {
  if (got.dims.join(',') !== want.dims.join(',')) return { maxAbsDiff: Infinity, bad: `shape [${got.dims}] instead of [${want.dims}]` };
  if (got.type !== want.type) return { maxAbsDiff: Infinity, bad: `type ${got.type} instead of ${want.type}` };
  const a = values(got);
  const b = values(want);
  if (!a || !b) {
    const same = JSON.stringify(got.data) === JSON.stringify(want.data);
    return same ? { maxAbsDiff: 0 } : { maxAbsDiff: Infinity, bad: 'string values differ' };
  }
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (Number.isNaN(x) && Number.isNaN(y)) continue;
    if (x === y) continue;
    const d = Math.abs(x - y);
    if (!(d <= atol + rtol * Math.abs(y))) return { maxAbsDiff: Number.isNaN(d) ? Infinity : Math.max(max, d), bad: `element ${i} is ${x}, was ${y}` };
    max = Math.max(max, d);
  }
  return { maxAbsDiff: max };
}
