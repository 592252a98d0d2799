/**
 * fuse-pad: folds a constant-mode Pad into the `pads` of the Conv, AveragePool or MaxPool it feeds.
 *
 * Conv and AveragePool pad with zeros, so the Pad value must be 0; MaxPool pads with -inf, so the Pad
 * value must be -inf. Only spatial dims may be padded (the N and C pads are 0) and no pad may be
 * negative (a crop). The consumer must use explicit pads (`auto_pad` NOTSET). AveragePool counts
 * padded zeros only with `count_include_pad=1`: a Pad's zeros always count, so the fused pool gets
 * `count_include_pad=1`, which is only exact when the pool had no pads of its own or already counted
 * them. Pools with `ceil_mode=1` are left alone (their last window may reach past the padding).
 * Handles Pad-2 (pads/value attributes) and Pad-11+ (inputs; Pad-18 `axes`).
 */
import { Attribute, constantOf, Model, Node } from '../../ir/ir.js';
import { matched, noMatch, type Match, type Pattern } from '../pass.js';
import { patternPass, notApplicable, soleUser } from '../patterns.js';

interface PadMatch {
  pad: Node;
  /** Pads of the spatial dims, [x1_begin, x2_begin, ..., x1_end, ...]. */
  spatial: number[];
}

/** The full pads vector (length 2 * rank) and value of a constant-mode Pad, or why not. */
export function readPad(pad: Node): Match<{ pads: number[]; value: number }> {
  const mode = pad.getString('mode', 'constant');
  if (mode !== 'constant') return noMatch(`Pad mode is ${mode}`);
  let pads = pad.getInts('pads');
  let value = pad.getFloat('value', 0);
  if (!pads) {
    const t = constantOf(pad.input(1));
    if (!t) return noMatch('Pad pads are not constant');
    pads = t.toNumbers();
    const cv = pad.input(2);
    if (cv && cv.name !== '') {
      const c = constantOf(cv);
      if (!c || c.size !== 1) return noMatch('Pad constant_value is not a constant scalar');
      value = c.toFloat32()[0]!;
    } else value = 0;
    const av = pad.input(3);
    if (av && av.name !== '') {
      const axes = constantOf(av)?.toNumbers();
      if (!axes) return noMatch('Pad axes are not constant');
      if (axes.some((a) => a < 0)) return noMatch('Pad axes are negative and the input rank is unknown');
      const rank = Math.max(...axes) + 1;
      const full = new Array<number>(2 * rank).fill(0);
      axes.forEach((a, i) => {
        full[a] = pads![i]!;
        full[a + rank] = pads![i + axes.length]!;
      });
      pads = full;
    }
  }
  return matched({ pads, value });
}

export const padIntoConsumer: Pattern<PadMatch> = {
  name: 'pad-into-conv-or-pool',
  anchors: ['Conv', 'AveragePool', 'MaxPool'],
  match(node: Node): Match<PadMatch> {
    const x = node.input(0);
    const pad = x?.producer;
    if (!x || !pad || pad.opType !== 'Pad' || pad.opDomain !== '') return notApplicable('input is not produced by Pad');
    if (soleUser(x) !== node) return noMatch(`Pad output ${x.name} has other users or is a graph output`);
    const p = readPad(pad);
    if (!p.ok) return p;
    const { pads, value } = p.value;
    const rank = pads.length / 2;
    if (rank < 3) return noMatch(`Pad covers ${rank} dims; expected N, C and spatial dims`);
    if (pads[0] !== 0 || pads[1] !== 0 || pads[rank] !== 0 || pads[rank + 1] !== 0) return noMatch('Pad pads the batch or channel dim');
    if (pads.some((v) => v < 0)) return noMatch('Pad has negative pads (a crop)');
    if (node.opType === 'MaxPool') {
      if (value !== -Infinity) return noMatch(`MaxPool pads with -inf but the Pad value is ${value}`);
      if (node.outputs.length > 1 && node.outputs[1]!.name !== '') return noMatch('MaxPool also returns indices');
    } else if (value !== 0) return noMatch(`the Pad value is ${value}, not 0`);
    const auto = node.getString('auto_pad', 'NOTSET');
    if (auto !== 'NOTSET') return noMatch(`${node.opType} has auto_pad=${auto}`);
    if (node.opType !== 'Conv' && node.getInt('ceil_mode', 0) !== 0) return noMatch(`${node.opType} has ceil_mode=1`);
    const own = node.getInts('pads');
    if (node.opType === 'AveragePool' && node.getInt('count_include_pad', 0) === 0 && own && own.some((v) => v !== 0)) {
      return noMatch('AveragePool has its own pads with count_include_pad=0; Pad zeros would be counted differently');
    }
    const k = node.getInts('kernel_shape') ?? constantOf(node.input(1))?.dims.slice(2);
    if (k && k.length !== rank - 2) return noMatch(`kernel has ${k.length} spatial dims, Pad has ${rank - 2}`);
    const spatial: number[] = [];
    for (let i = 2; i < rank; i++) spatial.push(pads[i]!);
    for (let i = 2; i < rank; i++) spatial.push(pads[rank + i]!);
    if (node.opType !== 'Conv' && k) {
      const sum = (own ?? new Array<number>(spatial.length).fill(0)).map((v, i) => v + spatial[i]!);
      if (sum.some((v, i) => v >= k[i % k.length]!)) return noMatch('pool pads would not be smaller than the kernel');
    }
    return matched({ pad, spatial });
  },
  rewrite(node: Node, m: PadMatch, _model: Model): void {
    const s = m.spatial.length / 2;
    const own = node.getInts('pads') ?? new Array<number>(2 * s).fill(0);
    node.setAttr(Attribute.ints('pads', own.map((v, i) => v + m.spatial[i]!)));
    if (node.opType === 'AveragePool') node.setAttr(Attribute.int('count_include_pad', 1));
    node.setInput(0, m.pad.input(0));
    if (m.pad.output(0).uses.length === 0) m.pad.graph!.removeNode(m.pad);
  },
};

export const PATTERNS = [padIntoConsumer];

export default patternPass({
  name: 'fuse-pad',
  description: 'Fold a constant zero Pad of spatial dims into Conv/AveragePool pads (-inf Pad into MaxPool).',
  patterns: PATTERNS,
  stats: { fused: 'pad-into-conv-or-pool' },
});
