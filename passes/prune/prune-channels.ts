/**
 * prune-channels: structured pruning. Removes whole output channels of Conv / ConvTranspose and
 * output units of Gemm / MatMul, and rewrites everything that depends on them, from the channel
 * dependency analysis in `prune/dependency.ts` (next layers' input channels, depthwise convs and their
 * `group`, BatchNormalization, biases, per-channel Mul/Add constants, Concat offsets, residual Add and
 * SE `Mul` branches pruned jointly as one group, Flatten/Reshape into Gemm/MatMul).
 *
 * Channel c of a group ranks by sum over its producers p of ||W_p[c]|| (criterion l1 or l2), times
 * |gamma_c| / sqrt(var_c + eps) when a BatchNormalization alone reads p (see prune/channels.ts).
 * With ratio r, the round(r * total) lowest mean-normalized channels across groups are dropped
 * (scope `global`, the default), or a group of C channels drops round(r * C) of the lowest (scope
 * `layer`). With `cost=flops` (global, the default), a channel's normalized importance is divided by
 * its group's FLOPs per channel relative to the mean (prune/channels.ts `channelCosts`, at a nominal
 * input size), so the budget comes more out of expensive layers; `maxRatio` caps what any group
 * loses (default 0.5); kept counts are multiples of `roundTo` (default 8), so groups of at most 8
 * channels stay whole (the report's `note` says so when that left the model unchanged).
 * The defaults live in {@link PRUNE_CHANNELS_OPTIONS} only.
 * Graph input and output shapes never change; groups that cannot be proven safe are kept whole and
 * `--explain` says why. The pass returns the per-group report (with the model before pruning attached).
 */
import { inputError } from '../../core/errors.js';
import { Model } from '../../ir/ir.js';
import { cloneModel } from '../../onnx/index.js';
import { definePass, OptionsSchema, withSchemaDefaults } from '../pass.js';
import { constantOf } from '../../ir/ir.js';
import type { Sample } from '../../data/index.js';
import type { Feed } from '../../core/host-tensor.js';
import { applyChannelPruning, channelCosts, channelImportance, Criterion, keptIndices, selectChannels } from './channels.js';
import { channelMeans, compensate, ConsumerCut } from './compensate.js';
import { analyzeChannels } from '../../analysis/channel-dependency.js';
import { matchesAny, parseLayerRatios } from './names.js';
import { flopsByNode } from '../../analysis/flops.js';

export interface ChannelGroupReport {
  /** Producer nodes of the group (first one names it). */
  nodes: string[];
  before: number;
  after: number;
  /** Why the group was kept whole, if it was. */
  reason?: string;
}

export interface ChannelReport {
  ratio: number;
  criterion: Criterion;
  scope: 'layer' | 'global';
  /** The ranking cost (global scope), the per-group cap and the block size of kept counts. */
  cost: 'flops' | 'none';
  maxRatio: number;
  roundTo: number;
  groups: ChannelGroupReport[];
  channelsBefore: number;
  channelsAfter: number;
  /** Why nothing was removed, when rounding to roundTo is the reason (small groups stay whole). */
  note?: string;
}

export interface PruneChannelsOptions extends Record<string, unknown> {
  ratio: number;
  criterion: string;
  scope: string;
  exclude: string[];
  layers: string[];
  minChannels: number;
  roundTo: number;
  compensate: boolean;
  calibrationSamples: number;
  cost: string;
  maxRatio: number;
}

export interface ChannelPlan {
  report: ChannelReport;
  /** Consumers that lose input channels (for bias compensation). */
  cuts: ConsumerCut[];
  /** Rewrites the model. */
  apply(): void;
  /**
   * The original channel indices (along the channel axis) that tensor `name` keeps after `apply()`,
   * or undefined when pruning does not follow that tensor or a channel spans several positions
   * (flattened features). A tensor whose channels all stay gets every index.
   */
  keptChannels(name: string): number[] | undefined;
}

/**
 * The options and their defaults: the one place they are written. The CLI (`prune --channels`,
 * `distill --prune-channels`), pipeline files and {@link planChannels} read them from here. The
 * defaults are the setting that runs fastest on onnxruntime's CPU kernels for the accuracy it keeps
 * (bench:prune): one global ranking by importance per FLOP, no group losing more than half, kept
 * counts in blocks of 8.
 */
export const PRUNE_CHANNELS_OPTIONS = {
  ratio: { type: 'number', description: 'Fraction of the channels to remove, in (0, 1): of each group (scope layer) or of all prunable channels (scope global).', default: 0.3, min: 0, max: 1, exclusiveMin: true, exclusiveMax: true },
  criterion: { type: 'enum', values: ['l1', 'l2'], description: 'Norm of the producing weights that ranks channels.', default: 'l1' },
  scope: { type: 'enum', values: ['global', 'layer'], description: 'One ranking over all groups (global) or the same ratio in every group (layer).', default: 'global' },
  exclude: { type: 'string[]', description: 'Node, weight or output names whose channels stay (* wildcards).', default: [] },
  layers: { type: 'string[]', description: 'Per-layer ratios as name=ratio.', default: [] },
  minChannels: { type: 'integer', description: 'Channels each group keeps at least.', default: 1, min: 1 },
  compensate: { type: 'boolean', description: "With calibration data (ctx.data.calibration), add the removed channels' mean contribution to the next layers' biases.", default: true },
  calibrationSamples: { type: 'integer', description: 'Calibration samples used for compensation.', default: 16, min: 1 },
  cost: { type: 'enum', values: ['flops', 'none'], description: 'Global scope: rank channels by importance per FLOP the channel costs (flops), which takes more from the expensive layers, or by importance alone (none). Scope layer removes the same ratio everywhere and ignores it.', default: 'flops' },
  maxRatio: { type: 'number', description: 'The largest fraction of any one group that may be removed, in (0, 1] (caps the scope-layer ratio too; per-layer ratios are exact).', default: 0.5, min: 0, max: 1, exclusiveMin: true },
  roundTo: { type: 'integer', description: 'Round kept channel counts to a multiple of this (8 matches the NCHWc blocks of onnxruntime on AVX2); a group of at most this many channels stays whole, so use 1 for small models.', default: 8, min: 1 },
} satisfies OptionsSchema;

/** `o` over the schema defaults (an option given as undefined takes its default). */
export function withChannelDefaults(o: Partial<PruneChannelsOptions>): PruneChannelsOptions {
  return withSchemaDefaults(PRUNE_CHANNELS_OPTIONS, o) as PruneChannelsOptions;
}

/** Analyses the model and chooses the channels, without changing anything until `apply()`. */
export function planChannels(model: Model, options: Partial<PruneChannelsOptions>, explain: (node: string | undefined, reason: string) => void = () => {}): ChannelPlan {
  const o = withChannelDefaults(options);
  const ratio = o.ratio;
  if (typeof ratio !== 'number' || !(ratio > 0 && ratio < 1)) throw inputError('PRUNE_BAD_RATIO', `prune-channels: ratio must be in (0, 1), got ${String(ratio)}`, { option: 'ratio' });
  const criterion = o.criterion as Criterion;
  if (criterion !== 'l1' && criterion !== 'l2') throw inputError('PRUNE_BAD_CRITERION', `prune-channels: criterion must be l1 or l2, got ${String(criterion)}`, { option: 'criterion' });
  const scope = o.scope as 'layer' | 'global';
  if (scope !== 'layer' && scope !== 'global') throw inputError('PRUNE_BAD_SCOPE', `prune-channels: scope must be layer or global, got ${String(scope)}`, { option: 'scope' });
  const minChannels = o.minChannels;
  if (!Number.isInteger(minChannels) || minChannels < 1) throw inputError('PRUNE_BAD_MIN', `prune-channels: minChannels must be a whole number of at least 1, got ${minChannels}`, { option: 'minChannels' });
  const roundTo = o.roundTo;
  if (!Number.isInteger(roundTo) || roundTo < 1) throw inputError('PRUNE_BAD_ROUND', `prune-channels: roundTo must be a whole number of at least 1, got ${roundTo}`, { option: 'roundTo' });
  const layerRatios = parseLayerRatios(o.layers, (msg) => {
    throw inputError('PRUNE_BAD_LAYER_RATIO', `prune-channels: ${msg}`, { option: 'layers' });
  });

  const cost = o.cost;
  if (cost !== 'none' && cost !== 'flops') throw inputError('PRUNE_BAD_COST', `prune-channels: cost must be none or flops, got ${String(cost)}`, { option: 'cost' });
  const maxRatio = o.maxRatio;
  if (typeof maxRatio !== 'number' || !(maxRatio > 0 && maxRatio <= 1)) throw inputError('PRUNE_BAD_MAX_RATIO', `prune-channels: maxRatio must be in (0, 1], got ${String(maxRatio)}`, { option: 'maxRatio' });

  model.graph.toposort();
  const a = analyzeChannels(model.graph, model.opset('') ?? 1);
  const exclude = o.exclude;
  const label = (n: { name?: string; label: string }) => n.name ?? n.label;
  for (const s of a.spaces) {
    if (a.root(s.id) !== s.id) continue;
    const hit = s.members.find((n) => matchesAny(exclude, [n.name, ...n.outputs.map((v) => v.name), ...n.inputs.slice(1).map((v) => v?.name)]));
    if (hit) s.frozen.push(`${label(hit)} is excluded`);
  }
  const ratios = new Map<number, number>();
  for (const s of a.prunable()) {
    for (const lr of layerRatios) if (s.members.some((n) => matchesAny([lr.pattern], [n.name, ...n.outputs.map((v) => v.name)]))) ratios.set(s.id, lr.ratio);
  }
  const importance = channelImportance(a, criterion);
  const costs = cost === 'flops' && scope === 'global' ? channelCosts(a, flopsByNode(model)) : undefined;
  const sel = selectChannels(a, importance, { ratio, scope, ratios, minChannels, roundTo, maxRatio, ...(costs ? { costs } : {}) });
  const groups: ChannelGroupReport[] = [];
  const skippedBy = new Map(sel.skipped.map((x) => [x.space.id, x.reason]));
  let before = 0;
  let after = 0;
  for (const s of a.spaces) {
    if (a.root(s.id) !== s.id) continue;
    const reason = s.frozen.length ? s.frozen.join('; ') : skippedBy.get(s.id);
    const kept = sel.keep.get(s.id)?.length ?? s.size;
    before += s.size;
    after += kept;
    groups.push({ nodes: s.members.map(label), before: s.size, after: kept, ...(reason ? { reason } : {}) });
    if (reason) explain(s.origin.name, `channels of ${s.members.map(label).join(', ')} kept: ${reason}`);
  }
  // kept counts round to multiples of roundTo: on a small model the default (8) may give every group back its channels
  const prunable = a.prunable().filter((s) => !s.frozen.length);
  const note =
    after === before && roundTo > 1 && prunable.length > 0
      ? `nothing removed: kept channel counts are rounded to multiples of roundTo=${roundTo}, which gave every group its channels back (a group of at most ${roundTo} channels always stays whole); roundTo=1 prunes small groups`
      : undefined;
  if (note) explain(undefined, note);
  const cuts: ConsumerCut[] = [];
  for (const site of a.sites) {
    if (site.kind !== 'param' || site.producer || site.input !== 1) continue;
    const op = site.node.opType;
    const consumerAxis = op === 'Conv' ? 1 : op === 'ConvTranspose' ? 0 : op === 'MatMul' ? 0 : op === 'Gemm' ? (site.node.getInt('transB', 0) ? 1 : 0) : -1;
    if (consumerAxis !== site.axis || (op === 'Conv' && site.node.getInt('group', 1) !== 1)) continue;
    const kept = keptIndices(a, site.map, sel.keep);
    const weight = constantOf(site.node.input(1));
    const input = site.node.input(0);
    if (!weight || !input || kept.length === weight.dims[site.axis]) continue;
    const own = a.sites.find((x) => x.kind === 'param' && x.producer && x.node === site.node);
    const units = op === 'Conv' ? weight.dims[0]! : op === 'ConvTranspose' ? weight.dims[1]! : weight.dims[1 - site.axis]!;
    const outKept = own ? keptIndices(a, own.map, sel.keep) : Array.from({ length: units }, (_, i) => i);
    cuts.push({ node: site.node, input, weight, axis: site.axis, kept, outKept });
  }
  return {
    report: { ratio, criterion, scope, cost, maxRatio, roundTo, groups, channelsBefore: before, channelsAfter: after, ...(note ? { note } : {}) },
    cuts,
    apply: () => void applyChannelPruning(model.graph, a, sel.keep),
    keptChannels: (name) => {
      const m = [...a.maps].find(([v]) => v.name === name)?.[1];
      if (!m || (m.inner.value ?? 1) !== 1) return undefined;
      return keptIndices(a, m, sel.keep);
    },
  };
}

/** Plans and applies channel pruning (no bias compensation). */
export function pruneChannels(model: Model, o: Partial<PruneChannelsOptions>, explain: (node: string | undefined, reason: string) => void = () => {}): ChannelReport {
  const plan = planChannels(model, o, explain);
  plan.apply();
  return plan.report;
}

/** Calibration data as the pipeline passes it: a function returning samples, or an (async) iterable. */
async function* samplesOf(data: unknown): AsyncGenerator<Sample> {
  const src = typeof data === 'function' ? (data as () => unknown)() : data;
  if (src && typeof (src as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function') {
    for await (const x of src as AsyncIterable<Sample | Feed>) yield asSample(x);
  } else if (src && typeof (src as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const x of src as Iterable<Sample | Feed>) yield asSample(x);
  } else throw inputError('PRUNE_BAD_CALIBRATION', 'prune-channels: calibration data must be a function returning samples, or an iterable of samples or feeds');
}

function asSample(x: Sample | Feed): Sample {
  return x && typeof x === 'object' && 'feed' in x && typeof (x as Sample).id === 'string' ? (x as Sample) : { id: 'sample', feed: x as Feed };
}

/**
 * What prune-channels hands a later pass of the same run (on its report, `source`): the model as it
 * was before pruning and the original channels each of its tensors kept (`distill` uses them as the
 * teacher and to match features on the kept channels).
 */
export interface PrunedFrom {
  model: Model;
  kept: (name: string) => number[] | undefined;
}

/** The pass's report: the per-group report, with `source` attached (not enumerable: JSON leaves it out). */
export type PruneChannelsPassReport = ChannelReport & { readonly source?: PrunedFrom };

export default definePass<PruneChannelsOptions, PruneChannelsPassReport>({
  name: 'prune-channels',
  description: 'Remove whole output channels (Conv) and units (Gemm/MatMul) with every dependent layer rewritten',
  idempotent: false,
  options: PRUNE_CHANNELS_OPTIONS,
  async run(model, o, ctx) {
    const source = cloneModel(model);
    const plan = planChannels(model, o, (node, reason) => ctx.explain(node ? { node, reason } : { reason }));
    const calibration = ctx.data.calibration;
    let compensated = 0;
    if (o.compensate && calibration !== undefined && plan.cuts.length > 0) {
      const means = await channelMeans(model, plan.cuts.map((c) => c.input), samplesOf(calibration), o.calibrationSamples, ctx.runner);
      plan.apply();
      compensated = compensate(plan.cuts, means, model);
    } else plan.apply();
    const from: PrunedFrom = { model: source, kept: plan.keptChannels };
    const report: PruneChannelsPassReport = Object.defineProperty({ ...plan.report }, 'source', { value: from, enumerable: false });
    if (report.note) ctx.logger.warn(`prune-channels: ${report.note}`);
    const pruned = report.groups.filter((g) => g.after < g.before).length;
    return {
      report,
      changed: report.channelsAfter < report.channelsBefore,
      stats: { groups: report.groups.length, prunedGroups: pruned, channelsBefore: report.channelsBefore, channelsAfter: report.channelsAfter, compensated },
    };
  },
});
