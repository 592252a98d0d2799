/**
 * bench:fusion — the transformer preset on the exporter-variant test models (test/models/transformers.ts).
 *
 * For every variant: the unfused model, `optimize --preset transformer` (target microsoft, the CLI
 * default) and the same with `--target generic`, each in an onnxruntime session with its full graph
 * optimization (`graphOptimizationLevel: 'all'`), 1 intra-op thread, no spinning, batch 1, sequence 128.
 *
 * - Ratio: trials of the CI gate's timer (runtime/timer.ts ratioTrial): fresh fused/unfused session pairs
 *   timed interleaved by CPU time (one thread), each trial's ratio the fastest fused slot over the fastest
 *   unfused one; trials repeat (adaptiveEstimate's stopping rule: the lowest third stable within 2%, or the
 *   time limit). The judged ratio is the median of all trial ratios, not the gate's lowest-third estimate:
 *   picking the lowest of noisy ratios would favour the fused side. The machine this runs on is shared by
 *   several jobs (load averages of 10-15 on 2 cores); the spread column is the interquartile range of the
 *   trial ratios over their median.
 * - Outputs: the fused models against the unfused one on the same feed and on a padded batch of 2
 *   (max |a - b| / max |a|).
 * - GEMM share: the fraction of the unfused model's onnxruntime kernel time (its own profiler, fastest
 *   call per node) spent in the MatMuls with constant weights (Q/K/V/output projections, MLP, LM head).
 *   Every fused form still runs those products (com.microsoft.Attention as one packed [H, 3H] GEMM), so
 *   even a fusion that made everything else free could not bring the ratio below this share.
 * - Sizes: the test models (hidden 128, 4 heads, 2 layers, vocab 512: per-operator overhead matters) and
 *   base-size ones (hidden 768, 12 heads, MLP 3072 as BERT-base/GPT-2-small; 2 layers, vocab 512 so that
 *   a 50k-entry LM head, which fusion does not touch, does not dilute the ratio further).
 *
 * Target (issue 19 item 4): fused latency at most 0.90x the unfused one, outputs within 1e-4 relative.
 *
 * Run: npm run bench:fusion [-- --seconds 30 --only bert --size small|base]
 * Writes benchmarks/results/fusion-transformer.{json,md}.
 */
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { writeFileAtomic } from '../core/files.js';
import type { Feed } from '../core/host-tensor.js';
import { cloneModel, loadModelSync, serializeModel } from '../onnx/index.js';
import { constantOf, type Model } from '../ir/ir.js';
import { optimize } from '../passes/manager.js';
import { parsePipeline, presetPipeline, retarget } from '../passes/pipeline.js';
import type { FusionTarget } from '../passes/fusion/transformer-target.js';
import { createSessionFromModel } from '../runtime/from-model.js';
import { profileModel } from '../runtime/profile.js';
import type { Session } from '../runtime/session.js';
import { adaptiveEstimate, median, percentile, ratioTrial, type RatioTrial } from '../runtime/timer.js';
import { renderTable } from '../report/table.js';
import { TRANSFORMER_VARIANTS, transformerFeed, type TransformerConfig, type TransformerVariant } from '../test/models/transformers.js';

const TARGET_RATIO = 0.9;
const TARGET_REL = 1e-4;
const BASE_SIZE: Partial<TransformerConfig> = { hidden: 768, heads: 12, ffn: 3072 };
/** One variant per family at base size (each of its sessions runs ~40x longer than the small ones). */
const BASE_VARIANTS = ['bert-ts17', 'gpt2-ts17', 'llama-ts17'];

interface Row {
  variant: string;
  size: 'small' | 'base';
  target: FusionTarget;
  nodesBefore: number;
  nodesAfter: number;
  fused: Record<string, number>;
  /** Median over trials of the fastest slot, CPU ms. */
  unfusedMs: number;
  fusedMs: number;
  ratio: number;
  /** (p75 - p25) / p50 of the trial ratios. */
  spread: number;
  /** The gate's estimate (median of the lowest third of the trial ratios), for reference. */
  floorRatio: number;
  trials: number;
  stable: boolean;
  /** CPU time / wall time while timing (1 = the timing thread always had a core). */
  cpuOverWall: number;
  gemmShare: number;
  /** Nodes after onnxruntime's own 'all' optimization: of the unfused model, of the fused one. */
  ortNodes: [number, number];
  /** Operators onnxruntime's 'all' level wrote into the unfused model itself (not in the input), with counts. */
  ortFusedUnfused: Record<string, number>;
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

/** Share of the unfused model's kernel time (fastest call per node) in MatMuls with constant weights. */
async function gemmShare(model: Model, bytes: Uint8Array, feed: Feed, runs: number): Promise<number> {
  const gemms = new Set(model.graph.nodes.filter((n) => n.opType === 'MatMul' && constantOf(n.input(1))).map((n) => n.name));
  const p = await profileModel(bytes, [feed], { ...SESSION, runs });
  let g = 0;
  let all = 0;
  for (const r of p.nodes) {
    const us = r.minUs ?? r.totalUs / Math.max(1, r.calls);
    all += us;
    if (gemms.has(r.node)) g += us;
  }
  return all > 0 ? g / all : NaN;
}

/** Node count of the model onnxruntime runs after its 'all' optimization, and the op types it made that `model` lacks. */
async function ortView(model: Model, dir: string, tag: string): Promise<{ nodes: number; made: Record<string, number> }> {
  const file = path.join(dir, `${tag}.onnx`);
  const s = await createSessionFromModel(model, { ...SESSION, optimizedModelFilePath: file }, tag);
  await s.dispose();
  const opt = loadModelSync(file);
  const had = new Set(model.graph.nodes.map((n) => n.opType));
  const made: Record<string, number> = {};
  for (const n of opt.graph.nodes) if (!had.has(n.opType)) made[n.opType] = (made[n.opType] ?? 0) + 1;
  return { nodes: opt.graph.nodes.length, made };
}

/** ok/missed on the default target; the generic target's result in parentheses. */
function verdict(r: Row): string {
  const v = r.ok ? 'ok' : 'missed';
  return r.target === 'microsoft' ? v : `(${v})`;
}

async function measure(v: TransformerVariant, size: Row['size'], seconds: number): Promise<Row[]> {
  const base = v.build(size === 'base' ? BASE_SIZE : {});
  const baseBytes = serializeModel(base);
  const fusedModels = [await fuse(base, 'microsoft'), await fuse(base, 'generic')];
  const feed = transformerFeed(v, 1, 128);
  const padded = transformerFeed(v, 2, 128, { padded: true, seed: 9 });
  const sessions = [await createSessionFromModel(base, SESSION, 'unfused'), ...(await Promise.all(fusedModels.map((f, i) => createSessionFromModel(f.model, SESSION, i === 0 ? 'microsoft' : 'generic'))))];
  const ref = [await outputs(sessions[0]!, feed), await outputs(sessions[0]!, padded)];
  const rels: number[] = [];
  for (const s of sessions.slice(1)) rels.push(Math.max(maxRel(ref[0]!, await outputs(s, feed)), maxRel(ref[1]!, await outputs(s, padded))));
  for (const s of sessions) await s.dispose();
  const share = await gemmShare(base, baseBytes, feed, size === 'base' ? 8 : 30);
  const dir = mkdtempSync(path.join(tmpdir(), 'onnxforge-bench-fusion-'));
  const ort = [await ortView(base, dir, 'unfused'), ...(await Promise.all(fusedModels.map((f, i) => ortView(f.model, dir, `fused${i}`))))];
  rmSync(dir, { recursive: true, force: true });
  const rows: Row[] = [];
  for (const [i, target] of (['microsoft', 'generic'] as const).entries()) {
    const bytes = serializeModel(fusedModels[i]!.model);
    const trials: RatioTrial[] = [];
    const e = await adaptiveEstimate(
      async () => {
        const t = await ratioTrial({ source: bytes, feed, name: target }, { source: baseBytes, feed, name: 'unfused' }, { rounds: size === 'base' ? 10 : 30 });
        trials.push(t);
        return t.ratio;
      },
      { maxSeconds: size === 'base' ? seconds * 2 : seconds, tolerance: 0.02, minTrials: 9 },
    );
    const sorted = [...e.trials].sort((a, b) => a - b);
    const cpu = trials.reduce((a, t) => a + t.contention.cpuMs, 0);
    const wall = trials.reduce((a, t) => a + t.contention.wallMs, 0);
    const row: Row = {
      variant: v.name,
      size,
      target,
      nodesBefore: base.graph.nodes.length,
      nodesAfter: fusedModels[i]!.model.graph.nodes.length,
      fused: fusedModels[i]!.fused,
      unfusedMs: median(trials.map((t) => t.bMinMs)),
      fusedMs: median(trials.map((t) => t.aMinMs)),
      ratio: median(e.trials),
      spread: (percentile(sorted, 75) - percentile(sorted, 25)) / median(e.trials),
      floorRatio: e.value,
      trials: e.trials.length,
      stable: e.stable,
      cpuOverWall: wall > 0 ? cpu / wall : 1,
      gemmShare: share,
      ortNodes: [ort[0]!.nodes, ort[i + 1]!.nodes],
      ortFusedUnfused: ort[0]!.made,
      maxRel: rels[i]!,
      ok: median(e.trials) <= TARGET_RATIO && rels[i]! <= TARGET_REL,
    };
    rows.push(row);
    process.stderr.write(`${row.variant} ${size} ${target}: ratio ${row.ratio.toFixed(3)} (spread ${(row.spread * 100).toFixed(1)}%, ${row.trials} trials, gate estimate ${row.floorRatio.toFixed(3)}), GEMM share ${row.gemmShare.toFixed(2)}\n`);
  }
  return rows;
}

const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
const span = (xs: number[], f: (x: number) => string) => (xs.length ? `${f(Math.min(...xs))}-${f(Math.max(...xs))}` : 'n/a');

/** The measured reasons behind the verdicts (a paragraph under the table). */
function explain(rows: Row[]): string {
  const ms = rows.filter((r) => r.target === 'microsoft');
  const by = (size: Row['size']) => ms.filter((r) => r.size === size);
  const made = new Map<string, number>();
  for (const r of ms) for (const op of Object.keys(r.ortFusedUnfused)) made.set(op, (made.get(op) ?? 0) + 1);
  const base = by('base');
  const small = by('small');
  return [
    `Why: onnxruntime's own 'all' level already rewrites the unfused models (operators it wrote: ${[...made.keys()].sort().join(', ')}), so what the preset adds is the attention core (head split/merge, QK^T, mask, Softmax, PV), rotary embeddings and fewer, larger kernels.`,
    base.length
      ? `At base size the MatMuls with constant weights take ${span(base.map((r) => r.gemmShare), pct)} of the unfused kernel time; every fused form runs the same products, so even a fusion that made everything else free could not go below that share, and the measured ratios are ${span(base.map((r) => r.ratio), (x) => x.toFixed(3))}: the 0.90 target cannot be reached by graph fusion at realistic sizes on this runtime.`
      : '',
    small.length ? `On the small test models (hidden 128) the share is ${span(small.map((r) => r.gemmShare), pct)} and the fused ratios are ${span(small.map((r) => r.ratio), (x) => x.toFixed(3))}.` : '',
  ]
    .filter(Boolean)
    .join(' ');
}

const fmtFused = (r: Row) => Object.entries(r.fused).map(([k, n]) => `${k} ${n}`).join(', ');

async function main(): Promise<void> {
  const seconds = Number(arg('seconds') ?? 30);
  const only = arg('only');
  const sizes = (arg('size') ? [arg('size')] : ['small', 'base']) as Array<Row['size']>;
  const load0 = loadavg()[0]!;
  const rows: Row[] = [];
  for (const size of sizes) {
    for (const v of TRANSFORMER_VARIANTS.filter((x) => (!only || x.name.startsWith(only)) && (size === 'small' || BASE_VARIANTS.includes(x.name)))) rows.push(...(await measure(v, size, seconds)));
  }
  const load1 = loadavg()[0]!;
  const cells = (r: Row) => [r.variant, r.size, r.target, `${r.nodesBefore} -> ${r.nodesAfter}`, fmtFused(r), r.unfusedMs.toFixed(3), r.fusedMs.toFixed(3), `${r.ratio.toFixed(3)}`, `${(r.spread * 100).toFixed(1)}% / ${r.trials}`, r.gemmShare.toFixed(2), `${r.ortNodes[0]} -> ${r.ortNodes[1]}`, r.maxRel.toExponential(1), verdict(r)];
  const header = ['variant', 'size', 'target', 'nodes', 'fused', 'unfused ms', 'fused ms', 'ratio', 'spread / trials', 'GEMM share', 'ORT nodes', 'max rel err', 'target'];
  const met = rows.filter((r) => r.target === 'microsoft' && r.ok).length;
  const total = rows.filter((r) => r.target === 'microsoft').length;
  const head =
    `bench:fusion — batch 1, sequence 128, 1 thread, onnxruntime graphOptimizationLevel 'all' on both sides. Ratio: fused/unfused CPU time, median over trials (each trial: fresh sessions timed interleaved, fastest slot of each; spread: interquartile range of the trial ratios / median). ` +
    `Target: ratio <= ${TARGET_RATIO}, max rel err <= ${TARGET_REL} (judged on the default target, microsoft; generic in parentheses): met on ${met} of ${total}. ` +
    `GEMM share: fraction of the unfused model's kernel time in MatMuls with constant weights, which every fused form still runs (a floor for the ratio). ` +
    `Load average (1 min) ${load0.toFixed(1)} at the start, ${load1.toFixed(1)} at the end, on 2 cores.`;
  const why = explain(rows);
  process.stdout.write(`${head}\n${renderTable(header, rows.map(cells))}\n\n${why}\n`);
  const out = path.resolve('benchmarks/results/fusion-transformer');
  writeFileAtomic(`${out}.json`, JSON.stringify({ batch: 1, sequence: 128, threads: 1, seconds, loadAverage: [load0, load1], baseSize: BASE_SIZE, rows }, null, 2) + '\n');
  writeFileAtomic(`${out}.md`, `${head}\n\n| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|\n${rows.map((r) => `| ${cells(r).join(' | ')} |`).join('\n')}\n\n${why}\n`);
}

void main();
