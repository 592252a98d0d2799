/**
 * A small progress bar on stderr: `label [#####.....] 12/40  3.1/s  ETA 9s`. Silent when stderr is
 * not a TTY or when `CI` is set (or when `enabled: false`), so logs and pipes stay clean. Redraws at
 * most every 100 ms.
 */
export interface ProgressOptions {
  label?: string;
  /** Unknown totals show count and rate only. */
  total?: number;
  enabled?: boolean;
  stream?: NodeJS.WriteStream;
  width?: number;
  /** 'bytes': count, total and rate shown as sizes (`1.2/28.0 GB  310 MB/s`). */
  unit?: 'bytes';
}

export class ProgressBar {
  private readonly stream: NodeJS.WriteStream;
  private readonly enabled: boolean;
  private readonly start = performance.now();
  private last = 0;
  private count = 0;
  private drawn = false;

  constructor(private readonly opts: ProgressOptions = {}) {
    this.stream = opts.stream ?? process.stderr;
    this.enabled = opts.enabled ?? (Boolean(this.stream.isTTY) && !process.env.CI);
  }

  get active(): boolean {
    return this.enabled;
  }

  /** Sets the count (absolute). */
  update(count: number, total = this.opts.total): void {
    this.count = count;
    if (total !== undefined) this.opts.total = total;
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.last < 100 && count !== total) return;
    this.last = now;
    this.draw(now);
  }

  /** Changes the label (e.g. to show a running loss); drawn at the next update. */
  setLabel(label: string): void {
    this.opts.label = label;
  }

  tick(n = 1): void {
    this.update(this.count + n);
  }

  /** Text of the bar at `now` (exposed for tests). */
  render(now = performance.now()): string {
    const elapsed = (now - this.start) / 1000;
    const rate = elapsed > 0 ? this.count / elapsed : 0;
    const total = this.opts.total;
    const label = this.opts.label ? `${this.opts.label} ` : '';
    const bytes = this.opts.unit === 'bytes';
    const n = (x: number) => (bytes ? formatSize(x) : String(x));
    const r = bytes ? `${formatSize(rate)}/s` : `${rate.toFixed(1)}/s`;
    if (!total) return `${label}${n(this.count)}  ${r}`;
    const width = this.opts.width ?? 24;
    const frac = Math.min(1, this.count / total);
    const full = Math.round(frac * width);
    const eta = rate > 0 ? (total - this.count) / rate : NaN;
    return `${label}[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${n(this.count)}/${n(total)}  ${r}  ETA ${formatSeconds(eta)}`;
  }

  private draw(now: number): void {
    this.stream.write(`\r${this.render(now)}\x1b[K`);
    this.drawn = true;
  }

  /** Clears the line. */
  done(): void {
    if (this.enabled && this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}

/** Bytes as a short decimal size: 950 B, 12.3 MB, 28.0 GB. */
export function formatSize(b: number): string {
  if (b >= 1e9) return `${(b / 1e9).toFixed(1)} GB`;
  if (b >= 1e6) return `${(b / 1e6).toFixed(1)} MB`;
  if (b >= 1e3) return `${(b / 1e3).toFixed(1)} kB`;
  return `${Math.round(b)} B`;
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.ceil(s)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${Math.round(s % 60)}s` : `${Math.floor(m / 60)}h${m % 60}m`;
}
