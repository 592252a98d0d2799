/**
 * Unstructured magnitude selection, following torch.nn.utils.prune:
 *
 * - `global` (torch's `global_unstructured` with `L1Unstructured`): every chosen weight's |w| goes in
 *   one list; the k = round(amount * total) smallest are pruned, one threshold over all tensors;
 * - `layer` (`l1_unstructured` per tensor): each tensor prunes round(amount * size) of its own.
 *
 * torch rounds with Python's `round` (half to even) and leaves ties to `topk`, whose order is not
 * specified; here ties at the threshold are broken deterministically: the earlier tensor (in the
 * order given) and then the lower flat index is pruned first. Weights that are already zero are the
 * smallest and count towards k, as in torch.
 */

/** Python's round(): to the nearest integer, halves to even. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** k-th smallest (0-based) of |values| across all arrays. */
function kthSmallestAbs(arrays: readonly Float32Array[], k: number): number {
  let n = 0;
  for (const a of arrays) n += a.length;
  const all = new Float32Array(n);
  let o = 0;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) all[o + i] = Math.abs(a[i]!);
    o += a.length;
  }
  all.sort();
  return all[k]!;
}

/**
 * Masks (1 = prune) of the k smallest |w| over all arrays together, ties broken by array order then
 * index. NaN weights are never pruned (they sort last).
 */
export function selectSmallest(arrays: readonly Float32Array[], k: number): Uint8Array[] {
  const masks = arrays.map((a) => new Uint8Array(a.length));
  if (k <= 0) return masks;
  let n = 0;
  for (const a of arrays) n += a.length;
  if (k >= n) {
    for (const m of masks) m.fill(1);
    return masks;
  }
  const t = kthSmallestAbs(arrays, k - 1);
  let less = 0;
  arrays.forEach((a, j) => {
    const m = masks[j]!;
    for (let i = 0; i < a.length; i++) if (Math.abs(a[i]!) < t) (m[i] = 1), less++;
  });
  let ties = k - less;
  for (let j = 0; j < arrays.length && ties > 0; j++) {
    const a = arrays[j]!;
    const m = masks[j]!;
    for (let i = 0; i < a.length && ties > 0; i++) if (Math.abs(a[i]!) === t) (m[i] = 1), ties--;
  }
  return masks;
}

/** torch global_unstructured(L1Unstructured, amount): one threshold over every array. */
export function globalL1Masks(arrays: readonly Float32Array[], amount: number): Uint8Array[] {
  const n = arrays.reduce((x, a) => x + a.length, 0);
  return selectSmallest(arrays, roundHalfEven(amount * n));
}

/** torch l1_unstructured(amount) applied to each array on its own. */
export function layerL1Masks(arrays: readonly Float32Array[], amount: number): Uint8Array[] {
  return arrays.map((a) => selectSmallest([a], roundHalfEven(amount * a.length))[0]!);
}
