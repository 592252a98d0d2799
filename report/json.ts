/** JSON of a command report with non-finite numbers spelled out ("Infinity", "NaN") instead of silently becoming null. */
export function toJson(report: unknown): string {
  return JSON.stringify(report, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 2);
}
