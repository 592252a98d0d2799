/**
 * The model-level choices of the default recipe, measured on the model's outputs.
 *
 * Method 'auto': per tensor, calibration/ranges.ts picks the candidate range (minmax, percentile
 * 99.9/99.99/99.999, entropy) with the least quantization error on the tensor's own calibration
 * values, a clipped value counting `clipWeight` times its squared error. How much clipping a model
 * tolerates is a property of the model (later layers may absorb a clipped tail or depend on it), so
 * the weight is measured: for each weight of {@link AUTO_CLIP_WEIGHTS} the ranges are recomputed from
 * the same statistics (no new pass over the data), the model is built with every quantizable layer in
 * int8 and scored against the float model on the calibration samples.
 *
 * Bias correction of int8 layers (passes/quant/emit.ts): exact for a layer alone, but in a deep int8
 * network the mean errors of rounding and of clipped activations may partly cancel, and removing one
 * of them can leave the outputs worse. So the best weight is built once more with int8 layers
 * corrected, and the correction is kept only if the outputs improve.
 *
 * The score is the lowest output SQNR against the float model; the first candidate wins a tie.
 * Labels are never read.
 */
import type { Model } from '../../ir/ir.js';
import { lowestSqnr, OutputScorer } from './budget.js';

/**
 * Clip weights tried: clipping never (every tensor keeps its min/max range unless a percentile range
 * clips nothing), plain mean squared error, then clipping counted at a quarter and a sixteenth.
 */
export const AUTO_CLIP_WEIGHTS: readonly number[] = [Infinity, 1, 1 / 4, 1 / 16];

/** A readable name of a recipe. */
export function recipeLabel(r: Recipe): string {
  const w = r.clipWeight;
  const ranges = w === undefined ? 'fixed method' : w === Infinity ? 'no clipping' : `clip weight ${w >= 1 ? w : `1/${Math.round(1 / w)}`}`;
  return `${ranges}${r.int8BiasCorrection ? ', int8 bias correction' : ''}`;
}

export interface Recipe {
  /** Clip weight of the per-tensor range choice (method 'auto' only). */
  clipWeight?: number;
  /** Bias correction of int8 layers (weight-only layers are always corrected when correction is on). */
  int8BiasCorrection: boolean;
}

export interface RecipeCandidate extends Recipe {
  /** {@link recipeLabel} (the clip weight Infinity does not survive JSON). */
  label: string;
  /** Lowest output SQNR vs float on the scored calibration samples (dB). */
  sqnrDb: number;
  /** With method 'auto': how many calibrated tensors took each range method. */
  methods?: Record<string, number>;
}

export interface RecipeReport {
  chosen: Recipe;
  candidates: RecipeCandidate[];
  /** Calibration samples scored. */
  samples: number;
  ms: number;
}

/**
 * Scores the clip weights (`[undefined]` when the method is fixed) without int8 bias correction,
 * then, with `tryBias`, the best one with it. `apply(r)` sets the recipe (recomputing ranges) and
 * returns the range methods it chose, if any; `build()` gives the model with every quantizable layer
 * in int8. Leaves the winner applied.
 */
export async function chooseRecipe(weights: ReadonlyArray<number | undefined>, tryBias: boolean, apply: (r: Recipe) => Record<string, number> | undefined, build: () => Promise<Model>, scorer: OutputScorer): Promise<RecipeReport> {
  const t0 = performance.now();
  const candidates: RecipeCandidate[] = [];
  const score = async (r: Recipe) => {
    const methods = apply(r);
    const c: RecipeCandidate = { ...r, label: recipeLabel(r), sqnrDb: lowestSqnr(await scorer.score(await build())) };
    if (methods) c.methods = methods;
    candidates.push(c);
    return c;
  };
  let best: RecipeCandidate | undefined;
  for (const w of weights) {
    const c = await score(w === undefined ? { int8BiasCorrection: false } : { clipWeight: w, int8BiasCorrection: false });
    if (!best || c.sqnrDb > best.sqnrDb) best = c;
  }
  if (tryBias) {
    const c = await score({ ...recipeOf(best!), int8BiasCorrection: true });
    if (c.sqnrDb > best!.sqnrDb) best = c;
  }
  const chosen = recipeOf(best!);
  if (best !== candidates[candidates.length - 1]) apply(chosen);
  return { chosen, candidates, samples: scorer.samples.length, ms: performance.now() - t0 };
}

function recipeOf(c: RecipeCandidate): Recipe {
  return c.clipWeight === undefined ? { int8BiasCorrection: c.int8BiasCorrection } : { clipWeight: c.clipWeight, int8BiasCorrection: c.int8BiasCorrection };
}
