/**
 * The prune command's report (`onnxforge.prune/1`, built by workflows/prune.ts) and its terminal
 * rendering: the pass's own report, FLOPs and parameters per layer and in total, latency, deployed
 * sizes, storage, accuracy and explanations.
 */
import type { FlopReport } from '../analysis/flops.js';
import type { Explanation } from '../passes/pass.js';
import type { ChannelReport } from '../passes/prune/prune-channels.js';
import type { MagnitudeReport } from '../passes/prune/prune-magnitude.js';
import type { DeployedSizes, SizeSet } from '../passes/prune/deploy.js';
import { renderTable } from './table.js';

export interface PruneCommandReport {
  schema: 'onnxforge.prune/1';
  mode: 'channels' | 'magnitude';
  channels?: ChannelReport;
  magnitude?: MagnitudeReport;
  /** FLOPs per layer and in total, at the input shapes of the sample used (absent without one: see notes). */
  flops?: { before: FlopReport; after: FlopReport };
  params: { before: number; after: number };
  /** Parts of the report left out, and why (the flags that add them). */
  notes?: string[];
  latency?: { beforeMs: number; afterMs: number; ratio: number; runs: number };
  /** Sizes of the input model and of the written one (with its sparse-storage variant). */
  sizes?: DeployedSizes & { original: SizeSet };
  /** How the written file stores the pruned tensors (--storage), and its size. */
  storage?: { written: 'dense' | 'sparse'; tensors?: number; reason?: string; bytes: number };
  /** The lossless `default` preset run after pruning (--optimize), and the weight sparsity it left. */
  optimized?: { pipeline: string; nodesBefore: number; nodesAfter: number; weightSparsity: number };
  accuracy?: { metric: string; before: Record<string, number>; after: Record<string, number> };
  explanations: Explanation[];
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(3)}x` : '-');

export function renderPruneReport(r: PruneCommandReport): string {
  const out: string[] = [];
  if (r.channels) {
    const rows = r.channels.groups.map((g) => [g.nodes.join(', ').slice(0, 60), g.before, g.after, g.reason ? `kept: ${g.reason}`.slice(0, 90) : '']);
    out.push(renderTable(['channel group (producers)', 'before', 'after', 'note'], rows, { title: `prune-channels ratio ${r.channels.ratio} (${r.channels.criterion}, scope ${r.channels.scope}${r.channels.scope === 'global' ? `, cost ${r.channels.cost}` : ''}, max ratio ${r.channels.maxRatio}, round to ${r.channels.roundTo}): channels ${r.channels.channelsBefore} -> ${r.channels.channelsAfter}` }));
  }
  if (r.magnitude) {
    const rows = r.magnitude.layers.map((l) => [l.weight, l.op, l.elements, pct(l.sparsity)]);
    out.push(renderTable(['weight', 'op', 'elements', 'sparsity'], rows, { title: `prune-magnitude ${r.magnitude.scope} ${r.magnitude.target}: overall sparsity ${pct(r.magnitude.sparsity)} of ${r.magnitude.elements} weights` }));
  }
  const f = r.flops;
  if (f) {
    const after = new Map(f.after.nodes.map((n) => [n.node, n]));
    const rows = f.before.nodes
      .filter((n) => n.flops > 0 || n.params > 0)
      .filter((n) => ['Conv', 'ConvTranspose', 'Gemm', 'MatMul'].includes(n.op))
      .map((n) => {
        const m = after.get(n.node);
        return [n.node, n.op, n.flops, m?.flops ?? 0, n.params, m?.params ?? 0];
      });
    out.push(renderTable(['layer', 'op', 'FLOPs before', 'FLOPs after', 'params before', 'params after'], rows, { title: 'FLOPs and parameters per layer' }));
  }
  out.push(
    renderTable(
      ['total', 'before', 'after', 'ratio'],
      [
        ...(f ? [['FLOPs', f.before.totalFlops, f.after.totalFlops, ratio(f.after.totalFlops, f.before.totalFlops)]] : []),
        ['parameters', r.params.before, r.params.after, ratio(r.params.after, r.params.before)],
        ...(r.latency ? [['latency p50 (ms)', r.latency.beforeMs.toFixed(3), r.latency.afterMs.toFixed(3), ratio(r.latency.afterMs, r.latency.beforeMs)]] : []),
        ...(r.sizes
          ? (['raw', 'gzip', 'brotli'] as const).map((k) => [`size ${k} (bytes, ${r.sizes!.best[k].variant})`, r.sizes!.original[k], r.sizes!.best[k].bytes, ratio(r.sizes!.best[k].bytes, r.sizes!.original[k])])
          : []),
      ],
      { title: 'Totals' },
    ),
  );
  if (f?.after.unknown.length) out.push(`FLOPs not counted (unknown shapes): ${f.after.unknown.slice(0, 8).join(', ')}`);
  for (const n of r.notes ?? []) out.push(`note: ${n}`);
  if (r.accuracy) {
    const keys = [...new Set([...Object.keys(r.accuracy.before), ...Object.keys(r.accuracy.after)])];
    out.push(renderTable(['metric', 'before', 'after'], keys.map((k) => [`${r.accuracy!.metric}.${k}`, r.accuracy!.before[k]?.toFixed(4) ?? '-', r.accuracy!.after[k]?.toFixed(4) ?? '-']), { title: 'Accuracy' }));
  }
  if (r.storage?.written === 'sparse') out.push(`written with sparse storage: ${r.storage.tensors} tensors, ${r.storage.bytes} bytes`);
  else if (r.storage?.reason) out.push(`written dense: ${r.storage.reason}`);
  if (r.optimized) out.push(`then ${r.optimized.pipeline}: nodes ${r.optimized.nodesBefore} -> ${r.optimized.nodesAfter}${r.magnitude ? `; Conv/Gemm/MatMul weight sparsity ${pct(r.optimized.weightSparsity)}` : ''}`);
  if (r.explanations.length) out.push(['Explanations:', ...r.explanations.map((e) => `  ${e.pass}${e.node ? ` ${e.node}` : ''}: ${e.reason}`)].join('\n'));
  return out.join('\n\n');
}

