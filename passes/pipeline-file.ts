/**
 * Pipeline files (`onnxforge run pipeline.yaml|.json`): a checked-in description of a whole job —
 * input model, passes with options, calibration/evaluation/verification data with preprocessing, a
 * metric, outputs, reports and budgets. Validated against a schema; every error names the field
 * (`passes[2].quantize-static.methd`) and suggests the closest valid name.
 *
 * Paths in the file are relative to the file's folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { inputError } from '../core/errors.js';
import type { Pass } from './pass.js';
import { parsePipeline, PipelineStep, presetPipeline, resolveOptions } from './pipeline.js';
import { getPass, PASSES } from './registry.js';

export interface DataSpecEntry {
  /** A data spec as `--inputs` takes it (folder, file list, random[:count[:seed]], ...). */
  inputs: string;
  preprocess?: string;
  limit?: number;
}

export interface PipelineBudgets {
  /** Output size / input size must be at most this. */
  maxSizeRatio?: number;
  /** Output p50 / input p50 (interleaved) must be at most this. */
  maxLatencyRatio?: number;
  /** The metric on `data.eval` must be at least this. */
  minAccuracy?: number;
  /** Input metric minus output metric must be at most this. */
  maxAccuracyDrop?: number;
}

export interface PipelineFile {
  /** Absolute path of the file (paths inside resolve against its folder). */
  file: string;
  version: 1;
  model: string;
  output: string;
  steps: PipelineStep[];
  /** The pipeline in text form (for reports). */
  pipelineText: string;
  data: { calibration?: DataSpecEntry; eval?: DataSpecEntry; verify?: DataSpecEntry & { rtol?: number; atol?: number } };
  metric?: string;
  shapes: Record<string, number[]>;
  write: { externalData?: boolean | string; threshold?: number; inlineData?: boolean };
  reports: string[];
  budgets: PipelineBudgets;
  latency: { runs: number; warmup: number; threads: number; skip: boolean };
  /**
   * The backend the model is for (default 'node'): 'wasm' gives the passes onnxruntime-web's WASM
   * runner (the deploy preset's latency-aware quantization profiles there) and the job measures
   * latency and accuracy there.
   */
  target: 'node' | 'wasm';
}

const TOP_KEYS = ['version', 'model', 'output', 'passes', 'data', 'metric', 'shapes', 'write', 'reports', 'budgets', 'latency', 'target'] as const;
const DATA_KEYS = ['calibration', 'eval', 'verify'] as const;
const DATA_ENTRY_KEYS = ['inputs', 'preprocess', 'limit', 'rtol', 'atol'] as const;
const WRITE_KEYS = ['external-data', 'threshold', 'inline-data'] as const;
const BUDGET_KEYS = ['max-size-ratio', 'max-latency-ratio', 'min-accuracy', 'max-accuracy-drop'] as const;
const LATENCY_KEYS = ['runs', 'warmup', 'threads', 'skip'] as const;

export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

/** "Did you mean 'x'?" for the closest name within a small edit distance. */
export function suggest(name: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestD = Infinity;
  const n = name.toLowerCase();
  for (const k of known) {
    const l = k.toLowerCase();
    // a truncated or extended name (max-size for max-size-ratio) counts as close
    const d = l.startsWith(n) || n.startsWith(l) ? 1 : editDistance(n, l);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 3)) ? ` Did you mean '${best}'?` : '';
}

class Validator {
  constructor(readonly file: string) {}

  fail(field: string, message: string): never {
    throw inputError('PIPELINE_FILE_INVALID', `${this.file}: ${field}: ${message}`, { file: this.file, field });
  }

  object(x: unknown, field: string): Record<string, unknown> {
    if (typeof x !== 'object' || x === null || Array.isArray(x)) this.fail(field, `must be a mapping (key: value), got ${describe(x)}`);
    return x as Record<string, unknown>;
  }

  keys(o: Record<string, unknown>, allowed: readonly string[], field: string): void {
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k)) this.fail(field ? `${field}.${k}` : k, `unknown field.${suggest(k, allowed)} Valid fields: ${allowed.join(', ')}.`);
    }
  }

  string(x: unknown, field: string): string {
    if (typeof x !== 'string' || x === '') this.fail(field, `must be a non-empty string, got ${describe(x)}`);
    return x as string;
  }

  number(x: unknown, field: string, min = -Infinity, max = Infinity): number {
    if (typeof x !== 'number' || !Number.isFinite(x)) this.fail(field, `must be a number, got ${describe(x)}`);
    if ((x as number) < min || (x as number) > max) this.fail(field, `must be between ${min} and ${max}, got ${x}`);
    return x as number;
  }

  bool(x: unknown, field: string): boolean {
    if (typeof x !== 'boolean') this.fail(field, `must be true or false, got ${describe(x)}`);
    return x as boolean;
  }
}

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'a list';
  if (typeof x === 'object') return 'a mapping';
  return `${typeof x} ${JSON.stringify(x)}`;
}

/** Options from a file may be written in kebab-case or camelCase: map them to the pass's keys. */
function normalizeOptionKeys(pass: Pass<any>, raw: Record<string, unknown>, field: string, v: Validator): Record<string, unknown> {
  const norm = (k: string) => k.replace(/[-_]/g, '').toLowerCase();
  const schemaKeys = Object.keys(pass.options);
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(raw)) {
    const match = schemaKeys.find((s) => norm(s) === norm(k));
    if (!match) v.fail(`${field}.${k}`, `pass '${pass.name}' has no option '${k}'.${suggest(k, schemaKeys)}${schemaKeys.length ? ` Its options: ${schemaKeys.join(', ')}.` : ' It takes no options.'}`);
    out[match!] = Array.isArray(val) ? val.map(String) : val;
  }
  return out;
}

/** The passes entry as the user wrote it, in pipeline text form (presets as `@name`). */
function describeSteps(x: unknown): string {
  if (typeof x === 'string') return x;
  if (!Array.isArray(x)) return '';
  return x
    .map((item) => {
      if (typeof item === 'string') return item;
      if (item && typeof item === 'object') {
        const [k, val] = Object.entries(item as Record<string, unknown>)[0] ?? ['?', undefined];
        return k === 'preset' ? `@${String(val)}` : k;
      }
      return '?';
    })
    .join(',');
}

function parseSteps(x: unknown, v: Validator): PipelineStep[] {
  if (typeof x === 'string') return wrapText(x, 'passes', v);
  if (!Array.isArray(x) || x.length === 0) v.fail('passes', 'must be a non-empty list of passes (or a pipeline string)');
  const steps: PipelineStep[] = [];
  (x as unknown[]).forEach((item, i) => {
    const field = `passes[${i}]`;
    if (typeof item === 'string') {
      steps.push(...wrapText(item, field, v));
      return;
    }
    const o = v.object(item, field);
    const keys = Object.keys(o);
    if (keys.length !== 1) v.fail(field, `must have exactly one key (a pass name, or 'preset'), got ${keys.length ? keys.join(', ') : 'none'}`);
    const name = keys[0]!;
    if (name === 'preset') {
      const preset = v.string(o.preset, `${field}.preset`);
      steps.push(...wrapText(`@${preset}`, `${field}.preset`, v));
      return;
    }
    const pass = getPass(name);
    if (!pass) v.fail(`${field}.${name}`, `there is no pass named '${name}'.${suggest(name, [...PASSES.keys(), 'preset'])}`);
    const opts = o[name] === null || o[name] === undefined ? {} : v.object(o[name], `${field}.${name}`);
    const raw = normalizeOptionKeys(pass!, opts, `${field}.${name}`, v);
    try {
      steps.push({ pass: pass!, options: resolveOptions(pass!, raw) });
    } catch (e) {
      v.fail(`${field}.${name}`, (e as Error).message);
    }
  });
  return steps;
}

function wrapText(text: string, field: string, v: Validator): PipelineStep[] {
  try {
    if (text.startsWith('@')) presetPipeline(text.slice(1));
    return parsePipeline(text);
  } catch (e) {
    return v.fail(field, (e as Error).message);
  }
}

function dataEntry(x: unknown, field: string, v: Validator, base: string, withTolerances: boolean): DataSpecEntry & { rtol?: number; atol?: number } {
  if (typeof x === 'string') return { inputs: resolveSpec(x, base) };
  const o = v.object(x, field);
  v.keys(o, withTolerances ? DATA_ENTRY_KEYS : DATA_ENTRY_KEYS.filter((k) => k !== 'rtol' && k !== 'atol'), field);
  const e: DataSpecEntry & { rtol?: number; atol?: number } = { inputs: resolveSpec(v.string(o.inputs, `${field}.inputs`), base) };
  if (o.preprocess !== undefined) e.preprocess = path.resolve(base, v.string(o.preprocess, `${field}.preprocess`));
  if (o.limit !== undefined) e.limit = v.number(o.limit, `${field}.limit`, 1);
  if (o.rtol !== undefined) e.rtol = v.number(o.rtol, `${field}.rtol`, 0);
  if (o.atol !== undefined) e.atol = v.number(o.atol, `${field}.atol`, 0);
  return e;
}

/** Data specs that name files resolve against the pipeline file's folder; `random:...` stays as is. */
function resolveSpec(spec: string, base: string): string {
  if (/^random(:|$)/.test(spec)) return spec;
  const m = /^(npy|pb|json|images):(.+)$/.exec(spec);
  if (m) return `${m[1]}:${path.resolve(base, m[2]!)}`;
  return path.resolve(base, spec);
}

/** Parses and validates a pipeline file's text. */
export function parsePipelineFile(text: string, file: string): PipelineFile {
  const v = new Validator(file);
  let doc: unknown;
  try {
    doc = file.toLowerCase().endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw inputError('PIPELINE_FILE_SYNTAX', `${file}: cannot parse: ${(e as Error).message.split('\n')[0]}`, { file });
  }
  const o = v.object(doc, '(top level)');
  v.keys(o, TOP_KEYS, '');
  const version = o.version ?? 1;
  if (version !== 1) v.fail('version', `this onnxforge reads pipeline files of version 1, got ${JSON.stringify(version)}`);
  const base = path.dirname(path.resolve(file));
  if (o.model === undefined) v.fail('model', 'is required: the input .onnx file');
  if (o.output === undefined) v.fail('output', 'is required: where to write the optimized model');
  if (o.passes === undefined) v.fail('passes', 'is required: a list of passes or presets');
  const steps = parseSteps(o.passes, v);
  const data: PipelineFile['data'] = {};
  if (o.data !== undefined) {
    const d = v.object(o.data, 'data');
    v.keys(d, DATA_KEYS, 'data');
    for (const k of DATA_KEYS) if (d[k] !== undefined) data[k] = dataEntry(d[k], `data.${k}`, v, base, k === 'verify');
  }
  const shapes: Record<string, number[]> = {};
  if (o.shapes !== undefined) {
    const s = v.object(o.shapes, 'shapes');
    for (const [k, dims] of Object.entries(s)) {
      if (!Array.isArray(dims) || dims.some((x) => !Number.isInteger(x) || (x as number) < 0)) v.fail(`shapes.${k}`, 'must be a list of non-negative integers, e.g. [1, 3, 224, 224]');
      shapes[k] = dims as number[];
    }
  }
  const write: PipelineFile['write'] = {};
  if (o.write !== undefined) {
    const w = v.object(o.write, 'write');
    v.keys(w, WRITE_KEYS, 'write');
    if (w['external-data'] !== undefined) {
      const e = w['external-data'];
      if (typeof e !== 'boolean' && typeof e !== 'string') v.fail('write.external-data', 'must be true, false or a file name');
      write.externalData = e as boolean | string;
    }
    if (w.threshold !== undefined) write.threshold = v.number(w.threshold, 'write.threshold', 0);
    if (w['inline-data'] !== undefined) write.inlineData = v.bool(w['inline-data'], 'write.inline-data');
    if (write.externalData && write.inlineData) v.fail('write', 'external-data and inline-data cannot both be set');
  }
  let reports: string[] = [];
  if (o.reports !== undefined) {
    const r = typeof o.reports === 'string' ? [o.reports] : o.reports;
    if (!Array.isArray(r)) v.fail('reports', 'must be a file name or a list of file names (.json, .md, .html)');
    reports = (r as unknown[]).map((x, i) => {
      const f = v.string(x, `reports[${i}]`);
      if (!/\.(json|md|html?)$/i.test(f)) v.fail(`reports[${i}]`, `'${f}' must end in .json, .md or .html`);
      return path.resolve(base, f);
    });
  }
  const budgets: PipelineBudgets = {};
  if (o.budgets !== undefined) {
    const b = v.object(o.budgets, 'budgets');
    v.keys(b, BUDGET_KEYS, 'budgets');
    if (b['max-size-ratio'] !== undefined) budgets.maxSizeRatio = v.number(b['max-size-ratio'], 'budgets.max-size-ratio', 0);
    if (b['max-latency-ratio'] !== undefined) budgets.maxLatencyRatio = v.number(b['max-latency-ratio'], 'budgets.max-latency-ratio', 0);
    if (b['min-accuracy'] !== undefined) budgets.minAccuracy = v.number(b['min-accuracy'], 'budgets.min-accuracy');
    if (b['max-accuracy-drop'] !== undefined) budgets.maxAccuracyDrop = v.number(b['max-accuracy-drop'], 'budgets.max-accuracy-drop');
  }
  const latency = { runs: 30, warmup: 5, threads: 1, skip: false };
  if (o.latency !== undefined) {
    const l = v.object(o.latency, 'latency');
    v.keys(l, LATENCY_KEYS, 'latency');
    if (l.runs !== undefined) latency.runs = v.number(l.runs, 'latency.runs', 1, 100000);
    if (l.warmup !== undefined) latency.warmup = v.number(l.warmup, 'latency.warmup', 0, 10000);
    if (l.threads !== undefined) latency.threads = v.number(l.threads, 'latency.threads', 0, 256);
    if (l.skip !== undefined) latency.skip = v.bool(l.skip, 'latency.skip');
  }
  const needsEval = budgets.minAccuracy !== undefined || budgets.maxAccuracyDrop !== undefined;
  if (needsEval && (!data.eval || o.metric === undefined)) v.fail('budgets', 'accuracy budgets need data.eval and metric');
  if (budgets.maxLatencyRatio !== undefined && latency.skip) v.fail('budgets.max-latency-ratio', 'cannot be checked with latency.skip: true');
  if (steps.some((s) => s.pass.name === 'quantize-static') && !data.calibration) v.fail('data.calibration', "is required by the 'quantize-static' pass");
  const pf: PipelineFile = {
    file: path.resolve(file),
    version: 1,
    model: path.resolve(base, v.string(o.model, 'model')),
    output: path.resolve(base, v.string(o.output, 'output')),
    steps,
    pipelineText: describeSteps(o.passes),
    data,
    shapes,
    write,
    reports,
    budgets,
    latency,
    target: 'node',
  };
  if (o.target !== undefined) {
    const t = v.string(o.target, 'target');
    if (t !== 'node' && t !== 'wasm') v.fail('target', `must be node or wasm, got '${t}'`);
    pf.target = t as 'node' | 'wasm';
  }
  if (o.metric !== undefined) {
    const m = v.string(o.metric, 'metric');
    const hash = m.lastIndexOf('#');
    pf.metric = hash > 0 ? `${path.resolve(base, m.slice(0, hash))}${m.slice(hash)}` : path.resolve(base, m);
  }
  return pf;
}

/** Reads and validates a pipeline file. */
export function readPipelineFile(file: string): PipelineFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw inputError('FILE_NOT_FOUND', `${file}: no such pipeline file`, { file });
  }
  return parsePipelineFile(text, file);
}

/** The commented YAML starter `onnxforge init` writes. */
export function starterPipeline(model = 'model.onnx'): string {
  const stem = model.replace(/\.onnx$/i, '');
  return `# onnxforge pipeline (run it with: npx onnxforge run ${'pipeline.yaml'})
# Paths are relative to this file. Every field is documented in the README ("Pipeline files").
version: 1

# The model to optimize, and where to write the result (written atomically, only if every step passes).
model: ${model}
output: ${stem}.int8.onnx

# Passes run in order; a preset expands to its passes. List them with: npx onnxforge optimize --help
#   - preset: default        lossless cleanup and float-exact fusions (never changes the opset)
#   - preset: fuse           fusions that need a newer opset (upgrades it)
#   - fold-constants         a single pass with its default options
#   - quantize-static: { method: minmax, per-channel: true, reduce-range: false }
passes:
  - preset: default
  - quantize-static:
      method: minmax

# Data, in the same spec as --inputs: a folder of images/.npy/.npz/.pb/.json files, a .txt list of
# files, or random[:count[:seed]]. Images need a preprocessing file (see benchmarks/prep/*.json).
data:
  calibration:
    inputs: calib/
    preprocess: prep.json
  # eval:
  #   inputs: dev/
  #   preprocess: prep.json
  # verify: { inputs: "random:4", rtol: 0.001, atol: 0.00001 }

# A metric module for data.eval: a JS/TS module exporting one function (outputs, label) => number.
# metric: ./metric.js

# Sizes for symbolic input dims, when inputs are generated.
# shapes:
#   x: [1, 3, 224, 224]

# write: { external-data: false, threshold: 1024, inline-data: false }

# Reports: .json (data), .md (for a pull request), .html (charts, one self-contained file).
reports:
  - report.json
  - report.html

# Budgets make the run fail (exit 1, nothing written) when the result is not good enough.
budgets:
  max-size-ratio: 0.5        # output size / input size
  # max-latency-ratio: 1.02  # output p50 / input p50, timed interleaved
  # min-accuracy: 0.95       # metric on data.eval
  # max-accuracy-drop: 0.01  # original metric - optimized metric

latency:
  runs: 30
  threads: 1
`;
}
