/**
 * The name authority: one per model (`model.names`), the only source of new names.
 *
 * It knows every name the model uses — values (graph inputs and outputs, initializers, node outputs),
 * node names — in every graph: the main graph, nested subgraphs, training graphs and function bodies
 * (one namespace for all of them, which is stricter than ONNX needs and never wrong). It is built by
 * one scan the first time `model.names` is asked for; from then on the IR reports each name as it
 * appears (a node or initializer added, a value or node renamed, a subgraph attached), so a call costs
 * a set lookup, not a rescan. Names are never given back: a name once used stays taken even after its
 * value is removed, so a name handed out is never handed out again.
 *
 * Two styles: `fresh('x')` gives `x`, else `x_1`, `x_2`, ... (the first free suffix); `numbered('a')`
 * gives `a0`, `a1`, ... (short ids). This module knows nothing of the IR classes (ir.ts builds the
 * authority from a list of names), so the two files do not import each other.
 */
export class NameAuthority {
  private readonly taken = new Set<string>();
  /** Per base: the suffix to try first (every smaller one is taken, and names are never freed). */
  private readonly nextSuffix = new Map<string, number>();
  private readonly nextNumber = new Map<string, number>();

  constructor(names: Iterable<string> = []) {
    for (const n of names) this.taken.add(n);
  }

  /** True when `name` is used somewhere in the model (or was handed out). */
  has(name: string): boolean {
    return this.taken.has(name);
  }

  /** Number of names known. */
  get size(): number {
    return this.taken.size;
  }

  /** Records a name the model now uses (the IR calls this; passes get names from `fresh`). */
  claim(name: string | undefined): void {
    if (name) this.taken.add(name);
  }

  /** `base` when it is free, else `base_1`, `base_2`, ...: the first that is free. It is then taken. */
  fresh(base: string): string {
    if (!this.taken.has(base)) return this.take(base);
    let i = this.nextSuffix.get(base) ?? 1;
    while (this.taken.has(`${base}_${i}`)) i++;
    this.nextSuffix.set(base, i + 1);
    return this.take(`${base}_${i}`);
  }

  /** `prefix0`, `prefix1`, ...: the first free one from the last handed out on. It is then taken. */
  numbered(prefix: string): string {
    let k = this.nextNumber.get(prefix) ?? 0;
    while (this.taken.has(`${prefix}${k}`)) k++;
    this.nextNumber.set(prefix, k + 1);
    return this.take(`${prefix}${k}`);
  }

  private take(name: string): string {
    this.taken.add(name);
    return name;
  }
}
