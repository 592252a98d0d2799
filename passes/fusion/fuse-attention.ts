/**
 * fuse-attention: replaces exported scaled-dot-product attention
 *
 *   scores = MatMul(Q, K^T) / c            (or * c; dynamo: MatMul(Q * a, K^T * b))
 *   probs  = Softmax(scores [+ mask | Where(causal, scores, min)], axis -1)
 *   out    = Reshape(Transpose(MatMul(probs, V), [0,2,1,3]), [B, S, H])
 *
 * where Q, K, V are [B, S, H] tensors split into heads by Reshape([B, S, N, D]) + Transpose (the
 * Reshape shape constant, or built by Shape/Gather/Unsqueeze/Concat chains; K^T by one Transpose
 * [0,2,3,1] or two), by one fused operator:
 *
 * - target microsoft: `com.microsoft.Attention` with packed QKV weights [H, 3H] and bias [3H] when
 *   Q, K and V are MatMul(+bias) projections of one tensor (three MatMuls, or GPT-2's one MatMul split
 *   in three), else (and with `pack` off) `com.microsoft.MultiHeadAttention` on the three [B, S, H]
 *   tensors, their projections left as they are (MatMuls weight-only quantization can take). The mask must be
 *   a padding mask made from a [B, T] 0/1 input (`(1 - mask) * min`, or dynamo's Expand/Where form),
 *   which becomes the operator's 2-D mask with `mask_filter_value` = min, or a causal mask (Where with
 *   a Slice of a lower-triangular buffer, or Add of a Slice of an upper-triangular additive buffer),
 *   which becomes `unidirectional`.
 * - target generic: ONNX `Attention` (opset 23). With [B, S, H] projections it takes them directly
 *   (`q_num_heads`/`kv_num_heads`) and returns [B, S, H]; otherwise (e.g. rotary embeddings applied
 *   after the head split) it takes the 4-D [B, N, S, D] tensors and the output Transpose/Reshape stay.
 *   Any additive mask is passed as `attn_mask`; a Where causal mask becomes `is_causal`.
 */
import { DataType } from '../../core/dtype.js';
import { Tensor } from '../../core/tensor.js';
import { Attribute, constantOf, Model, Node, Value } from '../../ir/ir.js';
import { sharedShapes } from '../analyses.js';
import { matched, noMatch, type Match, type Pattern } from '../pass.js';
import { insertNodeBefore, notApplicable, onlyUsedBy, replaceChain, scalarConstant } from '../patterns.js';
import { FusionTarget, GENERIC_OPSET, inputProducers, msNode, producerOf, removeDeadProducers, targetPass } from './transformer-target.js';

// ---------------------------------------------------------------------------------------------
// pieces of the pattern (pure)

const samePerm = (n: Node, perm: number[]) => JSON.stringify(n.getInts('perm')) === JSON.stringify(perm);

/** [N, D] when `shape` reshapes [B, S, H] to [B, S, N, D] keeping B and S; else a reason. */
function headShape(shape: Value | null | undefined): [number, number] | string {
  const c = constantOf(shape);
  if (c) {
    const s = c.toNumbers();
    if (s.length !== 4) return `Reshape shape has ${s.length} entries, not 4`;
    if (s[0] !== 0 || (s[1] !== -1 && s[1] !== 0)) return `constant Reshape shape [${s.join(',')}] does not keep the batch and sequence dims`;
    if (!(s[2]! > 0 && s[3]! > 0)) return `constant Reshape shape [${s.join(',')}] has no explicit heads and head size`;
    return [s[2]!, s[3]!];
  }
  const cat = producerOf(shape, 'Concat');
  if (!cat || cat.inputs.length !== 4) return 'Reshape shape is neither constant nor a Concat of 4 parts';
  const keep = keptDims(cat, 2);
  if (keep) return keep;
  const n = scalarConstant(cat.input(2));
  const d = scalarConstant(cat.input(3));
  if (n === undefined || d === undefined || n <= 0 || d <= 0) return 'the heads and head size of the Reshape shape are not constants';
  return [n, d];
}

/** Reason when the first `k` Concat parts are not dims 0..k-1 of a tensor (Shape -> Gather(i) -> Unsqueeze). */
function keptDims(cat: Node, k: number): string | undefined {
  for (let i = 0; i < k; i++) {
    const v = cat.input(i);
    const un = producerOf(v, 'Unsqueeze');
    const g = producerOf(un?.input(0) ?? (constantOf(v) ? null : v), 'Gather');
    const sh = producerOf(g?.input(0), 'Shape');
    if (!sh || scalarConstant(g!.input(1)) !== i) return `Reshape shape part ${i} is not dim ${i} of a tensor (Shape/Gather/Unsqueeze)`;
  }
  return undefined;
}

/** True when `shape` reshapes [B, S, N, D] to [B, S, H] keeping B and S with H = n * d. */
function mergeShapeOk(shape: Value | null | undefined, hidden: number): string | undefined {
  const c = constantOf(shape);
  if (c) {
    const s = c.toNumbers();
    if (s.length !== 3 || s[0] !== 0 || (s[1] !== -1 && s[1] !== 0) || (s[2] !== hidden && s[2] !== -1)) return `output Reshape shape [${s.join(',')}] does not merge the heads into [B, S, ${hidden}]`;
    return undefined;
  }
  const cat = producerOf(shape, 'Concat');
  if (!cat || cat.inputs.length !== 3) return 'output Reshape shape is neither constant nor a Concat of 3 parts';
  const why = keptDims(cat, 2);
  if (why) return why;
  const h = scalarConstant(cat.input(2));
  if (h !== hidden && h !== -1) return `output Reshape last dim ${h} is not ${hidden}`;
  return undefined;
}

interface Heads {
  /** The [B, S, H] tensor split into heads, when the split was recognized. */
  x3?: Value;
  /** The [B, N, S, D] tensor (for K: before the K^T transpose; absent when K^T is one Transpose [0,2,3,1]). */
  x4?: Value;
  n?: number;
  d?: number;
}

/** Q or V: [B, N, S, D] as Transpose([0,2,1,3]) of Reshape(x3, [B, S, N, D]) or any 4-D tensor. */
export function splitHeads(v: Value): Heads {
  const t = producerOf(v, 'Transpose');
  const r = t && samePerm(t, [0, 2, 1, 3]) ? producerOf(t.input(0), 'Reshape') : undefined;
  if (r) {
    const nd = headShape(r.input(1));
    if (typeof nd !== 'string') return { x3: r.input(0)!, x4: v, n: nd[0], d: nd[1] };
  }
  return { x4: v };
}

/** K^T: Transpose([0,2,3,1]) of Reshape(k3), or Transpose([0,1,3,2]) of K. */
export function splitKeyT(kT: Value): Heads | string {
  const t = producerOf(kT, 'Transpose');
  if (!t) return 'the second MatMul operand is not a Transpose (K^T)';
  if (samePerm(t, [0, 1, 3, 2])) return splitHeads(t.input(0)!);
  if (samePerm(t, [0, 2, 3, 1])) {
    const r = producerOf(t.input(0), 'Reshape');
    if (!r) return 'K^T Transpose [0,2,3,1] does not read a Reshape';
    const nd = headShape(r.input(1));
    if (typeof nd === 'string') return nd;
    return { x3: r.input(0)!, n: nd[0], d: nd[1] };
  }
  return `K^T Transpose has perm [${t.getInts('perm')?.join(',')}]`;
}

/** `v` * c or `v` / c with scalar constant c: [v, factor]. */
function scaled(v: Value): [Value, number] {
  const p = v.producer;
  if (p && p.opDomain === '' && (p.opType === 'Mul' || p.opType === 'Div')) {
    const c1 = scalarConstant(p.input(1));
    if (c1 !== undefined && c1 !== 0) return [p.input(0)!, p.opType === 'Mul' ? c1 : 1 / c1];
    const c0 = p.opType === 'Mul' ? scalarConstant(p.input(0)) : undefined;
    if (c0 !== undefined) return [p.input(1)!, c0];
  }
  return [v, 1];
}

type Mask =
  | { kind: 'none' }
  /** `rowsBroadcast`: the additive mask is [B, 1, 1, T] (broadcast over the query rows). */
  | { kind: 'padding'; mask2d: Value; filter: number; additive: Value; rowsBroadcast: boolean }
  | { kind: 'causal'; filter: number; additive?: Value }
  | { kind: 'additive'; additive: Value; why: string };

/** Value constant `c` of `Mul(x, c)` / `Mul(c, x)`, with x. */
function mulByConstant(v: Value | null | undefined): [Value, number] | undefined {
  const m = producerOf(v, 'Mul');
  if (!m) return undefined;
  for (const i of [0, 1]) {
    const c = scalarConstant(m.input(i));
    if (c !== undefined) return [m.input(1 - i)!, c];
  }
  return undefined;
}

/** `1 - x`: x. */
function oneMinus(v: Value | null | undefined): Value | undefined {
  const s = producerOf(v, 'Sub');
  return s && scalarConstant(s.input(0)) === 1 ? s.input(1)! : undefined;
}

/** Unsqueeze axes (attribute or input). */
function unsqueezeAxes(n: Node): number[] | undefined {
  return n.getInts('axes') ?? constantOf(n.input(1))?.toNumbers();
}

/** A [B, T] mask lifted to [B, 1, 1, T] by Unsqueeze(1), Unsqueeze(2) or Unsqueeze([1, 2]). */
function liftedMask(v: Value | null | undefined): Value | undefined {
  const u = producerOf(v, 'Unsqueeze');
  if (!u) return undefined;
  const axes = unsqueezeAxes(u);
  if (JSON.stringify(axes) === '[1,2]') return u.input(0)!;
  if (JSON.stringify(axes) !== '[2]') return undefined;
  const u1 = producerOf(u.input(0), 'Unsqueeze');
  return u1 && JSON.stringify(unsqueezeAxes(u1)) === '[1]' ? u1.input(0)! : undefined;
}

/** The 2-D mask under `Cast(lifted)` or `Cast(Expand(lifted, shape))`, if it is not a constant; and whether it was expanded. */
function paddingSource(v: Value | null | undefined): [Value, boolean] | undefined {
  const cast = producerOf(v, 'Cast');
  if (!cast || cast.getInt('to') !== DataType.FLOAT) return undefined;
  let x = cast.input(0);
  const ex = producerOf(x, 'Expand');
  if (ex) x = ex.input(0);
  const m = liftedMask(x);
  if (!m || constantOf(m)) return undefined;
  return [m, ex !== undefined];
}

/**
 * Triangular test of a constant [1, 1, M, M] (or [M, M]) buffer: every element on or below the
 * diagonal is `low` (or any nonzero value) and every element above it is `high`.
 */
function triangular(t: Tensor, low: number | 'nonzero', high: number): boolean {
  const d = t.dims;
  if (d.length < 2 || d.slice(0, -2).some((x) => x !== 1) || d[d.length - 1] !== d[d.length - 2]) return false;
  const m = d[d.length - 1]!;
  // bool and float32 buffers read in place (a 256 x 256 causal buffer as number[] cost ~1.5 ms per attention),
  // compared in the loops (a test function called per element cost ~2 ms more on a cold start)
  const data: ArrayLike<number> = t.dataType === DataType.BOOL || t.dataType === DataType.FLOAT ? (t.data() as Uint8Array | Float32Array) : t.toNumbers();
  for (let i = 0; i < m; i++) {
    const row = i * m;
    for (let j = 0; j <= i; j++) {
      const x = data[row + j];
      if (low === 'nonzero' ? x === 0 : x !== low) return false;
    }
    for (let j = i + 1; j < m; j++) if (data[row + j] !== high) return false;
  }
  return true;
}

/** Results of {@link triangular} by buffer and test in this pass run (every layer slices the same buffer). */
let causalTests = new WeakMap<Tensor, Map<string, boolean>>();

/** This pass run's `pack` option (set by prepare, read by the matcher). */
let packing = true;

/** An additive causal buffer: 0 on and below the diagonal, `filter` (from the buffer itself) above; a bool one: true, false. */
function triangularOnce(t: Tensor, test: 'additive' | 'bool', filter = 0): boolean {
  let byTest = causalTests.get(t);
  if (!byTest) causalTests.set(t, (byTest = new Map()));
  let r = byTest.get(test);
  if (r === undefined) byTest.set(test, (r = test === 'additive' ? triangular(t, 0, filter) : triangular(t, 'nonzero', 0)));
  return r;
}

/** Slices of `buf` on axes 2 and 3 starting at 0 (one Slice on both axes, or two). */
function slicedFromOrigin(v: Value | null | undefined): Tensor | undefined {
  let cur = v;
  const axes = new Set<number>();
  for (let k = 0; k < 2; k++) {
    const s = producerOf(cur, 'Slice');
    if (!s) break;
    const starts = constantOf(s.input(1))?.toNumbers();
    const ax = constantOf(s.input(3))?.toNumbers();
    const steps = s.input(4) ? constantOf(s.input(4))?.toNumbers() : undefined;
    if (!starts || !ax || starts.some((x) => x !== 0) || (steps && steps.some((x) => x !== 1))) return undefined;
    for (const a of ax) axes.add(a < 0 ? a + 4 : a);
    cur = s.input(0);
  }
  if (axes.size !== 2 || !axes.has(2) || !axes.has(3)) return undefined;
  return constantOf(cur);
}

/** Classifies the mask between the scaled scores and the Softmax. */
function classifyMask(softIn: Value, scoresOut: (v: Value) => boolean): { scores: Value; mask: Mask; nodes: Node[] } | string {
  const p = softIn.producer;
  if (!p || p.opDomain !== '') return 'the Softmax input has no producer';
  if (p.opType === 'Add') {
    const i = scoresOut(p.input(0)!) ? 0 : scoresOut(p.input(1)!) ? 1 : -1;
    if (i < 0) return { scores: softIn, mask: { kind: 'none' }, nodes: [] };
    const ext = p.input(1 - i)!;
    const scores = p.input(i)!;
    // TorchScript: (1 - Cast(Unsqueeze(mask))) * min
    const mc = mulByConstant(ext);
    const src = mc && paddingSource(oneMinus(mc[0]));
    if (mc && src) return { scores, mask: { kind: 'padding', mask2d: src[0], filter: mc[1], additive: ext, rowsBroadcast: !src[1] }, nodes: [p] };
    // dynamo: Where(Cast(inv, bool), min, inv), inv = 1 - Cast(Expand(Unsqueeze(mask)))
    const w = producerOf(ext, 'Where');
    if (w) {
      const inv = w.input(2)!;
      const cond = producerOf(w.input(0), 'Cast');
      const filter = scalarConstant(w.input(1));
      const s2 = paddingSource(oneMinus(inv));
      if (cond && cond.input(0) === inv && filter !== undefined && s2) return { scores, mask: { kind: 'padding', mask2d: s2[0], filter, additive: ext, rowsBroadcast: !s2[1] }, nodes: [p] };
    }
    // additive causal buffer (0 on/below the diagonal, a large negative value above)
    const buf = slicedFromOrigin(ext);
    if (buf) {
      // element 1 only (toNumbers() of a 256 x 256 buffer made a 65536-element array per attention)
      const filter = buf.dataType === DataType.FLOAT && buf.size > 1 ? (buf.data() as Float32Array)[1]! : (buf.toNumbers()[1] ?? 0);
      if (filter <= -1e4 && triangularOnce(buf, 'additive', filter)) return { scores, mask: { kind: 'causal', filter, additive: ext }, nodes: [p] };
    }
    return { scores, mask: { kind: 'additive', additive: ext, why: 'the additive mask is neither a padding mask from a [B, T] input nor a causal buffer' }, nodes: [p] };
  }
  if (p.opType === 'Where') {
    const filter = scalarConstant(p.input(2));
    if (!scoresOut(p.input(1)!) || filter === undefined) return 'the Softmax input is a Where that does not select between the scores and a constant';
    const buf = slicedFromOrigin(p.input(0));
    if (!buf || buf.dataType !== DataType.BOOL || !triangularOnce(buf, 'bool')) return 'the Where condition is not a Slice of a lower-triangular (causal) buffer';
    return { scores: p.input(1)!, mask: { kind: 'causal', filter }, nodes: [p] };
  }
  return { scores: softIn, mask: { kind: 'none' }, nodes: [] };
}

/** A projection `Add(MatMul(x, W), b)` (either Add order) or `MatMul(x, W)` with constant W [H_in, H_out]. */
interface Projection {
  x: Value;
  w: Tensor;
  b?: Tensor;
}

function projection(v: Value): Projection | undefined {
  let mmV: Value | null | undefined = v;
  let b: Tensor | undefined;
  const add = producerOf(v, 'Add');
  if (add) {
    const i = producerOf(add.input(0), 'MatMul') ? 0 : producerOf(add.input(1), 'MatMul') ? 1 : -1;
    if (i < 0) return undefined;
    b = constantOf(add.input(1 - i));
    if (!b || b.dims.length !== 1) return undefined;
    mmV = add.input(i);
  }
  const mm = producerOf(mmV, 'MatMul');
  const w = constantOf(mm?.input(1));
  if (!mm || !w || w.dims.length !== 2 || w.dataType !== DataType.FLOAT) return undefined;
  if (b && (b.dims[0] !== w.dims[1] || b.dataType !== DataType.FLOAT)) return undefined;
  return { x: mm.input(0)!, w, ...(b ? { b } : {}) };
}

/** Q, K, V as slices of one projection split by Split(axis -1 or 2) into three equal parts. */
function packedProjection(q: Value, k: Value, v: Value): Projection | undefined {
  const s = producerOf(q, 'Split');
  if (!s || producerOf(k, 'Split') !== s || producerOf(v, 'Split') !== s || s.outputs.length !== 3) return undefined;
  if (s.output(0) !== q || s.output(1) !== k || s.output(2) !== v) return undefined;
  const axis = s.getInt('axis', 0);
  if (axis !== -1 && axis !== 2) return undefined;
  const p = projection(s.input(0)!);
  if (!p) return undefined;
  const h3 = p.w.dims[1]!;
  const sizes = s.input(1) ? constantOf(s.input(1))?.toNumbers() : (s.getInts('split') ?? [h3 / 3, h3 / 3, h3 / 3]);
  if (!sizes || sizes.length !== 3 || sizes.some((x) => x !== h3 / 3)) return undefined;
  return p;
}

/** Column-concatenates three [H, Hk] weights into [H, 3Hk]; biases (zeros when absent) into [3Hk]. */
function packQkv(ps: Projection[]): { w: Tensor; b: Tensor } {
  const rows = ps[0]!.w.dims[0]!;
  const cols = ps.map((p) => p.w.dims[1]!);
  const total = cols.reduce((a, c) => a + c, 0);
  const w = new Float32Array(rows * total);
  const wBytes = new Uint8Array(w.buffer);
  const b = new Float32Array(total);
  let off = 0;
  ps.forEach((p, k) => {
    const n = cols[k]!;
    // rows copied as raw little-endian bytes: a weight loaded from a file is a view at any byte offset,
    // which toFloat32() copies whole before the rows are copied again
    const raw = p.w.bytes();
    if (raw.length === rows * n * 4) for (let r = 0; r < rows; r++) wBytes.set(raw.subarray(r * n * 4, (r + 1) * n * 4), (r * total + off) * 4);
    else {
      const src = p.w.toFloat32();
      for (let r = 0; r < rows; r++) w.set(src.subarray(r * n, (r + 1) * n), r * total + off);
    }
    if (p.b) b.set(p.b.toFloat32(), off);
    off += n;
  });
  return { w: Tensor.from(DataType.FLOAT, [rows, total], w), b: Tensor.from(DataType.FLOAT, [total], b) };
}

// ---------------------------------------------------------------------------------------------
// the match

interface AttentionMatch {
  q: Heads;
  k: Heads;
  v: Heads;
  scale: number;
  mask: Mask;
  /** Last node replaced: the output Reshape (3-D output) or the probs x V MatMul (4-D output). */
  last: Node;
  /** The output is [B, S, H] (Transpose + Reshape recognized). */
  merged: boolean;
  packed?: { x: Value; w: Tensor; b: Tensor };
  dead: Node[];
}

function matchAttention(softmax: Node, target: FusionTarget): Match<AttentionMatch> {
  const axis = softmax.getInt('axis', -1);
  if (axis !== -1 && axis !== 3) return notApplicable(`Softmax axis ${axis} is not the last`);
  const probs = softmax.output(0);
  const pv = probs.uses.length === 1 && !probs.isGraphOutput ? probs.uses[0]!.node : undefined;
  if (!pv || pv.opType !== 'MatMul' || pv.input(0) !== probs) return notApplicable('the Softmax output does not feed only a MatMul with V (attention probabilities used elsewhere?)');
  // scores: MatMul(Q, K^T) scaled before or after
  const isScores = (v: Value) => {
    const [s] = scaled(v);
    return producerOf(s, 'MatMul') !== undefined;
  };
  const cm = classifyMask(softmax.input(0)!, isScores);
  if (typeof cm === 'string') return noMatch(cm);
  const [scoresRaw, post] = scaled(cm.scores);
  const qk = producerOf(scoresRaw, 'MatMul');
  if (!qk) return notApplicable('the Softmax input is not MatMul(Q, K^T) (scaled, masked)');
  const [q4, a] = scaled(qk.input(0)!);
  const [kT, b] = scaled(qk.input(1)!);
  const scale = post * a * b;
  const q = splitHeads(q4);
  const k = splitKeyT(kT);
  if (typeof k === 'string') return noMatch(k);
  const v = splitHeads(pv.input(1)!);
  // single-use intermediates (the chain is recomputed by the fused node)
  const chain: Node[] = [softmax, ...cm.nodes, qk];
  for (const x of [cm.scores, softmax.input(0)!, scoresRaw]) {
    if (x.isGraphOutput || x.uses.length !== 1) return noMatch(`${x.name} (attention scores) has users outside the attention`);
  }
  for (const n of [cm.scores.producer, qk.input(0)!.producer, qk.input(1)!.producer]) if (n && n !== qk && !chain.includes(n) && (n.opType === 'Mul' || n.opType === 'Div')) chain.push(n);
  // the output: Transpose([0,2,1,3]) + Reshape([B, S, H]) merges the heads
  const all3 = q.x3 && k.x3 && v.x3;
  let last: Node = pv;
  let merged = false;
  const t = pv.output(0).uses.length === 1 ? pv.output(0).uses[0]!.node : undefined;
  if (all3 && t && t.opType === 'Transpose' && samePerm(t, [0, 2, 1, 3]) && onlyUsedBy(pv.output(0), t)) {
    // TorchScript reads the merged shape from the Transpose output itself (Shape nodes beside the Reshape)
    const users = t.output(0).isGraphOutput ? [] : t.output(0).uses.map((u) => u.node);
    const r = users.find((n) => n.opType === 'Reshape' && n.input(0) === t.output(0));
    if (r && users.some((n) => n !== r && n.opType !== 'Shape')) return noMatch(`the merged attention output ${t.output(0).name} has users outside the attention`);
    if (r && r.opType === 'Reshape' && r.input(0) === t.output(0) && !mergeShapeOk(r.input(1), q.n! * q.d!)) {
      last = r;
      merged = true;
      chain.push(pv, t);
    }
  }
  if (!merged) chain.push(pv);
  if (merged && (q.n !== k.n || q.n !== v.n || q.d !== k.d || q.d !== v.d)) return noMatch(`Q, K and V are split into different heads (${q.n}x${q.d}, ${k.n}x${k.d}, ${v.n}x${v.d})`);
  const dead = [...chain, ...(last === pv ? [] : [last])];
  if (target === 'microsoft') {
    if (!merged) return noMatch('Q, K or V is not a [B, S, H] tensor split into heads by Reshape/Transpose (rotary embeddings after the split?), or the output is not merged back by Transpose/Reshape; MultiHeadAttention needs [B, S, H] (target generic takes 4-D inputs)');
    if (cm.mask.kind === 'additive') return noMatch(`${cm.mask.why}; com.microsoft attention takes a [B, T] padding mask or a causal flag`);
    // Q, K, V projections of one tensor become the operator's packed [H, 3H] weight and [3H] bias
    const packed = packing ? packedProjection(q.x3!, k.x3!, v.x3!) : undefined;
    let pk: AttentionMatch['packed'];
    if (packed) pk = { x: packed.x, w: packed.w, b: packed.b ?? Tensor.from(DataType.FLOAT, [packed.w.dims[1]!], new Float32Array(packed.w.dims[1]!)) };
    else if (packing) {
      const each = [q.x3!, k.x3!, v.x3!].map(projection);
      if (each.every((p) => p && p.x === each[0]!.x && p.w.dims[1] === q.n! * q.d!)) pk = { x: each[0]!.x, ...packQkv(each as Projection[]) };
    }
    return matched({ q, k, v, scale, mask: cm.mask, last, merged, ...(pk ? { packed: pk } : {}), dead });
  }
  // generic: 4-D [B, N, S, D] inputs need K (not K^T)
  if (!merged && !k.x4) return noMatch('K^T is written with one Transpose [0,2,3,1] and the output is not merged by Transpose/Reshape');
  if (cm.mask.kind === 'causal' && !cm.mask.additive && cm.mask.filter > -1e4) return noMatch(`the causal Where fills ${cm.mask.filter}, not a large negative value`);
  return matched({ q, k, v, scale, mask: cm.mask, last, merged, dead });
}

// ---------------------------------------------------------------------------------------------
// rewrites

function initializer(model: Model, at: Node, t: Tensor, base: string): Value {
  const v = at.graph!.addInitializer(t, model.names.fresh(base));
  v.setTensorType(t.dataType, t.dims);
  return v;
}

/** Cast of the [B, T] mask to int32 (reused when one exists already). */
function int32Mask(model: Model, before: Node, mask: Value): Value {
  for (const u of mask.uses) if (u.node.opType === 'Cast' && u.node.getInt('to') === DataType.INT32 && u.node.graph === before.graph) return u.node.output(0);
  const c = insertNodeBefore(model, before, 'Cast', [mask], `${mask.name}_int32`);
  c.setAttr(Attribute.int('to', DataType.INT32));
  return c.output(0);
}

function rewriteMicrosoft(last: Node, m: AttentionMatch, model: Model): void {
  const base = last.output(0).name;
  const out = new Value(model.names.fresh(`${base}_attention`));
  const maskIn = m.mask.kind === 'padding' ? int32Mask(model, last, m.mask.mask2d) : null;
  let node: Node;
  if (m.packed) {
    const w = initializer(model, last, m.packed.w, `${base}_qkv_weight`);
    const b = initializer(model, last, m.packed.b, `${base}_qkv_bias`);
    node = msNode(model, last, 'Attention', maskIn ? [m.packed.x, w, b, maskIn] : [m.packed.x, w, b], [out]);
  } else {
    node = msNode(model, last, 'MultiHeadAttention', maskIn ? [m.q.x3!, m.k.x3!, m.v.x3!, null, maskIn] : [m.q.x3!, m.k.x3!, m.v.x3!], [out]);
  }
  node.setAttr(Attribute.int('num_heads', m.q.n!));
  node.setAttr(Attribute.float('scale', m.scale));
  if (m.mask.kind === 'padding' || m.mask.kind === 'causal') node.setAttr(Attribute.float('mask_filter_value', Math.max(m.mask.filter, -3.4028234663852886e38)));
  if (m.mask.kind === 'causal') node.setAttr(Attribute.int('unidirectional', 1));
  const upstream = inputProducers(m.dead);
  replaceChain(last, node, m.dead);
  removeDeadProducers(upstream);
}

/** Expand of the [B, 1, 1, T] additive mask to [B, 1, T, T] (one per mask, shared by the layers). */
function squareMask(model: Model, before: Node, ext: Value, mask2d: Value): Value {
  for (const u of ext.uses) if (u.node.opType === 'Expand' && u.node.input(0) === ext && u.node.graph === before.graph) return u.node.output(0);
  const i64 = (xs: number[], tag: string) => initializer(model, before, Tensor.from(DataType.INT64, [xs.length], BigInt64Array.from(xs.map(BigInt))), `${mask2d.name}_${tag}`);
  const shape = insertNodeBefore(model, before, 'Shape', [mask2d], `${mask2d.name}_shape`).output(0);
  const t = insertNodeBefore(model, before, 'Slice', [shape, i64([1], 'one'), i64([2], 'two')], `${mask2d.name}_len`).output(0);
  const b = insertNodeBefore(model, before, 'Slice', [shape, i64([0], 'zero'), i64([1], 'one')], `${mask2d.name}_batch`).output(0);
  const cat = insertNodeBefore(model, before, 'Concat', [b, i64([1], 'one'), t, t], `${mask2d.name}_square`);
  cat.setAttr(Attribute.int('axis', 0));
  return insertNodeBefore(model, before, 'Expand', [ext, cat.output(0)], `${ext.name}_square`).output(0);
}

function rewriteGeneric(last: Node, m: AttentionMatch, model: Model): void {
  const base = last.output(0).name;
  const inputs: Array<Value | null> = m.merged ? [m.q.x3!, m.k.x3!, m.v.x3!] : [m.q.x4!, m.k.x4!, m.v.x4!];
  const additive = m.mask.kind === 'padding' || m.mask.kind === 'additive' || (m.mask.kind === 'causal' && m.mask.additive) ? (m.mask as { additive: Value }).additive : undefined;
  // onnxruntime's Attention-23 wants the mask's query dim equal to the sequence: [B, 1, 1, T] is expanded
  if (additive) inputs.push(m.mask.kind === 'padding' && m.mask.rowsBroadcast ? squareMask(model, last, additive, m.mask.mask2d) : additive);
  const node = insertNodeBefore(model, last, 'Attention', inputs, `${base}_attention`);
  node.setAttr(Attribute.float('scale', m.scale));
  if (m.merged) {
    node.setAttr(Attribute.int('q_num_heads', m.q.n!));
    node.setAttr(Attribute.int('kv_num_heads', m.k.n!));
  }
  if (m.mask.kind === 'causal' && !additive) node.setAttr(Attribute.int('is_causal', 1));
  const upstream = inputProducers(m.dead);
  replaceChain(last, node, m.dead);
  removeDeadProducers(upstream);
}

function attentionPattern(target: FusionTarget): Pattern<AttentionMatch> {
  return {
    name: 'attention',
    anchors: ['Softmax'],
    match: (node) => matchAttention(node, target),
    rewrite: (_node, m, model) => (target === 'microsoft' ? rewriteMicrosoft(m.last, m, model) : rewriteGeneric(m.last, m, model)),
  };
}

export const PATTERNS = { microsoft: [attentionPattern('microsoft')], generic: [attentionPattern('generic')] };

export default targetPass({
  name: 'fuse-attention',
  description: 'Replace MatMul/scale/mask/Softmax/MatMul attention with heads split by Reshape/Transpose by com.microsoft Attention (packed QKV) / MultiHeadAttention, or (target generic) ONNX Attention-23.',
  patterns: PATTERNS,
  stats: { fused: 'attention' },
  genericOpset: GENERIC_OPSET,
  options: {
    pack: { type: 'boolean', default: true, description: "Target microsoft: pack the Q/K/V projections of one tensor into com.microsoft.Attention's [H, 3H] weight; off: MultiHeadAttention on the projections, which stay MatMuls (int4/q4f16 quantize them as MatMulNBits)." },
  },
  // typed outputs let later fusions (skip-layer-norm) tell ranks
  prepare: (model, ctx, options) => {
    causalTests = new WeakMap();
    packing = options.pack !== false;
    sharedShapes(model, ctx);
  },
});
