/**
 * The precision plan of a float16 (or bfloat16) conversion: which nodes of the main graph compute in
 * half precision and, for each node left float32, the reason. Pure: it reads the model and changes
 * nothing.
 *
 * A node with a float32 input or output is converted unless one of these holds (first reason wins):
 * - `excluded`: the user named its op type or node;
 * - `subgraph`: it holds If/Loop/Scan bodies (their insides stay float32; the node is reported);
 * - `shape-computation`: none of its inputs depends on graph-input data (it computes from constants
 *   and Shape/Size outputs: index arithmetic that onnxruntime folds at load);
 * - `no-float16-in-onnx`: the op's type constraints have no float16 at the model's opset, or its output
 *   type is set by an attribute, or it is an unknown custom op;
 * - `no-cpu-kernel` (target `cpu`): onnxruntime's CPU and WASM providers have no native float16 kernel
 *   for it (see kernels.ts), so in float16 it would run in float32 between two inserted Casts;
 * - `cpu-casts-cost-more` (target `cpu`): it has a native float16 kernel, but every op around it is
 *   float32 on CPU, so it would be a float16 island between two Casts of its activations, and those
 *   Casts cost more than the kernel saves (measured on bert-ts17, batch 1, sequence 128, 1 thread:
 *   LayerNormalization in float16 took the model from 2.03 to 10.7 ms; float32 compute with float16
 *   weights runs at 1.0x). On CPU the target is float16 storage with float32 compute;
 * - `variance`: it squares its input (Pow with exponent >= 2, Mul(x, x), ReduceSumSquare, ReduceL2) or
 *   reduces/adds/roots such a square: |x| > 256 already overflows a float16 square, the classic NaN of
 *   decomposed LayerNorm and RMSNorm;
 * - `overflow` / `underflow`: a float input or output's measured range leaves float16: max |x| times
 *   `headroom` above 65504, or nonzero max |x| below 2^-14 (the smallest normal float16; every value
 *   would be subnormal). Constants are read exactly; activations come from calibration ranges (or
 *   random inputs);
 * - `unknown-type`: an output's element type is unknown;
 * - `extra-outputs`: LayerNormalization's Mean/InvStdDev outputs are float32 whatever X is.
 * Data-movement ops (Reshape, Transpose, Gather, ...) are converted only when their float data inputs
 * are half (or constants whose other readers are half): alone they would only add Casts.
 */
import { DataType, roundToBfloat16, roundToFloat16 } from '../../../core/dtype.js';
import { constantOf, Model, Node, Value } from '../../../ir/ir.js';
import { elemTypeOf, inferShapes } from '../../../analysis/shape-inference.js';
import { CONTRIB_HALF_OPS, CPU_BF16_KERNELS, CPU_WASM_HALF_KERNELS, DATA_MOVEMENT, NO_HALF_SCHEMA, opKey } from './kernels.js';

export type KeepReason =
  | 'excluded'
  | 'subgraph'
  | 'shape-computation'
  | 'no-float16-in-onnx'
  | 'no-cpu-kernel'
  | 'cpu-casts-cost-more'
  | 'variance'
  | 'overflow'
  | 'underflow'
  | 'unknown-type'
  | 'extra-outputs'
  | 'data-movement';

export type HalfType = DataType.FLOAT16 | DataType.BFLOAT16;

export interface TensorRange {
  min: number;
  max: number;
}

export interface PlanOptions {
  half: HalfType;
  /** `cpu`: only ops with native float16 kernels in onnxruntime's CPU/WASM providers; `any`: every op ONNX allows. */
  target: 'cpu' | 'any';
  /** Measured ranges of activations by tensor name (graph inputs and node outputs). */
  ranges?: ReadonlyMap<string, TensorRange>;
  /** Safety factor on measured ranges (default 4: keep float32 above 65504 / 4). */
  headroom: number;
  excludeOps?: readonly string[];
  excludeNodes?: readonly string[];
}

export interface KeptNode {
  node: Node;
  reason: KeepReason;
  /** Details: the tensor and its range for overflow/underflow. */
  detail?: string;
}

export interface Plan {
  half: Set<Node>;
  kept: KeptNode[];
}

const HALF_MAX = 65504;
const HALF_MIN_NORMAL = 2 ** -14;

/** Whether a float value has a float32 element type (after shape inference). */
export function isFloat32(v: Value | null | undefined): v is Value {
  return !!v && elemTypeOf(v) === DataType.FLOAT;
}

/** Max |x| of a float32 constant. */
function maxAbsOf(v: Value): number | undefined {
  const t = constantOf(v);
  if (!t || t.dataType !== DataType.FLOAT) return undefined;
  const d = t.toFloat32();
  let m = 0;
  for (let i = 0; i < d.length; i++) {
    const a = Math.abs(d[i]!);
    if (a > m || a !== a) m = a !== a ? Infinity : a;
  }
  return m;
}

/**
 * Why `v` cannot be held in half precision, or undefined when it can. Constants: exactly (overflow
 * when rounding gives infinity, underflow when the largest magnitude is not a normal half value).
 * Activations: from `ranges` with the headroom factor.
 */
export function rangeProblem(v: Value, o: Pick<PlanOptions, 'half' | 'ranges' | 'headroom'>): { reason: 'overflow' | 'underflow'; detail: string } | undefined {
  const c = maxAbsOf(v);
  const bf = o.half === DataType.BFLOAT16;
  const round = bf ? roundToBfloat16 : roundToFloat16;
  const minNormal = bf ? 2 ** -126 : HALF_MIN_NORMAL;
  if (c !== undefined) {
    if (!Number.isFinite(round(c))) return { reason: 'overflow', detail: `constant ${v.name}: max |x| ${c.toPrecision(4)}` };
    if (c > 0 && c < minNormal) return { reason: 'underflow', detail: `constant ${v.name}: max |x| ${c.toPrecision(4)}` };
    return undefined;
  }
  const r = o.ranges?.get(v.name);
  if (!r) return undefined;
  const m = Math.max(Math.abs(r.min), Math.abs(r.max));
  if (!Number.isFinite(round(m * o.headroom)) || (!bf && m * o.headroom > HALF_MAX)) return { reason: 'overflow', detail: `${v.name}: measured max |x| ${m.toPrecision(4)} (x${o.headroom} headroom > ${bf ? '3.39e38' : '65504'})` };
  if (m > 0 && m < minNormal) return { reason: 'underflow', detail: `${v.name}: measured max |x| ${m.toPrecision(4)} < ${minNormal.toPrecision(3)}` };
  return undefined;
}

/** Values computed from graph-input data (not only from constants and Shape/Size results). */
function dataDependent(model: Model): Set<Value> {
  const g = model.graph;
  const dep = new Set<Value>();
  for (const v of g.inputs) if (!g.initializers.has(v.name) || g.initializers.get(v.name) === v) dep.add(v);
  // initializers that are also graph inputs can be overridden: data too; plain initializers are not
  for (const v of [...dep]) if (constantOf(v)) dep.delete(v);
  for (const n of g.nodes) {
    if (n.opType === 'Shape' || n.opType === 'Size') continue;
    if ([...n.inputs, ...n.implicitInputs()].some((v) => v && dep.has(v))) for (const o of n.outputs) dep.add(o);
  }
  return dep;
}

const READS_ANY_TYPE = new Set(['Cast', 'CastLike', 'Shape', 'Size']);

const SQUARE_FOLLOWERS = new Set(['ReduceMean', 'ReduceSum', 'Add', 'Sqrt', 'Reciprocal']);

/** Nodes of the variance pattern: squares, and the reductions/adds/roots that read them. */
function varianceNodes(model: Model): Set<Node> {
  const out = new Set<Node>();
  for (const n of model.graph.nodes) {
    if (n.opDomain !== '') continue;
    let square = n.opType === 'ReduceSumSquare' || n.opType === 'ReduceL2';
    if (n.opType === 'Pow') {
      const e = constantOf(n.input(1));
      square = !e || e.size !== 1 || e.toFloat32()[0]! >= 2;
    }
    if (n.opType === 'Mul' && n.input(0) && n.input(0) === n.input(1)) square = true;
    if (!square) continue;
    const work = [n];
    while (work.length) {
      const x = work.pop()!;
      if (out.has(x)) continue;
      out.add(x);
      for (const o of x.outputs) for (const c of o.consumers()) if (c.graph === model.graph && c.opDomain === '' && SQUARE_FOLLOWERS.has(c.opType)) work.push(c);
    }
  }
  return out;
}

/** For contrib ops shape inference does not cover: which input's element type output 0 takes. */
const CONTRIB_OUTPUT_FROM: ReadonlyMap<string, number> = new Map([
  ...[...CONTRIB_HALF_OPS].map((k): [string, number] => [k, 0]),
  ['com.microsoft:GatherBlockQuantized', 2],
]);

/**
 * Element types for the outputs of the contrib ops above (MatMulNBits, SkipLayerNormalization, ...),
 * then shape inference again for what follows them, until nothing new is learned.
 */
export function inferTypes(model: Model): void {
  for (let round = 0; round < 8; round++) {
    inferShapes(model);
    let learned = false;
    for (const n of model.graph.nodes) {
      const from = CONTRIB_OUTPUT_FROM.get(opKey(n.opDomain, n.opType));
      const out = n.outputs[0];
      if (from === undefined || !out || elemTypeOf(out) !== undefined) continue;
      const t = elemTypeOf(n.input(from));
      if (t === undefined) continue;
      if (out.type?.tensor) out.type.tensor.elemType = t;
      else out.setTensorType(t);
      learned = true;
    }
    if (!learned) return;
  }
}

/** True when the node reads or writes a float32 tensor (the nodes a conversion concerns). */
export function touchesFloat(n: Node): boolean {
  return n.inputs.some((v) => isFloat32(v)) || n.outputs.some((v) => isFloat32(v));
}

/** Computes the plan for the main graph of `model` (types must be inferred first). */
export function planConversion(model: Model, o: PlanOptions): Plan {
  const g = model.graph;
  const opset = model.opset('') ?? 1;
  const dep = dataDependent(model);
  const variance = varianceNodes(model);
  const exOps = new Set(o.excludeOps ?? []);
  const exNodes = new Set(o.excludeNodes ?? []);
  const cpuKernels = o.half === DataType.BFLOAT16 ? CPU_BF16_KERNELS : CPU_WASM_HALF_KERNELS;
  const kept: KeptNode[] = [];
  const half = new Set<Node>();
  const movement: Node[] = [];

  const reasonFor = (n: Node): { reason: KeepReason; detail?: string } | undefined => {
    const key = opKey(n.opDomain, n.opType);
    if (exOps.has(n.opType) || (n.name !== undefined && exNodes.has(n.name))) return { reason: 'excluded' };
    if (n.subgraphs().length) return { reason: 'subgraph', detail: `${n.subgraphs().length} body graph(s) left float32` };
    if (![...n.inputs, ...n.implicitInputs()].some((v) => v && dep.has(v))) return { reason: 'shape-computation' };
    const minOpset = NO_HALF_SCHEMA.get(key);
    if (minOpset !== undefined && opset < minOpset) return { reason: 'no-float16-in-onnx' };
    if (n.opDomain !== '' && !CONTRIB_HALF_OPS.has(key)) return { reason: 'no-float16-in-onnx', detail: `custom op ${n.opDomain}.${n.opType}` };
    if (o.target === 'cpu' && !cpuKernels.has(key)) return { reason: 'no-cpu-kernel' };
    if (o.target === 'cpu' && !DATA_MOVEMENT.has(key)) return { reason: 'cpu-casts-cost-more', detail: 'native float16 kernel, but the Casts into and out of a float16 island cost more than it saves on CPU/WASM' };
    if (variance.has(n)) return { reason: 'variance' };
    if (n.outputs.some((v) => v.uses.length + v.outputOf.size > 0 && elemTypeOf(v) === undefined)) return { reason: 'unknown-type' };
    if (n.opType === 'LayerNormalization' && n.outputs.length > 1 && n.outputs.slice(1).some((v) => v.name !== '')) return { reason: 'extra-outputs' };
    for (const v of [...n.inputs, ...n.outputs]) {
      if (!isFloat32(v)) continue;
      const p = rangeProblem(v, o);
      if (p) return p;
    }
    return undefined;
  };

  for (const n of g.nodes) {
    if (!touchesFloat(n) || n.opType === 'Constant') continue;
    // Casts are region boundaries already and Shape/Size read any type: the rewrite serves them, the plan skips them
    if (n.opDomain === '' && READS_ANY_TYPE.has(n.opType)) continue;
    const r = reasonFor(n);
    if (r) {
      kept.push({ node: n, ...r });
      continue;
    }
    if (DATA_MOVEMENT.has(opKey(n.opDomain, n.opType))) movement.push(n);
    else half.add(n);
  }

  // data movement: half when every non-constant float data input comes from a half node; a node fed
  // by constants only (an embedding Gather) follows its readers. Repeated until nothing changes, so
  // chains of Reshape/Transpose settle in either direction.
  const isHalfValue = (v: Value) => !!v.producer && half.has(v.producer);
  let changed = true;
  const pending = new Set(movement);
  while (changed) {
    changed = false;
    for (const n of pending) {
      const data = n.inputs.filter((v): v is Value => isFloat32(v) && !constantOf(v));
      const ok =
        data.length > 0
          ? data.every(isHalfValue)
          : n.outputs.some((v) => v.consumers().some((c) => half.has(c))) && n.outputs.every((v) => v.consumers().every((c) => half.has(c) || !isFloatReader(c, v)));
      if (ok) {
        half.add(n);
        pending.delete(n);
        changed = true;
      }
    }
  }
  for (const n of pending) kept.push({ node: n, reason: 'data-movement', detail: 'its float inputs are float32' });
  return { half, kept };
}

/** Whether `c` reads `v` as a float (Shape, Size and Casts to non-float types read any type). */
function isFloatReader(c: Node, _v: Value): boolean {
  return !(c.opType === 'Shape' || c.opType === 'Size');
}
