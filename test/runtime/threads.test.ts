/**
 * runtime/threads.ts: a process that started its helper threads exits on its own when its script
 * ends, whether the threads were still starting, up and idle, or had run a job (a started thread
 * once held a CLI run that never used it open for good).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const fixture = fileURLToPath(new URL('./threads-exit-fixture.ts', import.meta.url));

describe('helper threads', () => {
  for (const [mode, out] of [['start', /end of script \(start\)/], ['ready', /ready true[\s\S]*end of script/], ['job', /job 0,2[\s\S]*end of script/]] as const) {
    it(`a process that ${mode === 'start' ? 'started them without waiting' : mode === 'ready' ? 'waited until they were up' : 'ran a job in one'} exits on its own`, () => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', fixture, mode], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ONNXFORGE_THREADS: '1' } });
      expect(r.signal, `timed out: ${r.stdout} ${r.stderr}`).toBeNull();
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(out);
    }, 90_000);
  }
});
