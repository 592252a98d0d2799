/**
 * Reusable parts of the ONNX backend conformance harness: case discovery, reading a case's test data
 * (TensorProto, SequenceProto and OptionalProto `.pb` files, matched to the model's declared inputs
 * and outputs by position), conversion to onnxruntime-node tensors, running a model once in a fresh
 * session (released afterwards), and output comparison with tolerances.
 *
 * Each check over the suite (the codec round-trip today; "a pass preset keeps the outputs" later)
 * is a small test file that calls these functions. Outcomes are classified so a run can print how
 * many cases passed, how many onnxruntime itself cannot run, and fail on anything else.
 *
 * Comparison rule (as numpy.testing.assert_allclose): |actual - expected| <= atol + rtol * |expected|
 * for floating-point outputs; NaN equals NaN, infinities must match exactly; integer, bool and string
 * outputs must be equal exactly; dtypes and dims must match.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { DataType, dtypeInfo, dtypeName, float16ToFloat32, unpackSubByte } from '../../core/dtype.js';
import type { Model, TypeInfo, Value } from '../../ir/ir.js';
import { decodeMessage, decodeTensor } from '../../onnx/index.js';
import { tensorFrom } from '../../onnx/serde.js';
import type { ProtoObject } from '../../onnx/wire.js';
import { Tensor } from '../../core/tensor.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** Where CI places the shared data: beside the repository. */
export const SHARED_DIR = path.resolve(REPO_ROOT, '../shared');
export const BACKEND_DIR = path.join(SHARED_DIR, 'onnx-backend');
export const SUITES = ['node', 'simple', 'pytorch-operator'] as const;

/** The message tests print when the shared data is missing (they skip rather than fail). */
export function missingSharedMessage(what = BACKEND_DIR): string {
  return `skipped: ${what} not found (place the shared data folder beside the repository as ../shared)`;
}

export interface ConformanceCase {
  suite: string;
  name: string;
  /** `suite/name`, unique across the suites. */
  id: string;
  dir: string;
  modelPath: string;
  /** Absolute paths of the `test_data_set_N` folders, in numeric order. */
  dataSets: string[];
}

function numericSuffix(s: string): number {
  const m = /_(\d+)(?:\.pb)?$/.exec(s);
  return m ? Number(m[1]) : 0;
}

/** Every case with a model.onnx under `root/{node,simple,pytorch-operator}`, sorted by suite and name. */
export function discoverCases(root = BACKEND_DIR, suites: readonly string[] = SUITES): ConformanceCase[] {
  const out: ConformanceCase[] = [];
  for (const suite of suites) {
    const sdir = path.join(root, suite);
    if (!fs.existsSync(sdir)) continue;
    for (const name of fs.readdirSync(sdir).sort()) {
      const dir = path.join(sdir, name);
      const modelPath = path.join(dir, 'model.onnx');
      if (!fs.existsSync(modelPath)) continue;
      const dataSets = fs
        .readdirSync(dir)
        .filter((d) => d.startsWith('test_data_set_') && fs.statSync(path.join(dir, d)).isDirectory())
        .sort((a, b) => numericSuffix(a) - numericSuffix(b))
        .map((d) => path.join(dir, d));
      out.push({ suite, name, id: `${suite}/${name}`, dir, modelPath, dataSets });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Case values: tensors, sequences and optionals read from .pb files

export type CaseValue =
  | { kind: 'tensor'; tensor: Tensor }
  | { kind: 'sequence'; elemType?: TypeInfo; items: CaseValue[] }
  | { kind: 'optional'; value?: CaseValue }
  | { kind: 'map' };

export interface NamedValue {
  name: string;
  type?: TypeInfo;
  value: CaseValue;
}

export interface DataSet {
  dir: string;
  inputs: NamedValue[];
  expected: NamedValue[];
}

function tensorFromProto(o: ProtoObject, file: string): Tensor {
  return tensorFrom(o, { file });
}

function sequenceFrom(o: ProtoObject, elemType: TypeInfo | undefined, file: string): CaseValue {
  const items: CaseValue[] = [];
  for (const t of (o.tensor_values as ProtoObject[] | undefined) ?? []) items.push({ kind: 'tensor', tensor: tensorFromProto(t, file) });
  for (const s of (o.sequence_values as ProtoObject[] | undefined) ?? []) items.push(sequenceFrom(s, elemType?.sequence?.elemType, file));
  for (const p of (o.optional_values as ProtoObject[] | undefined) ?? []) items.push(optionalFrom(p, elemType?.optional?.elemType, file));
  if ((o.map_values as unknown[] | undefined)?.length) items.push({ kind: 'map' });
  const v: CaseValue = { kind: 'sequence', items };
  if (elemType) v.elemType = elemType;
  return v;
}

function optionalFrom(o: ProtoObject, elemType: TypeInfo | undefined, file: string): CaseValue {
  if (o.tensor_value) return { kind: 'optional', value: { kind: 'tensor', tensor: tensorFromProto(o.tensor_value as ProtoObject, file) } };
  if (o.sequence_value) return { kind: 'optional', value: sequenceFrom(o.sequence_value as ProtoObject, elemType?.sequence?.elemType, file) };
  if (o.optional_value) return { kind: 'optional', value: optionalFrom(o.optional_value as ProtoObject, elemType?.optional?.elemType, file) };
  if (o.map_value) return { kind: 'optional', value: { kind: 'map' } };
  return { kind: 'optional' };
}

/** Reads one `.pb` test value; which message it holds follows the declared type of the model's value. */
export function readValue(file: string, type: TypeInfo | undefined): CaseValue {
  const bytes = new Uint8Array(fs.readFileSync(file));
  if (type?.sequence) return sequenceFrom(decodeMessage(bytes, 'SequenceProto'), type.sequence.elemType, file);
  if (type?.optional) return optionalFrom(decodeMessage(bytes, 'OptionalProto'), type.optional.elemType, file);
  if (type?.map) return { kind: 'map' };
  return { kind: 'tensor', tensor: decodeTensor(bytes, file) };
}

/** The graph inputs a caller must feed (inputs that are not also initializers). */
export function feedInputs(model: Model): Value[] {
  return model.graph.inputs.filter((v) => model.graph.initializers.get(v.name) !== v);
}

/**
 * Reads `input_N.pb` / `output_N.pb` of a data set, matched by position to the model's feed inputs
 * and outputs (as the ONNX backend test runner does).
 */
export function loadDataSet(model: Model, dir: string): DataSet {
  const files = fs.readdirSync(dir);
  const pick = (prefix: string) => files.filter((f) => f.startsWith(prefix) && f.endsWith('.pb')).sort((a, b) => numericSuffix(a) - numericSuffix(b));
  const ins = feedInputs(model);
  const outs = model.graph.outputs;
  const read = (names: string[], decl: Value[], what: string): NamedValue[] =>
    names.map((f, i) => {
      const v = decl[i];
      if (!v) throw new Error(`${path.join(dir, f)}: the model declares only ${decl.length} ${what}s`);
      const nv: NamedValue = { name: v.name, value: readValue(path.join(dir, f), v.type) };
      if (v.type) nv.type = v.type;
      return nv;
    });
  return { dir, inputs: read(pick('input_'), ins, 'input'), expected: read(pick('output_'), outs, 'output') };
}

// ---------------------------------------------------------------------------------------------
// onnxruntime-node conversion

/** A value onnxruntime-node cannot take as input (its JS API has no such tensor type or kind). */
export class OrtUnsupportedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OrtUnsupportedError';
  }
}

/** onnxruntime-node tensor type names for ONNX element types it can exchange with JS. */
const ORT_TYPES: Partial<Record<number, ort.Tensor.Type>> = {
  [DataType.FLOAT]: 'float32',
  [DataType.DOUBLE]: 'float64',
  [DataType.FLOAT16]: 'float16',
  [DataType.INT8]: 'int8',
  [DataType.UINT8]: 'uint8',
  [DataType.INT16]: 'int16',
  [DataType.UINT16]: 'uint16',
  [DataType.INT32]: 'int32',
  [DataType.UINT32]: 'uint32',
  [DataType.INT64]: 'int64',
  [DataType.UINT64]: 'uint64',
  [DataType.BOOL]: 'bool',
  [DataType.STRING]: 'string',
  [DataType.INT4]: 'int4',
  [DataType.UINT4]: 'uint4',
};

/**
 * Tensor -> ort.Tensor: numeric types view the raw bytes as the matching typed array (float16 as
 * Uint16Array bit patterns, int64 as BigInt64Array, bool as Uint8Array, int4/uint4 packed bytes),
 * strings as a string array. Throws {@link OrtUnsupportedError} for types ort-node cannot hold.
 */
export function tensorToOrt(t: Tensor): ort.Tensor {
  const type = ORT_TYPES[t.dataType];
  if (!type) throw new OrtUnsupportedError(`onnxruntime-node has no ${dtypeName(t.dataType)} tensors`);
  const dims = [...t.dims];
  if (t.dataType === DataType.STRING) return new ort.Tensor('string', t.strings(), dims);
  if (t.dataType === DataType.INT4 || t.dataType === DataType.UINT4) {
    const bytes = t.bytes();
    // onnxruntime-common takes the packed bytes of both int4 and uint4 as a Uint8Array
    return new ort.Tensor(type, new Uint8Array(bytes), dims);
  }
  // copy into a fresh typed array: the native side may keep the buffer after run()
  const view = t.data();
  const data = view.slice() as ort.Tensor.DataType;
  return new ort.Tensor(type, data, dims);
}

/** A case input as an ort feed value (sequences and maps are not supported by onnxruntime-node). */
export function caseValueToOrt(v: CaseValue): ort.Tensor | undefined {
  switch (v.kind) {
    case 'tensor':
      return tensorToOrt(v.tensor);
    case 'optional':
      if (!v.value) return undefined; // an empty optional is fed by omitting the input
      return caseValueToOrt(v.value);
    case 'sequence':
      throw new OrtUnsupportedError('onnxruntime-node cannot feed sequence inputs');
    case 'map':
      throw new OrtUnsupportedError('onnxruntime-node cannot feed map inputs');
  }
}

/** Builds the feed for a data set. Throws {@link OrtUnsupportedError} when ort-node cannot take an input. */
export function ortFeeds(inputs: readonly NamedValue[]): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const i of inputs) {
    const t = caseValueToOrt(i.value);
    if (t) feeds[i.name] = t;
  }
  return feeds;
}

export type OrtStage = 'feed' | 'output' | 'create' | 'run';

export type RunOutcome =
  | { ok: true; outputs: Record<string, ort.Tensor> }
  | { ok: false; stage: OrtStage; message: string };

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0]!.slice(0, 1000);
}

/** Session options for conformance runs: one thread (the CI machine is shared), onnxruntime's own log silenced (failures are classified and counted). */
export const CONFORMANCE_SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  logSeverityLevel: 4,
};

/**
 * Creates a session for `bytes`, runs every data set's feed through it, releases it, and reports the
 * outputs per data set or the stage that failed (feed conversion, session creation or run).
 */
/** Element types onnxruntime-node 1.30 cannot return: converting them aborts the process (OOM in OrtValueToNapiValue). */
const CRASHING_OUTPUT_TYPES = new Set<number>([DataType.INT4, DataType.UINT4]);

function tensorElemType(t: TypeInfo | undefined): number | undefined {
  if (!t) return undefined;
  if (t.tensor) return t.tensor.elemType;
  if (t.optional) return tensorElemType(t.optional.elemType);
  return undefined;
}

/**
 * Why onnxruntime-node cannot return one of these outputs without taking the process down, or
 * undefined. Checked before creating a session, so such models are reported, not run.
 */
export function unreturnableOutput(outputs: readonly NamedValue[]): string | undefined {
  for (const o of outputs) {
    const et = tensorElemType(o.type);
    if (et !== undefined && CRASHING_OUTPUT_TYPES.has(et)) return `onnxruntime-node 1.30 aborts the process converting ${dtypeName(et)} outputs (output ${o.name})`;
  }
  return undefined;
}

export async function runDataSets(bytes: Uint8Array, dataSets: readonly DataSet[], options = CONFORMANCE_SESSION_OPTIONS): Promise<RunOutcome[] | { ok: false; stage: OrtStage; message: string }> {
  let feeds: Array<Record<string, ort.Tensor>>;
  try {
    feeds = dataSets.map((d) => ortFeeds(d.inputs));
  } catch (e) {
    return { ok: false, stage: 'feed', message: firstLine(e) };
  }
  for (const d of dataSets) {
    const why = unreturnableOutput(d.expected);
    if (why) return { ok: false, stage: 'output', message: why };
  }
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, options);
  } catch (e) {
    return { ok: false, stage: 'create', message: firstLine(e) };
  }
  try {
    const results: RunOutcome[] = [];
    for (let i = 0; i < dataSets.length; i++) {
      const names = dataSets[i]!.expected.map((o) => o.name);
      try {
        const out = names.length ? await session.run(feeds[i]!, names) : await session.run(feeds[i]!);
        results.push({ ok: true, outputs: out as Record<string, ort.Tensor> });
      } catch (e) {
        results.push({ ok: false, stage: 'run', message: firstLine(e) });
      }
    }
    return results;
  } finally {
    await session.release();
  }
}

// ---------------------------------------------------------------------------------------------
// Comparison

export interface Tolerance {
  rtol: number;
  atol: number;
}

export const DEFAULT_TOLERANCE: Tolerance = { rtol: 1e-3, atol: 1e-7 };

/** Element values in a comparable form: floats as float64, integers as bigint, bools as 0/1, strings. */
export type Comparable =
  | { kind: 'float'; dtype: string; dims: number[]; values: Float64Array }
  | { kind: 'int'; dtype: string; dims: number[]; values: bigint[] }
  | { kind: 'string'; dtype: string; dims: number[]; values: string[] };

/** Our Tensor (reference outputs) in comparable form. */
export function comparableFromTensor(t: Tensor): Comparable {
  const dtype = dtypeName(t.dataType);
  const dims = [...t.dims];
  if (t.dataType === DataType.STRING) return { kind: 'string', dtype, dims, values: t.strings() };
  const info = dtypeInfo(t.dataType);
  if (!info) throw new Error(`tensor ${t.name ?? ''} has unknown data type ${t.dataType}`);
  if (t.dataType === DataType.DOUBLE) return { kind: 'float', dtype, dims, values: Float64Array.from(t.data() as Float64Array) };
  if (info.isFloat) return { kind: 'float', dtype, dims, values: Float64Array.from(t.toFloat32()) };
  if (info.packed) return { kind: 'int', dtype, dims, values: Array.from(t.unpack(), (x) => BigInt(x)) };
  const src = t.data();
  return { kind: 'int', dtype, dims, values: Array.from(src as ArrayLike<number | bigint>, (x) => BigInt(x)) };
}

const ORT_FLOAT = new Set(['float32', 'float64', 'float16']);

/** An onnxruntime-node output tensor in comparable form. */
export function comparableFromOrt(t: ort.Tensor): Comparable {
  const dims = [...t.dims];
  const dtype = t.type === 'bool' ? 'bool' : t.type;
  if (t.type === 'string') return { kind: 'string', dtype, dims, values: [...(t.data as string[])] };
  if (ORT_FLOAT.has(t.type)) {
    if (t.type === 'float16') {
      const d = t.data as unknown as ArrayLike<number> & { buffer: ArrayBufferLike; byteOffset: number; length: number };
      const bits = d instanceof Uint16Array ? d : new Uint16Array(d.buffer, d.byteOffset, d.length);
      return { kind: 'float', dtype, dims, values: Float64Array.from(bits, (b) => float16ToFloat32(b)) };
    }
    return { kind: 'float', dtype, dims, values: Float64Array.from(t.data as Float32Array) };
  }
  if (t.type === 'int4' || t.type === 'uint4') {
    const d = t.data as Int8Array | Uint8Array;
    const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    const n = dims.reduce((a, b) => a * b, 1);
    const u = unpackSubByte(t.type === 'int4' ? DataType.INT4 : DataType.UINT4, bytes, n);
    return { kind: 'int', dtype, dims, values: Array.from(u, (x) => BigInt(x)) };
  }
  // integers (bigint for 64-bit types) and bool (0/1 bytes, or booleans) compared exactly as bigint
  const toBig = (x: number | bigint | boolean): bigint => (typeof x === 'bigint' ? x : BigInt(Number(x)));
  return { kind: 'int', dtype, dims, values: Array.from(t.data as ArrayLike<number | bigint | boolean>, toBig) };
}

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Describes the first difference between `actual` and `expected`, or returns null when they agree. */
export function compareComparable(actual: Comparable, expected: Comparable, tol: Tolerance = DEFAULT_TOLERANCE): string | null {
  if (actual.dtype !== expected.dtype) return `dtype ${actual.dtype}, expected ${expected.dtype}`;
  if (!sameDims(actual.dims, expected.dims)) return `dims [${actual.dims.join(',')}], expected [${expected.dims.join(',')}]`;
  if (actual.values.length !== expected.values.length) return `${actual.values.length} elements, expected ${expected.values.length}`;
  if (actual.kind === 'float' && expected.kind === 'float') {
    let bad = 0;
    let first = -1;
    let worst = 0;
    for (let i = 0; i < expected.values.length; i++) {
      const a = actual.values[i]!;
      const e = expected.values[i]!;
      let ok: boolean;
      if (Number.isNaN(e) || Number.isNaN(a)) ok = Number.isNaN(e) && Number.isNaN(a);
      else if (!Number.isFinite(e) || !Number.isFinite(a)) ok = a === e;
      else {
        const diff = Math.abs(a - e);
        ok = diff <= tol.atol + tol.rtol * Math.abs(e);
        if (!ok) worst = Math.max(worst, diff);
      }
      if (!ok) {
        if (first < 0) first = i;
        bad++;
      }
    }
    if (bad === 0) return null;
    return `${bad} of ${expected.values.length} elements differ (first at ${first}: ${actual.values[first]} vs ${expected.values[first]}; max abs diff ${worst})`;
  }
  if (actual.kind !== expected.kind) return `values are ${actual.kind}, expected ${expected.kind}`;
  for (let i = 0; i < expected.values.length; i++) {
    if (actual.values[i] !== expected.values[i]) return `element ${i} is ${String(actual.values[i])}, expected ${String(expected.values[i])}`;
  }
  return null;
}

/**
 * Compares one output from onnxruntime with a reference case value. Empty optionals must be absent
 * or `undefined`; sequences cannot come back from onnxruntime-node and are reported as unsupported.
 */
export function compareOutput(actual: ort.Tensor | undefined, expected: CaseValue, tol: Tolerance = DEFAULT_TOLERANCE): string | null {
  if (expected.kind === 'optional') {
    if (!expected.value) return actual === undefined || actual === null ? null : 'an empty optional was expected, got a value';
    return compareOutput(actual, expected.value, tol);
  }
  if (expected.kind !== 'tensor') throw new OrtUnsupportedError(`onnxruntime-node cannot return ${expected.kind} outputs`);
  if (!actual) return 'missing output';
  return compareComparable(comparableFromOrt(actual), comparableFromTensor(expected.tensor), tol);
}

/** Compares two onnxruntime output sets (e.g. an original and a transformed model) name by name. */
export function compareOrtOutputs(actual: Record<string, ort.Tensor>, reference: Record<string, ort.Tensor>, tol: Tolerance = DEFAULT_TOLERANCE): string[] {
  const problems: string[] = [];
  for (const [name, ref] of Object.entries(reference)) {
    const a = actual[name];
    if (!a) {
      problems.push(`${name}: missing output`);
      continue;
    }
    const d = compareComparable(comparableFromOrt(a), comparableFromOrt(ref), tol);
    if (d) problems.push(`${name}: ${d}`);
  }
  return problems;
}

/** Compares the outputs of one run with the data set's expected outputs; returns the problems found. */
export function compareWithExpected(outputs: Record<string, ort.Tensor>, ds: DataSet, tol: Tolerance = DEFAULT_TOLERANCE): string[] {
  const problems: string[] = [];
  for (const e of ds.expected) {
    const d = compareOutput(outputs[e.name], e.value, tol);
    if (d) problems.push(`${e.name}: ${d}`);
  }
  return problems;
}

/** True when any expected output is a value onnxruntime-node cannot return (sequence or map). */
export function expectsNonTensorOutput(ds: DataSet): boolean {
  const nonTensor = (v: CaseValue): boolean => v.kind === 'sequence' || v.kind === 'map' || (v.kind === 'optional' && v.value !== undefined && nonTensor(v.value));
  return ds.expected.some((e) => nonTensor(e.value));
}

// ---------------------------------------------------------------------------------------------
// Tally

export type CaseStatus = 'passed' | 'ort-cannot-run' | 'failed';

export interface CaseResult {
  id: string;
  status: CaseStatus;
  /** For passes: 'reference' or 'ort-original' (matched ORT's outputs for the original, not output_N.pb). */
  matched?: 'reference' | 'ort-original';
  /** For ORT-cannot-run: the stage; for failures: the check that failed. */
  stage?: string;
  message?: string;
}

/**
 * onnxruntime's messages often start with the source file and the C++ signature of the function
 * that failed; drop both so the reason itself is visible.
 */
export function readableOrtMessage(m: string): string {
  let s = m.replace(/\s+/g, ' ').trim();
  const src = /^\/onnxruntime_src\S*\s+/.exec(s);
  if (src) {
    s = s.slice(src[0].length);
    const open = s.indexOf('(');
    if (open > 0 && /::/.test(s.slice(0, open))) {
      let depth = 0;
      for (let i = open; i < s.length; i++) {
        if (s[i] === '(') depth++;
        else if (s[i] === ')' && --depth === 0) {
          s = s.slice(i + 1).trim();
          break;
        }
      }
    }
  }
  return s;
}

/** Collects case results and renders the summary a conformance run prints. */
export class Tally {
  readonly results: CaseResult[] = [];

  add(r: CaseResult): void {
    this.results.push(r);
  }

  count(status: CaseStatus): number {
    return this.results.filter((r) => r.status === status).length;
  }

  failures(): CaseResult[] {
    return this.results.filter((r) => r.status === 'failed');
  }

  summary(title: string, seconds?: number): string {
    const lines: string[] = [];
    const passed = this.count('passed');
    const viaOrt = this.results.filter((r) => r.matched === 'ort-original').length;
    lines.push(`${title}: ${this.results.length} cases: ${passed} passed${viaOrt ? ` (${viaOrt} against onnxruntime's outputs for the original, which differ from output_N.pb)` : ''}, ${this.count('ort-cannot-run')} onnxruntime cannot run, ${this.count('failed')} failed${seconds !== undefined ? ` in ${seconds.toFixed(1)} s` : ''}`);
    const reasons = new Map<string, number>();
    for (const r of this.results) {
      if (r.status !== 'ort-cannot-run') continue;
      const k = `${r.stage}: ${readableOrtMessage(r.message ?? '').slice(0, 110)}`;
      reasons.set(k, (reasons.get(k) ?? 0) + 1);
    }
    const top = [...reasons.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12);
    if (top.length) {
      lines.push('  onnxruntime cannot run (most common reasons):');
      for (const [k, n] of top) lines.push(`    ${String(n).padStart(4)}  ${k}`);
    }
    const ortOnly = this.results.filter((r) => r.matched === 'ort-original').map((r) => r.id);
    if (ortOnly.length) lines.push(`  onnxruntime differs from output_N.pb (matched onnxruntime on the original instead): ${ortOnly.slice(0, 30).join(', ')}${ortOnly.length > 30 ? ', ...' : ''}`);
    for (const f of this.failures().slice(0, 50)) lines.push(`  FAILED ${f.id} [${f.stage}]: ${f.message}`);
    return lines.join('\n');
  }
}
