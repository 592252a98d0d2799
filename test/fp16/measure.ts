/**
 * `npx tsx test/fp16/measure.ts [encoder|lm|all]`: the numbers of issue 19's fp16 target, on the CLI's
 * defaults and beside the other settings. For each variant (fp16 target cpu = the default, fp16
 * target any, bf16, q4f16 on both targets): file size vs fp32, output error vs fp32, non-finite
 * outputs (also on large-magnitude inputs for the encoder's embeddings: token ids over the whole
 * vocabulary, padded masks), and p50 latency at batch 1, sequence 128, 1 intra-op thread, all
 * sessions timed interleaved in one process. On the trained byte-level LM: bits per byte and
 * next-byte accuracy on its held-out split (the fidelity metric of the benchmark), ranges measured on
 * its calibration windows.
 */
import { toFloat64, type Feed } from '../../core/host-tensor.js';
import type { Model } from '../../ir/ir.js';
import { cloneModel, loadModel, serializeModel } from '../../onnx/index.js';
import { convertFloat16, type ConvertFloat16Options } from '../../passes/convert/convert-float16.js';
import { createPassContext } from '../../passes/manager.js';
import { quantizeInt4 } from '../../passes/quantize/quantize-int4.js';
import { measureLatency } from '../../runtime/latency.js';
import { compareTensors } from '../../runtime/metrics.js';
import { createSession, Session } from '../../runtime/session.js';
import { languageModelCalibrationFeeds, languageModelFidelity, trainedLanguageModel } from '../../train/lm/index.js';
import { transformerFeed, transformerVariant } from '../models/transformers.js';

interface Variant {
  name: string;
  make(m: Model, calibration?: Feed[]): Promise<Model>;
}

const fp16 = (o: ConvertFloat16Options) => async (m: Model, calibration?: Feed[]) => {
  const c = cloneModel(m);
  const r = await convertFloat16(c, { ...o, ...(calibration ? { calibration } : {}) }, createPassContext());
  console.error(`  ${JSON.stringify(o)}: ${r.halfNodes} half nodes, ${r.rewrite.castsAdded} Casts, kept ${JSON.stringify(r.keptByReason)}`);
  return c;
};
const q4f16 = (o: ConvertFloat16Options) => async (m: Model, calibration?: Feed[]) => {
  const c = cloneModel(m);
  const probe = calibration ?? [];
  await quantizeInt4(c, { calibration: calibration ?? [], probe: probe.slice(0, 4) }, {}, createPassContext());
  return fp16(o)(c, calibration);
};

const VARIANTS: Variant[] = [
  { name: 'fp16 (default: target cpu)', make: fp16({}) },
  { name: 'fp16 target any', make: fp16({ target: 'any' }) },
  { name: 'bf16 (target cpu)', make: fp16({ bf16: true }) },
  { name: 'q4f16 (target cpu)', make: q4f16({}) },
  { name: 'q4f16 target any', make: q4f16({ target: 'any' }) },
];

async function latencies(models: Uint8Array[], feeds: Feed[], runs: number): Promise<number[]> {
  const sessions: Session[] = [];
  try {
    for (const b of models) sessions.push(await createSession(b, { intraOpNumThreads: 1, allowSpinning: false }));
    const lat = await measureLatency(sessions, feeds, { runs, warmup: 5 });
    return lat.sessions.map((s) => s.stats.p50);
  } finally {
    for (const s of sessions) await s.dispose();
  }
}

function nonFinite(out: Feed): number {
  let n = 0;
  for (const t of Object.values(out)) for (const x of toFloat64(t)) if (!Number.isFinite(x)) n++;
  return n;
}

async function encoder(): Promise<void> {
  const v = transformerVariant('bert-ts17');
  const m = v.build();
  const fp32 = serializeModel(m);
  const feeds = [transformerFeed(v, 1, 128), transformerFeed(v, 1, 128, { seed: 3, padded: true })];
  const built: { name: string; bytes: Uint8Array }[] = [];
  for (const x of VARIANTS) built.push({ name: x.name, bytes: serializeModel(await x.make(m)) });
  const ref = await createSession(fp32);
  const rows: string[] = [];
  for (const b of built) {
    let s: Session;
    try {
      s = await createSession(b.bytes);
    } catch (e) {
      rows.push(`| ${b.name} | ${(b.bytes.length / fp32.length).toFixed(3)} | does not load: ${(e as Error).message.slice(0, 80)} |`);
      b.bytes = new Uint8Array(0);
      continue;
    }
    let worst = { sqnr: Infinity, cos: 1, max: 0 };
    let nf = 0;
    for (const f of feeds) {
      const a = await ref.run(f);
      const h = await s.run(f);
      nf += nonFinite(h);
      const e = compareTensors(h.last_hidden_state!, a.last_hidden_state!, 'last_hidden_state');
      worst = { sqnr: Math.min(worst.sqnr, e.sqnrDb), cos: Math.min(worst.cos, e.cosine), max: Math.max(worst.max, e.maxAbs) };
    }
    await s.dispose();
    rows.push(`| ${b.name} | ${(b.bytes.length / fp32.length).toFixed(3)} | SQNR ${worst.sqnr.toFixed(1)} dB, cosine ${worst.cos.toFixed(6)}, max abs ${worst.max.toPrecision(3)}, non-finite ${nf} |`);
  }
  await ref.dispose();
  const loadable = built.filter((b) => b.bytes.length);
  const lat = await latencies([fp32, ...loadable.map((b) => b.bytes)], [feeds[0]!], 30);
  console.log(`\nencoder bert-ts17 (hidden 128, 2 layers), batch 1, seq 128, 1 thread, p50 interleaved: fp32 ${lat[0]!.toFixed(2)} ms`);
  console.log('| variant | size vs fp32 | output vs fp32 |');
  console.log('|---|---|---|');
  for (const r of rows) console.log(r);
  loadable.forEach((b, i) => console.log(`latency ${b.name}: ${lat[i + 1]!.toFixed(2)} ms = ${(lat[i + 1]! / lat[0]!).toFixed(3)}x fp32`));
}

async function lm(): Promise<void> {
  const path = await trainedLanguageModel({ waitSeconds: 3600 });
  const m = await loadModel(path);
  const fp32 = serializeModel(m);
  const calibration = languageModelCalibrationFeeds({ count: 16, seq: 128, batch: 1, seed: 1 });
  const base = await languageModelFidelity(fp32);
  console.log(`\ntrained LM ${path}: fp32 bits/byte ${base.bitsPerByte.toFixed(5)}, next-byte accuracy ${base.nextByteAccuracy.toFixed(5)} (${base.tokens} bytes)`);
  console.log('| variant | size vs fp32 | bits/byte | change vs fp32 | next-byte acc | non-finite logits |');
  console.log('|---|---|---|---|---|---|');
  const built: { name: string; bytes: Uint8Array }[] = [];
  for (const x of VARIANTS) {
    const bytes = serializeModel(await x.make(m, calibration));
    let f;
    try {
      f = await languageModelFidelity(bytes);
    } catch (e) {
      console.log(`| ${x.name} | ${(bytes.length / fp32.length).toFixed(3)} | does not run: ${(e as Error).message.slice(0, 80)} | | | |`);
      continue;
    }
    built.push({ name: x.name, bytes });
    const s = await createSession(bytes);
    let nf = 0;
    for (const feed of calibration.slice(0, 4)) nf += nonFinite(await s.run(feed));
    await s.dispose();
    console.log(`| ${x.name} | ${(bytes.length / fp32.length).toFixed(3)} | ${f.bitsPerByte.toFixed(5)} | ${(((f.bitsPerByte - base.bitsPerByte) / base.bitsPerByte) * 100).toFixed(3)}% | ${f.nextByteAccuracy.toFixed(5)} | ${nf} |`);
  }
  for (const seq of [1, 128]) {
    const feed: Feed = { input_ids: { type: 'int64', dims: [1, seq], data: (calibration[0]!.input_ids!.data as BigInt64Array).slice(0, seq) } };
    const lat = await latencies([fp32, ...built.map((b) => b.bytes)], [feed], 30);
    console.log(`LM latency batch 1, seq ${seq}, 1 thread, p50 interleaved: fp32 ${lat[0]!.toFixed(3)} ms; ${built.map((b, i) => `${b.name} ${(lat[i + 1]! / lat[0]!).toFixed(3)}x`).join('; ')}`);
  }
}

const what = process.argv[2] ?? 'all';
if (what === 'encoder' || what === 'all') await encoder();
if (what === 'lm' || what === 'all') await lm();
