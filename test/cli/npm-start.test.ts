/**
 * `npm start` on a fresh clone: the script in package.json, run as written (a child process through the
 * real binary), in a temporary copy of the files it reads, where the output folder `out/` does not exist
 * yet. It must exit 0 and write the model and its three reports, and the model must load and pass the
 * checker.
 */
import { execSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkModel } from '../../ir/checker.js';
import { loadModelSync } from '../../onnx/index.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-start-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('npm start on a fresh copy', () => {
  it('creates out/ and writes the deployed model and its reports (exit 0)', () => {
    // dist/ is built by `npm ci` (the prepare script); without it the binary says NOT_BUILT
    expect(fs.existsSync(path.join(REPO, 'dist/cli/main.js')), 'dist/ is missing: run npm run build').toBe(true);
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    const script = pkg.scripts.start!;
    fs.cpSync(path.join(REPO, 'bin'), path.join(tmp, 'bin'), { recursive: true });
    fs.cpSync(path.join(REPO, 'benchmarks/deploy'), path.join(tmp, 'benchmarks/deploy'), { recursive: true });
    fs.cpSync(path.join(REPO, 'benchmarks/prep'), path.join(tmp, 'benchmarks/prep'), { recursive: true });
    fs.copyFileSync(path.join(REPO, 'package.json'), path.join(tmp, 'package.json'));
    fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(tmp, 'node_modules'));
    fs.symlinkSync(path.join(REPO, 'dist'), path.join(tmp, 'dist'));
    expect(fs.existsSync(path.join(tmp, 'out'))).toBe(false);

    let stdout = '';
    try {
      stdout = execSync(script, { cwd: tmp, encoding: 'utf8', env: { ...process.env, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
    } catch (e) {
      const err = e as { status: number; stderr: string; stdout: string };
      throw new Error(`npm start's job exited ${err.status}: ${err.stderr || err.stdout}`);
    }
    for (const f of ['cls.deploy.onnx', 'cls.deploy.report.json', 'cls.deploy.report.md', 'cls.deploy.report.html']) {
      expect(fs.existsSync(path.join(tmp, 'out', f)), f).toBe(true);
    }
    expect(stdout).toContain('wrote ');
    const report = JSON.parse(fs.readFileSync(path.join(tmp, 'out/cls.deploy.report.json'), 'utf8')) as { schema: string; budgets: { metric: string; verdict: string }[] };
    expect(report.schema).toBe('onnxforge.report/1');
    expect(report.budgets.map((b) => b.metric).sort()).toEqual(['accuracy drop', 'size ratio']);
    expect(report.budgets.every((b) => b.verdict === 'pass')).toBe(true);
    const model = loadModelSync(path.join(tmp, 'out/cls.deploy.onnx'));
    expect(checkModel(model)).toEqual([]);
    // only what the job writes appears: no temp files left beside the outputs
    expect(fs.readdirSync(path.join(tmp, 'out')).filter((f) => f.startsWith('.'))).toEqual([]);
  }, 600_000);
});
