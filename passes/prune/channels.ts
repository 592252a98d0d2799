/**
 * Structured (channel) pruning on top of the dependency analysis: rank the channels of every
 * prunable space by the norm of the weights that produce them, choose which to keep, and rewrite
 * every site (producer weights and biases, BatchNormalization parameters, per-channel constants,
 * depthwise weights and `group`, the next layers' input channels, Concat offsets through the maps,
 * flattened features of a Gemm/MatMul, constant Reshape targets).
 *
 * Importance of channel c in a space = sum over its producers p of ||W_p[c]|| * s_p[c], with the L1
 * norm (sum |w|) or the L2 norm (sqrt(sum w^2)) over the producer's slice for that output channel,
 * and s_p[c] = |gamma_c| / sqrt(var_c + eps) when a BatchNormalization alone reads p's output (1
 * otherwise): BN rescales each channel, so the raw weight norm alone misranks channels.
 */
import { inputError } from '../../core/errors.js';
import { Attribute, Graph, Node, Value } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import { DataType } from '../../core/dtype.js';
import { constantInput, setConstantInput, sliceAxis } from './constants.js';
import { ChannelMap, DependencyAnalysis, mapTotal, Space } from '../../analysis/channel-dependency.js';
import { roundHalfEven } from './magnitude.js';

export type Criterion = 'l1' | 'l2';

/** Per-channel importance of each prunable root space. */
export function channelImportance(a: DependencyAnalysis, criterion: Criterion): Map<number, Float64Array> {
  const out = new Map<number, Float64Array>();
  for (const s of a.prunable()) out.set(s.id, new Float64Array(s.size));
  for (const site of a.sites) {
    if (site.kind !== 'param' || !site.producer) continue;
    const seg = site.map.segments[0]!;
    const acc = out.get(a.root(seg.space));
    if (!acc) continue;
    const t = constantInput(site.node, site.input);
    if (!t) continue;
    const w = t.toFloat32();
    const dims = t.dims;
    const n = dims[site.axis]!;
    const outer = dims.slice(0, site.axis).reduce((x, y) => x * y, 1);
    const inner = dims.slice(site.axis + 1).reduce((x, y) => x * y, 1);
    const norms = new Float64Array(n);
    for (let o = 0; o < outer; o++) {
      for (let c = 0; c < n; c++) {
        const base = (o * n + c) * inner;
        let s = 0;
        if (criterion === 'l1') for (let i = 0; i < inner; i++) s += Math.abs(w[base + i]!);
        else for (let i = 0; i < inner; i++) s += w[base + i]! * w[base + i]!;
        norms[c]! += s;
      }
    }
    const scale = bnScale(site.node, n);
    for (let c = 0; c < n; c++) acc[c]! += (criterion === 'l2' ? Math.sqrt(norms[c]!) : norms[c]!) * (scale ? scale[c]! : 1);
  }
  return out;
}

/**
 * |gamma| / sqrt(var + eps) of a BatchNormalization that alone reads the producer's output: the
 * factor the channel's magnitude is multiplied by before anything else sees it, so weights
 * followed by a large BN scale are not mistaken for unimportant ones.
 */
function bnScale(producer: Node, n: number): Float64Array | undefined {
  const out = producer.outputs[0];
  const users = out?.consumers() ?? [];
  const bn = users.length === 1 && !out!.isGraphOutput ? users[0]! : undefined;
  if (!bn || bn.opType !== 'BatchNormalization' || bn.input(0) !== out) return undefined;
  const g = constantInput(bn, 1);
  const v = constantInput(bn, 4);
  if (!g || !v || g.size !== n || v.size !== n) return undefined;
  const eps = bn.getFloat('epsilon', 1e-5);
  const gf = g.toFloat32();
  const vf = v.toFloat32();
  return Float64Array.from({ length: n }, (_, c) => Math.abs(gf[c]!) / Math.sqrt(vf[c]! + eps));
}

export interface Selection {
  /** Kept channel indices (ascending) of each root space that loses channels. */
  keep: Map<number, number[]>;
  /** Spaces left whole with a reason (would lose every channel, ...). */
  skipped: Array<{ space: Space; reason: string }>;
}

/** Indices of the `k` largest scores, ties to the lower index, returned ascending. */
function topK(scores: Float64Array, k: number): number[] {
  const idx = Array.from(scores.keys());
  idx.sort((x, y) => scores[y]! - scores[x]! || x - y);
  return idx.slice(0, k).sort((x, y) => x - y);
}

export interface SelectOptions {
  ratio: number;
  scope: 'layer' | 'global';
  /** Per-space ratio overrides (root space id -> ratio). */
  ratios?: Map<number, number>;
  /** Channels every space keeps at least (default 1). */
  minChannels?: number;
  /**
   * Round each group's kept count to the nearest multiple of this (default 1), as onnxruntime's
   * NCHWc kernels pad channels to blocks of 8 (AVX2) or 16 (AVX-512): 22 kept channels run as 24.
   */
  roundTo?: number;
  /**
   * Global scope only: FLOPs one channel of each space costs (root space id -> FLOPs, see
   * `channelCosts`). When given, a channel's mean-normalized importance is divided by its space's
   * cost relative to the channel-weighted mean cost, so channels are ranked by importance per FLOP
   * and the same channel budget removes more of the expensive layers.
   */
  costs?: Map<number, number>;
  /**
   * The largest fraction of any one group that may be removed (default 1): a floor on what each
   * group keeps in the global ranking, and a cap on the scope-layer ratio. Per-space `ratios` are exact.
   */
  maxRatio?: number;
}

/**
 * Per-space multipliers of the mean-normalized importance: 1 without costs; with costs, mean cost /
 * cost of the space (channel-weighted mean over `spaces`), so an expensive channel scores lower.
 */
function costWeights(spaces: Space[], costs: Map<number, number> | undefined): Map<number, number> {
  const w = new Map<number, number>();
  let num = 0;
  let den = 0;
  for (const s of spaces) {
    const c = costs?.get(s.id);
    if (c !== undefined && c > 0) (num += c * s.size), (den += s.size);
  }
  const mean = den > 0 ? num / den : 0;
  for (const s of spaces) {
    const c = costs?.get(s.id);
    w.set(s.id, mean > 0 && c !== undefined && c > 0 ? mean / c : 1);
  }
  return w;
}

/**
 * FLOPs that removing one channel of each prunable space saves, to first order: for every weight
 * (input 1 of Conv, ConvTranspose, Gemm, MatMul) whose channel axis runs over the space, the node's
 * FLOPs divided by the channels along that axis. A pointwise Conv between spaces A and B adds
 * F / C_A to A and F / C_B to B; a depthwise Conv adds F / C to its space. `flops` gives each node's
 * FLOPs at some input size; only their ratios matter.
 */
export function channelCosts(a: DependencyAnalysis, flops: Map<Node, number>): Map<number, number> {
  const out = new Map<number, number>();
  for (const site of a.sites) {
    if (site.kind !== 'param' || site.input !== 1) continue;
    const f = flops.get(site.node);
    if (!f) continue;
    const per = f / Math.max(1, mapTotal(site.map));
    for (const seg of site.map.segments) {
      const id = a.root(seg.space);
      out.set(id, (out.get(id) ?? 0) + per);
    }
  }
  return out;
}

/**
 * Chooses the channels to keep. `layer`: each space drops round(min(ratio, maxRatio) * C) channels of
 * lowest importance. `global`: importances are divided by their space's mean, then the round(ratio * total)
 * lowest across all spaces are dropped, each space keeping at least `minChannels`. With `roundTo` q,
 * kept counts are multiples of q and the total removed is within q/2 of round(ratio * total) (see
 * `roundGlobal`).
 */
export function selectChannels(a: DependencyAnalysis, importance: Map<number, Float64Array>, o: SelectOptions): Selection {
  const keep = new Map<number, number[]>();
  const skipped: Selection['skipped'] = [];
  const minKeep = Math.max(1, o.minChannels ?? 1);
  const spaces = a.prunable();
  if (o.scope === 'global') {
    const maxRatio = o.maxRatio ?? 1;
    // fewest channels a group may keep: minChannels, and what maxRatio leaves
    const floorOf = (sp: Space) => Math.max(minKeep, Math.ceil(sp.size * (1 - maxRatio) - 1e-9));
    const entries: Array<{ space: number; c: number; score: number }> = [];
    let totalChannels = 0;
    const ranked = spaces.filter((s) => !o.ratios?.has(s.id));
    const weights = costWeights(ranked, o.costs);
    // each space's importances divided by their mean, times its cost weight: one scale for all spaces
    const scores = new Map<number, Float64Array>();
    for (const s of ranked) {
      const imp = importance.get(s.id)!;
      const mean = imp.reduce((x, y) => x + y, 0) / Math.max(1, imp.length);
      const w = weights.get(s.id)!;
      const norm = imp.map((x) => (mean > 0 ? (x / mean) * w : 0));
      scores.set(s.id, norm);
      totalChannels += s.size;
      for (let c = 0; c < s.size; c++) entries.push({ space: s.id, c, score: norm[c]! });
    }
    entries.sort((x, y) => x.score - y.score || x.space - y.space || x.c - y.c);
    const budget = roundHalfEven(o.ratio * totalChannels);
    const dropped = new Map<number, Set<number>>();
    let done = 0;
    for (const e of entries) {
      if (done >= budget) break;
      const sp = a.spaces[e.space]!;
      const set = dropped.get(e.space) ?? new Set<number>();
      if (sp.size - set.size <= floorOf(sp)) continue;
      set.add(e.c);
      dropped.set(e.space, set);
      done++;
    }
    const q = Math.max(1, o.roundTo ?? 1);
    if (q === 1) {
      for (const [id, set] of dropped) keep.set(id, Array.from({ length: a.spaces[id]!.size }, (_, i) => i).filter((i) => !set.has(i)));
    } else {
      for (const [id, kept] of roundGlobal(ranked, scores, dropped, budget, q, floorOf)) keep.set(id, kept);
    }
  }
  for (const s of spaces) {
    const exact = o.ratios?.get(s.id);
    const r = exact ?? (o.scope === 'layer' ? Math.min(o.ratio, o.maxRatio ?? 1) : undefined);
    if (r === undefined) continue;
    let drop = roundHalfEven(r * s.size);
    const q = Math.max(1, o.roundTo ?? 1);
    // rounding to q must not take the group below what maxRatio leaves (per-space ratios are exact)
    const floor = exact === undefined ? Math.ceil(s.size * (1 - (o.maxRatio ?? 1)) - 1e-9) : 0;
    if (q > 1 && drop > 0) drop = s.size - Math.min(s.size, Math.max(q, Math.round((s.size - drop) / q) * q, Math.ceil(floor / q) * q));
    if (drop <= 0) continue;
    if (s.size - drop < minKeep) {
      skipped.push({ space: s, reason: `pruning ${drop} of ${s.size} channels would leave fewer than ${minKeep}; the layer is kept whole` });
      continue;
    }
    keep.set(s.id, topK(importance.get(s.id)!, s.size - drop));
  }
  return { keep, skipped };
}

/**
 * Global selection in blocks of q: each space's kept count is rounded to the nearest multiple of q
 * (at least q; spaces of at most q channels stay whole), then whole blocks are moved until the total
 * removed is within q/2 of `budget`: while short, the space whose next q kept channels have the
 * lowest score (`scores`: mean-normalized importance times the space's cost weight) gives them up; while over, the space whose last removed block
 * scores highest gets it back. Each space keeps its most important channels.
 */
function roundGlobal(spaces: Space[], scores: Map<number, Float64Array>, dropped: Map<number, Set<number>>, budget: number, q: number, floorOf: (s: Space) => number): Map<number, number[]> {
  const order = new Map<number, { sorted: number[]; norm: Float64Array }>();
  const kept = new Map<number, number>();
  let removed = 0;
  for (const s of spaces) {
    const norm = scores.get(s.id)!;
    const sorted = Array.from(norm.keys()).sort((x, y) => norm[y]! - norm[x]! || x - y);
    order.set(s.id, { sorted, norm });
    const want = s.size - (dropped.get(s.id)?.size ?? 0);
    const k = s.size <= q ? s.size : Math.min(s.size, Math.max(q, Math.ceil(floorOf(s) / q) * q, Math.round(want / q) * q));
    kept.set(s.id, k);
    removed += s.size - k;
  }
  // mean normalized importance of channels [from, to) in a space's importance order
  const blockScore = (id: number, from: number, to: number) => {
    const { sorted, norm } = order.get(id)!;
    let t = 0;
    for (let i = from; i < to; i++) t += norm[sorted[i]!]!;
    return t / Math.max(1, to - from);
  };
  for (let guard = 0; guard < 10000; guard++) {
    if (removed < budget - q / 2) {
      let best = -1;
      let score = Infinity;
      for (const s of spaces) {
        const k = kept.get(s.id)!;
        if (k - q < Math.max(q, floorOf(s))) continue;
        const sc = blockScore(s.id, k - q, k);
        if (sc < score) (score = sc), (best = s.id);
      }
      if (best < 0) break;
      kept.set(best, kept.get(best)! - q);
      removed += q;
    } else if (removed > budget + q / 2) {
      let best = -1;
      let score = -Infinity;
      for (const s of spaces) {
        const k = kept.get(s.id)!;
        if (k + q > s.size) continue;
        const sc = blockScore(s.id, k, k + q);
        if (sc > score) (score = sc), (best = s.id);
      }
      if (best < 0) break;
      kept.set(best, kept.get(best)! + q);
      removed -= q;
    } else break;
  }
  const out = new Map<number, number[]>();
  for (const s of spaces) {
    const k = kept.get(s.id)!;
    if (k < s.size) out.set(s.id, order.get(s.id)!.sorted.slice(0, k).sort((x, y) => x - y));
  }
  return out;
}

/** Kept indices along the axis of `m` (segments laid side by side, each channel repeated `inner`). */
export function keptIndices(a: DependencyAnalysis, m: ChannelMap, keep: Map<number, number[]>): number[] {
  const inner = m.inner.value ?? 1;
  const out: number[] = [];
  let offset = 0;
  for (const seg of m.segments) {
    const k = keep.get(a.root(seg.space));
    const chans = k ?? Array.from({ length: seg.size }, (_, i) => i);
    for (const c of chans) for (let j = 0; j < inner; j++) out.push((offset + c) * inner + j);
    offset += seg.size;
  }
  return out;
}

export interface ApplyStats {
  sites: number;
  channelsRemoved: number;
}

/** Rewrites every site for the chosen channels. The analysis must come from this graph, unmodified. */
export function applyChannelPruning(g: Graph, a: DependencyAnalysis, keep: Map<number, number[]>): ApplyStats {
  let sites = 0;
  const full = (m: ChannelMap) => mapTotal(m) * (m.inner.value ?? 1);
  for (const site of a.sites) {
    const kept = keptIndices(a, site.map, keep);
    if (kept.length === full(site.map)) continue;
    sites++;
    if (site.kind === 'param') {
      const t = constantInput(site.node, site.input);
      if (!t) throw inputError('PRUNE_SITE_LOST', `${site.node.label}: input ${site.input} is no longer constant`, { node: site.node.name });
      setConstantInput(site.node, site.input, sliceAxis(t, site.axis, kept));
    } else if (site.kind === 'group') {
      site.node.setAttr(Attribute.int('group', kept.length));
    } else {
      const t = constantInput(site.node, site.input);
      if (!t) throw inputError('PRUNE_SITE_LOST', `${site.node.label}: input ${site.input} is no longer constant`, { node: site.node.name });
      const vals = t.toNumbers();
      vals[site.index] = kept.length;
      const nt = t.dataType === DataType.INT64 ? Tensor.from(DataType.INT64, t.dims, BigInt64Array.from(vals.map((x) => BigInt(x)))) : Tensor.from(t.dataType, t.dims, vals);
      setConstantInput(site.node, site.input, nt);
    }
  }
  // declared shapes of followed values (value_info) carry the old channel counts
  for (const [v, m] of a.maps) updateDeclaredShape(v, m, keptIndices(a, m, keep).length, full(m));
  let removed = 0;
  for (const [id, k] of keep) removed += a.spaces[id]!.size - k.length;
  return { sites, channelsRemoved: removed };
}

function updateDeclaredShape(v: Value, m: ChannelMap, count: number, before: number): void {
  const dims = v.type?.tensor?.shape?.dims;
  if (!dims || count === before) return;
  const p = dims.length + m.axis;
  const d = dims[p];
  if (d && d.value !== undefined) d.value = count;
}
