/** Name patterns for pruning exclusions: exact names, or `*` wildcards (`conv2d_4*`). */

function toRegExp(pattern: string): RegExp {
  const body = pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${body}$`);
}

/** True when any of `names` matches any of `patterns`. */
export function matchesAny(patterns: readonly string[], names: ReadonlyArray<string | undefined>): boolean {
  if (patterns.length === 0) return false;
  const res = patterns.map(toRegExp);
  return names.some((n) => n !== undefined && res.some((r) => r.test(n)));
}

/**
 * Parses `name=ratio` entries (per-layer overrides; ratio 0 keeps the layer whole). Throws with a sentence naming the bad entry.
 */
export function parseLayerRatios(entries: readonly string[], onError: (msg: string) => never): Array<{ pattern: string; ratio: number }> {
  return entries.map((e) => {
    const k = e.lastIndexOf('=');
    const ratio = k > 0 ? Number(e.slice(k + 1)) : NaN;
    if (k <= 0 || !Number.isFinite(ratio)) onError(`'${e}' is not of the form name=ratio`);
    if (!(ratio >= 0 && ratio < 1)) onError(`the ratio in '${e}' must be in [0, 1) (0 keeps the layer whole)`);
    return { pattern: e.slice(0, k), ratio };
  });
}
