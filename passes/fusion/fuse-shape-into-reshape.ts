/**
 * fuse-shape-into-reshape: `Reshape(x, Concat(Shape(x)[a:b], c, ...))` -> `Reshape(x, [0, ..., c, ...])`.
 *
 * Exporters build target shapes from the input's own shape (`Shape -> Cast -> Slice -> Cast ->
 * Concat`, PaddleOCR's flatten). With `allowzero=0` (the default, and the only mode before opset
 * 14), a 0 in Reshape's shape copies the input dim at the same index, so a piece `Shape(x)[a:b]`
 * that lands at output positions a..b-1 can be replaced by zeros and the whole shape becomes a
 * constant. Only pieces taken from the Reshape's own data input at matching positions qualify;
 * Casts between int64 and int32 on the way are accepted (shape values fit int32 for any tensor
 * under 2^31 elements per dim). The old shape subgraph is left for dead-code elimination.
 */
import { DataType } from '../../core/dtype.js';
import { constantOf, Model, Node, Value } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import { matched, noMatch, type Match, type Pattern } from '../pass.js';
import { patternPass, notApplicable, lengthOf1D, rankOf } from '../patterns.js';

const INT_CASTS = new Set<number>([DataType.INT64, DataType.INT32]);

function stripCasts(v: Value | null | undefined): Value | null | undefined {
  while (v?.producer && v.producer.opType === 'Cast' && INT_CASTS.has(v.producer.getInt('to', 0))) v = v.producer.input(0);
  return v;
}

/** If `v` is Shape(x)[a:b] (through int casts), returns [a, b). */
function shapeSlice(v: Value, x: Value): [number, number] | undefined {
  let s = stripCasts(v);
  let start = 0;
  let end: number | undefined;
  const sl = s?.producer;
  if (sl && sl.opType === 'Slice') {
    const starts = sl.getInts('starts') ?? constantOf(sl.input(1))?.toNumbers();
    const ends = sl.getInts('ends') ?? constantOf(sl.input(2))?.toNumbers();
    const axes = sl.getInts('axes') ?? (sl.input(3) && sl.input(3)!.name !== '' ? constantOf(sl.input(3))?.toNumbers() : [0]);
    const steps = sl.input(4) && sl.input(4)!.name !== '' ? constantOf(sl.input(4))?.toNumbers() : [1];
    if (!starts || !ends || !axes || !steps || starts.length !== 1 || axes[0] !== 0 || steps[0] !== 1) return undefined;
    if (starts[0]! < 0 || ends[0]! < 0) return undefined;
    start = starts[0]!;
    end = ends[0]!;
    s = stripCasts(sl.input(0));
  }
  const sh = s?.producer;
  if (!sh || sh.opType !== 'Shape' || sh.input(0) !== x || sh.attributes.length > 0) return undefined;
  const rank = rankOf(x);
  if (end === undefined || end > (rank ?? 0)) {
    if (rank === undefined) return undefined;
    end = Math.min(end ?? rank, rank);
  }
  return end > start ? [start, end] : undefined;
}

interface ReshapeMatch {
  shape: number[];
}

export const shapeIntoReshape: Pattern<ReshapeMatch> = {
  name: 'shape-into-reshape',
  anchors: ['Reshape'],
  match(node: Node): Match<ReshapeMatch> {
    if (node.getInt('allowzero', 0) !== 0) return noMatch('Reshape has allowzero=1');
    const x = node.input(0)!;
    const s = node.input(1);
    if (!s || constantOf(s)) return notApplicable('the shape is already constant or missing');
    const cat = s.producer;
    const pieces = cat && cat.opType === 'Concat' ? [...cat.inputs] : [s];
    const out: number[] = [];
    for (const p of pieces) {
      if (!p) return noMatch('empty Concat input');
      const c = constantOf(p);
      if (c) {
        if (c.dims.length > 1) return noMatch('a shape piece is not 1-D');
        out.push(...c.toNumbers());
        continue;
      }
      const r = shapeSlice(p, x);
      if (!r) return noMatch(`shape piece ${p.name} is neither a constant nor a slice of Shape(${x.name})`);
      if (r[0] !== out.length) return noMatch(`Shape(${x.name})[${r[0]}:${r[1]}] lands at position ${out.length}, not ${r[0]}`);
      if (lengthOf1D(p) !== undefined && lengthOf1D(p) !== r[1] - r[0]) return noMatch('piece length mismatch');
      for (let i = r[0]; i < r[1]; i++) out.push(0);
    }
    return matched({ shape: out });
  },
  rewrite(node: Node, m: ReshapeMatch, model: Model): void {
    const t = Tensor.from(DataType.INT64, [m.shape.length], BigInt64Array.from(m.shape.map((v) => BigInt(v))));
    const v = node.graph!.addInitializer(t, model.names.fresh(`${node.output(0).name}_shape`));
    v.setTensorType(DataType.INT64, [m.shape.length]);
    node.setInput(1, v);
  },
};

export const PATTERNS = [shapeIntoReshape];

export default patternPass({
  name: 'fuse-shape-into-reshape',
  description: "Replace a Reshape target built from the input's own Shape by a constant using 0 (copy) entries.",
  patterns: PATTERNS,
  stats: { fused: 'shape-into-reshape' },
});
