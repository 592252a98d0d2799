/** cli/schema-options: yargs flags from a pass's option schema, and pass options back from the parsed flags. */
import { describe, expect, it } from 'vitest';
import yargs from 'yargs';
import { flagFromSpec, passFlag, passOptionsFrom, schemaDefaults } from '../../cli/schema-options.js';
import { definePass } from '../../passes/pass.js';

const pass = definePass<{ ratio: number; steps: number; fast: boolean; name: string; mode: string; names: string[] }>({
  name: 'demo',
  description: 'a pass for the test',
  options: {
    ratio: { type: 'number', description: 'A ratio.', default: 0.25, min: 0, max: 1 },
    steps: { type: 'integer', description: 'Steps.', default: 3, min: 1 },
    fast: { type: 'boolean', description: 'Go fast.', default: true },
    name: { type: 'string', description: 'A name.', default: '' },
    mode: { type: 'enum', values: ['a', 'b'], description: 'A mode.', default: 'b' },
    names: { type: 'string[]', description: 'Names.', default: [] },
  },
  run: () => ({ changed: false }),
});

function parse(argv: string[]) {
  return yargs(argv)
    .option('ratio', passFlag(pass, 'ratio'))
    .option('steps', passFlag(pass, 'steps'))
    .option('fast', passFlag(pass, 'fast'))
    .option('name', passFlag(pass, 'name'))
    .option('mode', passFlag(pass, 'mode'))
    .option('names', passFlag(pass, 'names'))
    .exitProcess(false)
    .fail((msg) => {
      throw new Error(msg);
    })
    .parseSync();
}

describe('flags from a pass schema', () => {
  it('maps each option type to a yargs type with the schema default, choices and description', () => {
    expect(flagFromSpec(pass.options.ratio!)).toEqual({ type: 'number', default: 0.25, describe: 'A ratio.' });
    expect(flagFromSpec(pass.options.steps!)).toEqual({ type: 'number', default: 3, describe: 'Steps.' });
    expect(flagFromSpec(pass.options.fast!)).toEqual({ type: 'boolean', default: true, describe: 'Go fast.' });
    // empty string and empty list mean "none": no yargs default shown
    expect(flagFromSpec(pass.options.name!)).toEqual({ type: 'string', describe: 'A name.' });
    expect(flagFromSpec(pass.options.mode!)).toEqual({ type: 'string', choices: ['a', 'b'], default: 'b', describe: 'A mode.' });
    expect(flagFromSpec(pass.options.names!)).toEqual({ type: 'string', array: true, describe: 'Names.' });
    expect(passFlag(pass, 'ratio', { noDefault: true, describe: 'other', alias: 'r', defaultDescription: 'by mode' })).toEqual({ type: 'number', describe: 'other', alias: 'r', defaultDescription: 'by mode' });
    expect(() => passFlag(pass, 'nope')).toThrow(/demo has no option nope/);
  });

  it('parsed flags give the schema defaults, take what was typed, and enforce the choices', () => {
    const none = parse([]);
    expect(passOptionsFrom(pass, none, { ratio: 'ratio', steps: 'steps', fast: 'fast', name: 'name', mode: 'mode', names: 'names' })).toEqual(schemaDefaults(pass));
    expect(schemaDefaults(pass)).toEqual({ ratio: 0.25, steps: 3, fast: true, name: '', mode: 'b', names: [] });
    const some = parse(['--ratio', '0.5', '--no-fast', '--mode', 'a', '--names', 'x', 'y']);
    expect(passOptionsFrom(pass, some, { ratio: 'ratio', fast: 'fast', mode: 'mode', names: 'names' })).toEqual({ ratio: 0.5, steps: 3, fast: false, name: '', mode: 'a', names: ['x', 'y'] });
    expect(() => parse(['--mode', 'c'])).toThrow(/Choices: "a", "b"/);
    // a list default is copied: changing the result leaves the schema alone
    schemaDefaults(pass).names.push('z');
    expect(pass.options.names!.default).toEqual([]);
  });
});
