/**
 * `npx tsx test/quantize-int4/cost.ts [rounds]`: where quantizing the trained LM costs time. Per round:
 * the yardstick of bench:transformer's cost target (one fp32 pass over 32 calibration windows + load
 * + save), then q4 (load, transformer preset, quantize-int4 with its phases: prepare, moments, quantize
 * (GPTQ), sensitivity (first/last layer), accuracyLevel (kernel choice), save) and fp16 (load, preset,
 * convert-float16 with its ranges, save) and q4f16 (as bench:transformer builds it: int4 with MatMulNBits
 * kernels, then convert-float16), one JSON line each; later rounds show the cost with the JIT warm.
 * `yardCpu`/`q4Cpu`: this process's CPU time (all threads) of the yardstick and of q4, steadier than wall
 * time on a loaded machine (wall time includes waiting for a core; onnxruntime's moments session may use
 * more than one thread, which CPU time counts and wall time does not).
 */
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { loadModel, saveModel, cloneModel } from '../../onnx/index.js';
import { Session } from '../../runtime/session.js';
import { createPassContext } from '../../passes/manager.js';
import { quantizeInt4, quantizesPackedAttention } from '../../passes/quantize/quantize-int4.js';
import { convertFloat16 } from '../../passes/convert/convert-float16.js';
import { fuseTransformer } from '../../workflows/quantize/int4.js';
import { languageModelCalibrationFeeds, trainedLanguageModel } from '../../train/lm/index.js';

const dir = mkdtempSync(join(tmpdir(), 'onnxforge-cost-'));
const path = await trainedLanguageModel();
const feeds = languageModelCalibrationFeeds({ count: 32 });
const reps = Number(process.argv[2] ?? 2);
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
console.log(`load ${loadavg()[0]!.toFixed(2)}`);
for (let r = 0; r < reps; r++) {
  let t0 = performance.now();
  let c0 = cpu();
  const s = await Session.create(path, { intraOpNumThreads: 1, allowSpinning: false });
  for (const f of feeds) await s.run(f);
  await s.dispose();
  const m0 = await loadModel(path);
  await saveModel(m0, join(dir, 'y.onnx'));
  const yard = performance.now() - t0;
  const yardCpu = cpu() - c0;

  t0 = performance.now();
  c0 = cpu();
  const m = await loadModel(path);
  const tl = performance.now() - t0;
  const { model } = await fuseTransformer(m, { keepWeights: true, attentionWeights: true });
  const tf = performance.now() - t0 - tl;
  const rep = await quantizeInt4(model, { calibration: feeds, probe: feeds }, {}, createPassContext());
  const t1 = performance.now();
  await saveModel(model, join(dir, 'q4.onnx'));
  const ts = performance.now() - t1;
  const q4 = performance.now() - t0;
  const q4Cpu = cpu() - c0;

  t0 = performance.now();
  const m2 = await loadModel(path);
  const { model: f16 } = await fuseTransformer(m2, {});
  const tf2 = performance.now() - t0;
  const c = await convertFloat16(f16, { calibration: feeds }, createPassContext());
  const tc = performance.now() - t0 - tf2;
  await saveModel(f16, join(dir, 'f16.onnx'));
  const fp16 = performance.now() - t0;

  // q4f16 as bench:transformer builds it: int4 with MatMulNBits kernels, then convert-float16 with its ranges
  t0 = performance.now();
  const nbits = { kernel: 'nbits' as const };
  const { model: m4 } = await fuseTransformer(await loadModel(path), { keepWeights: true, attentionWeights: (w) => quantizesPackedAttention(nbits, w) });
  await quantizeInt4(m4, { calibration: feeds, probe: feeds }, nbits, createPassContext());
  const tq = performance.now() - t0;
  await convertFloat16(m4, { calibration: feeds }, createPassContext());
  await saveModel(m4, join(dir, 'q4f16.onnx'));
  const q4f16 = performance.now() - t0;
  console.log(JSON.stringify({ yard: Math.round(yard), q4: Math.round(q4), q4ratio: +(q4 / yard).toFixed(2), yardCpu: Math.round(yardCpu), q4Cpu: Math.round(q4Cpu), q4CpuRatio: +(q4Cpu / yardCpu).toFixed(2), load: Math.round(tl), fuse: Math.round(tf), phases: Object.fromEntries(Object.entries(rep.ms).map(([k, v]) => [k, Math.round(v)])), save: Math.round(ts), kernels: rep.kernels.map((k) => `${k.shape}x${k.weights}:${k.chosen}`), keep: rep.keepInt8.map((k) => `${k.position}:${k.kept}:${k.gain.toFixed(2)}`), level: rep.accuracyLevel.chosen, fp16: Math.round(fp16), fp16ratio: +(fp16 / yard).toFixed(2), fp16fuse: Math.round(tf2), fp16convert: Math.round(tc), fp16ranges: c.ranges, q4f16: Math.round(q4f16), q4f16ratio: +(q4f16 / yard).toFixed(2), q4f16int4: Math.round(tq) }));
}
console.log(`load ${loadavg()[0]!.toFixed(2)}`);
