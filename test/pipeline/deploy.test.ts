import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkModel } from '../../ir/checker.js';
import { loadModelSync } from '../../onnx/index.js';
import { runJob } from '../../workflows/job.js';
import { readPipelineFile } from '../../passes/pipeline-file.js';

const REPO = path.resolve(__dirname, '../..');

describe('the main job (npm start): deploy preset on PaddleOCR cls with the in-repo calibration set', () => {
  it('writes a valid int8 model within its size and accuracy budgets, and the reports', async () => {
    const pf = readPipelineFile(path.join(REPO, 'benchmarks/deploy/cls.yaml'));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-deploy-'));
    try {
      // same job, written to a temp folder; the metric read from source (npm start uses the compiled copy)
      pf.output = path.join(dir, 'cls.deploy.onnx');
      pf.reports = [path.join(dir, 'r.json'), path.join(dir, 'r.html')];
      pf.metric = `${path.join(REPO, 'benchmarks/ocr-metrics.ts')}#cls`;
      pf.latency.runs = 5;
      const r = await runJob(pf);
      expect(r.passed).toBe(true);
      const m = loadModelSync(pf.output);
      expect(checkModel(m)).toEqual([]);
      // which layers stay int8 is measured on this machine (latency-aware), so only invariants are asserted
      expect(m.metadata('onnxforge.weights')).toBeUndefined();
      expect(fs.statSync(pf.output).size).toBeLessThanOrEqual(fs.statSync(pf.model).size);
      expect(r.report.passes!.some((p) => p.pass === 'quantize-static')).toBe(true);
      expect(r.report.accuracy![0]!.value).toBeGreaterThanOrEqual(r.report.accuracy![0]!.reference! - 0.0625);
      expect(fs.readFileSync(path.join(dir, 'r.html'), 'utf8')).toContain('data-chart="size-by-op"');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
