/**
 * Issue 19 item 6, int4 targets, measured on the CLI's defaults (`npx tsx test/quantize-int4/measure.ts
 * [--lm]`): size ratio of `quantize --mode int4` to fp32, latency at batch 1 for sequence 1 and 128
 * (1 thread, interleaved, p50) for the written model and for each MatMulNBits accuracy_level, quantize
 * wall time beside one fp32 pass over the calibration set, and with --lm the trained byte-level LM's
 * bits per byte (default method and RTN beside it). Prints one JSON line per model. (Single-input
 * decoder test model only: the calibration folder holds one input_ids .npy per sample.)
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Attribute } from '../../ir/ir.js';
import { loadModel, saveModel, serializeModel } from '../../onnx/index.js';
import { measureLatency } from '../../runtime/latency.js';
import { Session } from '../../runtime/session.js';
import type { Feed } from '../../core/host-tensor.js';
import { main } from '../../cli/main.js';
import { transformerFeed, transformerVariant } from '../models/transformers.js';

const dir = mkdtempSync(join(tmpdir(), 'int4-measure-'));

function npyInt64(path: string, dims: number[], data: BigInt64Array): void {
  let header = `{'descr': '<i8', 'fortran_order': False, 'shape': (${dims.join(', ')}), }`;
  while ((10 + header.length + 1) % 64 !== 0) header += ' ';
  header += '\n';
  const head = Buffer.alloc(10);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(head);
  head.writeUInt16LE(header.length, 8);
  writeFileSync(path, Buffer.concat([head, Buffer.from(header, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

async function cli(argv: string[]): Promise<number> {
  const t0 = performance.now();
  const code = await main(argv);
  if (code !== 0) throw new Error(`onnxforge ${argv.join(' ')} exited ${code}`);
  return performance.now() - t0;
}

async function latencies(paths: Record<string, string | Uint8Array>, feed: Feed, runs: number): Promise<Record<string, number>> {
  const names = Object.keys(paths);
  const sessions = await Promise.all(names.map((n) => Session.create(paths[n]!, { intraOpNumThreads: 1, allowSpinning: false }, n)));
  try {
    const lat = await measureLatency(sessions, [feed], { runs, warmup: 5 });
    return Object.fromEntries(names.map((n, i) => [n, lat.sessions[i]!.stats.p50]));
  } finally {
    for (const s of sessions) await s.dispose();
  }
}

/** The written model with every MatMulNBits at `level`. */
async function withLevel(path: string, level: number): Promise<Uint8Array> {
  const m = await loadModel(path);
  for (const n of m.graph.nodes) if (n.opType === 'MatMulNBits') n.setAttr(Attribute.int('accuracy_level', level));
  return serializeModel(m);
}

async function measure(name: string, fp32Path: string, calibDir: string, feedOf: (seq: number) => Feed, extra: (q4: string) => Promise<Record<string, unknown>>): Promise<void> {
  const q4 = join(dir, `${name}_q4.onnx`);
  const reportPath = join(dir, `${name}_q4.json`);
  const quantizeMs = await cli(['quantize', fp32Path, '-o', q4, '--mode', 'int4', '--calibration', calibDir, '--report', reportPath, '--json', '--latency-runs', '3']);
  // one fp32 pass over the calibration set, with load (the cost yardstick)
  const t0 = performance.now();
  const s = await Session.create(fp32Path, { intraOpNumThreads: 1 });
  const { collectSamples } = await import('../../data/index.js');
  for (const x of await collectSamples(calibDir, s.inputs)) await s.run(x.feed);
  await s.dispose();
  const fp32PassMs = performance.now() - t0;
  const rep = JSON.parse((await import('node:fs')).readFileSync(reportPath, 'utf8'));
  const lat: Record<string, Record<string, number>> = {};
  for (const seq of [1, 128]) {
    lat[`seq${seq}`] = await latencies({ fp32: fp32Path, q4, level0: await withLevel(q4, 0), level1: await withLevel(q4, 1), level4: await withLevel(q4, 4) }, feedOf(seq), 60);
  }
  const out = {
    model: name,
    sizeRatio: rep.size.ratio,
    fp32Bytes: rep.size.fp32Bytes,
    q4Bytes: rep.size.bytes,
    method: rep.int4.method,
    accuracyLevelChosen: rep.int4.accuracyLevel.chosen,
    accuracyLevelMeasured: rep.int4.accuracyLevel.measured,
    kernels: rep.int4.kernels.map((k: { shape: string; weights: number; chosen: unknown; reason: string }) => `${k.shape} x${k.weights}: ${k.chosen} (${k.reason})`),
    fusion: rep.fusion?.reason,
    blockSize: rep.int4.blockSize,
    keepInt8: rep.int4.keepInt8.map((k: { tensor: string; gain: number; kept: boolean }) => `${k.tensor}:${k.kept ? 'kept' : 'no'}:${(100 * k.gain).toFixed(1)}%`),
    latencyMs: lat,
    latencyRatio: Object.fromEntries(Object.entries(lat).map(([k, v]) => [k, v.q4! / v.fp32!])),
    quantizeMs,
    phasesMs: rep.int4.ms,
    fp32CalibrationPassMs: fp32PassMs,
    ...(await extra(q4)),
  };
  console.log(JSON.stringify(out));
}

const useLm = process.argv.includes('--lm');
for (const vname of useLm ? [] : ['gpt2-ts17']) {
  const v = transformerVariant(vname);
  const cfg = { hidden: 256, ffn: 1024, layers: 4, heads: 4, vocab: 2048, maxPositions: 256 };
  const path = join(dir, `${vname}.onnx`);
  await saveModel(v.build(cfg), path);
  const calib = join(dir, `${vname}-calib`);
  mkdirSync(calib);
  for (let i = 0; i < 16; i++) {
    const f = transformerFeed(v, 1, 128, { seed: i + 1, vocab: cfg.vocab });
    const t = f.input_ids!;
    npyInt64(join(calib, `s${i}.npy`), t.dims, t.data as BigInt64Array);
  }
  await measure(vname, path, calib, (seq) => transformerFeed(v, 1, seq, { seed: 999, vocab: cfg.vocab }), async () => ({}));
}

if (useLm) {
  const lm = await import('../../train/lm/index.js');
  const path = await lm.trainedLanguageModel();
  const calib = join(dir, 'lm-calib');
  mkdirSync(calib);
  lm.languageModelCalibrationFeeds({ count: 32 }).forEach((f, i) => npyInt64(join(calib, `s${i}.npy`), f.input_ids!.dims, f.input_ids!.data as BigInt64Array));
  await measure('trained-lm', path, calib, (seq) => lm.languageModelCalibrationFeeds({ count: 1, seq, seed: 7 })[0]!, async (q4) => {
    const rtn = join(dir, 'lm_rtn.onnx');
    await cli(['quantize', path, '-o', rtn, '--mode', 'int4', '--int4-method', 'rtn', '--json', '--latency-runs', '3']);
    const [f, d, r] = [await lm.languageModelFidelity(path), await lm.languageModelFidelity(q4), await lm.languageModelFidelity(rtn)];
    return { bitsPerByte: { fp32: f.bitsPerByte, default: d.bitsPerByte, rtn: r.bitsPerByte, defaultRatio: d.bitsPerByte / f.bitsPerByte, rtnRatio: r.bitsPerByte / f.bitsPerByte }, nextByteAccuracy: { fp32: f.nextByteAccuracy, default: d.nextByteAccuracy, rtn: r.nextByteAccuracy } };
  });
}
