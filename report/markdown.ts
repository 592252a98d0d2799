/**
 * Markdown rendering of a report, sized for a pull-request comment: a headline table, then the
 * sections the report has (passes, outputs, accuracy, the worst layers, budgets), each short.
 */
import { aggregatePasses, ReportDocument } from './document.js';
import { formatBytes } from './table.js';

const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const num = (x: number | undefined, d = 3) => (x === undefined || Number.isNaN(x) ? '-' : Number.isFinite(x) ? x.toFixed(d) : String(x));
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : '-');

export function renderMarkdown(doc: ReportDocument): string {
  const out: string[] = [`## ${esc(doc.title)}`, ''];
  const i = doc.input;
  const o = doc.output;
  if (i || o) {
    out.push('| | before | after | change |', '| --- | ---: | ---: | ---: |');
    if (i && o) {
      out.push(`| size | ${formatBytes(i.bytes)} | ${formatBytes(o.bytes)} | ${ratio(o.bytes, i.bytes)} |`);
      if (i.nodes !== undefined && o.nodes !== undefined) out.push(`| nodes | ${i.nodes} | ${o.nodes} | ${o.nodes - i.nodes >= 0 ? '+' : ''}${o.nodes - i.nodes} |`);
      if (i.opset !== undefined || o.opset !== undefined) out.push(`| opset | ${i.opset ?? '-'} | ${o.opset ?? '-'} | |`);
    } else {
      const m = (i ?? o)!;
      out.push(`| size | ${formatBytes(m.bytes)} | | |`);
      if (m.nodes !== undefined) out.push(`| nodes | ${m.nodes} | | |`);
    }
    if (doc.latency && doc.latency.length >= 2) {
      const [a, b] = doc.latency;
      out.push(`| latency p50 | ${num(a!.p50, 2)} ms | ${num(b!.p50, 2)} ms | ${ratio(b!.p50, a!.p50)} |`);
    }
    out.push('');
  }
  if (doc.latency?.length) {
    out.push('### Latency', '', '| model | p50 ms | p90 ms | mean ms | min ms | runs |', '| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const l of doc.latency) {
      // an entry adapted from a command's own report carries the p50 only (no per-run samples)
      const s = l.samplesMs.length > 0;
      out.push(`| ${esc(l.model)} | ${num(l.p50, 2)} | ${s ? num(l.p90, 2) : '-'} | ${s ? num(l.mean, 2) : '-'} | ${s ? num(l.min, 2) : '-'} | ${s ? l.samplesMs.length : '-'} |`);
    }
    out.push('');
  }
  if (doc.accuracy?.length) {
    out.push('### Accuracy', '', '| metric | reference | this model | change |', '| --- | ---: | ---: | ---: |');
    for (const a of doc.accuracy) out.push(`| ${esc(a.metric)} | ${num(a.reference, 4)} | ${num(a.value, 4)} | ${a.reference !== undefined ? num(a.value - a.reference, 4) : '-'} |`);
    out.push('');
  }
  if (doc.outputs?.length) {
    out.push('### Outputs vs the original', '', '| output | max abs error | SQNR dB | cosine |', '| --- | ---: | ---: | ---: |');
    for (const e of doc.outputs) out.push(`| ${esc(e.name)} | ${e.maxAbsError.toExponential(2)} | ${num(e.sqnrDb, 1)} | ${num(e.cosine, 5)} |`);
    out.push('');
  }
  if (doc.passes?.length) {
    out.push('### Passes', '', '| pass | runs | changed | ms | nodes removed | bytes saved |', '| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const p of aggregatePasses(doc.passes)) {
      out.push(`| ${esc(p.pass)} | ${p.runs} | ${p.changedRuns} | ${num(p.ms, 1)} | ${p.nodesRemoved} | ${formatBytes(p.bytesSaved)} |`);
    }
    out.push('');
  }
  if (doc.layers?.length) {
    const worst = [...doc.layers].filter((l) => l.sqnrDb !== undefined).sort((a, b) => a.sqnrDb! - b.sqnrDb!).slice(0, 10);
    if (worst.length) {
      out.push(`<details><summary>Per-layer quantization error: the ${worst.length} worst of ${doc.layers.length}</summary>`, '', '| layer | op | SQNR dB | precision |', '| --- | --- | ---: | --- |');
      for (const l of worst) out.push(`| ${esc(l.name)} | ${esc(l.op)} | ${num(l.sqnrDb, 1)} | ${l.precision ?? '-'} |`);
      out.push('', '</details>', '');
    }
    const float = doc.layers.filter((l) => l.precision === 'float' && l.reason);
    if (float.length) {
      out.push(`<details><summary>${float.length} layers kept in float</summary>`, '');
      for (const l of float.slice(0, 50)) out.push(`- \`${esc(l.name)}\` (${esc(l.op)}): ${esc(l.reason!)}`);
      out.push('', '</details>', '');
    }
  }
  if (doc.budgets?.length) {
    out.push('### Budgets', '', '| metric | value | budget | verdict |', '| --- | ---: | --- | --- |');
    for (const b of doc.budgets) out.push(`| ${esc(b.metric)} | ${esc(b.value)} | ${esc(b.budget)} | ${b.verdict === 'pass' ? '✅' : b.verdict === 'fail' ? '❌' : '➖'} ${b.verdict} |`);
    out.push('');
  }
  if (doc.notes?.length) {
    out.push(...doc.notes.map((n) => `> ${esc(n)}`), '');
  }
  out.push(`<sub>${doc.tool.name} ${doc.tool.version} · ${doc.command} · ${doc.createdAt}</sub>`, '');
  return out.join('\n');
}
