/**
 * Interrupted streaming runs (issue 21 item 4): a child process quantizing a synthetic LLM is killed
 * (SIGKILL) mid-run; nothing is left at the destination but the hidden work folder, `--resume`
 * continues from the last finished tensor and gives the same bytes as an uninterrupted run, a changed
 * input (modification time) starts over, and a run without `--resume` removes what the killed run left.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { workDirOf } from '../../onnx/stream.js';
import { streamInt4Workflow } from '../../workflows/stream-int4.js';
import { writeSyntheticLlm } from '../../benchmarks/scale-model.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
let dir: string;
let model: string;
/** ~130 MB float32, 38 weights: long enough to be killed after a few tensors. */
const shape = { d: 512, ff: 1536, vocab: 2048, layers: 6 };

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-scale-'));
  model = path.join(dir, 'llm.onnx');
  writeSyntheticLlm(model, shape);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Starts the streamed int4 workflow in a child and kills it once its journal has `after` finished tensors. */
function killMidRun(output: string, after: number): Promise<number> {
  const journal = path.join(workDirOf(output), 'journal.json');
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'benchmarks/scale-run.ts', 'int4', model, output], { cwd: root, stdio: 'ignore' });
    let seen = 0;
    const poll = setInterval(() => {
      try {
        seen = (JSON.parse(fs.readFileSync(journal, 'utf8')) as { done: number }).done;
      } catch {
        return;
      }
      if (seen >= after) {
        clearInterval(poll);
        p.kill('SIGKILL');
      }
    }, 2);
    p.on('exit', (code, signal) => {
      clearInterval(poll);
      if (signal !== 'SIGKILL') reject(new Error(`the child ended before it was killed (exit ${code}, ${seen} tensors)`));
      else resolve(seen);
    });
  });
}

const files = (d: string) => fs.readdirSync(d).filter((f) => !f.startsWith('.')).sort();

describe('resume', () => {
  it('killed mid-run: nothing at the destination; --resume finishes with the bytes of an uninterrupted run', async () => {
    const whole = path.join(dir, 'whole');
    const cut = path.join(dir, 'cut');
    fs.mkdirSync(whole);
    fs.mkdirSync(cut);
    const ref = await streamInt4Workflow({ model, output: path.join(whole, 'q.onnx') });
    expect(ref.write.resumed.tensors).toBe(0);

    const out = path.join(cut, 'q.onnx');
    const killedAt = await killMidRun(out, 3);
    expect(killedAt).toBeGreaterThanOrEqual(3);
    expect(files(cut)).toEqual([]);
    expect(fs.existsSync(workDirOf(out))).toBe(true);

    const r = await streamInt4Workflow({ model, output: out, resume: true });
    expect(r.write.resumed.tensors).toBeGreaterThanOrEqual(killedAt);
    expect(r.write.notes.join('\n')).toMatch(/resumed: \d+ tensors/);
    expect(fs.existsSync(workDirOf(out))).toBe(false);
    expect(files(cut)).toEqual(files(whole));
    for (const f of files(whole)) expect(Buffer.compare(fs.readFileSync(path.join(cut, f)), fs.readFileSync(path.join(whole, f))), f).toBe(0);
  }, 120_000);

  it('a changed input starts over (and says so); a run without --resume removes the leftovers', async () => {
    const out = path.join(dir, 'changed', 'q.onnx');
    fs.mkdirSync(path.dirname(out));
    await killMidRun(out, 2);
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(`${model}.data`, later, later);
    const r = await streamInt4Workflow({ model, output: out, resume: true });
    expect(r.write.resumed.tensors).toBe(0);
    expect(r.write.notes.join('\n')).toMatch(/changed since the interrupted run: started over/);

    const again = path.join(dir, 'fresh', 'q.onnx');
    fs.mkdirSync(path.dirname(again));
    await killMidRun(again, 2);
    expect(fs.existsSync(workDirOf(again))).toBe(true);
    const f = await streamInt4Workflow({ model, output: again });
    expect(f.write.resumed.tensors).toBe(0);
    expect(fs.existsSync(workDirOf(again))).toBe(false);
    expect(files(path.dirname(again))).toEqual(['q.onnx', 'q.onnx.data']);
  }, 120_000);
});
