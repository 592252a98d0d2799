/**
 * Channel dependency analysis for structured pruning.
 *
 * A *channel space* is a set of channels that must be removed together: the output channels of a
 * Conv / ConvTranspose (or output units of Gemm / MatMul), joined with every other producer whose
 * output meets it in an elementwise op (residual `Add`, the SE block's `Mul`), so one decision applies
 * to all of them. Every tensor the analysis follows carries a {@link ChannelMap}: along its channel
 * axis it is a sequence of segments (Concat lays spaces side by side), each channel possibly repeated
 * `inner` times consecutively (Flatten of [N,C,H,W] into [N,C*H*W] gives `inner = H*W`).
 *
 * Walking the nodes in topological order, each op either propagates maps (unary and binary
 * elementwise ops, BatchNormalization, pooling, Resize, depthwise Conv, Concat, Flatten/Reshape into
 * a Gemm) and records the *sites* to rewrite (a constant input to slice along an axis, a `group`
 * attribute, a Reshape target), or it does not understand how it uses the channels and *freezes*
 * every space reaching it, with a reason. Graph outputs freeze what reaches them, so graph output
 * shapes never change. Invariant: a value without a map has a channel count that pruning never
 * changes.
 */
import { Node, Value, constantOf, topologicalOrder, Graph } from '../ir/ir.js';
import { Tensor } from '../core/tensor.js';
import { shapeElements } from './shape-expr.js';

export interface Segment {
  space: number;
  size: number;
}

export interface ChannelMap {
  segments: Segment[];
  /** Channel axis counted from the end (-1 is the last axis). */
  axis: number;
  /** Tensor rank when known. */
  rank?: number;
  /** Consecutive repeats of each channel along the axis (null: not known yet, fixed by a consumer). */
  inner: { value: number | null };
}

/** A constant input whose `axis` runs over the channels of `map`. */
export interface ParamSite {
  kind: 'param';
  node: Node;
  input: number;
  axis: number;
  map: ChannelMap;
  /** The weights that define the channels of the space (their norms rank the channels). */
  producer: boolean;
}

/** A depthwise Conv whose `group` follows the channel count of `map`. */
export interface GroupSite {
  kind: 'group';
  node: Node;
  map: ChannelMap;
}

/**
 * A constant element that a Reshape target takes as the flattened channel count of `map`: element
 * `index` of the constant read by `node` at input `input` (the Reshape itself, or a Cast/Concat on
 * the way to it).
 */
export interface ReshapeSite {
  kind: 'reshape';
  node: Node;
  input: number;
  index: number;
  map: ChannelMap;
}

export type Site = ParamSite | GroupSite | ReshapeSite;

export interface Space {
  id: number;
  size: number;
  /** Node that created the space (for messages and exclusions). */
  origin: Node;
  /** Every node whose output channels define the space (after unions). */
  members: Node[];
  frozen: string[];
}

export interface DependencyAnalysis {
  spaces: Space[];
  /** Root space id of any space id (after unions). */
  root(id: number): number;
  sites: Site[];
  maps: Map<Value, ChannelMap>;
  /** Roots of the spaces that can be pruned. */
  prunable(): Space[];
}

const UNARY = new Set([
  'Relu', 'LeakyRelu', 'Elu', 'Selu', 'Celu', 'Sigmoid', 'HardSigmoid', 'HardSwish', 'Tanh', 'Softplus', 'Softsign', 'Gelu', 'Mish',
  'ThresholdedRelu', 'Abs', 'Neg', 'Exp', 'Log', 'Sqrt', 'Reciprocal', 'Floor', 'Ceil', 'Round', 'Sign', 'Sin', 'Cos', 'Erf',
  'Identity', 'Dropout', 'Cast', 'Not', 'IsNaN', 'IsInf', 'Relu6',
]);
const BINARY = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Mean', 'PRelu', 'Where', 'Equal', 'Greater', 'Less', 'GreaterOrEqual', 'LessOrEqual', 'And', 'Or', 'Xor', 'Mod', 'BitShift']);
const POOL = new Set(['MaxPool', 'AveragePool', 'GlobalAveragePool', 'GlobalMaxPool', 'LpPool', 'GlobalLpPool', 'MaxRoiPool']);

function total(m: ChannelMap): number {
  return m.segments.reduce((a, s) => a + s.size, 0);
}

/** Position of the channel axis counted from the start, when the rank is known. */
function channelPos(m: ChannelMap): number | undefined {
  return m.rank === undefined ? undefined : m.rank + m.axis;
}

function rankOfValue(v: Value, maps: Map<Value, ChannelMap>): number | undefined {
  const m = maps.get(v);
  if (m?.rank !== undefined) return m.rank;
  return v.shape?.length;
}

export class Analyzer {
  readonly spaces: Space[] = [];
  private readonly parent: number[] = [];
  readonly sites: Site[] = [];
  readonly maps = new Map<Value, ChannelMap>();

  constructor(private readonly graph: Graph, private readonly opset: number) {}

  root(id: number): number {
    let r = id;
    while (this.parent[r] !== r) r = this.parent[r]!;
    while (this.parent[id] !== r) {
      const next = this.parent[id]!;
      this.parent[id] = r;
      id = next;
    }
    return r;
  }

  private newSpace(size: number, origin: Node): number {
    const id = this.spaces.length;
    this.spaces.push({ id, size, origin, members: [origin], frozen: [] });
    this.parent.push(id);
    return id;
  }

  private union(a: number, b: number): void {
    const ra = this.root(a);
    const rb = this.root(b);
    if (ra === rb) return;
    const [keep, drop] = ra < rb ? [ra, rb] : [rb, ra];
    this.parent[drop] = keep;
    const k = this.spaces[keep]!;
    const d = this.spaces[drop]!;
    k.members.push(...d.members);
    k.frozen.push(...d.frozen);
  }

  freezeMap(m: ChannelMap, reason: string): void {
    for (const s of m.segments) {
      const sp = this.spaces[this.root(s.space)]!;
      if (!sp.frozen.includes(reason)) sp.frozen.push(reason);
    }
  }

  private freezeInputs(n: Node, reason: string): void {
    for (const v of [...n.inputs, ...n.implicitInputs()]) {
      const m = v ? this.maps.get(v) : undefined;
      if (m) this.freezeMap(m, reason);
    }
  }

  /** Joins two maps channel by channel; false when their layouts differ. */
  private unify(a: ChannelMap, b: ChannelMap): boolean {
    if (a === b) return true;
    if (a.axis !== b.axis || a.segments.length !== b.segments.length) return false;
    for (let i = 0; i < a.segments.length; i++) if (a.segments[i]!.size !== b.segments[i]!.size) return false;
    if (a.inner.value !== null && b.inner.value !== null && a.inner.value !== b.inner.value) return false;
    if (a.inner.value === null && b.inner.value !== null) a.inner.value = b.inner.value;
    if (b.inner.value === null && a.inner.value !== null) b.inner.value = a.inner.value;
    for (let i = 0; i < a.segments.length; i++) this.union(a.segments[i]!.space, b.segments[i]!.space);
    return true;
  }

  /**
   * Checks a constant combined elementwise with a tracked tensor: broadcast over the channels (no
   * site), or one value per channel along the aligned axis (a site). Returns false if neither.
   */
  private constantAlongChannels(n: Node, input: number, t: Tensor, m: ChannelMap): boolean {
    const p = t.dims.length + m.axis;
    if (p < 0 || t.dims[p] === 1) return true;
    const c = total(m);
    if (m.inner.value === null && t.dims[p]! % c === 0) m.inner.value = t.dims[p]! / c;
    if (m.inner.value !== null && t.dims[p] === c * m.inner.value) {
      this.sites.push({ kind: 'param', node: n, input, axis: p, map: m, producer: false });
      return true;
    }
    return false;
  }

  run(): void {
    for (const n of topologicalOrder(this.graph)) this.visit(n);
    for (const o of this.graph.outputs) {
      const m = this.maps.get(o);
      if (m) this.freezeMap(m, `it reaches graph output ${o.name}, whose shape must not change`);
    }
  }

  private setMap(v: Value, m: ChannelMap): void {
    this.maps.set(v, m);
  }

  private visit(n: Node): void {
    if (n.opType === 'Constant' && n.opDomain === '') return;
    const tracked = n.inputs.some((v) => v && this.maps.has(v)) || n.implicitInputs().some((v) => this.maps.has(v));
    if (n.opDomain !== '') {
      if (tracked) this.freezeInputs(n, `${n.label} is a custom op (${n.domain})`);
      return;
    }
    if (n.subgraphs().length > 0) {
      if (tracked) this.freezeInputs(n, `${n.label} reads them inside a subgraph`);
      return;
    }
    const reason = this.handle(n);
    if (reason) this.freezeInputs(n, reason);
  }

  /** Returns a reason when the node stops the analysis (its tracked inputs are then frozen). */
  private handle(n: Node): string | undefined {
    const x = n.input(0);
    const xm = x ? this.maps.get(x) : undefined;
    const op = n.opType;
    switch (op) {
      case 'Conv':
        return this.conv(n, xm);
      case 'ConvTranspose':
        return this.convTranspose(n, xm);
      case 'Gemm':
        return this.gemm(n, xm);
      case 'MatMul':
        return this.matmul(n, xm);
    }
    const anyTracked = n.inputs.some((v) => v && this.maps.has(v));
    if (!anyTracked) return undefined;
    if (UNARY.has(op)) {
      if (!xm || n.inputs.slice(1).some((v) => v && this.maps.has(v))) return `${n.label} mixes channels in an unsupported way`;
      if (op === 'Dropout' && n.outputs.length > 1 && n.outputs[1]!.uses.length > 0) return `${n.label} uses its mask output`;
      this.setMap(n.output(0), xm);
      return undefined;
    }
    if (op === 'Clip') {
      if (!xm) return `${n.label} takes its bounds from pruned channels`;
      for (let i = 1; i < n.inputs.length; i++) {
        const b = n.input(i);
        if (b && !(constantOf(b)?.size === 1)) return `${n.label} has non-scalar bounds`;
      }
      this.setMap(n.output(0), xm);
      return undefined;
    }
    if (BINARY.has(op)) return this.elementwise(n);
    if (op === 'BatchNormalization' || op === 'InstanceNormalization') {
      if (!xm || channelPos(xm) !== 1) return `${n.label} does not normalize over the pruned channel axis`;
      if (n.outputs.length > 1 && n.outputs.slice(1).some((o) => o.uses.length > 0 || o.isGraphOutput)) return `${n.label} uses training-mode outputs`;
      const last = op === 'BatchNormalization' ? 4 : 2;
      for (let i = 1; i <= last; i++) {
        const t = constantOf(n.input(i));
        if (!t || t.dims.length !== 1 || t.dims[0] !== total(xm)) return `${n.label}: parameter ${i} is not a constant of ${total(xm)} values`;
        this.sites.push({ kind: 'param', node: n, input: i, axis: 0, map: xm, producer: false });
      }
      this.setMap(n.output(0), xm);
      return undefined;
    }
    if (POOL.has(op)) {
      if (!xm || channelPos(xm) !== 1) return `${n.label} pools over an axis the analysis cannot place`;
      if (n.outputs.length > 1 && n.outputs[1]!.uses.length > 0) return `${n.label} uses its indices output`;
      this.setMap(n.output(0), xm);
      return undefined;
    }
    if (op === 'Resize' || op === 'Upsample') return this.resize(n, xm);
    if (op === 'Pad') {
      if (!xm) return `${n.label} takes its pads from pruned channels`;
      const pos = channelPos(xm);
      const pads = n.inputs.length > 1 ? constantOf(n.input(1))?.toNumbers() : n.getInts('pads') ?? n.getInts('paddings');
      if (pos === undefined || !pads || n.input(3)) return `${n.label}: pads are not constant (or use axes)`;
      const r = pads.length / 2;
      if (pads[pos] !== 0 || pads[pos + r] !== 0) return `${n.label} pads the channel axis`;
      this.setMap(n.output(0), xm);
      return undefined;
    }
    if (op === 'Concat') return this.concat(n);
    if (op === 'Flatten') {
      if (!xm) return undefined;
      const pos = channelPos(xm);
      let axis = n.getInt('axis', 1);
      if (xm.rank !== undefined && axis < 0) axis += xm.rank;
      if (pos === undefined || axis !== pos) return `${n.label} does not flatten from the channel axis`;
      this.setMap(n.output(0), { segments: xm.segments, axis: -1, rank: 2, inner: xm.axis === -1 ? xm.inner : { value: null } });
      return undefined;
    }
    if (op === 'Reshape') return this.reshape(n, xm);
    if (op === 'Shape') {
      if (!xm || xm.rank === undefined) return `${n.label} reads the shape of a tensor of unknown rank`;
      if (n.attr('start') || n.attr('end')) return `${n.label} takes part of the shape`;
      return this.shapeUseSafe(n.output(0), channelPos(xm)!, 0) ? undefined : `${n.label}: the channel count flows into a computed shape`;
    }
    if (op === 'Squeeze') {
      if (!xm || xm.rank === undefined) return `${n.label} squeezes a tensor of unknown rank`;
      const pos = channelPos(xm)!;
      const axes = n.inputs.length > 1 ? constantOf(n.input(1))?.toNumbers() : n.getInts('axes');
      if (!axes) return `${n.label} squeezes axes that are not constant`;
      const norm = axes.map((a) => (a < 0 ? a + xm.rank! : a));
      if (norm.some((a) => a <= pos)) return `${n.label} squeezes an axis at or before the channel axis`;
      this.setMap(n.output(0), { segments: xm.segments, axis: xm.axis + norm.length, rank: xm.rank - norm.length, inner: xm.inner });
      return undefined;
    }
    if (op === 'Softmax' || op === 'LogSoftmax' || op === 'Hardmax') {
      if (!xm || xm.rank === undefined) return `${n.label} normalizes a tensor of unknown rank`;
      const pos = channelPos(xm)!;
      let axis = n.getInt('axis', this.opset >= 13 ? -1 : 1);
      if (axis < 0) axis += xm.rank;
      const touches = this.opset >= 13 ? axis === pos : pos >= axis;
      if (touches) return `${n.label} normalizes over the channel axis`;
      this.setMap(n.output(0), xm);
      return undefined;
    }
    return `${n.label}: ${op} is not understood by the channel analysis`;
  }

  private conv(n: Node, xm: ChannelMap | undefined): string | undefined {
    const w = constantOf(n.input(1));
    const bias = n.input(2);
    const b = bias ? constantOf(bias) : undefined;
    if (!w || (bias && !b) || w.dims.length < 3) return `${n.label} has weights that are not constant`;
    const g = n.getInt('group', 1);
    const cout = w.dims[0]!;
    const cinPerGroup = w.dims[1]!;
    const rank = w.dims.length;
    if (xm) {
      if (xm.axis !== 1 - rank) return `${n.label} reads channels on an unexpected axis`;
      if (xm.inner.value !== null && xm.inner.value !== 1) return `${n.label} reads flattened channels`;
      xm.inner.value = 1;
      const cin = total(xm);
      if (g === 1) {
        if (cinPerGroup !== cin) return `${n.label}: weight expects ${cinPerGroup} input channels, the analysis counted ${cin}`;
        this.sites.push({ kind: 'param', node: n, input: 1, axis: 1, map: xm, producer: false });
      } else if (g === cin && cinPerGroup === 1 && cout === cin) {
        // depthwise: output channel c reads input channel c only, so both are one space
        this.sites.push({ kind: 'param', node: n, input: 1, axis: 0, map: xm, producer: false });
        if (b) this.sites.push({ kind: 'param', node: n, input: 2, axis: 0, map: xm, producer: false });
        this.sites.push({ kind: 'group', node: n, map: xm });
        this.setMap(n.output(0), xm);
        return undefined;
      } else {
        return `${n.label} is a grouped convolution (group=${g}, ${cinPerGroup} input channels per group), which ties channels in blocks`;
      }
    } else if (g !== 1) {
      return undefined; // input channels never change; grouped output cannot be pruned alone
    }
    const space = this.newSpace(cout, n);
    const m: ChannelMap = { segments: [{ space, size: cout }], axis: 1 - rank, rank, inner: { value: 1 } };
    this.sites.push({ kind: 'param', node: n, input: 1, axis: 0, map: m, producer: true });
    if (b) this.sites.push({ kind: 'param', node: n, input: 2, axis: 0, map: m, producer: false });
    this.setMap(n.output(0), m);
    return undefined;
  }

  private convTranspose(n: Node, xm: ChannelMap | undefined): string | undefined {
    const w = constantOf(n.input(1));
    const bias = n.input(2);
    const b = bias ? constantOf(bias) : undefined;
    if (!w || (bias && !b) || w.dims.length < 3) return `${n.label} has weights that are not constant`;
    if (n.getInt('group', 1) !== 1) return `${n.label} is a grouped transposed convolution`;
    if (n.attr('output_shape')) return `${n.label} fixes its output shape`;
    const rank = w.dims.length;
    if (xm) {
      if (xm.axis !== 1 - rank) return `${n.label} reads channels on an unexpected axis`;
      if (w.dims[0] !== total(xm)) return `${n.label}: weight expects ${w.dims[0]} input channels, the analysis counted ${total(xm)}`;
      this.sites.push({ kind: 'param', node: n, input: 1, axis: 0, map: xm, producer: false });
    }
    const cout = w.dims[1]!;
    const space = this.newSpace(cout, n);
    const m: ChannelMap = { segments: [{ space, size: cout }], axis: 1 - rank, rank, inner: { value: 1 } };
    this.sites.push({ kind: 'param', node: n, input: 1, axis: 1, map: m, producer: true });
    if (b) this.sites.push({ kind: 'param', node: n, input: 2, axis: 0, map: m, producer: false });
    this.setMap(n.output(0), m);
    return undefined;
  }

  /** A tracked input of a Gemm/MatMul: rows `axis` of weight `input` run over the flattened features. */
  private featureConsumer(n: Node, xm: ChannelMap, weight: Tensor, input: number, axis: number): string | undefined {
    if (xm.axis !== -1) return `${n.label} multiplies along an axis that is not the pruned one`;
    const k = weight.dims[axis]!;
    const c = total(xm);
    if (xm.inner.value === null) {
      if (k % c !== 0) return `${n.label}: ${k} input features are not a multiple of the ${c} channels flattened into them`;
      xm.inner.value = k / c;
    }
    if (k !== c * xm.inner.value) return `${n.label}: weight expects ${k} input features, the analysis counted ${c * xm.inner.value}`;
    this.sites.push({ kind: 'param', node: n, input, axis, map: xm, producer: false });
    return undefined;
  }

  private gemm(n: Node, xm: ChannelMap | undefined): string | undefined {
    const w = constantOf(n.input(1));
    const c = n.input(2);
    const ct = c ? constantOf(c) : undefined;
    if (n.input(1) && this.maps.has(n.input(1)!)) return `${n.label} multiplies by pruned activations`;
    if (!w || w.dims.length !== 2 || (c && !ct)) return `${n.label} has weights that are not constant`;
    const transB = n.getInt('transB', 0) === 1;
    if (xm) {
      if (n.getInt('transA', 0) === 1) return `${n.label} transposes its input`;
      const r = this.featureConsumer(n, xm, w, 1, transB ? 1 : 0);
      if (r) return r;
    }
    const units = transB ? w.dims[0]! : w.dims[1]!;
    const space = this.newSpace(units, n);
    const m: ChannelMap = { segments: [{ space, size: units }], axis: -1, rank: 2, inner: { value: 1 } };
    this.sites.push({ kind: 'param', node: n, input: 1, axis: transB ? 0 : 1, map: m, producer: true });
    if (ct && ct.dims.length > 0 && ct.dims[ct.dims.length - 1] !== 1) {
      if (ct.dims[ct.dims.length - 1] !== units) return `${n.label}: bias shape [${ct.dims.join(',')}] does not match ${units} units`;
      this.sites.push({ kind: 'param', node: n, input: 2, axis: ct.dims.length - 1, map: m, producer: false });
    }
    this.setMap(n.output(0), m);
    return undefined;
  }

  private matmul(n: Node, xm: ChannelMap | undefined): string | undefined {
    const w = constantOf(n.input(1));
    if (n.input(1) && this.maps.has(n.input(1)!)) return `${n.label} multiplies by pruned activations`;
    if (!w || w.dims.length !== 2) return xm ? `${n.label} has no constant 2-D weight` : undefined;
    if (xm) {
      const r = this.featureConsumer(n, xm, w, 1, 0);
      if (r) return r;
    }
    const units = w.dims[1]!;
    const space = this.newSpace(units, n);
    const xr = n.input(0) ? rankOfValue(n.input(0)!, this.maps) : undefined;
    const m: ChannelMap = { segments: [{ space, size: units }], axis: -1, ...(xr !== undefined ? { rank: Math.max(xr, 2) } : {}), inner: { value: 1 } };
    this.sites.push({ kind: 'param', node: n, input: 1, axis: 1, map: m, producer: true });
    this.setMap(n.output(0), m);
    return undefined;
  }

  private elementwise(n: Node): string | undefined {
    const trackedMaps: ChannelMap[] = [];
    for (const v of n.inputs) {
      if (!v) continue;
      const m = this.maps.get(v);
      if (m) trackedMaps.push(m);
      else if (!constantOf(v)) return `${n.label} combines pruned channels with ${v.name}, whose shape the analysis does not know`;
    }
    const first = trackedMaps[0]!;
    for (const m of trackedMaps.slice(1)) {
      if (!this.unify(first, m)) return `${n.label} combines tensors whose channels are laid out differently`;
    }
    for (let i = 0; i < n.inputs.length; i++) {
      const v = n.input(i);
      const t = v && !this.maps.has(v) ? constantOf(v) : undefined;
      if (t && !this.constantAlongChannels(n, i, t, first)) return `${n.label}: constant ${v!.name} [${t.dims.join(',')}] neither broadcasts over nor matches the ${total(first)} channels`;
    }
    const rank = Math.max(...trackedMaps.map((m) => m.rank ?? -1), ...n.inputs.map((v) => (v && !this.maps.has(v) ? constantOf(v)?.dims.length ?? -1 : -1)));
    const out = rank >= 0 && rank !== first.rank && first.rank !== undefined ? { ...first, rank } : first;
    this.setMap(n.output(0), out);
    return undefined;
  }

  private resize(n: Node, xm: ChannelMap | undefined): string | undefined {
    if (!xm) return `${n.label} takes its sizes from pruned channels`;
    const pos = channelPos(xm);
    if (pos === undefined) return `${n.label} resizes a tensor of unknown rank`;
    if (n.getString('mode', 'nearest') === 'tf_crop_and_resize') return `${n.label} crops`;
    const scalesIdx = n.opType === 'Upsample' || this.opset < 11 ? 1 : 2;
    const scalesV = n.input(scalesIdx);
    const scales = scalesV ? constantOf(scalesV) : undefined;
    const sizesV = n.opType === 'Resize' && this.opset >= 11 ? n.input(3) : null;
    const sizes = sizesV ? constantOf(sizesV) : undefined;
    if (n.opType === 'Upsample' && this.opset < 9) {
      const s = n.getFloats('scales');
      if (!s || s[pos] !== 1) return `${n.label} scales the channel axis`;
    } else if (sizesV && sizes && sizes.size > 0) {
      return `${n.label} resizes to fixed sizes that include the channel count`;
    } else if (sizesV && !sizes) {
      return `${n.label} takes its sizes from a computed tensor`;
    } else {
      if (!scales || scales.size === 0) return `${n.label} has scales that are not constant`;
      if (n.attr('axes')) return `${n.label} uses axes`;
      if (scales.toFloat32()[pos] !== 1) return `${n.label} scales the channel axis`;
    }
    this.setMap(n.output(0), xm);
    return undefined;
  }

  private concat(n: Node): string | undefined {
    const maps = n.inputs.map((v) => (v ? this.maps.get(v) : undefined));
    const first = maps.find((m) => m) as ChannelMap;
    const rank = first.rank ?? n.inputs.map((v) => v?.shape?.length).find((r) => r !== undefined);
    let axis = n.getInt('axis', 1);
    if (axis < 0) {
      if (rank === undefined) return `${n.label} concatenates along an axis the analysis cannot place`;
      axis += rank;
    }
    const pos = rank !== undefined ? rank + first.axis : undefined;
    if (pos === undefined) return `${n.label} concatenates tensors of unknown rank`;
    if (maps.some((m) => !m)) return `${n.label} concatenates pruned channels with tensors the analysis does not follow`;
    if (axis === pos) {
      const inner = first.inner;
      for (const m of maps) {
        if (m!.axis !== first.axis) return `${n.label} concatenates tensors whose channel axes differ`;
        if (m!.inner.value === null || inner.value === null) return `${n.label} concatenates flattened channels`;
        if (m!.inner.value !== inner.value) return `${n.label} concatenates tensors with different channel repeats`;
      }
      this.setMap(n.output(0), { segments: maps.flatMap((m) => m!.segments), axis: first.axis, rank, inner });
      return undefined;
    }
    for (const m of maps) if (!this.unify(first, m!)) return `${n.label} concatenates tensors whose channels are laid out differently`;
    this.setMap(n.output(0), first);
    return undefined;
  }

  /** True when every use of the shape vector `v` picks elements other than `pos` (through Cast). */
  private shapeUseSafe(v: Value, pos: number, depth: number): boolean {
    if (v.isGraphOutput || depth > 8) return false;
    for (const u of v.consumers()) {
      if (u.opType === 'Cast' || u.opType === 'Identity') {
        if (!this.shapeUseSafe(u.output(0), pos, depth + 1)) return false;
        continue;
      }
      if (u.opType === 'Slice' || u.opType === 'Gather') {
        const idx = u.input(0) === v ? selectedIndices(u, pos + 1) : undefined;
        if (!idx || idx.includes(pos)) return false;
        continue;
      }
      return false;
    }
    return true;
  }

  private reshape(n: Node, xm: ChannelMap | undefined): string | undefined {
    if (!xm) return `${n.label} takes its shape from pruned channels`;
    const pos = channelPos(xm);
    if (pos !== 1 || xm.rank === undefined) return `${n.label} reshapes a tensor whose channel axis is not axis 1`;
    const shapeV = n.input(1);
    const elems = shapeElements(shapeV, (v) => rankOfValue(v, this.maps), { node: n, input: 1 });
    if (!elems) return `${n.label} has a dynamic target shape the analysis cannot resolve`;
    if (elems.length !== 2) return `${n.label} reshapes to rank ${elems.length}; only flattening to [batch, features] is understood`;
    const [a, b] = elems as [typeof elems[0], typeof elems[0]];
    const keepsBatch = (a.kind === 'const' && (a.value >= 0 || (a.value === -1 && b.kind === 'const' && b.value > 0))) || (a.kind === 'dim' && a.of === n.input(0) && a.index === 0);
    if (!keepsBatch) return `${n.label}: the first target dimension is not the batch`;
    const m: ChannelMap = { segments: xm.segments, axis: -1, rank: 2, inner: { value: null } };
    if (b.kind === 'const' && b.value === -1) {
      // the feature count follows the channels; a consumer fixes `inner`
    } else if (b.kind === 'const' && b.value > 0 && b.source) {
      const c = total(xm);
      if (b.value % c !== 0) return `${n.label}: ${b.value} features are not a multiple of ${c} channels`;
      m.inner.value = b.value / c;
      this.sites.push({ kind: 'reshape', node: b.source.node, input: b.source.input, index: b.source.index, map: m });
    } else {
      return `${n.label}: the feature count of the target shape is computed`;
    }
    this.setMap(n.output(0), m);
    return undefined;
  }
}

/** Element indices that a Slice/Gather on axis 0 takes from a vector of `len` elements. */
function selectedIndices(n: Node, len: number): number[] | undefined {
  const all = Array.from({ length: len }, (_, i) => i);
  if (n.opType === 'Gather') {
    if (n.getInt('axis', 0) !== 0) return undefined;
    const t = constantOf(n.input(1));
    return t ? t.toNumbers().map((k) => (k < 0 ? k + len : k)) : undefined;
  }
  let starts: number[] | undefined;
  let ends: number[] | undefined;
  let axes: number[] | undefined;
  if (n.inputs.length > 1) {
    starts = constantOf(n.input(1))?.toNumbers();
    ends = constantOf(n.input(2))?.toNumbers();
    axes = n.input(3) ? constantOf(n.input(3))?.toNumbers() : [0];
    const steps = n.input(4) ? constantOf(n.input(4))?.toNumbers() : [1];
    if (!steps || steps.length !== 1 || steps[0] !== 1) return undefined;
  } else {
    starts = n.getInts('starts');
    ends = n.getInts('ends');
    axes = n.getInts('axes') ?? [0];
  }
  if (!starts || !ends || !axes || starts.length !== 1 || ends.length !== 1 || axes.length !== 1 || (axes[0] !== 0 && axes[0] !== -1)) return undefined;
  const clamp = (x: number) => Math.max(0, Math.min(len, x < 0 ? x + len : x));
  return all.slice(clamp(starts[0]!), clamp(ends[0]!));
}

/** Runs the analysis over the main graph of a model. */
export function analyzeChannels(graph: Graph, opset: number): DependencyAnalysis {
  const a = new Analyzer(graph, opset);
  a.run();
  return {
    spaces: a.spaces,
    root: (id) => a.root(id),
    sites: a.sites,
    maps: a.maps,
    prunable: () => a.spaces.filter((s) => a.root(s.id) === s.id && s.frozen.length === 0),
  };
}

/** Total channels along the axis of a map (before pruning). */
export function mapTotal(m: ChannelMap): number {
  return total(m);
}
