import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../ir/builder.js';
import { loadModelSync, saveModelSync } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import { parsePipelineFile, starterPipeline, suggest } from '../../passes/pipeline-file.js';
import { readReport } from '../../report/files.js';
import { runCli } from '../helpers/run-cli.js';

let dir: string;

/** A model with foldable shape arithmetic, an Identity and a Conv+BatchNormalization to fuse. */
function buildModel(file: string): void {
  const b = new GraphBuilder({ opset: 13 });
  const x = b.input('x', 'float32', [1, 3, 8, 8]);
  const w = b.initializer('w', Tensor.from('float32', [4, 3, 3, 3], new Float32Array(108).map((_, i) => Math.sin(i) / 3)));
  const [c] = b.op('Conv', [x, w], { pads: [1, 1, 1, 1] });
  const f = (name: string, v: number[]) => b.initializer(name, Tensor.from('float32', [4], Float32Array.from(v)));
  const [bn] = b.op('BatchNormalization', [c!, f('g', [1, 2, 0.5, 1]), f('bb', [0.1, 0, -0.1, 0]), f('m', [0, 0.1, 0, 0.2]), f('v', [1, 2, 1, 0.5])]);
  const [id] = b.op('Identity', [bn!]);
  const [r] = b.op('Relu', [id!]);
  b.output(r!, 'y', 'float32', [1, 4, 8, 8]);
  saveModelSync(b.model(), file);
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-pipeline-'));
  buildModel(path.join(dir, 'model.onnx'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const parse = (yaml: string) => parsePipelineFile(yaml, path.join(dir, 'p.yaml'));

describe('pipeline file validation', () => {
  it('resolves paths against the file, expands presets and reads pass options in either case', () => {
    const pf = parse(`model: model.onnx\noutput: out/m.onnx\npasses:\n  - preset: default\n  - fold-constants: { max-output-bytes: 4096 }\nreports: r.json\nbudgets: { max-size-ratio: 1 }\n`);
    expect(pf.model).toBe(path.join(dir, 'model.onnx'));
    expect(pf.output).toBe(path.join(dir, 'out/m.onnx'));
    expect(pf.reports).toEqual([path.join(dir, 'r.json')]);
    expect(pf.steps.length).toBeGreaterThan(3);
    expect(pf.steps.at(-1)!.pass.name).toBe('fold-constants');
    expect(pf.pipelineText).toBe('@default,fold-constants');
    const json = parsePipelineFile(JSON.stringify({ model: 'model.onnx', output: 'o.onnx', passes: 'eliminate-dead' }), path.join(dir, 'p.json'));
    expect(json.steps.map((s) => s.pass.name)).toEqual(['eliminate-dead']);
  });

  it('names the field and suggests the closest valid name', () => {
    expect(() => parse('modle: model.onnx\noutput: o.onnx\npasses: [eliminate-dead]\n')).toThrowError(/modle: unknown field\. Did you mean 'model'\?/);
    expect(() => parse('model: m.onnx\noutput: o.onnx\npasses:\n  - eliminate-ded: {}\n')).toThrowError(/passes\[0\]\.eliminate-ded: there is no pass named 'eliminate-ded'\. Did you mean 'eliminate-dead'\?/);
    expect(() => parse('model: m.onnx\noutput: o.onnx\npasses:\n  - fold-constants: { max-output-byte: 10 }\n')).toThrowError(/passes\[0\]\.fold-constants\.max-output-byte: .*Did you mean 'max-output-bytes'/);
    expect(() => parse('model: m.onnx\noutput: o.onnx\npasses:\n  - preset: defualt\n')).toThrowError(/passes\[0\]\.preset: .*no preset named 'defualt'/);
    expect(() => parse('model: m.onnx\noutput: o.onnx\npasses: [eliminate-dead]\nbudgets: { max-size: 1 }\n')).toThrowError(/budgets\.max-size: unknown field\. Did you mean 'max-size-ratio'\?/);
    expect(() => parse('model: m.onnx\npasses: [eliminate-dead]\n')).toThrowError(/output: is required/);
    expect(() => parse('model: m.onnx\noutput: o.onnx\npasses: [eliminate-dead]\nbudgets: { min-accuracy: 0.9 }\n')).toThrowError(/accuracy budgets need data.eval and metric/);
    expect(() => parse('model: m.onnx\noutput: o.onnx\npasses: [quantize-static]\n')).toThrowError(/data.calibration: is required by the 'quantize-static' pass/);
    expect(() => parse('model: [oops')).toThrowError(/cannot parse/);
    expect(() => parse('version: 2\nmodel: m.onnx\noutput: o.onnx\npasses: [eliminate-dead]\n')).toThrowError(/version/);
    expect(suggest('calibraton', ['calibration', 'eval', 'verify'])).toContain("'calibration'");
    expect(suggest('zzzzzz', ['calibration', 'eval'])).toBe('');
  });

  it('the starter written by init is a valid pipeline file', () => {
    const pf = parsePipelineFile(starterPipeline('cls.onnx'), path.join(dir, 'pipeline.yaml'));
    expect(pf.model).toBe(path.join(dir, 'cls.onnx'));
    expect(pf.steps.some((s) => s.pass.name === 'quantize-static')).toBe(true);
  });
});

const run = runCli;

describe('onnxforge run / init', () => {
  it('runs a pipeline: verifies, writes the model and every report, and exit 0 within budget', async () => {
    const file = path.join(dir, 'ok.yaml');
    fs.writeFileSync(file, `model: model.onnx\noutput: ok.onnx\npasses:\n  - preset: default\ndata:\n  verify: { inputs: "random:2", rtol: 0.001, atol: 0.00001 }\nreports: [ok.json, ok.md, ok.html]\nbudgets:\n  max-size-ratio: 1.0\nlatency: { runs: 5, warmup: 1 }\n`);
    const r = await run(['run', file]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const out = loadModelSync(path.join(dir, 'ok.onnx'));
    expect(out.graph.nodes.map((n) => n.opType)).toEqual(['Conv', 'Relu']);
    const rep = readReport(path.join(dir, 'ok.json'));
    expect(rep.input!.nodes).toBe(4);
    expect(rep.output!.nodes).toBe(2);
    expect(rep.budgets![0]!.verdict).toBe('pass');
    expect(rep.latency!.length).toBe(2);
    expect(fs.readFileSync(path.join(dir, 'ok.md'), 'utf8')).toMatch(/\| nodes \| 4 \| 2 \| -2 \|/);
    expect(fs.readFileSync(path.join(dir, 'ok.html'), 'utf8')).toContain('data-chart="waterfall"');
  });

  it('a failed budget exits 1, writes the reports and not the model', async () => {
    const file = path.join(dir, 'tight.yaml');
    fs.writeFileSync(file, `model: model.onnx\noutput: tight.onnx\npasses: "@default"\nreports: tight.json\nbudgets:\n  max-size-ratio: 0.1\nlatency: { skip: true }\n`);
    const r = await run(['run', file]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/error\[PIPELINE_BUDGET\].*size ratio/);
    expect(fs.existsSync(path.join(dir, 'tight.onnx'))).toBe(false);
    expect(readReport(path.join(dir, 'tight.json')).budgets![0]!.verdict).toBe('fail');
  });

  it('bad files exit 2 with one line', async () => {
    const bad = path.join(dir, 'bad.yaml');
    fs.writeFileSync(bad, 'model: model.onnx\noutput: x.onnx\npasses: [fold-constnts]\n');
    const r = await run(['run', bad]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^error\[PIPELINE_FILE_INVALID\] .*passes\[0\]: .*Did you mean 'fold-constants'\?/);
    expect(r.err.trim().split('\n')).toHaveLength(1);
    expect((await run(['run', path.join(dir, 'missing.yaml')])).code).toBe(2);
  });

  it('init writes a starter once and refuses to overwrite without --force', async () => {
    const f = path.join(dir, 'starter.yaml');
    expect((await run(['init', f, '--model', 'cls.onnx'])).code).toBe(0);
    expect(fs.readFileSync(f, 'utf8')).toMatch(/^# onnxforge pipeline/);
    expect((await run(['init', f])).code).toBe(2);
    expect((await run(['init', f, '--force'])).code).toBe(0);
  });
});
