/**
 * bench:fusion — the transformer preset on the exporter-variant test models (test/models/transformers.ts).
 *
 * For every variant: the unfused model, `optimize --preset transformer` (target microsoft, the CLI
 * default) and the same with `--target generic`, each in an onnxruntime session with its full graph
 * optimization (`graphOptimizationLevel: 'all'`), 1 intra-op thread, no spinning. Latency at batch 1,
 * sequence 128 in interleaved rounds (median per session); outputs compared with the unfused model on
 * the same feed and on a padded batch of 2 (max |a - b| / max |a|). The ratio is the median of the
 * per-round ratios (see pairedRatio); the ms columns are each session's median. Target (issue 19 item 4): fused
 * latency at most 0.90x the unfused one, outputs within 1e-4 relative.
 *
 * Run: npm run bench:fusion [-- --runs 200 --only bert]
 * Writes benchmarks/results/fusion-transformer.{json,md}.
 */
import path from 'node:path';
import { writeFileAtomic } from '../core/files.js';
import type { Feed } from '../core/host-tensor.js';
import { cloneModel } from '../onnx/index.js';
import type { Model } from '../ir/ir.js';
import { optimize } from '../passes/manager.js';
import { parsePipeline, presetPipeline, retarget } from '../passes/pipeline.js';
import type { FusionTarget } from '../passes/fusion/transformer-target.js';
import { createSessionFromModel } from '../runtime/from-model.js';
import { measureLatency, percentile } from '../runtime/latency.js';
import type { Session } from '../runtime/session.js';
import { renderTable } from '../report/table.js';
import { ProgressBar } from '../core/progress.js';
import { TRANSFORMER_VARIANTS, transformerFeed } from '../test/models/transformers.js';

const TARGET_RATIO = 0.9;
const TARGET_REL = 1e-4;

interface Row {
  variant: string;
  target: FusionTarget;
  nodesBefore: number;
  nodesAfter: number;
  fused: Record<string, number>;
  unfusedMs: number;
  fusedMs: number;
  ratio: number;
  maxRel: number;
  ok: boolean;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

const SESSION = { graphOptimizationLevel: 'all' as const, intraOpNumThreads: 1, interOpNumThreads: 1, allowSpinning: false, logSeverityLevel: 3 as const };

async function outputs(s: Session, feed: Feed): Promise<Float32Array> {
  const r = await s.run(feed);
  return Object.values(r)[0]!.data as Float32Array;
}

function maxRel(a: Float32Array, b: Float32Array): number {
  let scale = 0;
  let worst = 0;
  for (const x of a) scale = Math.max(scale, Math.abs(x));
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return scale > 0 ? worst / scale : worst;
}

async function fuse(model: Model, target: FusionTarget): Promise<{ model: Model; fused: Record<string, number> }> {
  const m = cloneModel(model);
  const steps = retarget(parsePipeline(presetPipeline('transformer')), target);
  const report = await optimize(m, steps);
  const fused: Record<string, number> = {};
  for (const s of report.summary) if (s.pass.startsWith('fuse-') && Number(s.stats.fused ?? 0) > 0) fused[s.pass.replace(/^fuse-/, '')] = Number(s.stats.fused);
  return { model: m, fused };
}

/**
 * Median over rounds of fused / unfused time within the same round: the two runs of a round are
 * adjacent in time, so load from other processes mostly cancels (the machine this was written on
 * is shared by several jobs; medians of each side alone moved by 2x between runs).
 */
function pairedRatio(fused: readonly number[], unfused: readonly number[]): number {
  const r = fused.map((f, i) => f / unfused[i]!).sort((a, b) => a - b);
  return percentile(r, 50);
}

/** ok/missed on the default target; the generic target's result in parentheses. */
function verdict(r: Row): string {
  const v = r.ok ? 'ok' : 'missed';
  return r.target === 'microsoft' ? v : `(${v})`;
}

async function main(): Promise<void> {
  const runs = Number(arg('runs') ?? 150);
  const only = arg('only');
  const variants = TRANSFORMER_VARIANTS.filter((v) => !only || v.name.startsWith(only));
  const rows: Row[] = [];
  const bar = new ProgressBar({ label: 'bench:fusion', total: variants.length * runs });
  for (const v of variants) {
    const base = v.build();
    const fusedModels = [await fuse(base, 'microsoft'), await fuse(base, 'generic')];
    const sessions = [await createSessionFromModel(base, SESSION, 'unfused'), ...(await Promise.all(fusedModels.map((f, i) => createSessionFromModel(f.model, SESSION, i === 0 ? 'microsoft' : 'generic'))))];
    const feed = transformerFeed(v, 1, 128);
    const padded = transformerFeed(v, 2, 128, { padded: true, seed: 9 });
    const ref = [await outputs(sessions[0]!, feed), await outputs(sessions[0]!, padded)];
    const rels: number[] = [];
    for (const s of sessions.slice(1)) rels.push(Math.max(maxRel(ref[0]!, await outputs(s, feed)), maxRel(ref[1]!, await outputs(s, padded))));
    const lat = await measureLatency(sessions, [feed], { warmup: 10, runs, onRound: () => bar.tick() });
    const unfusedMs = lat.sessions[0]!.stats.p50;
    (['microsoft', 'generic'] as const).forEach((target, i) => {
      const fusedMs = lat.sessions[i + 1]!.stats.p50;
      const ratio = pairedRatio(lat.sessions[i + 1]!.samples, lat.sessions[0]!.samples);
      rows.push({ variant: v.name, target, nodesBefore: base.graph.nodes.length, nodesAfter: fusedModels[i]!.model.graph.nodes.length, fused: fusedModels[i]!.fused, unfusedMs, fusedMs, ratio, maxRel: rels[i]!, ok: ratio <= TARGET_RATIO && rels[i]! <= TARGET_REL });
    });
    for (const s of sessions) await s.dispose();
  }
  bar.done();
  const table = renderTable(
    ['variant', 'target', 'nodes', 'fused', 'unfused ms', 'fused ms', 'ratio', 'max rel err', 'target'],
    rows.map((r) => [r.variant, r.target, `${r.nodesBefore} -> ${r.nodesAfter}`, Object.entries(r.fused).map(([k, n]) => `${k} ${n}`).join(', '), r.unfusedMs.toFixed(3), r.fusedMs.toFixed(3), `${r.ratio.toFixed(3)}x`, r.maxRel.toExponential(1), verdict(r)]),
  );
  const head = `bench:fusion — batch 1, sequence 128, 1 thread, onnxruntime graphOptimizationLevel 'all' on both sides, ${runs} interleaved runs (median). Target: ratio <= ${TARGET_RATIO}, max rel err <= ${TARGET_REL} (judged on the default target, microsoft; generic in parentheses).`;
  process.stdout.write(`${head}\n${table}\n`);
  const out = path.resolve('benchmarks/results/fusion-transformer');
  writeFileAtomic(`${out}.json`, JSON.stringify({ runs, batch: 1, sequence: 128, threads: 1, rows }, null, 2) + '\n');
  writeFileAtomic(`${out}.md`, `${head}\n\n| variant | target | nodes | fused | unfused ms | fused ms | ratio | max rel err |\n|---|---|---|---|---|---|---|---|\n${rows.map((r) => `| ${r.variant} | ${r.target} | ${r.nodesBefore} -> ${r.nodesAfter} | ${Object.entries(r.fused).map(([k, n]) => `${k} ${n}`).join(', ')} | ${r.unfusedMs.toFixed(3)} | ${r.fusedMs.toFixed(3)} | ${r.ratio.toFixed(3)} | ${r.maxRel.toExponential(1)} |`).join('\n')}\n`);
}

void main();
