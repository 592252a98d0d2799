import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, ErrorCode, errors, exitCodeFor, checkError, inputError, internalError, isErrorCode, OnnxForgeError } from '../../core/errors.js';
import { findErrorSection, renderErrorTable, withErrorTable } from '../../tools/error-table.js';

const ROOT = join(import.meta.dirname, '..', '..');
const SOURCE_FOLDERS = ['core', 'ir', 'onnx', 'analysis', 'runtime', 'data', 'calibration', 'train', 'passes', 'report', 'workflows', 'cli', 'benchmarks'];
const codes = Object.keys(ERROR_CODES) as ErrorCode[];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

describe('error catalog', () => {
  it('is sorted by code, and every code is UPPER_SNAKE with a one-line meaning', () => {
    expect(codes).toEqual([...codes].sort());
    for (const code of codes) {
      expect(code).toMatch(/^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/);
      const { kind, meaning } = ERROR_CODES[code];
      expect(['input', 'check', 'internal']).toContain(kind);
      expect(meaning.length, code).toBeGreaterThan(10);
      expect(meaning, code).not.toMatch(/\n/);
    }
  });

  it('lists no code that the source no longer throws', () => {
    const text = SOURCE_FOLDERS.flatMap((f) => sourceFiles(join(ROOT, f)))
      .filter((f) => !f.endsWith(join('core', 'error-codes.ts')))
      .map((f) => readFileSync(f, 'utf8'))
      .join('\n');
    const unused = codes.filter((c) => !text.includes(`'${c}'`) && !text.includes(`"${c}"`));
    expect(unused).toEqual([]);
  });

  it('gives one factory per code, with the catalogued kind and exit code', () => {
    expect(Object.keys(errors).sort()).toEqual(codes);
    const e = errors.DATA_SYMBOLIC_DIM('input x has a symbolic dimension', { tensor: 'x' });
    expect(e).toBeInstanceOf(OnnxForgeError);
    expect([e.code, e.kind, e.message, e.details.tensor, exitCodeFor(e)]).toEqual(['DATA_SYMBOLIC_DIM', 'input', 'input x has a symbolic dimension', 'x', 2]);
    expect(exitCodeFor(errors.GATE_REGRESSION('latency +30%'))).toBe(1);
    expect(exitCodeFor(errors.PASS_FAILED('boom'))).toBe(70);
    expect(exitCodeFor(new Error('plain'))).toBe(70);
    for (const code of codes) expect(errors[code]('m').kind, code).toBe(ERROR_CODES[code].kind);
  });

  it('keeps the kind-named factories and the constructor default in line with the catalog', () => {
    expect(inputError('FILE_NOT_FOUND', 'x: no such file', { file: 'x' }).format()).toBe('error[FILE_NOT_FOUND] x: no such file');
    expect(checkError('VERIFY_DRIFT', 'drift').kind).toBe('check');
    expect(internalError('IR_REMOVE_USED', 'used').kind).toBe('internal');
    expect(new OnnxForgeError('QUANT_LOAD_FAILED', 'cannot load').kind).toBe('check');
    expect(isErrorCode('ONNX_TRUNCATED')).toBe(true);
    expect(isErrorCode('ONNX_TRUNCATE')).toBe(false);
  });

  it('is what the README error table shows (npm run docs:errors regenerates it)', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const at = findErrorSection(readme);
    expect(at, 'README.md has the error-codes marker comments').toBeDefined();
    const rows = readme.slice(at!.start, at!.end).split('\n').filter((l) => l.startsWith('| `'));
    expect(rows.map((r) => /^\| `([A-Z0-9_]+)`/.exec(r)![1])).toEqual(codes);
    expect(readme.slice(at!.start, at!.end).trim()).toBe(renderErrorTable());
    expect(withErrorTable(readme)).toBe(readme);
  });
});

/** Checked by `tsc`, never run: the factories refuse uncatalogued codes and codes of another kind. */
export function refusedByTheTypeChecker(): unknown[] {
  return [
    // @ts-expect-error not in the catalog (a typo)
    inputError('FILE_NOT_FOUNDD', 'm'),
    // @ts-expect-error a check code thrown as bad input
    inputError('GATE_REGRESSION', 'm'),
    // @ts-expect-error an input code thrown as a failed check
    checkError('FILE_NOT_FOUND', 'm'),
    // @ts-expect-error an input code thrown as an internal error
    internalError('USAGE', 'm'),
    // @ts-expect-error no factory for an uncatalogued code
    errors.NOT_A_CODE('m'),
  ];
}
