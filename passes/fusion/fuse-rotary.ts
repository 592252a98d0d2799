/**
 * fuse-rotary (target microsoft): rotary position embeddings applied after the head split, as the
 * TorchScript and dynamo exporters write Llama's `apply_rotary_pos_emb` (rotate_half form),
 *
 *   x4   = Transpose(Reshape(x3, [B, S, N, D]), [0, 2, 1, 3])
 *   cos4 = Unsqueeze(Gather(cos_cached [M, D], positions))      (positions = Range(c, c + S, 1))
 *   out  = x4 * cos4 + Concat(-x4[..., D/2:], x4[..., :D/2]) * sin4
 *
 * becomes `Transpose(Reshape(com.microsoft.RotaryEmbedding(x3, [start], cos[:, :D/2], sin[:, :D/2]),
 * [B, S, N, D]), [0, 2, 1, 3])`: the rotation moves before the head split, so the attention after it
 * sees [B, S, H] projections split into heads and fuse-attention can write MultiHeadAttention (whose
 * inputs are [B, S, H]). Exact: onnxruntime's kernel computes x * cos + sign * x_rot * sin per element
 * like the exported graph. Needs the caches' two halves equal (the `cat(freqs, freqs)` of HF's rotary
 * module), whole-head rotation (cache width D) and positions counted from a constant start (a
 * `position_ids` input of any shape would need the [B, S] form, which a [1, S] broadcast breaks).
 */
import { DataType } from '../../core/dtype.js';
import { Tensor } from '../../core/tensor.js';
import { Attribute, constantOf, Model, Node, Value } from '../../ir/ir.js';
import { sharedShapesIfAny } from '../analyses.js';
import { matched, noMatch, type Match, type Pattern } from '../pass.js';
import { insertNodeBefore, notApplicable, onlyUsedBy, replaceChain, scalarConstant } from '../patterns.js';
import { splitHeads } from './fuse-attention.js';
import { inputProducers, msNode, producerOf, removeDeadProducers, targetPass } from './transformer-target.js';

interface RotaryMatch {
  x3: Value;
  reshape: Node;
  n: number;
  d: number;
  start: number;
  cos: Value;
  sin: Value;
  dead: Node[];
}

/** [start, end) of a Slice over the last axis of a rank-4 tensor with step 1, else undefined. */
function lastAxisSlice(s: Node | undefined, d: number): [number, number] | undefined {
  if (!s || s.inputs.length < 3) return undefined;
  const [starts, ends] = [constantOf(s.input(1))?.toNumbers(), constantOf(s.input(2))?.toNumbers()];
  const axes = s.input(3) ? constantOf(s.input(3))?.toNumbers() : [0];
  const steps = s.input(4) ? constantOf(s.input(4))?.toNumbers() : [1];
  if (!starts || !ends || !axes || !steps || starts.length !== 1 || ends.length !== 1 || axes.length !== 1 || steps[0] !== 1) return undefined;
  if (axes[0] !== 3 && axes[0] !== -1) return undefined;
  return [starts[0]!, Math.min(ends[0]!, d)];
}

/** x4's rotate_half: Concat(Neg(x4[..., D/2:]), x4[..., :D/2]) over the last axis. */
function isRotateHalf(v: Value, x4: Value, d: number): Node[] | string {
  const cat = producerOf(v, 'Concat');
  if (!cat || cat.inputs.length !== 2 || !(cat.getInt('axis') === -1 || cat.getInt('axis') === 3)) return 'the sin factor is not a Concat of two halves over the last axis';
  const neg = producerOf(cat.input(0), 'Neg');
  const hi = producerOf(neg?.input(0), 'Slice');
  const lo = producerOf(cat.input(1), 'Slice');
  if (!neg || !hi || !lo || hi.input(0) !== x4 || lo.input(0) !== x4) return 'the sin factor is not Concat(-x[..., D/2:], x[..., :D/2]) of the same tensor (interleaved rotary?)';
  const h = lastAxisSlice(hi, d);
  const l = lastAxisSlice(lo, d);
  if (!h || !l || h[0] !== d / 2 || h[1] !== d || l[0] !== 0 || l[1] !== d / 2) return `the halves are not [${d / 2}, ${d}) and [0, ${d / 2}) of the head dim`;
  for (const [val, user] of [[cat.output(0), undefined], [neg.output(0), cat], [hi.output(0), neg], [lo.output(0), cat]] as const) {
    if (user && !onlyUsedBy(val, user)) return `${val.name} has readers outside the rotary embedding`;
  }
  return [cat, neg, hi, lo];
}

/** True when `v` is dim 1 (the sequence) of some tensor: Shape -> Gather(1) or Slice [1, 2), through Squeeze/Unsqueeze/Cast. */
function isSequenceLength(v: Value | null | undefined): boolean {
  let p = v?.producer;
  while (p && p.opDomain === '' && (p.opType === 'Squeeze' || p.opType === 'Unsqueeze' || p.opType === 'Cast')) p = p.input(0)?.producer;
  if (!p || p.opDomain !== '' || !producerOf(p.input(0), 'Shape')) return false;
  if (p.opType === 'Gather') return constantOf(p.input(1))?.toNumbers().join() === '1';
  if (p.opType === 'Slice') return constantOf(p.input(1))?.toNumbers().join() === '1' && constantOf(p.input(2))?.toNumbers().join() === '2';
  return false;
}

/** True when `limit` is `start` + the sequence length (just the sequence length when `start` is 0). */
function countsSequence(limit: Value | null | undefined, start: number): boolean {
  if (start === 0 && isSequenceLength(limit)) return true;
  const add = producerOf(limit, 'Add');
  if (!add) return false;
  return [0, 1].some((i) => scalarConstant(add.input(i)) === start && isSequenceLength(add.input(1 - i)));
}

/**
 * The table and start of `cos4`: Unsqueeze to [1, 1, S, D] of Gather(table [M, D], positions) with
 * positions = Range(c, c + S, 1) (optionally unsqueezed to [1, S]).
 */
function positionTable(v: Value, d: number): { table: Value; start: number; nodes: Node[] } | string {
  const un = producerOf(v, 'Unsqueeze');
  const g = producerOf(un?.input(0), 'Gather');
  if (!un || !g || g.getInt('axis', 0) !== 0) return 'the cos/sin factor is not Unsqueeze(Gather(cache, positions))';
  const t = constantOf(g.input(0));
  if (!t || t.dims.length !== 2 || t.dims[1] !== d || t.dataType !== DataType.FLOAT) return `the rotary cache is not a constant float [positions, ${d}] table (partial rotary?)`;
  let pos = g.input(1);
  const posUn = producerOf(pos, 'Unsqueeze');
  if (posUn) pos = posUn.input(0);
  const range = producerOf(pos, 'Range');
  const start = scalarConstant(range?.input(0));
  if (!range || start === undefined || scalarConstant(range.input(2)) !== 1 || !countsSequence(range.input(1), start)) return 'the positions are not Range(c, c + sequence length, 1) with a constant c (a position_ids input?)';
  const unAxes = un.input(1) ? constantOf(un.input(1))?.toNumbers() : un.getInts('axes');
  const gRank = posUn ? 3 : 2;
  if (JSON.stringify(unAxes) !== JSON.stringify(gRank === 3 ? [1] : [0, 1])) return 'the cos/sin factor is not unsqueezed to [1, 1, S, D]';
  return { table: g.input(0)!, start, nodes: [un, g, ...(posUn ? [posUn] : []), range] };
}

/** First half of a [M, D] cache whose two halves are equal (the `cat(freqs, freqs)` layout), else undefined. */
function halfTable(t: Tensor): Tensor | undefined {
  const [m, d] = [t.dims[0]!, t.dims[1]!];
  const src = t.toFloat32();
  const out = new Float32Array((m * d) / 2);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < d / 2; c++) {
      const a = src[r * d + c]!;
      if (a !== src[r * d + c + d / 2]) return undefined;
      out[(r * d) / 2 + c] = a;
    }
  }
  return Tensor.from(DataType.FLOAT, [m, d / 2], out);
}

function matchRotary(add: Node): Match<RotaryMatch> {
  const muls = [producerOf(add.input(0), 'Mul'), producerOf(add.input(1), 'Mul')];
  if (!muls[0] || !muls[1]) return notApplicable('not an Add of two products');
  // which product is x4 * cos: the one with a head-split operand that the other product's Concat rotates
  for (const [ci, si] of [[0, 1], [1, 0]] as const) {
    const cm = muls[ci]!;
    const sm = muls[si]!;
    for (const xi of [0, 1]) {
      const x4 = cm.input(xi)!;
      const h = splitHeads(x4);
      if (!h.x3 || h.n === undefined || h.d === undefined) continue;
      const d = h.d;
      for (const ri of [0, 1]) {
        const rot = isRotateHalf(sm.input(ri)!, x4, d);
        if (typeof rot === 'string') {
          if (producerOf(sm.input(ri), 'Concat')) return noMatch(rot);
          continue;
        }
        const cos = positionTable(cm.input(1 - xi)!, d);
        const sin = positionTable(sm.input(1 - ri)!, d);
        if (typeof cos === 'string') return noMatch(cos);
        if (typeof sin === 'string') return noMatch(sin);
        if (cos.start !== sin.start) return noMatch('the cos and sin positions start differently');
        for (const [val, user] of [[cm.output(0), add], [sm.output(0), add]] as const) if (!onlyUsedBy(val, user)) return noMatch(`${val.name} has readers outside the rotary embedding`);
        if (x4.uses.some((u) => u.node !== cm && !rot.includes(u.node))) return noMatch(`the head-split ${x4.name} has readers outside the rotary embedding`);
        const reshape = producerOf(producerOf(x4, 'Transpose')!.input(0), 'Reshape')!;
        return matched({ x3: h.x3, reshape, n: h.n, d, start: cos.start, cos: cos.table, sin: sin.table, dead: [add, cm, sm, ...rot] });
      }
    }
  }
  return notApplicable('not x * cos + rotate_half(x) * sin of a tensor split into heads by Reshape/Transpose');
}

/** The half cache of `table` (one initializer per table, shared by every layer and by Q and K). */
function halfCache(model: Model, at: Node, table: Value): Value | undefined {
  const name = `${table.name}_rotary_half`;
  const have = at.graph!.findValue(name);
  if (have?.initializer) return have;
  const half = halfTable(constantOf(table)!);
  if (!half) return undefined;
  const v = at.graph!.addInitializer(half, model.names.fresh(name));
  v.setTensorType(half.dataType, half.dims);
  return v;
}

export const rotaryPattern: Pattern<RotaryMatch> = {
  name: 'rotary',
  anchors: ['Add'],
  match(add: Node): Match<RotaryMatch> {
    const m = matchRotary(add);
    if (!m.ok) return m;
    // checked here (not in the rewrite) so a near miss is explained: the halves must be equal
    for (const t of [m.value.cos, m.value.sin]) if (!halfTable(constantOf(t)!)) return noMatch(`the rotary cache ${t.name} does not repeat its first half (not the rotate_half layout)`);
    return m;
  },
  rewrite(add: Node, m: RotaryMatch, model: Model): void {
    const base = add.output(0).name;
    const cos = halfCache(model, add, m.cos)!;
    const sin = halfCache(model, add, m.sin)!;
    const posName = model.names.fresh(`${base}_rotary_start`);
    const pos = add.graph!.addInitializer(Tensor.from(DataType.INT64, [1], BigInt64Array.of(BigInt(m.start))), posName);
    pos.setTensorType(DataType.INT64, [1]);
    const y3 = new Value(model.names.fresh(`${base}_rotary`));
    const rope = msNode(model, add, 'RotaryEmbedding', [m.x3, pos, cos, sin], [y3]);
    rope.setAttr(Attribute.int('num_heads', m.n));
    rope.setAttr(Attribute.int('interleaved', 0));
    if (m.x3.type) y3.type = m.x3.type;
    const r = insertNodeBefore(model, add, 'Reshape', [y3, m.reshape.input(1)], `${base}_heads`);
    for (const a of m.reshape.attributes) r.setAttr(a);
    const t = new Node('Transpose', [r.output(0)], [new Value(model.names.fresh(`${base}_bnsd`))]);
    t.setAttr(Attribute.ints('perm', [0, 2, 1, 3]));
    const upstream = inputProducers(m.dead);
    replaceChain(add, t, m.dead);
    removeDeadProducers(upstream);
  },
};

export const PATTERNS = { microsoft: [rotaryPattern], generic: [] };

export default targetPass({
  name: 'fuse-rotary',
  description: 'Replace rotate_half rotary embeddings after a Reshape/Transpose head split by com.microsoft.RotaryEmbedding before the split (target microsoft only), so fuse-attention can write MultiHeadAttention.',
  patterns: PATTERNS,
  stats: { fused: 'rotary' },
  // the matcher reads shapes only past rotate_half's Neg
  prepare: (model, ctx) => sharedShapesIfAny(model, ctx, 'Neg'),
});
