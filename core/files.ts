/**
 * Output files: the one place that creates a missing destination folder and writes text files
 * atomically (temp file in the destination folder, then rename), so a failure leaves the old content
 * or nothing. Models are written by graph/onnx's saveModel, which uses the same folder rule.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inputError } from './errors.js';

/**
 * Creates the folder that will hold `file` when it is missing (like `mkdir -p`). A path component that
 * exists but is not a folder is bad input (OUTPUT_BAD_LOCATION), named with the file.
 */
export function ensureParentDir(file: string): string {
  const dir = path.dirname(path.resolve(file));
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(dir);
  } catch {
    st = undefined;
  }
  if (st?.isDirectory()) return dir;
  if (st) throw inputError('OUTPUT_BAD_LOCATION', `${file}: ${dir} exists and is not a folder`, { file });
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const reason = code === 'ENOTDIR' || code === 'EEXIST' ? 'a part of the path is a file, not a folder' : (code ?? (e as Error).message);
    throw inputError('OUTPUT_BAD_LOCATION', `${file}: cannot create folder ${dir} (${reason})`, { file });
  }
  return dir;
}

/** Writes a text file atomically, creating its folder when missing. */
export function writeFileAtomic(file: string, text: string | Uint8Array): void {
  const dir = ensureParentDir(file);
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${Math.random().toString(16).slice(2)}`);
  try {
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
  } catch (e) {
    try {
      fs.unlinkSync(tmp);
    } catch {
      /* nothing to clean */
    }
    throw inputError('WRITE_FAILED', `${file}: could not write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file });
  }
}
