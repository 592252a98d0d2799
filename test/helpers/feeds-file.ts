/** Feeds written as a JSON data file (the `--calibration file.json` / `json:PATH` format the data readers take). */
import { writeFileSync } from 'node:fs';
import type { Feed } from '../../core/host-tensor.js';

export function writeFeedsJson(path: string, feeds: readonly Feed[]): string {
  const json = feeds.map((f) => Object.fromEntries(Object.entries(f).map(([k, t]) => [k, { dims: t.dims, dtype: t.type, data: Array.from(t.data as ArrayLike<number | bigint>, Number) }])));
  writeFileSync(path, JSON.stringify(json));
  return path;
}
