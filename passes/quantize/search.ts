/**
 * Which compute layers stay int8: the two searches of quantize-static.
 *
 * Latency-aware choice. Both the prepared float model and a QDQ build are profiled by onnxruntime
 * (after its own fusions). Each profiled kernel is charged to a compute unit of the prepared model:
 * - float model: the kernel named after the unit (or after a Relu/HardSwish/... it absorbed, ORT names
 *   fused and NCHWc convolutions after the output they write) is the unit's float cost;
 * - QDQ model: the fused QLinearConv/QLinearMatMul/QGemm is the unit's int8 cost; a QuantizeLinear
 *   that survived fusion is charged to the int8 units reading its tensor (it exists for them), a
 *   surviving DequantizeLinear to the int8 units producing its tensor (or to its readers for a weight);
 *   any other kernel that costs more than in the float model (an activation ORT could fuse into the
 *   float Conv but not into a QLinearConv, a QLinearAdd, ...) is charged to the units producing its input.
 * A unit whose int8 cost exceeds its float cost by more than the measured noise and a margin over
 * repeated trials is returned to float (passes/quant/decisions.ts, a pure function of the per-trial
 * timings); the caller rebuilds and repeats, since a new float layer moves Q/DQ boundaries onto its
 * neighbours.
 *
 * Accuracy budget. Units are ranked by the SQNR they lose themselves (the lowest SQNR of their inputs
 * minus the SQNR of their output, from the per-layer comparison of passes/quant/debug.ts), and the
 * top k return to float for k = 1, 2, 4, ... until the task metric is within the budget, then a
 * bisection between the last failing and the first passing k keeps as few in float as possible
 * ({@link searchAccuracyBudget}).
 */
import type { Model, Node, Value } from '../../ir/ir.js';
import type { LayerError } from './debug.js';
import { BINARY_OPS, MOVE_OPS, UNARY_OPS } from './placement.js';
import type { OpProfileRow } from '../../runtime/profile.js';

/** Activations onnxruntime fuses into a preceding float Conv (so a profile row may carry their name). */
const FUSABLE_ACTIVATIONS = new Set(['Relu', 'Clip', 'HardSwish', 'HardSigmoid', 'Sigmoid', 'LeakyRelu', 'Tanh']);

export interface UnitTiming {
  /** Index of the compute node in the prepared model's node list. */
  index: number;
  /** Microseconds per run, summed over the kernels charged to the unit. */
  floatUs: number;
  int8Us: number;
}

/** Strips the suffixes onnxruntime adds to fused node names (`_nchwc`, `_token_12`, ...). */
export function profileKey(name: string): string[] {
  const keys = [name];
  let k = name;
  // onnxruntime renames nodes it rewrites: NCHWc layouts, fused activations ('Conv_fused_Relu',
  // 'fused Gemm_1' for Gemm + activation), per-token splits
  for (const re of [/^fused /, /_nchwc$/, /_token_\d+$/, /_fused_\w+$/, /\/fused$/]) {
    const s = k.replace(re, '');
    if (s !== k) {
      k = s;
      keys.push(k);
    }
  }
  return keys;
}

interface Lookup {
  byName: Map<string, Node>;
  byOutput: Map<string, Node>;
}

function lookup(m: Model): Lookup {
  const byName = new Map<string, Node>();
  const byOutput = new Map<string, Node>();
  for (const n of m.graph.nodes) {
    if (n.name) byName.set(n.name, n);
    for (const o of n.outputs) byOutput.set(o.name, n);
  }
  return { byName, byOutput };
}

function find(l: Lookup, row: string): Node | undefined {
  for (const k of profileKey(row)) {
    const n = l.byName.get(k) ?? l.byOutput.get(k);
    if (n) return n;
  }
  return undefined;
}

/**
 * Charges profile rows to compute units. `units` maps a unit node of `prepared` to its index;
 * `quant` is a QDQ build of the same prepared model whose Q/DQ nodes are named `<tensor>_Q`/`_DQ`
 * and whose other nodes keep the prepared names; `int8` holds the nodes of `prepared` that run in
 * int8 in that build.
 */
export function attributeProfiles(prepared: Model, units: ReadonlyMap<Node, number>, floatRows: readonly OpProfileRow[], quantRows: readonly OpProfileRow[], int8: ReadonlySet<Node>): UnitTiming[] {
  const l = lookup(prepared);
  const floatUs = new Map<number, number>();
  const int8Us = new Map<number, number>();
  const charge = (m: Map<number, number>, idx: number, us: number) => m.set(idx, (m.get(idx) ?? 0) + us);
  const unitIndex = (n: Node | undefined): number | undefined => (n ? units.get(n) : undefined);

  // the unit a float kernel belongs to: the unit itself, or the unit whose output an absorbed activation read
  const ownerInFloat = (n: Node): number | undefined => {
    const u = unitIndex(n);
    if (u !== undefined) return u;
    if (FUSABLE_ACTIVATIONS.has(n.opType) || n.opType === 'Add') {
      for (const v of n.inputs) {
        const p = v?.producer;
        const pu = unitIndex(p ?? undefined);
        if (pu !== undefined) return pu;
      }
    }
    return undefined;
  };
  const floatByNode = new Map<Node, number>();
  for (const r of floatRows) {
    const n = find(l, r.node);
    if (!n) continue;
    floatByNode.set(n, (floatByNode.get(n) ?? 0) + r.totalUs);
    const u = ownerInFloat(n);
    if (u !== undefined) charge(floatUs, u, r.totalUs);
  }

  // units producing a tensor (through int8 movement/binary/unary nodes) and units reading it
  const producersOf = (v: Value, depth = 0): number[] => {
    const p = v.producer;
    if (!p || depth > 32) return [];
    const u = units.get(p);
    if (u !== undefined && int8.has(p)) return [u];
    if (FUSABLE_ACTIVATIONS.has(p.opType)) {
      const src = p.inputs[0]?.producer;
      const su = src ? units.get(src) : undefined;
      if (su !== undefined && int8.has(src!)) return [su];
    }
    if (int8.has(p) && (MOVE_OPS.has(p.opType) || BINARY_OPS.has(p.opType) || UNARY_OPS.has(p.opType))) {
      return p.inputs.flatMap((x) => (x && x.producer ? producersOf(x, depth + 1) : []));
    }
    return [];
  };
  const readersOf = (v: Value, depth = 0): number[] => {
    if (depth > 32) return [];
    const out: number[] = [];
    for (const c of v.consumers()) {
      const u = units.get(c);
      if (u !== undefined) {
        if (int8.has(c)) out.push(u);
        continue;
      }
      if (int8.has(c) && (MOVE_OPS.has(c.opType) || BINARY_OPS.has(c.opType) || UNARY_OPS.has(c.opType))) for (const o of c.outputs) out.push(...readersOf(o, depth + 1));
    }
    return out;
  };
  const split = (idx: number[], us: number) => {
    const uniq = [...new Set(idx)];
    for (const i of uniq) charge(int8Us, i, us / uniq.length);
  };

  for (const r of quantRows) {
    const qdq = /^(.*)_(Q|DQ)(_\d+)?$/.exec(r.node);
    if ((r.opType === 'QuantizeLinear' || r.opType === 'DequantizeLinear') && qdq) {
      const v = l.byOutput.get(qdq[1]!)?.outputs.find((o) => o.name === qdq[1]) ?? prepared.graph.inputs.find((x) => x.name === qdq[1]) ?? constantValue(prepared, qdq[1]!);
      if (!v) continue;
      if (r.opType === 'QuantizeLinear') split(readersOf(v), r.totalUs);
      else {
        const ps = producersOf(v);
        split(ps.length ? ps : readersOf(v).concat(weightReaders(v, units)), r.totalUs);
      }
      continue;
    }
    const n = find(l, r.node);
    if (!n) continue;
    const u = units.get(n);
    if (u !== undefined) {
      // the unit's own kernel: QLinear* in int8, or the float kernel of a weight-only unit
      charge(int8Us, u, r.totalUs);
      continue;
    }
    // anything else: only what it costs beyond the float model, charged to the int8 units feeding it
    const extra = r.totalUs - (floatByNode.get(n) ?? 0);
    if (extra <= 0) continue;
    const feeders = n.inputs.flatMap((v) => (v ? producersOf(v) : []));
    if (feeders.length) split(feeders, extra);
  }
  const out: UnitTiming[] = [];
  for (const idx of new Set(units.values())) out.push({ index: idx, floatUs: floatUs.get(idx) ?? 0, int8Us: int8Us.get(idx) ?? 0 });
  return out.sort((a, b) => a.index - b.index);
}

function constantValue(m: Model, name: string): Value | undefined {
  return m.graph.initializers.get(name);
}

function weightReaders(v: Value, units: ReadonlyMap<Node, number>): number[] {
  return v.consumers().flatMap((c) => (units.has(c) ? [units.get(c)!] : []));
}

export interface SensitivityEntry {
  index: number;
  /** SQNR of the unit's output, dB. */
  sqnrDb: number;
  /** SQNR lost by the unit itself: lowest input SQNR minus output SQNR, dB. */
  lossDb: number;
}

/**
 * Ranks int8 units by the SQNR they lose themselves, most sensitive first. `errors` comes from
 * {@link layerErrors} on the prepared float model's tensor names; `inputs`/`output` give each unit's
 * activation inputs and output tensor names.
 */
export function rankSensitivity(errors: readonly Pick<LayerError, 'tensor' | 'sqnrDb'>[], units: ReadonlyArray<{ index: number; inputs: string[]; output: string }>): SensitivityEntry[] {
  const sq = new Map(errors.map((e) => [e.tensor, Number.isFinite(e.sqnrDb) ? e.sqnrDb : 200]));
  const out: SensitivityEntry[] = [];
  for (const u of units) {
    const o = sq.get(u.output);
    if (o === undefined) continue;
    const ins = u.inputs.map((i) => sq.get(i)).filter((x): x is number => x !== undefined);
    const inMin = ins.length ? Math.min(...ins) : 200;
    out.push({ index: u.index, sqnrDb: o, lossDb: Math.min(inMin, 200) - o });
  }
  return out.sort((a, b) => b.lossDb - a.lossDb || a.sqnrDb - b.sqnrDb);
}

export interface BudgetTrial {
  floated: number;
  score: number;
  drop: number;
  ok: boolean;
}

export interface BudgetResult {
  /** Indices returned to float, most sensitive first. */
  floated: number[];
  score: number;
  drop: number;
  met: boolean;
  trials: BudgetTrial[];
}

/**
 * Smallest prefix of `ranked` whose return to float keeps `reference - score(prefix) <= maxDrop`:
 * doubling k, then bisecting. `score(set)` builds and evaluates a model with those units in float
 * (higher is better). At most `maxTrials` evaluations; when the budget is never met, `met: false`
 * with the largest prefix tried (`unmet: 'largest'`, default) or the best-scoring one (`'best'`, the
 * smallest on a tie: more layers in float that do not help are not kept).
 */
export async function searchAccuracyBudget(ranked: readonly number[], reference: number, maxDrop: number, score: (floated: readonly number[]) => Promise<number>, opts: { maxTrials?: number; initialScore?: number; unmet?: 'largest' | 'best' } = {}): Promise<BudgetResult> {
  const maxTrials = opts.maxTrials ?? 10;
  const trials: BudgetTrial[] = [];
  const cache = new Map<number, number>();
  const tryK = async (k: number): Promise<BudgetTrial> => {
    let s = cache.get(k);
    if (s === undefined) {
      s = k === 0 && opts.initialScore !== undefined ? opts.initialScore : await score(ranked.slice(0, k));
      cache.set(k, s);
      const t = { floated: k, score: s, drop: reference - s, ok: reference - s <= maxDrop };
      trials.push(t);
      return t;
    }
    return { floated: k, score: s, drop: reference - s, ok: reference - s <= maxDrop };
  };
  const result = (k: number, met: boolean): BudgetResult => {
    const s = cache.get(k)!;
    return { floated: ranked.slice(0, k), score: s, drop: reference - s, met, trials };
  };
  const t0 = await tryK(0);
  if (t0.ok || ranked.length === 0) return result(0, t0.ok);
  let lo = 0; // fails
  let hi = -1; // passes
  for (let k = 1; trials.length < maxTrials; k = Math.min(k * 2, ranked.length)) {
    const t = await tryK(k);
    if (t.ok) {
      hi = k;
      break;
    }
    lo = k;
    if (k === ranked.length) break;
  }
  if (hi < 0) {
    if (opts.unmet !== 'best') return result(lo, false);
    let best = 0;
    for (const [k, v] of cache) if (v > cache.get(best)! || (v === cache.get(best)! && k < best)) best = k;
    return result(best, false);
  }
  while (hi - lo > 1 && trials.length < maxTrials) {
    const mid = (lo + hi) >> 1;
    if ((await tryK(mid)).ok) hi = mid;
    else lo = mid;
  }
  return result(hi, true);
}
