/**
 * Per-operator profiles from onnxruntime's own profiler: the session is created with profiling on
 * and a file prefix inside a fresh temporary folder, run on the inputs, then `endProfiling()` writes
 * a Chrome-trace JSON that is parsed into a table (op type, node name, total µs, calls, share of the
 * total) and deleted together with its folder.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inputError, internalError } from '../core/errors.js';
import { Feed } from '../core/host-tensor.js';
import type { ModelSource, OpProfileRow, OpTypeRow, ProfileReport, SessionOptions } from './runner-types.js';
import { Session } from './session.js';

export type { OpProfileRow, OpTypeRow, ProfileReport } from './runner-types.js';

interface TraceEvent {
  cat?: string;
  name?: string;
  dur?: number;
  args?: { op_name?: string; [k: string]: unknown };
}

/** Runs `feeds` (each `runs` times, default 1) with profiling on, and returns the per-op table. */
export async function profileModel(source: ModelSource, feeds: readonly Feed[], options: SessionOptions & { runs?: number; warmup?: number } = {}): Promise<ProfileReport> {
  const dir = await mkdtemp(join(tmpdir(), 'onnxforge-profile-'));
  try {
    const session = await Session.create(source, { ...options, enableProfiling: true, profileFilePrefix: join(dir, 'ort') });
    const runs = options.runs ?? 1;
    try {
      for (let r = 0; r < runs; r++) for (const f of feeds) await session.run(f);
      session.endProfiling();
    } finally {
      await session.dispose();
    }
    const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
    if (files.length === 0) throw internalError('PROFILE_NO_TRACE', `onnxruntime wrote no profile into ${dir}`);
    const trace = JSON.parse(await readFile(join(dir, files[0]!), 'utf8')) as unknown;
    return parseProfile(trace, runs * feeds.length);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Parses onnxruntime's Chrome-trace profile into per-node and per-op-type tables. */
export function parseProfile(trace: unknown, runs = 1): ProfileReport {
  if (!Array.isArray(trace)) throw inputError('PROFILE_BAD_TRACE', 'profile trace is not a JSON array of events');
  const byNode = new Map<string, OpProfileRow>();
  for (const ev of trace as TraceEvent[]) {
    if (!ev || ev.cat !== 'Node' || typeof ev.name !== 'string' || !ev.name.endsWith('_kernel_time')) continue;
    const node = ev.name.slice(0, -'_kernel_time'.length);
    const opType = typeof ev.args?.op_name === 'string' ? ev.args.op_name : '?';
    let row = byNode.get(node);
    if (!row) byNode.set(node, (row = { node, opType, totalUs: 0, calls: 0, minUs: Infinity, share: 0 }));
    const dur = typeof ev.dur === 'number' ? ev.dur : 0;
    row.totalUs += dur;
    row.minUs = Math.min(row.minUs!, dur);
    row.calls++;
  }
  const nodes = [...byNode.values()];
  const totalUs = nodes.reduce((a, r) => a + r.totalUs, 0);
  const byType = new Map<string, OpTypeRow>();
  for (const r of nodes) {
    r.share = totalUs > 0 ? r.totalUs / totalUs : 0;
    let t = byType.get(r.opType);
    if (!t) byType.set(r.opType, (t = { opType: r.opType, totalUs: 0, calls: 0, nodes: 0, share: 0 }));
    t.totalUs += r.totalUs;
    t.calls += r.calls;
    t.nodes++;
  }
  const opTypes = [...byType.values()];
  for (const t of opTypes) t.share = totalUs > 0 ? t.totalUs / totalUs : 0;
  nodes.sort((a, b) => b.totalUs - a.totalUs);
  opTypes.sort((a, b) => b.totalUs - a.totalUs);
  return { nodes, opTypes, totalUs, runs };
}
