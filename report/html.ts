/**
 * HTML rendering of a report: one self-contained file (no network, no external scripts or fonts).
 * Tables are rendered here; the four charts — parameter bytes by op type before/after, latency
 * distribution, per-pass waterfall of size and nodes, per-layer quantization error — are drawn as
 * SVG in the browser by a small inline script from the report data embedded as JSON. Each chart's
 * <figure> gets `data-rendered` = the number of marks drawn (or `data-empty` when the report has no
 * data for it, `data-error` if drawing failed), which the browser test checks.
 */
import { aggregatePasses, ReportDocument } from './document.js';
import { formatBytes } from './table.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const num = (x: number | undefined, d = 3) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d));

function table(header: string[], rows: string[][], numericFrom = 1): string {
  const th = header.map((h, i) => `<th${i >= numericFrom ? ' class="n"' : ''}>${esc(h)}</th>`).join('');
  const tr = rows.map((r) => `<tr>${r.map((c, i) => `<td${i >= numericFrom ? ' class="n"' : ''}>${esc(c)}</td>`).join('')}</tr>`).join('\n');
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${tr}\n</tbody></table>`;
}

function sections(doc: ReportDocument): string {
  const out: string[] = [];
  const i = doc.input;
  const o = doc.output;
  if (i && o) {
    out.push('<h2>Summary</h2>');
    const rows = [
      ['size', formatBytes(i.bytes), formatBytes(o.bytes), i.bytes > 0 ? `${(o.bytes / i.bytes).toFixed(2)}x` : '-'],
    ];
    if (i.nodes !== undefined && o.nodes !== undefined) rows.push(['nodes', String(i.nodes), String(o.nodes), `${o.nodes - i.nodes >= 0 ? '+' : ''}${o.nodes - i.nodes}`]);
    if (doc.latency && doc.latency.length >= 2) {
      const [a, b] = doc.latency;
      rows.push(['latency p50', `${num(a!.p50, 2)} ms`, `${num(b!.p50, 2)} ms`, `${(b!.p50 / a!.p50).toFixed(2)}x`]);
    }
    out.push(table(['', 'before', 'after', 'change'], rows));
  } else if (i || o) {
    const m = (i ?? o)!;
    out.push('<h2>Model</h2>', table(['', 'value'], [['size', formatBytes(m.bytes)], ...(m.nodes !== undefined ? [['nodes', String(m.nodes)]] : [])]));
  }
  if (doc.accuracy?.length) {
    out.push('<h2>Accuracy</h2>', table(['metric', 'reference', 'this model'], doc.accuracy.map((a) => [a.metric, num(a.reference, 4), num(a.value, 4)])));
  }
  if (doc.outputs?.length) {
    out.push('<h2>Outputs vs the original</h2>', table(['output', 'max abs error', 'SQNR dB', 'cosine'], doc.outputs.map((e) => [e.name, e.maxAbsError.toExponential(2), num(e.sqnrDb, 1), num(e.cosine, 5)])));
  }
  if (doc.passes?.length) {
    out.push('<h2>Passes</h2>', table(['pass', 'runs', 'changed', 'ms', 'nodes removed', 'bytes saved'], aggregatePasses(doc.passes).map((p) => [p.pass, String(p.runs), String(p.changedRuns), num(p.ms, 1), String(p.nodesRemoved), formatBytes(p.bytesSaved)])));
  }
  if (doc.budgets?.length) {
    out.push('<h2>Budgets</h2>', table(['metric', 'value', 'budget', 'verdict'], doc.budgets.map((b) => [b.metric, b.value, b.budget, b.verdict])));
  }
  if (doc.notes?.length) out.push('<h2>Notes</h2>', `<ul>${doc.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>`);
  return out.join('\n');
}

/** The in-browser chart code (plain ES5-style JS, no dependencies). */
const CHART_SCRIPT = String.raw`
(function () {
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var NS = 'http://www.w3.org/2000/svg';
  var COLORS = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2'];
  function el(tag, attrs, parent, text) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function svg(fig, w, h) {
    var s = el('svg', { width: w, height: h, viewBox: '0 0 ' + w + ' ' + h, role: 'img' });
    fig.insertBefore(s, fig.firstChild);
    return s;
  }
  function fmtBytes(n) {
    var a = Math.abs(n);
    if (a >= 1048576) return (n / 1048576).toFixed(2) + ' MiB';
    if (a >= 1024) return (n / 1024).toFixed(1) + ' KiB';
    return Math.round(n) + ' B';
  }
  function hbars(fig, labels, series, names, fmt) {
    var rowH = 14 * series.length + 8, left = 170, w = 720, h = labels.length * rowH + 40;
    var s = svg(fig, w, h), max = 0, marks = 0;
    series.forEach(function (ser) { ser.forEach(function (v) { if (v > max) max = v; }); });
    if (max <= 0) max = 1;
    labels.forEach(function (lab, i) {
      var y = 10 + i * rowH;
      el('text', { x: left - 6, y: y + rowH / 2, 'text-anchor': 'end', 'font-size': 11 }, s, lab);
      series.forEach(function (ser, j) {
        var v = ser[i] || 0, bw = Math.max(0, (w - left - 90) * v / max);
        var r = el('rect', { x: left, y: y + j * 14, width: bw, height: 12, fill: COLORS[j % COLORS.length] }, s);
        el('title', {}, r, names[j] + ': ' + fmt(v));
        el('text', { x: left + bw + 4, y: y + j * 14 + 10, 'font-size': 10 }, s, fmt(v));
        marks++;
      });
    });
    names.forEach(function (n, j) {
      el('rect', { x: left + j * 110, y: h - 18, width: 10, height: 10, fill: COLORS[j % COLORS.length] }, s);
      el('text', { x: left + j * 110 + 14, y: h - 9, 'font-size': 11 }, s, n);
    });
    return marks;
  }
  var charts = {
    'size-by-op': function (fig) {
      var a = data.input && data.input.paramBytesByOp, b = data.output && data.output.paramBytesByOp;
      if (!a && !b) return 0;
      var keys = {};
      [a || {}, b || {}].forEach(function (m) { for (var k in m) keys[k] = Math.max(keys[k] || 0, m[k]); });
      var labels = Object.keys(keys).sort(function (x, y) { return keys[y] - keys[x]; }).slice(0, 14);
      var series = [], names = [];
      if (a) { series.push(labels.map(function (k) { return a[k] || 0; })); names.push('before'); }
      if (b) { series.push(labels.map(function (k) { return b[k] || 0; })); names.push('after'); }
      return hbars(fig, labels, series, names, fmtBytes);
    },
    'latency': function (fig) {
      var lat = data.latency || [];
      if (!lat.length) return 0;
      var all = [];
      lat.forEach(function (l) { all = all.concat(l.samplesMs); });
      if (!all.length) return 0;
      all.sort(function (x, y) { return x - y; });
      var lo = all[0], hi = all[Math.floor((all.length - 1) * 0.99)];
      if (hi <= lo) hi = lo + 1e-3;
      var bins = 30, w = 720, h = 240, left = 50, bottom = 30, marks = 0;
      var s = svg(fig, w, h), counts = lat.map(function (l) {
        var c = new Array(bins).fill(0);
        l.samplesMs.forEach(function (v) { var k = Math.min(bins - 1, Math.max(0, Math.floor((v - lo) / (hi - lo) * bins))); c[k]++; });
        return c;
      });
      var max = 1;
      counts.forEach(function (c) { c.forEach(function (v) { if (v > max) max = v; }); });
      var bw = (w - left - 10) / bins;
      counts.forEach(function (c, j) {
        c.forEach(function (v, k) {
          if (!v) return;
          var bh = (h - bottom - 20) * v / max;
          var r = el('rect', { x: left + k * bw + j * bw / lat.length, y: h - bottom - bh, width: bw / lat.length - 1, height: bh, fill: COLORS[j % COLORS.length], 'fill-opacity': 0.85 }, s);
          el('title', {}, r, lat[j].model + ': ' + v + ' runs near ' + (lo + (k + 0.5) * (hi - lo) / bins).toFixed(2) + ' ms');
          marks++;
        });
        el('text', { x: left + 10 + j * 240, y: 14, 'font-size': 11, fill: COLORS[j % COLORS.length] }, s, lat[j].model + ' (p50 ' + lat[j].p50.toFixed(2) + ' ms)');
      });
      el('line', { x1: left, y1: h - bottom, x2: w - 10, y2: h - bottom, stroke: '#333' }, s);
      el('text', { x: left, y: h - 8, 'font-size': 10 }, s, lo.toFixed(2) + ' ms');
      el('text', { x: w - 10, y: h - 8, 'font-size': 10, 'text-anchor': 'end' }, s, hi.toFixed(2) + ' ms');
      return marks;
    },
    'waterfall': function (fig) {
      var passes = (data.passes || []).filter(function (p) { return p.changed; });
      if (!passes.length) return 0;
      var w = 720, rowH = 22, left = 200, h = passes.length * rowH + 50, s = svg(fig, w, h), marks = 0;
      var max = passes[0].bytesBefore;
      passes.forEach(function (p) { max = Math.max(max, p.bytesBefore, p.bytesAfter); });
      var scale = (w - left - 120) / (max || 1);
      passes.forEach(function (p, i) {
        var y = 10 + i * rowH, a = p.bytesBefore * scale, b = p.bytesAfter * scale;
        el('text', { x: left - 6, y: y + 12, 'text-anchor': 'end', 'font-size': 11 }, s, p.pass);
        el('rect', { x: left, y: y + 2, width: Math.min(a, b), height: 14, fill: '#c7d3e3' }, s);
        var r = el('rect', { x: left + Math.min(a, b), y: y + 2, width: Math.max(1, Math.abs(a - b)), height: 14, fill: b <= a ? COLORS[2] : COLORS[3] }, s);
        el('title', {}, r, p.pass + ': ' + fmtBytes(p.bytesBefore) + ' -> ' + fmtBytes(p.bytesAfter) + ', nodes ' + p.nodesBefore + ' -> ' + p.nodesAfter + ', ' + p.ms.toFixed(1) + ' ms');
        el('text', { x: left + Math.max(a, b) + 4, y: y + 13, 'font-size': 10 }, s, fmtBytes(p.bytesAfter - p.bytesBefore) + ', ' + (p.nodesAfter - p.nodesBefore) + ' nodes');
        marks++;
      });
      return marks;
    },
    'layers': function (fig) {
      var layers = (data.layers || []).filter(function (l) { return typeof l.sqnrDb === 'number' && isFinite(l.sqnrDb); });
      if (!layers.length) return 0;
      var w = 720, h = 260, left = 40, bottom = 30, s = svg(fig, w, h), marks = 0;
      var max = 1;
      layers.forEach(function (l) { if (l.sqnrDb > max) max = l.sqnrDb; });
      var bw = (w - left - 10) / layers.length;
      layers.forEach(function (l, i) {
        var v = Math.max(0, l.sqnrDb), bh = (h - bottom - 10) * v / max;
        var color = l.sqnrDb < 20 ? COLORS[3] : l.sqnrDb < 30 ? COLORS[1] : COLORS[0];
        var r = el('rect', { x: left + i * bw, y: h - bottom - bh, width: Math.max(1, bw - 1), height: bh, fill: color }, s);
        el('title', {}, r, l.name + ' (' + l.op + '): ' + l.sqnrDb.toFixed(1) + ' dB' + (l.precision ? ', ' + l.precision : ''));
        marks++;
      });
      el('line', { x1: left, y1: h - bottom, x2: w - 10, y2: h - bottom, stroke: '#333' }, s);
      el('text', { x: 4, y: 14, 'font-size': 10 }, s, max.toFixed(0) + ' dB');
      el('text', { x: left, y: h - 10, 'font-size': 10 }, s, 'layers in graph order (red < 20 dB, orange < 30 dB)');
      return marks;
    }
  };
  var figs = document.querySelectorAll('figure[data-chart]');
  for (var i = 0; i < figs.length; i++) {
    var fig = figs[i], name = fig.getAttribute('data-chart');
    try {
      var n = charts[name](fig);
      if (n > 0) fig.setAttribute('data-rendered', String(n));
      else { fig.setAttribute('data-empty', 'true'); fig.querySelector('figcaption').textContent += ' (no data in this report)'; }
    } catch (e) {
      fig.setAttribute('data-error', String(e && e.message || e));
    }
  }
  document.body.setAttribute('data-charts-done', 'true');
})();
`;

const STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px auto; max-width: 960px; color: #222; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: 12px; }
table { border-collapse: collapse; margin: 8px 0; } th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
th.n, td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 16px 0; } figcaption { font-weight: 600; margin-top: 4px; }
svg text { font-family: system-ui, sans-serif; fill: #333; }
`;

export function renderHtml(doc: ReportDocument): string {
  const json = JSON.stringify(doc).replace(/</g, '\\u003c');
  const figure = (id: string, caption: string) => `<figure data-chart="${id}"><figcaption>${esc(caption)}</figcaption></figure>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(doc.title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${esc(doc.title)}</h1>
<div class="meta">${esc(doc.tool.name)} ${esc(doc.tool.version)} · ${esc(doc.command)} · ${esc(doc.createdAt)}</div>
${sections(doc)}
<h2>Charts</h2>
${figure('size-by-op', 'Parameter bytes by op type, before and after')}
${figure('latency', 'Latency distribution (ms per run)')}
${figure('waterfall', 'Per-pass waterfall: size and node count after each pass that changed the model')}
${figure('layers', 'Per-layer quantization error (SQNR, dB; higher is better)')}
<script type="application/json" id="report-data">${json}</script>
<script>${CHART_SCRIPT}</script>
</body>
</html>
`;
}
