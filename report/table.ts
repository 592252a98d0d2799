/** Plain-text tables for terminal output (right-aligned numbers, left-aligned text). */

export type Cell = string | number;

export function formatBytes(n: number): string {
  const a = Math.abs(n);
  if (a >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (a >= 1 << 20) return `${(n / (1 << 20)).toFixed(2)} MiB`;
  if (a >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/** Renders rows as an aligned table with a header rule. */
export function renderTable(header: string[], rows: Cell[][], options: { title?: string } = {}): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? formatCount(c) : c)))];
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number' || /^[-+]?[0-9.,]+\s?[%xA-Za-z]*$/.test(String(r[i] ?? ''))));
  const widths = header.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? '').length)));
  const line = (r: Cell[]) => r.map((c, i) => (numeric[i] ? String(c).padStart(widths[i]!) : String(c).padEnd(widths[i]!))).join('  ').trimEnd();
  const out: string[] = [];
  if (options.title) out.push(options.title);
  out.push(line(cells[0]!));
  out.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of cells.slice(1)) out.push(line(r));
  return out.join('\n');
}
