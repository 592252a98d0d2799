/**
 * The page's worker: reads the model once (File.arrayBuffer; weights stay views of those bytes), runs
 * `onnxforge/web`'s workflows — the CLI's pipelines, defaults and serialization — and measures both
 * models with onnxruntime-web (WASM, 1 thread, as a page that is not cross-origin isolated gets).
 */
import * as ort from 'onnxruntime-web/wasm';
import { isOnnxForgeError } from '../../core/errors.js';
import type { Model } from '../../ir/ir.js';
import { isPortablePreset } from '../../passes/portable.js';
import { PRESETS } from '../../passes/presets.js';
import { fromOrt, ortWebOptions, ortWebRunner } from '../ort-runner.js';
import { convertFloat16Model, DataFileSource, decodeWebModel, inspectModel, loadWebModel, missingDataFiles, optimizeModel, quantizeInt4Model, quantizeWeightsModel, type DataFile } from '../workflows.js';
import { formatBytes, type CompareRow, type FromWorker, type Mode, type ToWorker } from './protocol.js';

ort.env.wasm.wasmPaths = '/ort/';
ort.env.wasm.numThreads = 1;
ort.env.logLevel = 'error';

const scope = self as unknown as { postMessage(m: FromWorker, transfer?: Transferable[]): void; onmessage: ((ev: MessageEvent<ToWorker>) => void) | null };
const post = (m: FromWorker, transfer: Transferable[] = []) => scope.postMessage(m, transfer);
const runner = ortWebRunner(ort);

let input: { bytes: Uint8Array; name: string; data: DataFileSource; warnings: string[] } | undefined;
/** The model as loaded for the summary, used by the next run (one decode for the first run). */
let loaded: Model | undefined;

type SyncReader = new () => { readAsArrayBuffer(b: Blob): ArrayBuffer };
const FileReaderSyncCtor = (globalThis as unknown as { FileReaderSync: SyncReader }).FileReaderSync;

/** A picked data file, read a range at a time (FileReaderSync: workers only), never whole. */
function dataFile(f: File): DataFile {
  return { size: f.size, read: (offset, length) => new Uint8Array(new FileReaderSyncCtor().readAsArrayBuffer(f.slice(offset, offset + length))) };
}

/** The summary once every data file is there; else ask for the missing ones. */
function report(model: Model): void {
  const { name, bytes, data, warnings } = input!;
  const missing = missingDataFiles(model, data);
  if (missing.length) post({ type: 'needs-data', name, files: missing });
  else post({ type: 'summary', name, bytes: bytes.byteLength, text: inspectModel(model, name, bytes.byteLength).text, warnings, modes: modes() });
}

function addData(files: File[]): void {
  if (!input || !loaded) throw new Error('open the .onnx model first, then its data file');
  const missing = missingDataFiles(loaded, input.data);
  for (const f of files) {
    const location = missing.find((m) => m === f.name || m.split('/').pop() === f.name);
    if (location) input.data.files.set(location, dataFile(f));
  }
  report(loaded);
}

function modes(): Array<{ mode: Mode; label: string }> {
  const presets = Object.keys(PRESETS).filter((p) => isPortablePreset(p));
  return [
    ...presets.map((p) => ({ mode: `preset:${p}` as Mode, label: `optimize --preset ${p}` })),
    { mode: 'weights', label: 'quantize --mode weights (int8 weights)' },
    { mode: 'int4', label: `quantize --mode int4 ${INT4_FLAGS} (int4 weights, unpacked to float32 at load)` },
    { mode: 'fp16', label: 'quantize --mode fp16 (float16 weights)' },
  ];
}

/**
 * int4 in the page: RTN (GPTQ needs calibration data) and the kernel fixed to unpack. The CLI's
 * default kernel (auto) times MatMulNBits against float32 on the machine it runs on, which is not the
 * browser's; unpacked int4 keeps the file at int4 size and runs at float32 speed wherever it loads,
 * and the choice does not depend on timing, so the page writes the bytes of
 * `onnxforge quantize --mode int4 --int4-method rtn --int4-kernel unpack`. The first/last layers are
 * still measured (8 bits where that pays) through onnxruntime-web on the CLI's seeded random inputs.
 */
const INT4_OPTIONS = { method: 'rtn', kernel: 'unpack' } as const;
const INT4_FLAGS = '--int4-method rtn --int4-kernel unpack';

/** A pass's progress (label, units of work) on the part [from, to] of the bar. */
function progressOn(from: number, to: number) {
  return (label: string, total: number) => {
    let done = 0;
    post({ type: 'progress', value: from, label });
    return {
      tick(n = 1) {
        done += n;
        // a phase of unknown length (fp16's range samples) shows its count only
        if (total > 0) post({ type: 'progress', value: from + ((to - from) * Math.min(done, total)) / total, label: `${label} ${Math.min(done, total)}/${total}` });
        else post({ type: 'progress', value: from, label: `${label} ${done}` });
      },
      done() {
        post({ type: 'progress', value: to, label });
      },
    };
  };
}

async function open(file: File, limit: number): Promise<void> {
  input = undefined;
  loaded = undefined;
  if (file.size > limit) {
    post({ type: 'error', message: `${file.name} is ${formatBytes(file.size)}, over this page's limit of ${formatBytes(limit)}: use the CLI (onnxforge optimize / quantize) for models this large` });
    return;
  }
  if (file.size === 0) {
    post({ type: 'error', message: `${file.name} is empty` });
    return;
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  const warnings: string[] = [];
  const data = new DataFileSource();
  const { model } = decodeWebModel(bytes, { name: file.name, data, onWarning: (w) => warnings.push(`warning[${w.code}] ${w.message}`) });
  input = { bytes, name: file.name, data, warnings };
  loaded = model;
  report(model);
}

const outName = (name: string, mode: Mode) => `${name.replace(/\.onnx$/i, '')}.${mode === 'weights' ? 'int8w' : mode === 'int4' ? 'q4' : mode === 'fp16' ? 'fp16' : mode.slice('preset:'.length)}.onnx`;

async function run(mode: Mode, compareLimit: number): Promise<void> {
  if (!input) throw new Error('open a model first');
  const { bytes, name, data } = input;
  const model = loaded ?? loadWebModel(bytes, { name, data });
  loaded = undefined;
  post({ type: 'progress', value: 0.05, label: 'running' });
  let result: Uint8Array;
  if (mode === 'weights') {
    post({ type: 'progress', value: 0.1, label: 'default preset, opset 13, int8 weights' });
    result = (await quantizeWeightsModel(model, {}, { name, runner })).bytes;
  } else if (mode === 'int4') {
    post({ type: 'progress', value: 0.1, label: 'transformer fusions, int4 weights (RTN), first/last layers measured' });
    result = (await quantizeInt4Model(model, INT4_OPTIONS, { name, runner, progress: progressOn(0.1, 0.85) })).bytes;
  } else if (mode === 'fp16') {
    post({ type: 'progress', value: 0.1, label: 'transformer fusions, ranges on random inputs, float16 weights' });
    result = (await convertFloat16Model(model, {}, { name, runner, progress: progressOn(0.1, 0.85) })).bytes;
  } else {
    const preset = mode.slice('preset:'.length);
    // rounds until a fixed point: usually 2 (the second changes nothing), at most the cap of 10
    const onPass = (r: { iteration: number; pass: string }) => post({ type: 'progress', value: Math.min(0.85, 0.1 + 0.375 * r.iteration), label: `round ${r.iteration}: ${r.pass}` });
    const out = await optimizeModel(model, { preset }, { name, runner, onPass });
    result = out.bytes;
  }
  post({ type: 'progress', value: 0.9, label: 'comparing with onnxruntime-web' });
  const sizeRow = { what: 'size', original: formatBytes(bytes.byteLength), result: formatBytes(result.byteLength) };
  if (bytes.byteLength > compareLimit) post({ type: 'compare', rows: [sizeRow], note: `Latency and outputs are compared for models up to ${formatBytes(compareLimit)} (both models would be held by onnxruntime-web at once).` });
  else {
    // the result is offered even when onnxruntime-web cannot run one of the models
    post(await compare(bytes, result).catch((e: unknown): FromWorker => ({ type: 'compare', rows: [sizeRow], note: `onnxruntime-web could not run the models: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}` })));
  }
  const buf = result.byteOffset === 0 && result.byteLength === result.buffer.byteLength ? (result.buffer as ArrayBuffer) : result.slice().buffer;
  post({ type: 'result', name: outName(name, mode), bytes: buf, before: bytes.byteLength, after: result.byteLength, label: 'done' }, [buf]);
}

/** Deterministic inputs from the model's declared inputs (symbolic dims: 1 for the first axis, 32 after). */
function feedsFor(meta: readonly ort.InferenceSession.ValueMetadata[]): Record<string, ort.Tensor> {
  let seed = 0x2545f491;
  const next = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
  const feeds: Record<string, ort.Tensor> = {};
  for (const m of meta) {
    if (!m.isTensor) throw new Error(`input ${m.name} is not a tensor`);
    const dims = m.shape.map((d, i) => (typeof d === 'number' && d >= 0 ? d : i === 0 ? 1 : 32));
    const n = dims.reduce((a, b) => a * b, 1);
    if (m.type === 'float32') feeds[m.name] = new ort.Tensor('float32', Float32Array.from({ length: n }, next), dims);
    else if (m.type === 'int64') feeds[m.name] = new ort.Tensor('int64', new BigInt64Array(n), dims);
    else if (m.type === 'int32') feeds[m.name] = new ort.Tensor('int32', new Int32Array(n), dims);
    else throw new Error(`input ${m.name} has type ${m.type}; the page generates float32, int32 and int64 inputs`);
  }
  return feeds;
}

async function compare(a: Uint8Array, b: Uint8Array): Promise<FromWorker> {
  const rows: CompareRow[] = [{ what: 'size', original: formatBytes(a.byteLength), result: formatBytes(b.byteLength) }];
  const sa = await ort.InferenceSession.create(a, ortWebOptions());
  const sb = await ort.InferenceSession.create(b, ortWebOptions());
  try {
    let feeds: Record<string, ort.Tensor>;
    try {
      feeds = feedsFor(sa.inputMetadata);
    } catch (e) {
      return { type: 'compare', rows, note: `Not run: ${(e as Error).message}.` };
    }
    const ra = await sa.run(feeds);
    const rb = await sb.run(feeds);
    const times: [number[], number[]] = [[], []];
    for (let i = 0; i < 12; i++) {
      for (const [k, s] of [sa, sb].entries()) {
        const t0 = performance.now();
        await s.run(feeds);
        if (i >= 2) times[k as 0 | 1].push(performance.now() - t0);
      }
    }
    const median = (t: number[]) => [...t].sort((x, y) => x - y)[t.length >> 1]!;
    const [ma, mb] = [median(times[0]), median(times[1])];
    rows.push({ what: 'latency (median of 10, interleaved)', original: `${ma.toFixed(2)} ms`, result: `${mb.toFixed(2)} ms (${(mb / ma).toFixed(2)}x)` });
    for (const name of sa.outputNames) {
      const x = fromOrt(ra[name] as ort.Tensor, name);
      const y = rb[name] ? fromOrt(rb[name] as ort.Tensor, name) : undefined;
      let diff = 'missing';
      if (y && x.data.length === y.data.length && typeof x.data[0] !== 'string') {
        let max = 0;
        for (let i = 0; i < x.data.length; i++) max = Math.max(max, Math.abs(Number(x.data[i]) - Number(y.data[i])));
        diff = max.toExponential(2);
      }
      rows.push({ what: `output ${name}: max |difference|`, original: '', result: diff });
    }
    for (const t of [...Object.values(ra), ...Object.values(rb)]) (t as ort.Tensor).dispose();
    return { type: 'compare', rows, note: 'onnxruntime-web 1.30 (WASM, 1 thread) in this page, on generated inputs.' };
  } finally {
    await sa.release();
    await sb.release();
  }
}

let queue: Promise<void> = Promise.resolve();
scope.onmessage = (ev) => {
  const m = ev.data;
  // one message at a time (a drop of a model and its data file sends two)
  queue = queue.then(() => (m.type === 'open' ? open(m.file, m.limit) : m.type === 'data' ? addData(m.files) : run(m.mode, m.compareLimit))).catch((e: unknown) => {
    loaded = undefined;
    if (isOnnxForgeError(e)) post({ type: 'error', code: e.code, message: e.message });
    else post({ type: 'error', message: e instanceof Error ? e.message : String(e) });
  });
};
