/**
 * Models larger than memory: what the streaming workflows share, and `convert` as a workflow.
 *
 * A streaming workflow loads the model lazily (the graph in memory, weights as external-data reads),
 * rewrites the graph with derived tensors (core/derived.ts: each new weight a recipe over its source's
 * lazy bytes) and saves it with the streaming writer (onnx/stream.ts), which computes, writes and drops
 * one tensor at a time: peak memory is the graph plus a small multiple of the largest tensor, never the
 * model's size. What needs the whole model in onnxruntime (output error and latency against float32,
 * calibration, measured first/last-layer and accuracy_level choices) is left out, and the report says so.
 *
 * Streaming is used when asked (`stream: true`) and by default when the model's external data is over
 * {@link STREAM_AUTO_BYTES}: past the 2 GiB protobuf limit the measuring workflows cannot hand the model
 * to onnxruntime as one buffer anyway.
 */
import { readFileSync } from 'node:fs';
import { checkError, inputError } from '../core/errors.js';
import { isDerived } from '../core/derived.js';
import type { Model } from '../ir/ir.js';
import { assertValid, checkModel } from '../ir/checker.js';
import { forEachTensor, loadModel, releaseModel, saveModel, type SaveOptions } from '../onnx/index.js';
import type { ConvertReport, StreamWriteReport } from '../report/stream.js';
import { externalDataBytes, inputFilesOf, saveModelStreaming, type StreamSaveOptions, type StreamSaveResult } from '../onnx/stream.js';

/** External data past this size streams by default (the protobuf limit, 2 GiB). */
export const STREAM_AUTO_BYTES = 2 ** 31;

/** Options of every streaming run (the CLI's --stream, --resume, --max-data-file-size). */
export interface StreamOptions {
  /** true: stream; false: never; undefined: when the external data is over {@link STREAM_AUTO_BYTES}. */
  stream?: boolean;
  resume?: boolean;
  maxDataFileSize?: number;
  /** Tensors of at least this many bytes go to external data (default 1024). */
  threshold?: number;
  /** Free bytes at the destination (default: statfs); for tests. */
  freeBytes?: (dir: string) => number;
  /** Bytes written of the total, after each tensor. */
  onProgress?: (done: number, total: number, tensor: string) => void;
  fsync?: boolean;
}


/** Whether `modelPath` is to be streamed under `o` (loads the graph only, reads no weights). */
export async function shouldStream(modelPath: string, o: Pick<StreamOptions, 'stream' | 'resume' | 'maxDataFileSize'>): Promise<boolean> {
  if (o.stream !== undefined) return o.stream;
  if (o.resume || o.maxDataFileSize !== undefined) return true;
  const model = await loadModel(modelPath);
  try {
    return externalDataBytes(model) > STREAM_AUTO_BYTES;
  } finally {
    releaseModel(model);
  }
}

/** Peak resident set of this process from /proc (undefined elsewhere). */
export function peakRss(): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Bytes of the model's tensors: external data plus inline tensors (nothing read). */
export function weightBytes(model: Model): number {
  let n = 0;
  forEachTensor(model, (t) => {
    n += t.isExternal ? (t.external!.length ?? t.byteLength) : t.byteLength;
  });
  return n;
}

/**
 * Checks the rewritten graph (the checker reads no derived data) and writes it with the streaming
 * writer; returns the write report.
 */
export function writeStreamed(model: Model, output: string, o: StreamOptions, fingerprint: string, t0: number, notes: string[], input: { bytes: number; files: string[] }): StreamWriteReport {
  const issues = checkModel(model);
  if (issues.length) throw checkError('QUANT_INVALID_MODEL', `the rewritten model fails the checker (nothing written): ${issues.slice(0, 3).map((i) => `${i.code} ${i.message}`).join('; ')}`, { file: output });
  const so: StreamSaveOptions = { fingerprint, inputFiles: input.files };
  if (o.threshold !== undefined) so.threshold = o.threshold;
  if (o.maxDataFileSize !== undefined) so.maxDataFileSize = o.maxDataFileSize;
  if (o.resume) so.resume = true;
  if (o.freeBytes) so.freeBytes = o.freeBytes;
  if (o.onProgress) so.onProgress = o.onProgress;
  if (o.fsync !== undefined) so.fsync = o.fsync;
  const res: StreamSaveResult = saveModelStreaming(model, output, so);
  if (res.restartReason) notes.push(res.restartReason);
  if (res.resumed.tensors > 0) notes.push(`resumed: ${res.resumed.tensors} tensors (${res.resumed.bytes} bytes) taken over from the interrupted run`);
  const report: StreamWriteReport = {
    streamed: true,
    inputBytes: input.bytes,
    outputBytes: res.bytes + res.dataFiles.reduce((a, f) => a + f.bytes, 0),
    dataFiles: res.dataFiles,
    externalTensors: res.externalTensors,
    resumed: res.resumed,
    wallMs: performance.now() - t0,
    notes,
  };
  const rss = peakRss();
  if (rss !== undefined) report.peakRssBytes = rss;
  return report;
}

export interface ConvertOptions extends StreamOptions {
  model: string;
  output: string;
  save?: SaveOptions;
}


/**
 * `convert`: load, check and save. Models with external data over {@link STREAM_AUTO_BYTES}, or when
 * splitting or resuming is asked for, go through the streaming writer (tensor by tensor, disk-space
 * guard, resumable); the rest through saveModel (inline or external as the save options say).
 */
export async function convertWorkflow(o: ConvertOptions): Promise<ConvertReport> {
  const t0 = performance.now();
  const model = await loadModel(o.model);
  assertValid(model, o.model);
  const input = { bytes: weightBytes(model), files: inputFilesOf(model) };
  const stream = o.stream ?? (o.resume || o.maxDataFileSize !== undefined || externalDataBytes(model) > STREAM_AUTO_BYTES);
  const base = { schema: 'onnxforge.convert/1' as const, input: o.model, output: o.output };
  if (!stream) {
    const res = await saveModel(model, o.output, o.save ?? {});
    return { ...base, streamed: false, bytes: res.bytes, dataFiles: res.dataPath ? [{ path: res.dataPath, bytes: res.dataBytes ?? 0 }] : [], externalTensors: res.externalTensors, notes: [], wallMs: performance.now() - t0 };
  }
  if (o.save?.inlineData) throw inputError('USAGE_CONFLICT', 'streaming writes external data: --inline-data cannot be used with --stream, --resume or --max-data-file-size');
  const w = writeStreamed(model, o.output, { ...o, ...(o.save?.threshold !== undefined && o.threshold === undefined ? { threshold: o.save.threshold } : {}) }, 'convert', t0, [], input);
  const derived = (() => {
    let n = 0;
    forEachTensor(model, (t) => {
      if (isDerived(t)) n++;
    });
    return n;
  })();
  if (derived) w.notes.push(`${derived} tensors computed while writing`);
  return { ...base, streamed: true, bytes: w.outputBytes - w.dataFiles.reduce((a, f) => a + f.bytes, 0), dataFiles: w.dataFiles, externalTensors: w.externalTensors, resumed: w.resumed, notes: w.notes, wallMs: performance.now() - t0 };
}

/** A byte size: a number of bytes, or with a unit (1500M, 2G, 512KiB; K/M/G/T are powers of 1000, KiB/MiB/GiB/TiB of 1024). */
export function parseByteSize(v: unknown, flag: string): number {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]i?)?b?\s*$/i.exec(String(v));
  if (!m) throw inputError('USAGE_BAD_VALUE', `${flag} must be a size in bytes (e.g. 2000000000, 1500M, 2GiB), got ${String(v)}`, { field: flag.replace(/^--/, '') });
  const unit = (m[2] ?? '').toLowerCase();
  const pow = ' kmgt'.indexOf(unit[0] ?? ' ');
  const n = Math.floor(Number(m[1]) * (unit.endsWith('i') ? 1024 : 1000) ** Math.max(0, pow));
  if (!Number.isSafeInteger(n) || n < 1) throw inputError('USAGE_BAD_VALUE', `${flag} must be at least 1 byte, got ${String(v)}`, { field: flag.replace(/^--/, '') });
  return n;
}

/** The streaming options from parsed CLI flags (`stream`, `resume`, `maxDataFileSize`) and a free-space figure. */
export function streamOptionsFrom(a: Record<string, unknown>, freeBytes?: number): StreamOptions {
  const o: StreamOptions = {};
  if (typeof a.stream === 'boolean') o.stream = a.stream;
  if (a.resume === true) o.resume = true;
  if (a.maxDataFileSize !== undefined) o.maxDataFileSize = parseByteSize(a.maxDataFileSize, '--max-data-file-size');
  if (freeBytes !== undefined) o.freeBytes = () => freeBytes;
  return o;
}
