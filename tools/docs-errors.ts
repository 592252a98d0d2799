/**
 * `npm run docs:errors`: rewrites the README's error table from the catalog (core/error-codes.ts).
 * With `--check` it only reports whether the README is up to date (exit 1 when it is not).
 */

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../core/files.js';
import { withErrorTable } from './error-table.js';

const readmePath = fileURLToPath(new URL('../README.md', import.meta.url));
const before = readFileSync(readmePath, 'utf8');
const after = withErrorTable(before);
if (process.argv.includes('--check')) {
  if (after !== before) {
    console.error('README.md: the error table differs from core/error-codes.ts; run npm run docs:errors');
    process.exit(1);
  }
  console.log('README.md: the error table matches the catalog');
} else if (after === before) {
  console.log('README.md: the error table is up to date');
} else {
  writeFileAtomic(readmePath, after);
  console.log('README.md: error table rewritten from core/error-codes.ts');
}
