/**
 * The codec fuzzer's command line.
 *
 *   npx tsx test/fuzz/cli.ts [--seed N] [--cases N] [--start K] [--timeout-ms MS] [--json]
 *   npx tsx test/fuzz/cli.ts --seed 1234 --case 77        # reproduce one case, with its mutations
 *
 * `FUZZ_CASES` and `FUZZ_SEED` set the defaults (1,000 cases, seed 1). Cases run in a child process;
 * the parent is a watchdog: a case that takes longer than the per-case time limit is recorded as a
 * hang, the child is killed and a new one continues with the next case. Exit code 0 when every case
 * either succeeded or was rejected with an OnnxForgeError and left nothing behind; 1 otherwise. Every
 * finding prints the one command that reproduces it.
 */
import { fork, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CaseOutcome, describeCase, runCase, setupEnv } from './harness.js';

interface Args {
  seed: number;
  cases: number;
  start: number;
  only?: number;
  timeoutMs: number;
  json: boolean;
  child: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    seed: Number(process.env.FUZZ_SEED ?? 1),
    cases: Number(process.env.FUZZ_CASES ?? 1000),
    start: 0,
    timeoutMs: Number(process.env.FUZZ_TIMEOUT_MS ?? 10_000),
    json: false,
    child: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = () => {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${k} needs a non-negative integer`);
      return n;
    };
    if (k === '--seed') a.seed = v();
    else if (k === '--cases') a.cases = v();
    else if (k === '--start') a.start = v();
    else if (k === '--case') a.only = v();
    else if (k === '--timeout-ms') a.timeoutMs = v();
    else if (k === '--json') a.json = true;
    else if (k === '--child') a.child = true;
    else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

type ChildMsg = { type: 'start'; caseNo: number } | { type: 'done'; caseNo: number; outcome: CaseOutcome } | { type: 'end' };

/** Child: runs cases [start, end) and reports each one. */
function child(a: Args): void {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-fuzz-'));
  const send = (m: ChildMsg) => process.send!(m);
  try {
    const env = setupEnv(work);
    for (let c = a.start; c < a.cases; c++) {
      send({ type: 'start', caseNo: c });
      send({ type: 'done', caseNo: c, outcome: runCase(env, a.seed, c) });
    }
    send({ type: 'end' });
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  process.disconnect?.();
}

interface Finding {
  caseNo: number;
  what: string;
  detail: string;
}

interface Summary {
  seed: number;
  cases: number;
  ok: number;
  rejected: number;
  findings: Finding[];
  hangs: number;
  codes: Record<string, number>;
  slowestMs: number;
  seconds: number;
}

function reproduce(seed: number, caseNo: number): string {
  return `npx tsx test/fuzz/cli.ts --seed ${seed} --case ${caseNo}`;
}

/** Parent: runs all cases through children, with a per-case watchdog. */
async function parent(a: Args): Promise<Summary> {
  const t0 = performance.now();
  const s: Summary = { seed: a.seed, cases: 0, ok: 0, rejected: 0, findings: [], hangs: 0, codes: {}, slowestMs: 0, seconds: 0 };
  const self = fileURLToPath(import.meta.url);
  let next = a.start;
  while (next < a.cases) {
    next = await new Promise<number>((resolve) => {
      let current = next;
      let timer: NodeJS.Timeout | undefined;
      let finished = false;
      const cp: ChildProcess = fork(self, ['--child', '--seed', String(a.seed), '--start', String(next), '--cases', String(a.cases)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          s.hangs++;
          s.cases++;
          s.findings.push({ caseNo: current, what: 'hang', detail: `no result within ${a.timeoutMs} ms` });
          finished = true;
          cp.kill('SIGKILL');
          resolve(current + 1);
        }, a.timeoutMs);
      };
      cp.on('message', (m: ChildMsg) => {
        if (m.type === 'start') {
          current = m.caseNo;
          arm();
        } else if (m.type === 'done') {
          clearTimeout(timer);
          s.cases++;
          s.slowestMs = Math.max(s.slowestMs, m.outcome.ms);
          if (m.outcome.kind === 'ok') s.ok++;
          else if (m.outcome.kind === 'rejected') {
            s.rejected++;
            s.codes[m.outcome.code] = (s.codes[m.outcome.code] ?? 0) + 1;
          } else s.findings.push({ caseNo: m.caseNo, what: m.outcome.what, detail: m.outcome.detail });
          current = m.caseNo + 1;
          if (!a.json && s.cases % 1000 === 0) process.stderr.write(`  ${s.cases} cases, ${s.findings.length} findings\n`);
        } else if (m.type === 'end') {
          clearTimeout(timer);
          finished = true;
          resolve(a.cases);
        }
      });
      cp.on('exit', (code, signal) => {
        clearTimeout(timer);
        if (finished) return;
        // the child died inside a case (a crash the JS runtime could not catch)
        s.cases++;
        s.findings.push({ caseNo: current, what: 'child process died', detail: `exit ${code ?? ''} ${signal ?? ''}` });
        finished = true;
        resolve(current + 1);
      });
    });
  }
  s.seconds = (performance.now() - t0) / 1000;
  return s;
}

async function cli(): Promise<number> {
  const a = parseArgs(process.argv.slice(2));
  if (a.child) {
    child(a);
    return 0;
  }
  if (a.only !== undefined) {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-fuzz-'));
    try {
      const env = setupEnv(work);
      const d = describeCase(env, a.seed, a.only);
      process.stdout.write(`case ${a.only} (seed ${a.seed}): base ${d.base}, save ${JSON.stringify(d.save)}\n${d.ops.map((o) => `  ${o}`).join('\n')}\n`);
      const outcome = runCase(env, a.seed, a.only);
      process.stdout.write(`${JSON.stringify(outcome, null, 2)}\n`);
      return outcome.kind === 'finding' ? 1 : 0;
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  }
  const s = await parent(a);
  if (a.json) process.stdout.write(`${JSON.stringify(s)}\n`);
  else {
    process.stdout.write(
      `fuzz: seed ${s.seed}, ${s.cases} cases in ${s.seconds.toFixed(1)} s: ${s.ok} saved, ${s.rejected} rejected with an OnnxForgeError, ${s.findings.length} findings (${s.hangs} hangs); slowest case ${s.slowestMs.toFixed(0)} ms\n`,
    );
    const codes = Object.entries(s.codes).sort((x, y) => y[1] - x[1]);
    process.stdout.write(`rejection codes: ${codes.map(([c, n]) => `${c} ${n}`).join(', ')}\n`);
  }
  for (const f of s.findings.slice(0, 50)) {
    process.stderr.write(`FINDING case ${f.caseNo}: ${f.what}\n  reproduce: ${reproduce(s.seed, f.caseNo)}\n  ${f.detail.split('\n').slice(0, 6).join('\n  ')}\n`);
  }
  return s.findings.length === 0 && s.cases === a.cases - a.start ? 0 : 1;
}

cli().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 2;
  },
);
