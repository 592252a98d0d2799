/**
 * The `default` preset keeps outputs: on every conformance case onnxruntime-node can run, the optimized
 * model gives the same outputs as the original (rtol 1e-3, atol 1e-5).
 */
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadModelSync, serializeModel } from '../../onnx/index.js';
import { optimize } from '../../passes/manager.js';
import { presetPipeline } from '../../passes/pipeline.js';
import { BACKEND_DIR, compareOrtOutputs, discoverCases, loadDataSet, missingSharedMessage, runDataSets } from './harness.js';

const present = fs.existsSync(BACKEND_DIR);

describe.skipIf(!present)('default preset on the conformance suite', () => {
  it('keeps the outputs of every case onnxruntime can run', async () => {
    const cases = discoverCases();
    const pipeline = presetPipeline('default');
    const failures: string[] = [];
    let compared = 0;
    let changedModels = 0;
    for (const c of cases) {
      let model;
      let dataSets;
      try {
        model = loadModelSync(c.modelPath);
        dataSets = c.dataSets.map((d) => loadDataSet(model!, d));
      } catch {
        continue; // cases the codec or data reader reject are covered by the round-trip test
      }
      const original = serializeModel(model);
      const ref = await runDataSets(original, dataSets);
      if (!Array.isArray(ref) || ref.some((r) => !r.ok)) continue;
      let report;
      try {
        report = await optimize(model, pipeline);
      } catch (e) {
        failures.push(`${c.id}: optimize failed: ${(e as Error).message}`);
        continue;
      }
      if (report.nodesAfter !== report.nodesBefore || report.bytesAfter !== report.bytesBefore) changedModels++;
      const got = await runDataSets(serializeModel(model), dataSets);
      if (!Array.isArray(got)) {
        failures.push(`${c.id}: the optimized model does not load: ${got.message}`);
        continue;
      }
      got.forEach((g, i) => {
        const r = ref[i]!;
        if (!g.ok || !r.ok) {
          failures.push(`${c.id}: the optimized model fails to run: ${g.ok ? '' : g.message}`);
          return;
        }
        const problems = compareOrtOutputs(g.outputs, r.outputs, { rtol: 1e-3, atol: 1e-5 });
        if (problems.length) failures.push(`${c.id} (data set ${i}): ${problems.join('; ')}`);
      });
      compared++;
    }
    console.log(`optimize-default: ${compared} cases compared, ${changedModels} changed by the preset, ${failures.length} failures`);
    expect(compared).toBeGreaterThan(100);
    expect(failures).toEqual([]);
  });
});

describe.skipIf(present)('default preset on the conformance suite (skipped)', () => {
  it('needs the shared conformance data', () => {
    console.log(missingSharedMessage());
    expect(present).toBe(false);
  });
});
