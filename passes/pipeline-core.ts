/**
 * Textual pipelines: `fold-constants,eliminate-dead` runs two passes; options go in angle brackets,
 * separated by `;`: `fold-constants<max-output-bytes=4096;no-lift>` (a bare key is `true`, `no-key` is
 * `false`; list options take `a|b|c`). Options are validated against the pass's schema with a sentence
 * naming the pass and the option; defaults fill the rest. Pipelines can also be built in code with
 * {@link stepIn}. This file resolves names through a {@link PassCatalog}; pipeline.ts binds it to the
 * registry (the browser build, `onnxforge/web`, to the passes that need no onnxruntime-node).
 */
import { inputError } from '../core/errors.js';
import type { OptionSpec, OptionsSchema, Pass } from './pass.js';
import type { PassCatalog } from './catalog.js';
import { GENERIC_OPSET, type FusionTarget } from './fusion/transformer-target.js';

export interface PipelineStep {
  pass: Pass<any>;
  /** Resolved options (defaults filled, validated). */
  options: Record<string, unknown>;
}

/** Builds a step in code from the passes of `catalog` (pipeline.ts's `step` uses the registry). */
export function stepIn(catalog: PassCatalog, pass: string | Pass<any>, options: Record<string, unknown> = {}): PipelineStep {
  const p = typeof pass === 'string' ? lookupPass(catalog, pass) : pass;
  return { pass: p, options: resolveOptions(p, options) };
}

/** The text form of a pipeline (options that differ from the defaults are written out). */
export function formatPipeline(steps: readonly PipelineStep[]): string {
  return steps
    .map((s) => {
      const opts = Object.entries(s.options).filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(s.pass.options[k]?.default));
      if (opts.length === 0) return s.pass.name;
      return `${s.pass.name}<${opts.map(([k, v]) => (v === true ? k : v === false ? `no-${k}` : `${k}=${Array.isArray(v) ? v.join('|') : String(v)}`)).join(';')}>`;
    })
    .join(',');
}

function lookupPass(catalog: PassCatalog, name: string, extra?: ReadonlyMap<string, Pass<any>>): Pass<any> {
  const p = extra?.get(name) ?? catalog.getPass(name);
  if (p) return p;
  const known = [...catalog.passNames(), ...(extra?.keys() ?? [])];
  const near = known.filter((k) => editDistance(k, name) <= 3).sort((a, b) => editDistance(a, name) - editDistance(b, name));
  throw inputError('PIPELINE_UNKNOWN_PASS', `There is no pass named '${name}'.${near.length ? ` Did you mean '${near[0]}'?` : ''} Known passes: ${known.join(', ') || '(none)'}.`, { pass: name });
}

/** Splits on commas outside `<...>`. */
function splitTop(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of text) {
    if (ch === '<') depth++;
    if (ch === '>') depth--;
    if (depth < 0) throw inputError('PIPELINE_SYNTAX', `The pipeline '${text}' has a '>' without a matching '<'.`);
    if (ch === ',' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (depth !== 0) throw inputError('PIPELINE_SYNTAX', `The pipeline '${text}' has a '<' without a matching '>'.`);
  parts.push(cur);
  return parts.map((p) => p.trim());
}

/**
 * Parses a textual pipeline over the passes and presets of `catalog` (pipeline.ts's `parsePipeline`
 * uses the registry). `extra` adds passes not in the catalog (custom passes in code). A preset name
 * prefixed with `@` (`@default`) expands to the preset's pipeline.
 */
export function parsePipelineIn(catalog: PassCatalog, text: string, extra?: ReadonlyMap<string, Pass<any>>, depth = 0): PipelineStep[] {
  if (text.trim() === '') throw inputError('PIPELINE_EMPTY', 'The pipeline is empty: name at least one pass.');
  const steps: PipelineStep[] = [];
  for (const part of splitTop(text)) {
    if (part === '') throw inputError('PIPELINE_SYNTAX', `The pipeline '${text}' has an empty entry (two commas in a row, or a trailing comma).`);
    if (part.startsWith('@')) {
      if (depth > 4) throw inputError('PIPELINE_SYNTAX', `Presets nest too deeply at '${part}'.`);
      steps.push(...parsePipelineIn(catalog, presetPipelineIn(catalog, part.slice(1)), extra, depth + 1));
      continue;
    }
    const m = /^([A-Za-z0-9_.-]+)\s*(?:<(.*)>)?$/s.exec(part);
    if (!m) throw inputError('PIPELINE_SYNTAX', `Cannot read '${part}' in the pipeline: write a pass name, optionally followed by <key=value;flag>.`);
    const pass = lookupPass(catalog, m[1]!, extra);
    const raw: Record<string, unknown> = {};
    if (m[2] !== undefined && m[2].trim() !== '') {
      for (const item of m[2].split(';')) {
        const t = item.trim();
        if (t === '') continue;
        const eq = t.indexOf('=');
        if (eq < 0) {
          if (t.startsWith('no-') && pass.options[t.slice(3)] && !pass.options[t]) raw[t.slice(3)] = false;
          else raw[t] = true;
        } else raw[t.slice(0, eq).trim()] = t.slice(eq + 1).trim();
      }
    }
    steps.push({ pass, options: resolveOptions(pass, raw) });
  }
  return steps;
}

/** The pipeline text of a preset of `catalog`, or an error listing its presets. */
export function presetPipelineIn(catalog: PassCatalog, name: string): string {
  const presets = catalog.presets;
  const p = Object.prototype.hasOwnProperty.call(presets, name) ? presets[name] : undefined;
  if (!p) throw inputError('PIPELINE_UNKNOWN_PRESET', `There is no preset named '${name}'. Known presets: ${Object.keys(presets).join(', ') || '(none)'}.`, { preset: name });
  return p.pipeline;
}

/** Validates options against a pass's schema (values may be strings from text) and fills defaults. */
export function resolveOptions(pass: Pass<any>, raw: Record<string, unknown>): Record<string, unknown> {
  const schema: OptionsSchema = pass.options;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(raw)) {
    if (!Object.prototype.hasOwnProperty.call(schema, key)) {
      const keys = Object.keys(schema);
      throw inputError('PIPELINE_BAD_OPTION', `Pass '${pass.name}' has no option '${key}'. ${keys.length ? `Its options are: ${keys.join(', ')}.` : 'It takes no options.'}`, { pass: pass.name, option: key });
    }
  }
  for (const [key, spec] of Object.entries(schema)) {
    const has = Object.prototype.hasOwnProperty.call(raw, key) && raw[key] !== undefined;
    out[key] = has ? coerce(pass.name, key, spec, raw[key]) : spec.default;
  }
  return out;
}

function coerce(pass: string, key: string, spec: OptionSpec, v: unknown): unknown {
  const bad = (what: string) => inputError('PIPELINE_BAD_OPTION', `Option '${key}' of pass '${pass}' must be ${what}, got ${JSON.stringify(v)}.`, { pass, option: key });
  switch (spec.type) {
    case 'boolean': {
      if (typeof v === 'boolean') return v;
      if (v === 'true' || v === '1' || v === 'yes') return true;
      if (v === 'false' || v === '0' || v === 'no') return false;
      throw bad('true or false');
    }
    case 'number':
    case 'integer': {
      const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
      if (!Number.isFinite(n)) throw bad(spec.type === 'integer' ? 'a whole number' : 'a number');
      if (spec.type === 'integer' && !Number.isInteger(n)) throw bad('a whole number');
      if (spec.min !== undefined && (spec.exclusiveMin ? n <= spec.min : n < spec.min)) throw bad(`${spec.exclusiveMin ? 'greater than' : 'at least'} ${spec.min}`);
      if (spec.max !== undefined && (spec.exclusiveMax ? n >= spec.max : n > spec.max)) throw bad(`${spec.exclusiveMax ? 'less than' : 'at most'} ${spec.max}`);
      return n;
    }
    case 'string':
      if (typeof v !== 'string') throw bad('a string');
      return v;
    case 'enum':
      if (typeof v !== 'string' || !spec.values?.includes(v)) throw bad(`one of ${(spec.values ?? []).map((x) => `'${x}'`).join(', ')}`);
      return v;
    case 'string[]':
      if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v;
      if (typeof v === 'string') return v.split('|').map((s) => s.trim()).filter((s) => s !== '');
      throw bad('a list of strings separated by |');
  }
  return v;
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

/**
 * `steps` with every pass that has a `target` option set to `target`; for target generic an
 * upgrade-opset step below opset 23 is raised to 23 (what the generic operators need). This is what
 * `optimize --target` applies to the chosen pipeline.
 */
export function retarget(steps: readonly PipelineStep[], target: FusionTarget): PipelineStep[] {
  return steps.map((s) => {
    if ('target' in s.pass.options) return { pass: s.pass, options: { ...s.options, target } };
    if (target === 'generic' && s.pass.name === 'upgrade-opset' && Number(s.options.to) < GENERIC_OPSET) return { pass: s.pass, options: { ...s.options, to: GENERIC_OPSET } };
    return s;
  });
}
