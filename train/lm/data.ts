/**
 * The language model's corpus: TypeScript's own `lib.*.d.ts` declaration files (a dependency of this
 * repository), as bytes. Each file loses its license banner (the same 800 bytes at the top of every
 * file, which would otherwise be memorized) and the files are concatenated in name order.
 *
 * Split, fixed by file name: a file is held out for evaluation when the FNV-1a hash of its name is
 * 0 modulo 5, except the DOM and worker libraries (which repeat each other's declarations, so they all
 * stay in training). The eval split is never trained on; calibration windows come from the train split.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { inputError } from '../../core/errors.js';
import { Feed } from '../../core/host-tensor.js';
import { mulberry32 } from '../../data/generate.js';

export type LmSplit = 'train' | 'eval';

export interface LmCorpus {
  train: Uint8Array;
  eval: Uint8Array;
  trainFiles: string[];
  evalFiles: string[];
  /** sha256 of the file names and contents (part of the trained model's cache key). */
  digest: string;
  /** Where the files were read from. */
  dir: string;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (const c of Buffer.from(s, 'utf8')) h = Math.imul(h ^ c, 0x01000193) >>> 0;
  return h;
}

/** True when `file` (a base name) belongs to the eval split. */
export function isEvalFile(file: string): boolean {
  return !/dom|worker/.test(file) && fnv1a(file) % 5 === 0;
}

const BANNER = /^\/\*! \*{10,}[\s\S]*?\*{10,} \*\/\s*/;

/** The directory of TypeScript's lib files (resolved like an import, so it works from dist/ too). */
export function typescriptLibDir(): string {
  try {
    return join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'lib');
  } catch (e) {
    throw inputError('LM_NO_DATA', `the language-model corpus needs the typescript package (its lib/*.d.ts files): ${(e as Error).message}`);
  }
}

let cached: LmCorpus | undefined;

/** Reads (once per process) and splits the corpus. */
export function loadLmCorpus(dir = typescriptLibDir()): LmCorpus {
  if (cached && cached.dir === dir) return cached;
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => /^lib\..+\.d\.ts$/.test(f)).sort();
  } catch (e) {
    throw inputError('LM_NO_DATA', `cannot list ${dir}: ${(e as Error).message}`, { file: dir });
  }
  const hash = createHash('sha256');
  const parts: Record<LmSplit, Buffer[]> = { train: [], eval: [] };
  const names: Record<LmSplit, string[]> = { train: [], eval: [] };
  for (const f of files) {
    const text = readFileSync(join(dir, f), 'utf8').replace(BANNER, '');
    const bytes = Buffer.from(text, 'utf8');
    hash.update(f).update('\0').update(bytes);
    const split: LmSplit = isEvalFile(f) ? 'eval' : 'train';
    parts[split].push(bytes);
    names[split].push(f);
  }
  const train = new Uint8Array(Buffer.concat(parts.train));
  const ev = new Uint8Array(Buffer.concat(parts.eval));
  if (train.length < 100_000 || ev.length < 10_000) {
    throw inputError('LM_NO_DATA', `the language-model corpus in ${dir} is too small (train ${train.length} bytes, eval ${ev.length} bytes)`, { file: dir });
  }
  cached = { train, eval: ev, trainFiles: names.train, evalFiles: names.eval, digest: hash.digest('hex'), dir };
  return cached;
}

/** Start offsets of `count` windows of `length` bytes spread evenly over `bytes` (deterministic). */
export function evenWindows(total: number, count: number, length: number): number[] {
  if (total < length) throw inputError('LM_NO_DATA', `a split of ${total} bytes is shorter than one window of ${length}`);
  const span = total - length;
  if (count === 1) return [0];
  return Array.from({ length: count }, (_, i) => Math.floor((i * span) / (count - 1)));
}

/** `input_ids` int64 [rows, seq] from windows of `bytes` at `offsets` (shifted by `shift`). */
export function idsTensor(bytes: Uint8Array, offsets: readonly number[], seq: number, shift = 0): BigInt64Array {
  const out = new BigInt64Array(offsets.length * seq);
  offsets.forEach((o, r) => {
    for (let t = 0; t < seq; t++) out[r * seq + t] = BigInt(bytes[o + shift + t]!);
  });
  return out;
}

export interface CalibrationOptions {
  /** Number of feeds (default 32). */
  count?: number;
  /** Sequence length (default 128). */
  seq?: number;
  /** Rows per feed (default 1). */
  batch?: number;
  /** Seed of the window positions (default 1). */
  seed?: number;
}

/**
 * Calibration feeds for the language model: `{ input_ids: int64 [batch, seq] }` windows sampled
 * (seeded, reproducible) from the TRAIN split, never from the eval split the fidelity is judged on.
 */
export function languageModelCalibrationFeeds(options: CalibrationOptions = {}): Feed[] {
  const { count = 32, seq = 128, batch = 1, seed = 1 } = options;
  for (const [k, v] of Object.entries({ count, seq, batch })) {
    if (!Number.isInteger(v) || v < 1) throw inputError('LM_BAD_OPTION', `calibration ${k} must be a positive integer, got ${v}`);
  }
  const { train } = loadLmCorpus();
  const rand = mulberry32(seed);
  const feeds: Feed[] = [];
  for (let i = 0; i < count; i++) {
    const offsets = Array.from({ length: batch }, () => Math.floor(rand() * (train.length - seq)));
    feeds.push({ input_ids: { type: 'int64', dims: [batch, seq], data: idsTensor(train, offsets, seq) } });
  }
  return feeds;
}
