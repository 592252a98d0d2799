/**
 * Rendering of the variants report (`onnxforge.variants/1`, workflows/variants.ts): a terminal table,
 * Markdown (tables plus two text scatter charts that render anywhere) and self-contained HTML (tables
 * plus two SVG scatter charts drawn here, no script): size against fidelity (lowest output SQNR, dB)
 * and size against latency (p50 ratio to fp32). Every one names the variant to ship and the budget.
 */
import { formatBytes, renderTable } from './table.js';

/** The slice of the report the renderers read (structurally the workflow's VariantsReport). */
export interface VariantsReportView {
  input: string;
  outDir: string;
  inputBytes: number;
  measuredOn: string;
  samples: number;
  threads: number;
  /** The backend measured on (absent in reports written before --target). */
  backend?: { backend: string; runtime: string; threads: number; simd?: boolean };
  latencyRuns: number;
  latencySettings: string[];
  reference: { latencyMs: Record<string, number>; metrics?: Record<string, Record<string, number>> };
  rows: {
    variant: string;
    file: string;
    recipe: string;
    ok: boolean;
    error?: { code?: string; message: string; stage: string };
    bytes?: number;
    sizeRatio?: number;
    buildMs?: number;
    outputs?: { name: string; maxAbs: number; cosine: number; sqnrDb: number }[];
    minCosine?: number;
    logits?: { output: string; kl: number; top1: number }[];
    nonFinite?: number;
    metrics?: Record<string, Record<string, number>>;
    latencyMs?: Record<string, number>;
    latencyRatio?: Record<string, number>;
    outOfBudget?: string[];
  }[];
  budgetText: string;
  shipNote: string;
  notes: string[];
}

type Row = VariantsReportView['rows'][number];

const fx = (x: number | undefined, d: number) => (x === undefined ? '-' : Number.isFinite(x) ? x.toFixed(d) : String(x));
const minSqnr = (r: Row) => (r.outputs?.length ? Math.min(...r.outputs.map((o) => o.sqnrDb)) : undefined);
const maxAbs = (r: Row) => (r.outputs?.length ? Math.max(...r.outputs.map((o) => o.maxAbs)) : undefined);

/** One table: header and string cells, shared by the three renderers. */
export function variantsTable(r: VariantsReportView): { header: string[]; rows: string[][] } {
  const lat = r.latencySettings;
  const logits = r.rows.some((x) => x.logits?.length);
  const metricKeys = Object.entries(r.reference.metrics ?? {}).flatMap(([m, f]) => Object.keys(f).map((k) => `${m}.${k}`));
  const header = ['variant', 'file', 'size', 'size x', ...lat.map((l) => `latency x (${l})`), 'max abs err', 'min cosine', 'min SQNR dB', ...(logits ? ['KL nats', 'top-1 agree'] : []), ...metricKeys, 'NaN/Inf', 'budget'];
  const refRow = ['fp32 input', r.input, formatBytes(r.inputBytes), '', ...lat.map((l) => `${fx(r.reference.latencyMs[l], 2)} ms`), '', '', '', ...(logits ? ['', ''] : []), ...metricKeys.map((k) => fx(r.reference.metrics?.[k.split('.')[0]!]?.[k.slice(k.indexOf('.') + 1)], 4)), '', 'reference'];
  const rows = r.rows.map((x) => {
    if (!x.ok) return [x.variant, x.file, '-', '-', ...lat.map(() => '-'), '-', '-', '-', ...(logits ? ['-', '-'] : []), ...metricKeys.map(() => '-'), '-', `FAILED (${x.error?.stage}): ${x.error?.code ? `${x.error.code} ` : ''}${x.error?.message ?? ''}`.slice(0, 160)];
    const l = x.logits?.[0];
    return [
      x.variant,
      x.file,
      x.bytes !== undefined ? formatBytes(x.bytes) : '-',
      fx(x.sizeRatio, 3),
      ...lat.map((k) => fx(x.latencyRatio?.[k], 3)),
      maxAbs(x)?.toPrecision(3) ?? '-',
      fx(x.minCosine, 6),
      fx(minSqnr(x), 1),
      ...(logits ? [l ? l.kl.toPrecision(3) : '-', l ? fx(l.top1, 4) : '-'] : []),
      ...metricKeys.map((k) => fx(x.metrics?.[k.split('.')[0]!]?.[k.slice(k.indexOf('.') + 1)], 4)),
      String(x.nonFinite ?? '-'),
      x.outOfBudget?.length ? `out: ${x.outOfBudget.join('; ')}` : 'within',
    ];
  });
  return { header, rows: [refRow, ...rows] };
}

function heading(r: VariantsReportView): string {
  return `variants ${r.input} -> ${r.outDir}: fidelity vs the fp32 input on ${r.samples} samples of ${r.measuredOn}; latency x = median over ${r.latencyRuns} interleaved rounds of the variant's time / model.onnx's in the same round, ${onBackend(r)}`;
}

/** 'onnxruntime-web 1.30.0 (WASM), 1 thread, SIMD' (older reports: the thread count). */
function onBackend(r: VariantsReportView): string {
  const b = r.backend;
  const threads = b ? b.threads : r.threads;
  const t = `${threads} thread${threads === 1 ? '' : 's'}`;
  return b ? `${b.runtime}, ${t}${b.simd === undefined ? '' : b.simd ? ', SIMD' : ', no SIMD'}` : t;
}

export function renderVariantsTerminal(r: VariantsReportView): string {
  const t = variantsTable(r);
  const parts = [renderTable(t.header, t.rows, { title: heading(r) }), `budget: ${r.budgetText}`, r.shipNote];
  for (const n of r.notes) parts.push(`note: ${n}`);
  return parts.join('\n\n');
}

interface Point {
  label: string;
  x: number;
  y: number;
}

/** Points of the two charts: size ratio against lowest SQNR (capped at 120 dB) and against the first latency ratio. */
export function chartPoints(r: VariantsReportView): { fidelity: Point[]; latency: Point[] } {
  const ok = r.rows.filter((x) => x.ok && x.sizeRatio !== undefined);
  const first = r.latencySettings[0];
  return {
    fidelity: ok.filter((x) => minSqnr(x) !== undefined).map((x) => ({ label: x.variant, x: x.sizeRatio!, y: Math.min(minSqnr(x)!, 120) })),
    latency: ok.filter((x) => first !== undefined && x.latencyRatio?.[first] !== undefined).map((x) => ({ label: x.variant, x: x.sizeRatio!, y: x.latencyRatio![first!]! })),
  };
}

function bounds(ps: readonly Point[], key: 'x' | 'y'): [number, number] {
  const v = ps.map((p) => p[key]);
  let lo = Math.min(...v, key === 'x' ? 0 : Infinity);
  let hi = Math.max(...v, key === 'x' ? 1 : -Infinity);
  if (!(hi > lo)) (lo -= 1), (hi += 1);
  const pad = (hi - lo) * 0.08;
  return [key === 'x' ? lo : lo - pad, hi + pad];
}

/** A text scatter plot (Markdown code block): each point drawn as the first letters of its label. */
export function textScatter(ps: readonly Point[], xName: string, yName: string, width = 60, height = 14): string {
  if (!ps.length) return '(no data)';
  const [x0, x1] = bounds(ps, 'x');
  const [y0, y1] = bounds(ps, 'y');
  const grid = Array.from({ length: height }, () => Array<string>(width).fill(' '));
  // points in the same cell share one mark and one label ('q8,int8'); labels never overwrite marks
  const cells = new Map<string, { row: number; col: number; labels: string[] }>();
  for (const p of ps) {
    const col = Math.round(((p.x - x0) / (x1 - x0)) * (width - 1));
    const row = height - 1 - Math.round(((p.y - y0) / (y1 - y0)) * (height - 1));
    const cell = cells.get(`${row},${col}`) ?? { row, col, labels: [] };
    cell.labels.push(p.label);
    cells.set(`${row},${col}`, cell);
  }
  for (const c of cells.values()) grid[c.row]![c.col] = '*';
  for (const c of cells.values()) {
    const text = c.labels.join(',');
    for (let i = 0; i < text.length && c.col + 1 + i < width && grid[c.row]![c.col + 1 + i] === ' '; i++) grid[c.row]![c.col + 1 + i] = text[i]!;
  }
  const lab = (v: number) => v.toPrecision(3).padStart(8);
  const lines = grid.map((g, i) => `${i === 0 ? lab(y1) : i === height - 1 ? lab(y0) : ' '.repeat(8)} |${g.join('')}`);
  lines.push(`${' '.repeat(8)} +${'-'.repeat(width)}`);
  lines.push(`${' '.repeat(10)}${x0.toFixed(2)}${' '.repeat(Math.max(1, width - 10))}${x1.toFixed(2)}`);
  const legend = ps.map((p) => `  ${p.label.padEnd(8)} ${xName} ${p.x.toFixed(3)}, ${yName.replace(/ \(.*\)$/, '')} ${p.y.toPrecision(4)}`);
  return [`${yName} (vertical) against ${xName} (horizontal)`, ...lines, ...legend].join('\n');
}

export function renderVariantsMarkdown(r: VariantsReportView): string {
  const t = variantsTable(r);
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const md = [`| ${t.header.map(cell).join(' | ')} |`, `|${t.header.map((_, i) => (i < 2 ? ' --- ' : ' ---: ')).join('|')}|`, ...t.rows.map((row) => `| ${row.map(cell).join(' | ')} |`)].join('\n');
  const c = chartPoints(r);
  const parts = [
    `# Variants of ${r.input}`,
    heading(r),
    md,
    `**Budget:** ${r.budgetText}.`,
    `**${r.shipNote}**`,
    '## Size against fidelity',
    '```text\n' + textScatter(c.fidelity, 'size / fp32', 'lowest output SQNR, dB (higher is better)') + '\n```',
    '## Size against latency',
    '```text\n' + textScatter(c.latency, 'size / fp32', `p50 latency / fp32 (${r.latencySettings[0] ?? '-'}; lower is better)`) + '\n```',
  ];
  for (const n of r.notes) parts.push(`- note: ${n}`);
  return `${parts.join('\n\n')}\n`;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** An SVG scatter plot with axes, ticks at the ends and a label per point. */
export function svgScatter(ps: readonly Point[], xName: string, yName: string): string {
  const w = 640;
  const h = 320;
  const [l, rt, top, bottom] = [60, 20, 16, 44];
  if (!ps.length) return `<svg width="${w}" height="40" role="img" data-points="0"><text x="8" y="24">no data</text></svg>`;
  const [x0, x1] = bounds(ps, 'x');
  const [y0, y1] = bounds(ps, 'y');
  const X = (x: number) => l + ((x - x0) / (x1 - x0)) * (w - l - rt);
  const Y = (y: number) => h - bottom - ((y - y0) / (y1 - y0)) * (h - top - bottom);
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  const parts = [
    `<line x1="${l}" y1="${h - bottom}" x2="${w - rt}" y2="${h - bottom}" stroke="#888"/>`,
    `<line x1="${l}" y1="${top}" x2="${l}" y2="${h - bottom}" stroke="#888"/>`,
    ...ticks.map((t) => `<text x="${X(x0 + t * (x1 - x0)).toFixed(1)}" y="${h - bottom + 14}" font-size="10" text-anchor="middle">${(x0 + t * (x1 - x0)).toFixed(2)}</text>`),
    ...ticks.map((t) => `<text x="${l - 4}" y="${(Y(y0 + t * (y1 - y0)) + 3).toFixed(1)}" font-size="10" text-anchor="end">${(y0 + t * (y1 - y0)).toPrecision(3)}</text>`),
    `<text x="${(l + w - rt) / 2}" y="${h - 8}" font-size="11" text-anchor="middle">${esc(xName)}</text>`,
    `<text x="12" y="${(top + h - bottom) / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 12 ${(top + h - bottom) / 2})">${esc(yName)}</text>`,
    ...ps.map((p) => `<circle cx="${X(p.x).toFixed(1)}" cy="${Y(p.y).toFixed(1)}" r="4" fill="#3366cc"><title>${esc(`${p.label}: ${p.x.toFixed(3)}, ${p.y.toPrecision(4)}`)}</title></circle><text x="${(X(p.x) + 6).toFixed(1)}" y="${(Y(p.y) - 6).toFixed(1)}" font-size="11">${esc(p.label)}</text>`),
  ];
  return `<svg width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" data-points="${ps.length}">${parts.join('')}</svg>`;
}

export function renderVariantsHtml(r: VariantsReportView): string {
  const t = variantsTable(r);
  const th = t.header.map((x, i) => `<th${i >= 2 ? ' class="n"' : ''}>${esc(x)}</th>`).join('');
  const trs = t.rows.map((row) => `<tr>${row.map((c, i) => `<td${i >= 2 && i < row.length - 1 ? ' class="n"' : ''}>${esc(c)}</td>`).join('')}</tr>`).join('\n');
  const c = chartPoints(r);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${esc(`Variants of ${r.input}`)}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222; padding: 0 16px; }
table { border-collapse: collapse; } th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left; }
th.n, td.n { text-align: right; font-variant-numeric: tabular-nums; } .ship { font-weight: 600; }
svg text { font-family: system-ui, sans-serif; fill: #333; }
</style>
</head>
<body>
<h1>${esc(`Variants of ${r.input}`)}</h1>
<p>${esc(heading(r))}</p>
<table><thead><tr>${th}</tr></thead><tbody>
${trs}
</tbody></table>
<p>Budget: ${esc(r.budgetText)}.</p>
<p class="ship">${esc(r.shipNote)}</p>
<h2>Size against fidelity</h2>
<figure data-chart="fidelity">${svgScatter(c.fidelity, 'size / fp32', 'lowest output SQNR, dB')}</figure>
<h2>Size against latency</h2>
<figure data-chart="latency">${svgScatter(c.latency, 'size / fp32', `p50 latency / fp32 (${r.latencySettings[0] ?? '-'})`)}</figure>
${r.notes.map((n) => `<p>note: ${esc(n)}</p>`).join('\n')}
</body>
</html>
`;
}
