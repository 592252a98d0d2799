/**
 * GPTQ for models larger than memory: the calibration of the int4 pass's GPTQ (passes/quantize/int4)
 * run one part of the model at a time. The graph stays in memory, the weights stay lazy.
 *
 * 1. The graph, in topological order up to the last weight to quantize, is cut into segments of at
 *    most `segmentBytes` of initializer bytes and float64 input moments (K x K per weighted MatMul
 *    input, all held during the segment's run; a node needing more is a segment of its own).
 * 2. Each segment becomes a sub-model: its inputs are the activations entering it (graph inputs and
 *    values earlier segments produced), its outputs the values later segments read; nodes that feed
 *    neither those nor a weighted MatMul's input are left out. onnxruntime runs it, with the moments
 *    of its MatMuls' inputs added as outputs (int4/activations.ts, the same optimization level and
 *    the same stacked feed groups as the in-memory pass), on every calibration run: only this
 *    segment's weights are read.
 * 3. GPTQ (int4/gptq.ts, the same damping, factor and lazy blocks) quantizes each MatMul weight of the
 *    segment; its codes, scales and zero points go to a file in the temporary folder, from which the
 *    streaming writer's derived tensors read them back.
 * 4. Activations that later segments read are kept per calibration run in memory up to
 *    `activationBytes` and spilled to files in the temporary folder beyond it; each is dropped after
 *    the last segment that reads it. The folder is removed at the end and on failure.
 *
 * The activations entering a segment are the float32 values the whole model computes (the same
 * onnxruntime kernels on the same stacked inputs), so the moments and the quantized weights are the
 * in-memory pass's, byte for byte, when its preparation and fusion do not change the graph
 * (test/scale/stream-gptq.test.ts). Memory: the graph, one segment's weights in onnxruntime, one
 * weight's GPTQ state (its Hessian, inverse factor and float64 rows) and the activation budget.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Feed, HostTensor } from '../core/host-tensor.js';
import { fromBytes, onnxDataType } from '../core/host-tensor.js';
import type { Tensor } from '../core/tensor.js';
import type { Model, Node, Value } from '../ir/ir.js';
import { checkLocation, cloneModel, FileExternalSource, forEachTensor } from '../onnx/index.js';
import { readTensorRange, writeModelReferences } from '../onnx/stream.js';
import { accumulateInputMoments, concatFeeds, stackFeeds } from '../passes/quantize/int4/activations.js';
import { packCodes, packZeroPoints } from '../passes/quantize/int4/blocks.js';
import { hessianFactor, quantizeGptqBlocked, type GptqFactor } from '../passes/quantize/int4/gptq.js';
import { Linalg } from '../passes/quantize/int4/linalg.js';
import type { StreamCalibrationReport } from '../report/stream.js';
import { nodeRunner } from '../runtime/runner.js';
import type { Runner } from '../runtime/runner-types.js';
import { peakRss } from './stream.js';

/** A MatMul whose constant B [K, N] GPTQ quantizes. */
export interface GptqTarget {
  node: Node;
  weight: Tensor;
  K: number;
  N: number;
}

export interface StreamGptqOptions {
  blockSize: number;
  symmetric: boolean;
  damp: number;
  /** Initializer and moment bytes per segment (default: twice the largest weight, at least {@link MIN_SEGMENT_BYTES}). */
  segmentBytes?: number;
  /** Activation bytes kept in memory before spilling (default {@link autoActivationBytes}). */
  activationBytes?: number;
  /** Folder in which the temporary folder is made (spilled activations, quantized weights until written). */
  tempParent: string;
  /** A line of progress (segments, spilled bytes). */
  log?: (line: string) => void;
}

/** The quantized parts of one weight, in the layouts the streaming writer emits (MatMulNBits). */
export interface GptqParts {
  codes: Uint8Array;
  scales: Uint8Array;
  zp: Uint8Array;
}

export interface StreamGptq {
  report: StreamCalibrationReport;
  /** The parts of a target's weight (read from its file on each call), or undefined for a node that is not one. */
  parts(node: Node): (() => GptqParts) | undefined;
  /** Removes the temporary folder. */
  dispose(): void;
}

const MIB = 2 ** 20;
export const MIN_SEGMENT_BYTES = 256 * MIB;

/** A quarter of the free memory, between 64 MiB and 2 GiB. */
export function autoActivationBytes(): number {
  return Math.round(Math.min(2048 * MIB, Math.max(64 * MIB, os.freemem() / 4)));
}

/** Bytes of a host tensor's data (strings: 0, they are never spilled). */
function hostBytes(t: HostTensor): number {
  return Array.isArray(t.data) ? 0 : (t.data as ArrayBufferView).byteLength;
}

interface Stored {
  type: HostTensor['type'];
  dims: number[];
  bytes: number;
  tensor?: HostTensor;
  file?: string;
}

/**
 * Activations per calibration run: in memory while they fit in `budget` bytes, in files of `dir()`
 * beyond it. Counts what it holds, its peak and what it spilled.
 */
class ActivationStore {
  private readonly entries = new Map<string, Stored[]>();
  private files = 0;
  inMemory = 0;
  peakInMemory = 0;
  spilledBytes = 0;
  spilledTensors = 0;

  constructor(
    private readonly budget: number,
    private readonly dir: () => string,
  ) {}

  put(name: string, run: number, t: HostTensor): void {
    const bytes = hostBytes(t);
    const s: Stored = { type: t.type, dims: [...t.dims], bytes };
    if (bytes > 0 && this.inMemory + bytes > this.budget) {
      const v = t.data as ArrayBufferView;
      s.file = path.join(this.dir(), `act-${this.files++}.bin`);
      fs.writeFileSync(s.file, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
      this.spilledBytes += bytes;
      this.spilledTensors++;
    } else {
      s.tensor = t;
      this.inMemory += bytes;
      this.peakInMemory = Math.max(this.peakInMemory, this.inMemory);
    }
    let runs = this.entries.get(name);
    if (!runs) this.entries.set(name, (runs = []));
    runs[run] = s;
  }

  get(name: string, run: number): HostTensor {
    const s = this.entries.get(name)?.[run];
    if (!s) throw new Error(`internal: activation ${name} of run ${run} was not kept`);
    return s.tensor ?? fromBytes(s.type, s.dims, fs.readFileSync(s.file!), name);
  }

  drop(name: string): void {
    for (const s of this.entries.get(name) ?? []) {
      if (s.file) fs.rmSync(s.file, { force: true });
      else this.inMemory -= s.bytes;
    }
    this.entries.delete(name);
  }
}

/** Initializer tensors a node reads (its subgraphs' captured ones included). */
function initializersOf(model: Model, n: Node): Map<Value, Tensor> {
  const out = new Map<Value, Tensor>();
  for (const v of [...n.inputs, ...n.implicitInputs()]) {
    const t = v ? model.graph.initializerTensor(v) : undefined;
    if (v && t && model.graph.initializers.get(v.name) === v) out.set(v, t);
  }
  return out;
}

const readsOf = (n: Node): Value[] => [...n.inputs, ...n.implicitInputs()].filter((v): v is Value => v !== null);

/**
 * Node indices per segment: consecutive nodes (topological order) up to index `last`, at most `budget`
 * bytes each of initializers and of the float64 moments (K x K) of the targets' inputs, which the
 * segment's run holds together.
 */
function cut(model: Model, last: number, budget: number, targets: ReadonlyMap<Node, GptqTarget>): { segments: number[][]; bytes: number[] } {
  const segments: number[][] = [];
  const bytes: number[] = [];
  let cur: number[] = [];
  let size = 0;
  let seen = new Set<Value>();
  model.graph.nodes.slice(0, last + 1).forEach((n, i) => {
    const inits = initializersOf(model, n);
    let add = 0;
    for (const [v, t] of inits) if (!seen.has(v)) add += t.byteLength;
    const tg = targets.get(n);
    if (tg && !seen.has(n.inputs[0]!)) add += 8 * tg.K * tg.K;
    if (cur.length && size > 0 && size + add > budget) {
      segments.push(cur);
      bytes.push(size);
      cur = [];
      size = 0;
      seen = new Set();
    }
    cur.push(i);
    size += add;
    for (const v of inits.keys()) seen.add(v);
    if (tg) seen.add(n.inputs[0]!);
  });
  if (cur.length) {
    segments.push(cur);
    bytes.push(size);
  }
  return { segments, bytes };
}

/**
 * The sub-model of nodes `keep` (indices into the graph's nodes) of a clone of `model`: graph inputs
 * `inputs` (typed from the activations fed to them), graph outputs `outputs`, only the initializers
 * the kept nodes read (the rest are never read from disk).
 */
function subModel(model: Model, keep: ReadonlySet<number>, inputs: ReadonlyMap<string, HostTensor>, outputs: readonly string[]): Model {
  const copy = cloneModel(model);
  const g = copy.graph;
  const byName = new Map<string, Value>();
  for (const v of g.inputs) byName.set(v.name, v);
  for (const n of g.nodes) for (const o of n.outputs) byName.set(o.name, o);
  const all = [...g.nodes];
  for (let i = all.length - 1; i >= 0; i--) if (!keep.has(i)) g.removeNode(all[i]!, true);
  for (const v of g.outputs) v.outputOf.delete(g);
  g.outputs = [];
  g.valueInfo = [];
  g.inputs = [...inputs].map(([name, t]) => {
    const v = byName.get(name)!;
    v.producer = null;
    v.outputIndex = -1;
    v.graph = g;
    v.setTensorType(onnxDataType(t.type), t.dims.map(() => undefined));
    return v;
  });
  for (const name of outputs) g.addOutput(byName.get(name)!);
  for (const v of [...g.initializers.values()]) if (v.uses.length === 0) g.removeInitializer(v);
  return copy;
}

/**
 * What segment `seg` (node indices) runs: its targets (`own`), the values it hands on (`outputs`: those
 * produced here that `later` says a later segment reads), the moments of its targets' inputs (name ->
 * K), the nodes those need within the segment (`keep`), and the activations entering it (`inputNames`).
 */
function planSegment(model: Model, seg: readonly number[], later: (name: string) => boolean, targets: ReadonlyMap<Node, GptqTarget>) {
  const g = model.graph;
  const nodes = seg.map((i) => g.nodes[i]!);
  const own = nodes.filter((n) => targets.has(n));
  const produced = new Set(nodes.flatMap((n) => n.outputs.map((v) => v.name)));
  const outputs = [...produced].filter(later);
  const moments = new Map(own.map((n) => [n.inputs[0]!.name, targets.get(n)!.K]));
  const keep = new Set<number>();
  const need = [...outputs, ...moments.keys()];
  const producerIndex = new Map<string, number>();
  for (const i of seg) for (const v of g.nodes[i]!.outputs) producerIndex.set(v.name, i);
  while (need.length) {
    const i = producerIndex.get(need.pop()!);
    if (i === undefined || keep.has(i)) continue;
    keep.add(i);
    for (const v of readsOf(g.nodes[i]!)) need.push(v.name);
  }
  const reads = [...keep].flatMap((i) => readsOf(g.nodes[i]!).map((v) => v.name));
  const inputNames = [...new Set([...reads, ...moments.keys()])].filter((name) => !produced.has(name) && !g.initializers.has(name));
  return { own, outputs, moments, keep, inputNames };
}

/** A target's weight B [K, N], read from its external data (nothing cached). */
function weightKN(t: GptqTarget): Float32Array {
  const raw = readTensorRange(t.weight, 0, t.K * t.N * 4, new Uint8Array(t.K * t.N * 4));
  return new Float32Array(raw.buffer, raw.byteOffset, t.K * t.N);
}

/** GPTQ of one weight (the in-memory pass's quantizeGptqBlocked, on B [K, N] as stored) in MatMulNBits' layouts. */
async function quantizeWeight(t: GptqTarget, hessian: Float64Array, factor: GptqFactor, o: StreamGptqOptions, linalg: Linalg): Promise<GptqParts> {
  const { q } = await quantizeGptqBlocked({ kn: weightKN(t) }, t.N, t.K, hessian, 4, o.blockSize, o.symmetric, factor, linalg);
  return { codes: packCodes(q), scales: new Uint8Array(q.scales.buffer, q.scales.byteOffset, q.scales.byteLength), zp: o.symmetric ? new Uint8Array(0) : packZeroPoints(q).bytes };
}

/**
 * A runner that hands onnxruntime each model as a file in `dir()` whose external tensors keep
 * referencing the input's data files (hard-linked into that folder under their locations; onnxruntime
 * refuses data paths that resolve outside the model's folder, symbolic links included): onnxruntime
 * reads a segment's weights itself, without the three copies in JS that serializing them inline takes
 * (the tensors read, the encoded model, onnxruntime's parse of it). Where the files cannot be linked
 * (another file system), models go to onnxruntime serialized, weights inline.
 */
function fileRunner(model: Model, dir: () => string): Runner {
  const targets = new Map<string, string>();
  forEachTensor(model, (t) => {
    const s = t.external?.source;
    if (t.isExternal && s instanceof FileExternalSource) {
      const loc = checkLocation(t.external!.location, t);
      targets.set(loc, path.join(s.baseDir, loc));
    }
  });
  let linked: boolean | undefined;
  let n = 0;
  return {
    ...nodeRunner,
    async open(m, options, name) {
      if (typeof m === 'string' || m instanceof Uint8Array) return nodeRunner.open(m, options, name);
      const d = dir();
      if (linked === undefined) {
        try {
          for (const [loc, target] of targets) {
            const link = path.join(d, loc);
            fs.mkdirSync(path.dirname(link), { recursive: true });
            fs.linkSync(path.resolve(target), link);
          }
          linked = true;
        } catch {
          linked = false;
        }
      }
      if (!linked) return nodeRunner.open(m, options, name);
      const file = path.join(d, `onnxforge-segment-${n++}.onnx`);
      writeModelReferences(m, file);
      try {
        return await nodeRunner.open(file, options, name);
      } finally {
        fs.rmSync(file, { force: true });
      }
    },
  };
}

/**
 * Calibrates and quantizes `targets` segment by segment over `feeds` (see the file header); the
 * quantized weights wait in the temporary folder until {@link StreamGptq.dispose}.
 */
export async function streamGptq(model: Model, targets: readonly GptqTarget[], feeds: readonly Feed[], o: StreamGptqOptions): Promise<StreamGptq> {
  const t0 = performance.now();
  const g = model.graph;
  g.toposort();
  const log = o.log ?? (() => undefined);
  let tempDir: string | undefined;
  const dir = () => (tempDir ??= fs.mkdtempSync(path.join(o.tempParent, '.onnxforge-gptq-')));
  const dispose = () => {
    if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
  };
  const activationBytes = o.activationBytes ?? autoActivationBytes();
  const store = new ActivationStore(activationBytes, dir);
  const files = new Map<Node, { file: string; codes: number; scales: number }>();
  const runner = fileRunner(model, dir);
  try {
    const byNode = new Map(targets.map((t) => [t.node, t]));
    const index = new Map(g.nodes.map((n, i) => [n, i]));
    const last = Math.max(...targets.map((t) => index.get(t.node)!));
    let largest = 0;
    for (const v of g.initializers.values()) largest = Math.max(largest, g.initializerTensor(v)?.byteLength ?? 0);
    const segmentBytes = o.segmentBytes ?? Math.max(2 * largest, MIN_SEGMENT_BYTES);
    const { segments, bytes } = cut(model, last, segmentBytes, byNode);
    const segmentOf = new Map<Node, number>();
    segments.forEach((s, k) => s.forEach((i) => segmentOf.set(g.nodes[i]!, k)));
    // the last segment that reads each activation (graph inputs and node outputs)
    const lastRead = new Map<string, number>();
    for (const [n, k] of segmentOf) for (const v of readsOf(n)) if (!g.initializers.has(v.name)) lastRead.set(v.name, Math.max(k, lastRead.get(v.name) ?? -1));
    const dropRead = (k: number) => {
      for (const [name, r] of lastRead) if (r === k) store.drop(name);
    };

    const groups = stackFeeds(model, feeds);
    groups.forEach((grp, r) => {
      const feed = concatFeeds(grp);
      for (const [name, t] of Object.entries(feed)) if (lastRead.has(name)) store.put(name, r, t);
    });

    const linalg = new Linalg(nodeRunner);
    const ms = { calibrate: 0, gptq: 0 };
    try {
      for (const [k, seg] of segments.entries()) {
        let t = performance.now();
        const { own, outputs, moments, keep, inputNames } = planSegment(model, seg, (name) => (lastRead.get(name) ?? -1) > k, byNode);
        if (!outputs.length && !moments.size) {
          dropRead(k);
          continue;
        }
        const firstFeed = new Map(inputNames.map((name) => [name, store.get(name, 0)]));
        const sub = subModel(model, keep, firstFeed, outputs);
        const feedOf = (r: number): Feed => Object.fromEntries(inputNames.map((name) => [name, r === 0 ? firstFeed.get(name)! : store.get(name, r)]));
        const hessians = await accumulateInputMoments(sub, moments, groups.length, feedOf, runner, outputs, (r, res) => {
          for (const name of outputs) store.put(name, r, res[name]!);
        });
        firstFeed.clear();
        dropRead(k);
        ms.calibrate += performance.now() - t;
        t = performance.now();
        // one inverse Hessian factor per layer input (q, k and v read the same one), both dropped after the input's last weight
        const factors = new Map<string, Promise<GptqFactor>>();
        const readers = new Map<string, number>();
        for (const n of own) readers.set(n.inputs[0]!.name, (readers.get(n.inputs[0]!.name) ?? 0) + 1);
        for (const n of own) {
          const m = hessians.get(n.inputs[0]!.name)!;
          let f = factors.get(n.inputs[0]!.name);
          // a factor read by several weights (q, k and v) keeps its per-block values for the later ones
          if (!f) factors.set(n.inputs[0]!.name, (f = hessianFactor(m.hessian, m.K, o.damp, linalg, undefined, readers.get(n.inputs[0]!.name)! > 1)));
          const parts = await quantizeWeight(byNode.get(n)!, m.hessian, await f, o, linalg);
          const file = path.join(dir(), `weight-${files.size}.bin`);
          const fd = fs.openSync(file, 'w');
          try {
            for (const b of [parts.codes, parts.scales, parts.zp]) fs.writeSync(fd, b);
          } finally {
            fs.closeSync(fd);
          }
          files.set(n, { file, codes: parts.codes.length, scales: parts.scales.length });
          const left = readers.get(n.inputs[0]!.name)! - 1;
          readers.set(n.inputs[0]!.name, left);
          if (left === 0) {
            hessians.delete(n.inputs[0]!.name);
            factors.delete(n.inputs[0]!.name);
          }
        }
        ms.gptq += performance.now() - t;
        const rss = peakRss();
        log(`gptq segment ${k + 1}/${segments.length}: ${own.length} weight${own.length === 1 ? '' : 's'}, ${(bytes[k]! / MIB).toFixed(0)} MiB of weights and moments; activations ${(store.inMemory / MIB).toFixed(1)} MiB in memory, ${(store.spilledBytes / MIB).toFixed(1)} MiB spilled so far${store.spilledBytes ? ` to ${tempDir}` : ''}; RSS ${(process.memoryUsage().rss / MIB).toFixed(0)} MiB${rss !== undefined ? `, peak ${(rss / MIB).toFixed(0)} MiB` : ''}`);
      }
    } finally {
      await linalg.dispose();
    }
    const report: StreamCalibrationReport = {
      samples: feeds.length,
      runs: groups.length,
      segments: segments.length,
      segmentBytes,
      largestSegmentBytes: Math.max(...bytes),
      activationBudgetBytes: activationBytes,
      peakActivationBytes: store.peakInMemory,
      spilledBytes: store.spilledBytes,
      spilledTensors: store.spilledTensors,
      gptqWeights: files.size,
      ms: { calibrate: ms.calibrate, gptq: ms.gptq, total: performance.now() - t0 },
    };
    if (store.spilledBytes && tempDir) report.spillDir = tempDir;
    return {
      report,
      parts(node) {
        const f = files.get(node);
        if (!f) return undefined;
        return () => {
          const b = fs.readFileSync(f.file);
          return { codes: b.subarray(0, f.codes), scales: b.subarray(f.codes, f.codes + f.scales), zp: b.subarray(f.codes + f.scales) };
        };
      },
      dispose,
    };
  } catch (e) {
    dispose();
    throw e;
  }
}
