/**
 * Command-line flags from a pass's option schema (`passes/pass.ts` OptionSpec), so that a command's
 * type, default, choices and description of a flag are the pass's own and the defaults live in one
 * place: the schema. A command declares `.option('round-to', passFlag(pruneChannels, 'roundTo'))` and
 * builds the pass options with `passOptionsFrom(pruneChannels, args, { roundTo: 'roundTo' })`; a
 * pipeline file naming the same pass gets the same defaults from `resolveOptions`.
 *
 * Mapping: number and integer -> yargs number; boolean -> boolean (so `--no-x` works); string ->
 * string; enum -> string with `choices`; string[] -> string with `array`. An empty list or empty
 * string default means "none" and is not shown as a yargs default (the schema still supplies it).
 * Range checks (min/max, whole numbers) stay with the pass, which reports them with its own codes.
 */
import type { Argv, Options } from 'yargs';
import { internalError } from '../core/errors.js';
import { OptionSpec, Pass, withSchemaDefaults } from '../passes/pass.js';

export interface FlagOverrides {
  /** Help text instead of the schema's description (e.g. to name the flag's mode). */
  describe?: string;
  alias?: string | string[];
  /**
   * Leave the yargs default unset: for a flag whose presence means something (a mode switch such as
   * `prune --channels R`) or that several passes share with different defaults. The schema default
   * still applies through {@link passOptionsFrom}; the help shows `defaultDescription` if given.
   */
  noDefault?: boolean;
  /** What the help prints as the default, when it is not the value itself. */
  defaultDescription?: string;
}

const isEmpty = (v: unknown) => v === undefined || v === '' || (Array.isArray(v) && v.length === 0);

/** The yargs option for one schema entry: type, default, choices and description. */
export function flagFromSpec(spec: OptionSpec, o: FlagOverrides = {}): Options {
  const out: Options = { describe: o.describe ?? spec.description };
  switch (spec.type) {
    case 'number':
    case 'integer':
      out.type = 'number';
      break;
    case 'boolean':
      out.type = 'boolean';
      break;
    case 'string':
      out.type = 'string';
      break;
    case 'enum':
      out.type = 'string';
      out.choices = [...(spec.values ?? [])];
      break;
    case 'string[]':
      out.type = 'string';
      out.array = true;
      break;
  }
  if (o.alias !== undefined) out.alias = o.alias;
  if (!o.noDefault && !isEmpty(spec.default)) out.default = Array.isArray(spec.default) ? [...(spec.default as unknown[])] : spec.default;
  if (o.defaultDescription !== undefined) out.defaultDescription = o.defaultDescription;
  return out;
}

function specOf(pass: Pass<any>, key: string): OptionSpec {
  const spec = Object.prototype.hasOwnProperty.call(pass.options, key) ? pass.options[key] : undefined;
  if (!spec) throw internalError('CLI_NO_PASS_OPTION', `pass ${pass.name} has no option ${key} (options: ${Object.keys(pass.options).join(', ')})`);
  return spec;
}

/** The yargs option for `pass.options[key]` (see {@link flagFromSpec}). */
export function passFlag(pass: Pass<any>, key: string, o: FlagOverrides = {}): Options {
  return flagFromSpec(specOf(pass, key), o);
}

/** The schema default of every option of `pass` (lists copied, so callers may change them). */
export function schemaDefaults<O extends Record<string, unknown>>(pass: Pass<O>): O {
  return withSchemaDefaults(pass.options, {}) as O;
}

/**
 * The pass options a command's parsed arguments give: `flags` maps an option key to the key of
 * `args` holding its flag's value (yargs' camelCase name). Options without a flag, or whose flag is
 * undefined, take the schema default, so the result is complete and equals what a pipeline file
 * with the same values resolves to.
 */
export function passOptionsFrom<O extends Record<string, unknown>>(pass: Pass<O>, args: object, flags: Partial<Record<keyof O & string, string>>): O {
  const out: Record<string, unknown> = schemaDefaults(pass);
  for (const [key, arg] of Object.entries(flags) as Array<[string, string]>) {
    specOf(pass, key);
    const v = (args as Record<string, unknown>)[arg];
    if (v !== undefined) out[key] = v;
  }
  return out as O;
}

/** One flag taken from a pass schema: the flag's name, the option key it sets, and help overrides. */
export type PassFlagRow<O> = readonly [flag: string, key: keyof O & string, overrides?: FlagOverrides];

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());

/** Declares every row of `rows` on `y` (see {@link passFlag}). */
export function addPassFlags<T>(y: Argv<T>, pass: Pass<any>, rows: readonly PassFlagRow<any>[]): Argv<T> {
  return rows.reduce((b, [flag, key, o]) => b.option(flag, passFlag(pass, key, o)) as Argv<T>, y);
}

/** The `flags` map {@link passOptionsFrom} takes for `rows`: option key -> yargs camelCase key. */
export function passFlagKeys<O>(rows: readonly PassFlagRow<O>[]): Partial<Record<keyof O & string, string>> {
  return Object.fromEntries(rows.map(([flag, key]) => [key, camel(flag)])) as Partial<Record<keyof O & string, string>>;
}
