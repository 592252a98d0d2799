/**
 * Preparation before quantization, resolved through the one registry: the `default` preset (lossless
 * cleanup), the `fuse` preset (Conv+BN and friends), then `upgrade-opset<to=13>` when the model is
 * older than opset 13 (QDQ with per-channel `axis` needs 13). Presets and passes that are not
 * registered are skipped and reported, except the opset upgrade, which is required for old models.
 *
 * Pipelines are the registry's textual form: `name<key=value;flag>,name2`. The registry is imported
 * lazily: it lists quantize-static itself, which imports this file.
 */
import { inputError } from '../../graph/errors.js';
import type { Model } from '../../graph/ir.js';
import type { OptionsSchema, Pass, PassContext } from '../pass.js';

export interface PrepareReport {
  ran: string[];
  skipped: string[];
  opsetBefore: number;
  opsetAfter: number;
}

/** Parses `name<k=v;flag>` items separated by commas (commas inside <> belong to the options). */
export function parsePipeline(text: string): Array<{ name: string; options: Record<string, string | true> }> {
  const items: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of text) {
    if (ch === '<') depth++;
    if (ch === '>') depth--;
    if (ch === ',' && depth === 0) {
      if (cur.trim()) items.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (cur.trim()) items.push(cur.trim());
  return items.map((it) => {
    const m = /^([\w-]+)(?:<(.*)>)?$/.exec(it);
    if (!m) throw inputError('PIPELINE_SYNTAX', `cannot parse pipeline item '${it}'`);
    const options: Record<string, string | true> = {};
    for (const kv of (m[2] ?? '').split(';').filter(Boolean)) {
      const eq = kv.indexOf('=');
      if (eq < 0) options[kv.trim()] = true;
      else options[kv.slice(0, eq).trim()] = kv.slice(eq + 1).trim();
    }
    return { name: m[1]!, options };
  });
}

/** Textual options -> typed values with the schema's defaults. */
export function resolveOptions(pass: Pass<any>, raw: Record<string, string | true>): Record<string, unknown> {
  const schema: OptionsSchema = pass.options;
  const out: Record<string, unknown> = {};
  for (const [k, spec] of Object.entries(schema)) if (spec.default !== undefined) out[k] = spec.default;
  for (const [k, v] of Object.entries(raw)) {
    const spec = schema[k];
    if (!spec) throw inputError('PASS_BAD_OPTION', `pass ${pass.name} has no option '${k}'`);
    if (spec.type === 'boolean') out[k] = v === true || v === 'true';
    else if (spec.type === 'number' || spec.type === 'integer') out[k] = Number(v);
    else if (spec.type === 'string[]') out[k] = String(v).split('|');
    else out[k] = v;
  }
  return out;
}

type Registry = typeof import('../registry.js');

async function runItems(reg: Registry, model: Model, text: string, ctx: PassContext, report: PrepareReport): Promise<void> {
  const { PRESETS, getPass } = reg;
  for (const item of parsePipeline(text)) {
    const preset = PRESETS[item.name];
    if (preset) {
      await runItems(reg, model, preset.pipeline, ctx, report);
      continue;
    }
    const pass = getPass(item.name);
    if (!pass) {
      report.skipped.push(item.name);
      continue;
    }
    const opts = resolveOptions(pass, item.options);
    // run to a fixed point (capped) unless the pass says it runs once
    for (let i = 0; i < (pass.idempotent === false ? 1 : 4); i++) {
      const r = await pass.run(model, opts, ctx);
      if (!r.changed) break;
    }
    report.ran.push(item.name);
  }
}

/** Runs `default`, `fuse` and the opset upgrade as available. */
export async function prepareForQuantization(model: Model, ctx: PassContext, opts: { presets?: string; minOpset?: number } = {}): Promise<PrepareReport> {
  const opsetBefore = model.opset('') ?? 1;
  const report: PrepareReport = { ran: [], skipped: [], opsetBefore, opsetAfter: opsetBefore };
  const minOpset = opts.minOpset ?? 13;
  const reg: Registry = await import('../registry.js');
  const { PRESETS, getPass } = reg;
  for (const preset of (opts.presets ?? 'default,fuse').split(',').filter(Boolean)) {
    if (!PRESETS[preset]) report.skipped.push(`preset ${preset}`);
    else await runItems(reg, model, PRESETS[preset]!.pipeline, ctx, report);
  }
  if ((model.opset('') ?? 1) < minOpset) {
    const up = getPass('upgrade-opset');
    if (!up) {
      throw inputError('QUANT_OPSET_TOO_OLD', `the model uses opset ${model.opset('')}; QDQ quantization needs opset ${minOpset} and the upgrade-opset pass is not available`);
    }
    await up.run(model, resolveOptions(up, { to: String(minOpset) }), ctx);
    report.ran.push(`upgrade-opset<to=${minOpset}>`);
    if ((model.opset('') ?? 1) < minOpset) throw inputError('QUANT_OPSET_TOO_OLD', `upgrade-opset left the model at opset ${model.opset('')}; QDQ needs ${minOpset}`);
  }
  report.opsetAfter = model.opset('') ?? 1;
  return report;
}
