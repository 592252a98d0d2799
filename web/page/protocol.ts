/** Messages between the page (main.ts) and its worker (worker.ts). */

export type Mode = `preset:${string}` | 'weights' | 'int4' | 'fp16';

export type ToWorker =
  | { type: 'open'; file: File; limit: number }
  | { type: 'run'; mode: Mode; compareLimit: number }
  | { type: 'data'; files: File[] };

export interface CompareRow {
  what: string;
  original: string;
  result: string;
}

export type FromWorker =
  | { type: 'summary'; name: string; bytes: number; text: string; warnings: string[]; modes: Array<{ mode: Mode; label: string }> }
  | { type: 'needs-data'; name: string; files: string[] }
  | { type: 'progress'; value: number; label: string }
  | { type: 'result'; name: string; bytes: ArrayBuffer; before: number; after: number; label: string }
  | { type: 'compare'; rows: CompareRow[]; note?: string }
  | { type: 'error'; code?: string; message: string };

/** The page refuses files larger than this before reading them (override with ?limit=BYTES). */
export const DEFAULT_LIMIT = 1 << 30;
/** Both models are run with onnxruntime-web only up to this size (override with ?compare-limit=BYTES). */
export const DEFAULT_COMPARE_LIMIT = 64 << 20;

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}
