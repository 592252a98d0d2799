/**
 * Terminal rendering of the default recipe's decisions in a quantize-static report: the recipe
 * candidates scored on the outputs (range clip weight, int8 bias correction), the range methods
 * chosen per tensor, and the fidelity budget layer by layer (which layers returned to float, why,
 * and the outputs' SQNR before and after). Empty when the report has none of them.
 */
import { renderTable } from './table.js';
import type { QuantizeStaticReport } from '../passes/quantize/quantize-static.js';
import { recipeLabel } from '../passes/quantize/auto-range.js';

const db = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'exact');

export function renderDefaultRecipe(r: Pick<QuantizeStaticReport, 'recipe' | 'rangeMethods' | 'fidelity'>): string {
  const parts: string[] = [];
  if (r.recipe) {
    const kept = recipeLabel(r.recipe.chosen);
    parts.push(
      renderTable(
        ['recipe', 'lowest output SQNR dB', 'kept'],
        r.recipe.candidates.map((c) => [c.label, db(c.sqnrDb), c.label === kept ? 'yes' : '']),
        { title: `recipe measured on ${r.recipe.samples} calibration samples against the float model (${(r.recipe.ms / 1000).toFixed(1)} s)` },
      ),
    );
  }
  if (r.rangeMethods && Object.keys(r.rangeMethods).length) {
    parts.push(
      renderTable(
        ['range method', 'tensors'],
        Object.entries(r.rangeMethods).sort((a, b) => b[1] - a[1]),
        { title: 'ranges chosen per tensor (method auto)' },
      ),
    );
  }
  const f = r.fidelity;
  if (f) {
    const title = `fidelity budget: every output >= ${f.minSqnrDb} dB SQNR vs float on ${f.samples} calibration samples, candidates worth >= ${f.minGainDb} dB alone; ${f.met ? 'met' : 'not met'}, lowest output ${db(f.beforeDb)} -> ${db(f.afterDb)} dB in ${f.rounds.length} round(s), ${(f.ms / 1000).toFixed(1)} s`;
    parts.push(renderTable(['output', 'SQNR dB before', 'after'], f.outputs.map((o) => [o.name, db(o.beforeDb), db(o.afterDb)]), { title }));
    if (f.floated.length) {
      const rows = f.rounds.flatMap((round, k) => round.floated.map((l) => [String(k + 1), l.node, l.op, l.gainDb !== undefined ? `+${l.gainDb.toFixed(2)}` : '-', db(l.sqnrDb), db(round.beforeDb), db(round.afterDb)]));
      parts.push(renderTable(['round', 'returned to float', 'op', 'gain alone dB', 'its SQNR dB', 'round before', 'round after'], rows, { title: `${f.floated.length} layers returned to float by the fidelity budget` }));
    }
  }
  return parts.join('\n\n');
}
