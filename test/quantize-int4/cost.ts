/**
 * `npx tsx test/quantize-int4/cost.ts [rounds]`: where quantizing the trained LM costs time. Per round:
 * the yardstick of bench:transformer's cost target (one fp32 pass over 32 calibration windows + load
 * + save), then q4 (load, transformer preset, quantize-int4 with its phases: prepare, moments, quantize
 * (GPTQ), sensitivity (first/last layer), accuracyLevel (kernel choice), save) and fp16 and q4f16 (load,
 * the transform the CLI workflows run: workflows/quantize/fp16.ts halfTransform and q4f16Transform, as
 * bench:transformer times them, with the calibration windows read from a JSON data file as
 * `--calibration` reads them; save), one JSON line each; later rounds show the cost with the JIT warm.
 * `yardCpu`/`q4Cpu` (and the `CpuRatio`s of q4, fp16, q4f16): this process's CPU time (all threads), steadier than wall
 * time on a loaded machine (wall time includes waiting for a core; onnxruntime's moments session may use
 * more than one thread, which CPU time counts and wall time does not).
 */
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { loadModel, saveModel, cloneModel } from '../../onnx/index.js';
import { Session } from '../../runtime/session.js';
import { createPassContext } from '../../passes/manager.js';
import { quantizeInt4 } from '../../passes/quantize/quantize-int4.js';
import { fuseTransformer } from '../../workflows/quantize/int4.js';
import { halfTransform } from '../../workflows/quantize/fp16.js';
import { q4f16Transform } from '../../workflows/quantize/q4f16.js';
import { languageModelCalibrationFeeds, trainedLanguageModel } from '../../train/lm/index.js';
import { writeFeedsJson } from '../helpers/feeds-file.js';

const dir = mkdtempSync(join(tmpdir(), 'onnxforge-cost-'));
const path = await trainedLanguageModel();
const feeds = languageModelCalibrationFeeds({ count: 32 });
const reps = Number(process.argv[2] ?? 2);
const calibration = writeFeedsJson(join(dir, 'calibration.json'), feeds);
const inputs = await (async () => {
  const s = await Session.create(path, {});
  const i = s.inputs;
  await s.dispose();
  return i;
})();
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
  c0 = cpu();
  const f16 = await halfTransform(await loadModel(path), inputs, { calibration }, { mode: 'fp16' });
  const tc = performance.now() - t0 - f16.fusion.ms;
  await saveModel(f16.model, join(dir, 'f16.onnx'));
  const fp16 = performance.now() - t0;
  const fp16Cpu = cpu() - c0;

  // q4f16 as the CLI (and bench:transformer) makes it: int4 with MatMulNBits kernels, then convert-float16 on the ranges of its moments run
  t0 = performance.now();
  c0 = cpu();
  const q4f = await q4f16Transform(await loadModel(path), inputs, { calibration });
  const q4fMs = (q4f.before as { ms: Record<string, number> }).ms;
  await saveModel(q4f.model, join(dir, 'q4f16.onnx'));
  const q4f16 = performance.now() - t0;
  const q4f16Cpu = cpu() - c0;
  console.log(JSON.stringify({ yard: Math.round(yard), q4: Math.round(q4), q4ratio: +(q4 / yard).toFixed(2), yardCpu: Math.round(yardCpu), q4Cpu: Math.round(q4Cpu), q4CpuRatio: +(q4Cpu / yardCpu).toFixed(2), load: Math.round(tl), fuse: Math.round(tf), phases: Object.fromEntries(Object.entries(rep.ms).map(([k, v]) => [k, Math.round(v)])), save: Math.round(ts), kernels: rep.kernels.map((k) => `${k.shape}x${k.weights}:${k.chosen}`), keep: rep.keepInt8.map((k) => `${k.position}:${k.kept}:${k.gain.toFixed(2)}`), level: rep.accuracyLevel.chosen, fp16: Math.round(fp16), fp16ratio: +(fp16 / yard).toFixed(2), fp16CpuRatio: +(fp16Cpu / yardCpu).toFixed(2), fp16fuse: Math.round(f16.fusion.ms), fp16convert: Math.round(tc), fp16ranges: f16.conversion.ranges, q4f16: Math.round(q4f16), q4f16ratio: +(q4f16 / yard).toFixed(2), q4f16CpuRatio: +(q4f16Cpu / yardCpu).toFixed(2), q4f16fuse: Math.round(q4f.fusion.ms), q4f16int4: Object.fromEntries(Object.entries(q4fMs).map(([k, v]) => [k, Math.round(v)])), q4f16convert: Math.round(q4f16 - q4f.fusion.ms - q4fMs.total!), q4f16ranges: q4f.conversion.ranges }));
}
console.log(`load ${loadavg()[0]!.toFixed(2)}`);
