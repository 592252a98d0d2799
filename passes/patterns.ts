/**
 * The greedy match-then-rewrite driver for {@link Pattern}s, and the small helpers fusion patterns
 * share (single-use checks, constant float data, per-channel vectors, weight replacement, ranks).
 *
 * Driver: every iteration visits each node of every graph (subgraphs included) once, in order; the
 * first pattern anchored on the node's op type whose `match` succeeds is rewritten. Iterations repeat
 * until one changes nothing (converged) or the cap is reached. Matchers never mutate; their reasons
 * for not matching are reported through `ctx.explain` for the final (unchanged) iteration only, so a
 * node that matched in a later round is not reported as a miss.
 */
import { DataType } from '../core/dtype.js';
import { constantOf, Graph, Model, Node, Value } from '../ir/ir.js';
import { Tensor } from '../core/tensor.js';
import { definePass, type Pass, type PassContext, type Pattern } from './pass.js';

export interface PatternRunOptions {
  /** Name of the pass running the patterns (prefix of explanations). */
  passName: string;
  /** Iteration cap (default 10). */
  maxIterations?: number;
}

export interface PatternRunResult {
  changed: boolean;
  /** Rewrites per pattern name. */
  rewrites: Record<string, number>;
  iterations: number;
  /** False when the cap was reached while patterns still applied. */
  converged: boolean;
}

/**
 * A pass that runs `patterns` with the driver: a `maxIterations` option, the opset check when
 * `minOpset` is set, and stats that name the rewrites of each pattern (`stats`: stat -> pattern name)
 * followed by `iterations` and `converged` (1 or 0).
 */
export function patternPass(spec: { name: string; description: string; patterns: readonly Pattern<any>[]; stats: Record<string, string>; minOpset?: number }): Pass<{ maxIterations: number }> {
  const min = spec.minOpset;
  return definePass<{ maxIterations: number }>({
    name: spec.name,
    description: spec.description,
    options: { maxIterations: { type: 'integer', description: 'Iteration cap of the rewrite driver.', default: 10, min: 1 } },
    ...(min !== undefined ? { minOpset: min } : {}),
    run(model, options, ctx) {
      if (min !== undefined && belowOpset(model, min, ctx)) return { changed: false };
      const r = applyPatterns(model, spec.patterns, ctx, { passName: spec.name, maxIterations: options.maxIterations });
      const stats: Record<string, number> = {};
      for (const [stat, pattern] of Object.entries(spec.stats)) stats[stat] = r.rewrites[pattern] ?? 0;
      return { changed: r.changed, stats: { ...stats, iterations: r.iterations, converged: r.converged ? 1 : 0 } };
    },
  });
}

/** Runs `patterns` greedily to a fixed point (or the cap) over every graph of `model`. */
export function applyPatterns(model: Model, patterns: readonly Pattern<any>[], ctx: PassContext, opts: PatternRunOptions): PatternRunResult {
  const cap = opts.maxIterations ?? 10;
  const byOp = new Map<string, Pattern<any>[]>();
  for (const p of patterns) {
    for (const a of p.anchors) {
      const list = byOp.get(a) ?? [];
      list.push(p);
      byOp.set(a, list);
    }
  }
  resetRankCache();
  const rewrites: Record<string, number> = {};
  for (const p of patterns) rewrites[p.name] = 0;
  let iterations = 0;
  let converged = false;
  let anyChange = false;
  const touched = new Set<Graph>();
  while (iterations < cap) {
    iterations++;
    let changed = false;
    const misses: Array<{ node: string; reason: string }> = [];
    for (const g of [...model.graph.allGraphs()]) {
      for (const node of [...g.nodes]) {
        if (node.graph !== g || node.opDomain !== '') continue;
        const cands = byOp.get(node.opType);
        if (!cands) continue;
        for (const p of cands) {
          const m = p.match(node, model);
          if (m.ok) {
            p.rewrite(node, m.value, model);
            rewrites[p.name]!++;
            changed = true;
            touched.add(g);
            break;
          }
          if (ctx.explaining && !m.reason.startsWith(NOT_APPLICABLE)) misses.push({ node: node.label, reason: `${p.name}: ${m.reason}` });
        }
      }
    }
    if (!changed) {
      converged = true;
      for (const e of misses) ctx.explain(e);
      break;
    }
    anyChange = true;
  }
  for (const g of touched) g.toposort();
  return { changed: anyChange, rewrites, iterations, converged };
}

// ---------------------------------------------------------------------------------------------
// Helpers for matchers (pure) and rewrites

const NOT_APPLICABLE = 'n/a: ';

/**
 * A miss that is not worth explaining: the anchor is not even the start of the pattern (an Add with
 * no MatMul operand, say). Such misses are dropped from `--explain`, which then lists only the
 * near-misses a user can act on (a BN whose parameters are graph inputs, a Conv with two users, ...).
 */
export function notApplicable(reason: string): { ok: false; reason: string } {
  return { ok: false, reason: NOT_APPLICABLE + reason };
}

/** The node reading `v` when exactly one node reads it once and it is not a graph output. */
export function soleUser(v: Value): Node | undefined {
  if (v.isGraphOutput || v.uses.length !== 1) return undefined;
  return v.uses[0]!.node;
}

/** True when `v` is read only by `node` (any number of slots) and is not a graph output. */
export function onlyUsedBy(v: Value, node: Node): boolean {
  return !v.isGraphOutput && v.uses.length > 0 && v.uses.every((u) => u.node === node);
}

/** The input of a binary node that is not `v` (undefined when both are `v`). */
export function otherInput(node: Node, v: Value): Value | null | undefined {
  const a = node.input(0);
  const b = node.input(1);
  if (a === v && b !== v) return b;
  if (b === v && a !== v) return a;
  return undefined;
}

/** A float/double constant; `data` (float64 values) is converted lazily. */
export interface FloatConstant {
  t: Tensor;
  readonly data: Float64Array;
}

const FLOAT_TYPES = new Set<number>([DataType.FLOAT, DataType.DOUBLE]);

/** A constant float32/float64 tensor's values as float64, with its tensor; or the reason why not. */
export function floatConstant(v: Value | null | undefined, what: string): FloatConstant | string {
  if (!v) return `${what} is missing`;
  const t = constantOf(v);
  if (!t) return `${what} (${v.name}) is not a constant (initializer or Constant node)`;
  if (!FLOAT_TYPES.has(t.dataType)) return `${what} (${v.name}) is ${t.dtype}; folding supports float and double`;
  let cache: Float64Array | undefined;
  // converted on first use: matchers check shapes and types, rewrites read the values
  return {
    t,
    get data(): Float64Array {
      return (cache ??= Float64Array.from(t.data() as Float32Array | Float64Array));
    },
  };
}

/** A scalar constant's value (any numeric type, any shape with one element), or undefined. */
export function scalarConstant(v: Value | null | undefined): number | undefined {
  const t = constantOf(v);
  if (!t || t.size !== 1 || t.dataType === DataType.STRING) return undefined;
  return t.toFloat32()[0];
}

/** True when `v` is a one-element constant equal to `x` (relative tolerance `tol`). */
export function isScalar(v: Value | null | undefined, x: number, tol = 1e-6): boolean {
  const s = scalarConstant(v);
  return s !== undefined && Math.abs(s - x) <= tol * Math.max(1, Math.abs(x));
}

/**
 * Reads `data` (with dims `dims`) as a vector over one axis of a tensor of rank `rank` after numpy
 * broadcasting: every other dim must be 1. Returns `n` values (a scalar is repeated), or a reason.
 */
export function perAxisVector(data: Float64Array, dims: readonly number[], rank: number, axis: number, n: number): Float64Array | string {
  if (dims.length > rank) return `its rank ${dims.length} exceeds the output rank ${rank}`;
  const k = axis - (rank - dims.length);
  for (let i = 0; i < dims.length; i++) {
    if (i === k) continue;
    if (dims[i] !== 1) return `it varies along axis ${i + rank - dims.length}, not only along the channel axis ${axis}`;
  }
  const len = k >= 0 ? dims[k]! : 1;
  if (len !== 1 && len !== n) return `it has ${len} values along the channel axis, expected 1 or ${n}`;
  if (len === n) return data;
  return new Float64Array(n).fill(data[0]!);
}

/** Builds a float tensor of `dtype` (float or double) from float64 values. */
export function floatTensor(dtype: number, dims: readonly number[], data: Float64Array): Tensor {
  return dtype === DataType.DOUBLE ? Tensor.from(DataType.DOUBLE, dims, Float64Array.from(data)) : Tensor.from(DataType.FLOAT, dims, Float32Array.from(data));
}

/**
 * Sets input `index` of `node` to a new initializer holding `t`, added to the node's graph under a
 * fresh name derived from `base`. The previous producer (a Constant node, say) is left for dead-code
 * elimination.
 */
export function setWeight(model: Model, node: Node, index: number, t: Tensor, base: string): Value {
  const g = node.graph!;
  const v = g.addInitializer(t, model.names.fresh(base));
  v.setTensorType(t.dataType, t.dims);
  node.setInput(index, v);
  return v;
}

/** Creates a node with fresh outputs right before `before`. */
export function insertNodeBefore(model: Model, before: Node, opType: string, inputs: Array<Value | null>, base: string, outputs = 1): Node {
  const outs: Value[] = [];
  for (let i = 0; i < outputs; i++) outs.push(new Value(model.names.fresh(outputs === 1 ? base : `${base}_${i}`)));
  const n = new Node(opType, inputs, outs);
  before.graph!.insertBefore(before, n);
  return n;
}

/**
 * Replaces the chain ending at `last` by `fused`: `fused` is inserted before `last`, takes over the
 * uses of `last`'s output and its name (`replaceAllUsesWith` with `takeName`, so graph outputs and
 * downstream names stay stable), then the nodes in `dead` (in any order) are removed.
 */
export function replaceChain(last: Node, fused: Node, dead: Node[]): void {
  const g = last.graph!;
  if (!fused.graph) g.insertBefore(last, fused);
  const oldOut = last.output(0);
  const newOut = fused.output(0);
  if (oldOut.type && !newOut.type) newOut.type = oldOut.type;
  oldOut.replaceAllUsesWith(newOut, { takeName: true });
  removeDead(dead);
}

/** Removes nodes whose outputs are unused, repeatedly (only among `nodes`). */
export function removeDead(nodes: Node[]): void {
  let progress = true;
  const left = new Set(nodes);
  while (progress && left.size) {
    progress = false;
    for (const n of [...left]) {
      if (n.outputs.every((o) => o.uses.length === 0 && !o.isGraphOutput)) {
        n.graph?.removeNode(n);
        left.delete(n);
        progress = true;
      }
    }
  }
}

/** Element type of `v` when known from its type, constant value or an obvious producer. */
export function elemTypeOf(v: Value | null | undefined, depth = 0, seen = new Set<Value>()): number | undefined {
  if (!v || seen.has(v)) return undefined;
  seen.add(v);
  if (v.elemType !== undefined) return v.elemType;
  const c = constantOf(v);
  if (c) return c.dataType;
  const p = v.producer;
  if (!p || depth > MAX_DEPTH) return undefined;
  if (p.opType === 'Cast') return p.getInt('to');
  if (p.opType === 'Shape' || p.opType === 'Size' || p.opType === 'ArgMax' || p.opType === 'ArgMin' || p.opType === 'NonZero') return DataType.INT64;
  if (BOOL_OPS.has(p.opType)) return DataType.BOOL;
  for (const i of p.inputs) {
    const t = elemTypeOf(i, depth + 1, seen);
    if (t !== undefined) return t;
  }
  return undefined;
}

const SAME_RANK = new Set(['Relu', 'Sigmoid', 'Tanh', 'Clip', 'HardSigmoid', 'HardSwish', 'LeakyRelu', 'Erf', 'Sqrt', 'Exp', 'Neg', 'Abs', 'Cast', 'Softmax', 'Identity', 'BatchNormalization', 'Conv', 'ConvTranspose', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'GlobalMaxPool', 'Resize', 'Pad', 'Dropout', 'LayerNormalization', 'Gelu']);
const BROADCAST = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Where']);

/** Rank of `v` when it can be told from its declared shape, constant value or producer; else undefined. */
export function rankOf(v: Value | null | undefined, depth = 0): number | undefined {
  if (!v) return undefined;
  if (rankCache.has(v)) return rankCache.get(v);
  const r = computeRank(v, depth);
  if (r !== undefined || depth < MAX_DEPTH) rankCache.set(v, r);
  return r;
}

/** Ranks never change under shape-preserving rewrites, so they are cached per Value. */
const BOOL_OPS = new Set(['Equal', 'Greater', 'Less', 'GreaterOrEqual', 'LessOrEqual', 'Not', 'And', 'Or', 'Xor', 'IsNaN', 'IsInf']);

let rankCache = new WeakMap<Value, number | undefined>();

/** Forgets cached ranks (a rewrite outside the pattern driver may have made more of them known). */
export function resetRankCache(): void {
  rankCache = new WeakMap();
}
const MAX_DEPTH = 3000;

function computeRank(v: Value, depth: number): number | undefined {
  const s = v.shape;
  if (s) return s.length;
  const c = constantOf(v);
  if (c) return c.dims.length;
  const p = v.producer;
  if (!p || depth > MAX_DEPTH) return undefined;
  const op = p.opType;
  if (op === 'Gemm' || op === 'Flatten') return 2;
  if (op === 'Shape') return 1;
  if (op === 'Size') return 0;
  if (SAME_RANK.has(op) && v.outputIndex === 0) return rankOf(p.input(0), depth + 1);
  if (BROADCAST.has(op)) {
    let r = 0;
    for (const i of p.inputs) {
      const x = rankOf(i, depth + 1);
      if (x === undefined) return undefined;
      r = Math.max(r, x);
    }
    return r;
  }
  if (op === 'Slice' || op === 'Split' || op === 'Concat') return rankOf(p.input(0), depth + 1);
  if (op === 'Squeeze' || op === 'Unsqueeze') {
    const axes = p.getInts('axes') ?? (p.input(1) ? constantOf(p.input(1))?.toNumbers() : undefined);
    const r = rankOf(p.input(0), depth + 1);
    if (!axes || r === undefined) return undefined;
    return op === 'Squeeze' ? r - axes.length : r + axes.length;
  }
  if (op === 'Transpose') return p.getInts('perm')?.length ?? rankOf(p.input(0), depth + 1);
  if (op === 'Reshape') return lengthOf1D(p.input(1), depth + 1);
  if (op === 'MatMul') {
    const a = rankOf(p.input(0), depth + 1);
    const b = rankOf(p.input(1), depth + 1);
    if (a === undefined || b === undefined) return undefined;
    if (a === 1 && b === 1) return 0;
    if (a === 1) return b - 1;
    if (b === 1) return a - 1;
    return Math.max(a, b);
  }
  return undefined;
}

/** Number of elements of a 1-D integer value (a shape), when known. */
export function lengthOf1D(v: Value | null | undefined, depth = 0): number | undefined {
  if (!v) return undefined;
  const c = constantOf(v);
  if (c) return c.size;
  const s = v.shape;
  if (s && s.length === 1 && typeof s[0] === 'number') return s[0];
  const p = v.producer;
  if (!p || depth > MAX_DEPTH) return undefined;
  if (p.opType === 'Cast' || p.opType === 'Identity') return lengthOf1D(p.input(0), depth + 1);
  if (p.opType === 'Shape' && p.attributes.length === 0) return rankOf(p.input(0), depth + 1);
  if (p.opType === 'Concat') {
    let n = 0;
    for (const i of p.inputs) {
      const x = lengthOf1D(i, depth + 1);
      if (x === undefined) return undefined;
      n += x;
    }
    return n;
  }
  if (p.opType === 'Slice') {
    const starts = p.getInts('starts') ?? constantOf(p.input(1))?.toNumbers();
    const ends = p.getInts('ends') ?? constantOf(p.input(2))?.toNumbers();
    const steps = p.inputs.length > 4 ? constantOf(p.input(4))?.toNumbers() : [1];
    if (!starts || !ends || starts.length !== 1 || ends.length !== 1 || !steps || (steps[0] ?? 1) !== 1) return undefined;
    const n = lengthOf1D(p.input(0), depth + 1);
    if (n === undefined) return undefined;
    const clamp = (x: number) => Math.min(n, Math.max(0, x < 0 ? x + n : x));
    return Math.max(0, clamp(ends[0]!) - clamp(starts[0]!));
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Weight arithmetic shared by the folding patterns (float64 math, written back in the weight's dtype)

/** Kinds of layer whose output channels a per-channel scale can be folded into. */
export type LinearKind = 'Conv' | 'ConvTranspose' | 'GemmB' | 'GemmBT';

/** Number of output channels of a weight of `kind` (`group` for ConvTranspose). */
export function outputChannels(kind: LinearKind, dims: readonly number[], group: number): number {
  switch (kind) {
    case 'Conv':
      return dims[0]!;
    case 'ConvTranspose':
      return dims[1]! * group;
    case 'GemmB':
      return dims[1]!;
    case 'GemmBT':
      return dims[0]!;
  }
}

/**
 * Multiplies every weight feeding output channel `o` by `s[o]`: Conv W[M, C/g, k..] scales rows,
 * ConvTranspose W[C, M/g, k..] scales dim 1 within each group, Gemm B[K, N] columns (B^T: rows).
 */
export function scaleOutputChannels(kind: LinearKind, w: Float64Array, dims: readonly number[], group: number, s: Float64Array): Float64Array {
  const out = new Float64Array(w.length);
  if (kind === 'Conv' || kind === 'GemmBT') {
    const inner = w.length / dims[0]!;
    for (let o = 0; o < dims[0]!; o++) {
      const f = s[o]!;
      for (let i = o * inner, e = i + inner; i < e; i++) out[i] = w[i]! * f;
    }
  } else if (kind === 'GemmB') {
    const n = dims[1]!;
    for (let i = 0; i < w.length; i++) out[i] = w[i]! * s[i % n]!;
  } else {
    const cin = dims[0]!;
    const mg = dims[1]!;
    const inner = w.length / (cin * mg);
    const perGroup = cin / group;
    for (let ci = 0; ci < cin; ci++) {
      const grp = Math.floor(ci / perGroup);
      for (let j = 0; j < mg; j++) {
        const f = s[grp * mg + j]!;
        const base = (ci * mg + j) * inner;
        for (let k = 0; k < inner; k++) out[base + k] = w[base + k]! * f;
      }
    }
  }
  return out;
}

/** For passes with a minimum opset called directly: explains and returns true when the model is older. */
export function belowOpset(model: Model, min: number, ctx: PassContext): boolean {
  const v = model.opset('') ?? 0;
  if (v >= min) return false;
  ctx.explain({ reason: `needs opset ${min}, the model has ${v}; run upgrade-opset<to=${min}> first` });
  return true;
}

/** Reduce axes from the `axes` attribute or (opset 18+) the constant second input; null = all axes. */
export function reduceAxes(node: Node): number[] | null | undefined {
  const a = node.getInts('axes');
  if (a) return a;
  const v = node.input(1);
  if (v && v.name !== '') return constantOf(v)?.toNumbers();
  return null;
}
