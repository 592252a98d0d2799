/**
 * The ONNX backend suite (node, simple, pytorch-operator) through the codec: every model decodes,
 * re-encodes to the same bytes, decodes again to the same message, passes the checker, and (where
 * onnxruntime-node can run it) the re-encoded model reproduces output_N.pb from input_N.pb within
 * rtol 1e-3 / atol 1e-7, or onnxruntime's own outputs for the original model.
 *
 * Prints passed / onnxruntime cannot run / failed; fails on anything but the first two.
 */
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { checkModel } from '../../ir/checker.js';
import { loadModelSync, serializeModel } from '../../onnx/index.js';
import { decode } from '../../onnx/wire.js';
import {
  BACKEND_DIR,
  CaseResult,
  compareOrtOutputs,
  compareWithExpected,
  DataSet,
  discoverCases,
  loadDataSet,
  missingSharedMessage,
  OrtUnsupportedError,
  runDataSets,
  Tally,
} from './harness.js';

const present = fs.existsSync(BACKEND_DIR);
const cases = present ? discoverCases() : [];
const tally = new Tally();
const started = performance.now();

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

/** Deep equality of decoded protobuf objects (typed arrays compared by content). */
function sameMessage(a: unknown, b: unknown, where = 'ModelProto'): string | null {
  if (a === b) return null;
  if (typeof a === 'bigint' || typeof b === 'bigint') return BigInt(a as never) === BigInt(b as never) ? null : `${where}: ${String(a)} != ${String(b)}`;
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
    const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    return sameBytes(x, y) ? null : `${where}: bytes differ`;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return `${where}: ${a.length} entries vs ${b.length}`;
    for (let i = 0; i < a.length; i++) {
      const d = sameMessage(a[i], b[i], `${where}[${i}]`);
      if (d) return d;
    }
    return null;
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    if (ka.join() !== kb.join()) return `${where}: fields {${ka.join(',')}} vs {${kb.join(',')}}`;
    for (const k of ka) {
      const d = sameMessage((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${where}.${k}`);
      if (d) return d;
    }
    return null;
  }
  if (typeof a === 'number' && typeof b === 'number' && Number.isNaN(a) && Number.isNaN(b)) return null;
  return `${where}: ${String(a)} != ${String(b)}`;
}

async function runCase(c: (typeof cases)[number]): Promise<CaseResult> {
  const fail = (stage: string, message: string): CaseResult => ({ id: c.id, status: 'failed', stage, message });
  const original = new Uint8Array(fs.readFileSync(c.modelPath));
  // 1. codec: decode, encode, decode
  const model = loadModelSync(original, { baseDir: c.dir, name: c.modelPath });
  const encoded = serializeModel(model);
  if (!sameBytes(encoded, original)) {
    const diff = sameMessage(decode(encoded, 'ModelProto'), decode(original, 'ModelProto'));
    return fail('encode', `re-encoded bytes differ (${encoded.length} vs ${original.length} bytes)${diff ? `: ${diff}` : ''}`);
  }
  const again = loadModelSync(encoded, { baseDir: c.dir, name: `${c.modelPath} (re-encoded)` });
  const diff = sameMessage(decode(encoded, 'ModelProto'), decode(serializeModel(again), 'ModelProto'));
  if (diff) return fail('decode', `second decode differs: ${diff}`);
  // 2. checker: the suite's models are valid
  const issues = checkModel(model);
  if (issues.length) return fail('checker', issues.map((i) => `${i.code}: ${i.message}`).slice(0, 3).join('; '));
  // 3. numerics with onnxruntime
  let dataSets: DataSet[];
  try {
    dataSets = c.dataSets.map((d) => loadDataSet(model, d));
  } catch (e) {
    return fail('data', (e as Error).message);
  }
  const runs = await runDataSets(encoded, dataSets);
  if (!Array.isArray(runs)) return { id: c.id, status: 'ort-cannot-run', stage: runs.stage, message: runs.message };
  let matched: CaseResult['matched'] = 'reference';
  for (let i = 0; i < runs.length; i++) {
    const r = runs[i]!;
    if (!r.ok) return { id: c.id, status: 'ort-cannot-run', stage: r.stage, message: r.message };
    let problems: string[];
    try {
      problems = compareWithExpected(r.outputs, dataSets[i]!);
    } catch (e) {
      if (e instanceof OrtUnsupportedError) return { id: c.id, status: 'ort-cannot-run', stage: 'output', message: e.message };
      throw e;
    }
    if (problems.length === 0) continue;
    // onnxruntime disagrees with output_N.pb: the re-encoded model must then agree with onnxruntime
    // on the original file (read afresh from disk, its own session).
    const ref = await runDataSets(new Uint8Array(fs.readFileSync(c.modelPath)), [dataSets[i]!]);
    const refRun = Array.isArray(ref) ? ref[0]! : ref;
    if (!refRun.ok) return fail('numerics', `differs from output_N.pb (${problems[0]}) and the original failed to run again: ${refRun.message}`);
    const vsOrt = compareOrtOutputs(r.outputs, refRun.outputs);
    if (vsOrt.length) return fail('numerics', `${dataSets[i]!.dir}: ${problems[0]}; and vs onnxruntime on the original: ${vsOrt[0]}`);
    matched = 'ort-original';
  }
  return { id: c.id, status: 'passed', matched };
}

describe.skipIf(!present)('ONNX backend conformance: codec round-trip and onnxruntime outputs', () => {
  afterAll(() => {
    const seconds = (performance.now() - started) / 1000;
    console.log(tally.summary('conformance (codec round-trip)', seconds));
  });

  it('finds the suite', () => {
    expect(cases.length).toBeGreaterThan(1000);
  });

  for (const c of cases) {
    it(c.id, async () => {
      let r: CaseResult;
      try {
        r = await runCase(c);
      } catch (e) {
        r = { id: c.id, status: 'failed', stage: 'exception', message: (e as Error).message };
      }
      tally.add(r);
      if (r.status === 'failed') expect.fail(`${r.id} [${r.stage}]: ${r.message}`);
    });
  }
});

if (!present) {
  console.warn(missingSharedMessage());
  describe('ONNX backend conformance', () => {
    it.skip(missingSharedMessage(), () => {});
  });
}
