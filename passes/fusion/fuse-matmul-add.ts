/**
 * fuse-matmul-add: `Add(MatMul(A, B), C)` -> `Gemm(A, B, C)` where that is exactly the same
 * computation: A is known to be 2-D, B is a 2-D constant, C is a constant that broadcasts to the
 * [M, N] output without changing its shape (rank <= 2, last dim 1 or N, first dim 1), the MatMul
 * output is read only by the Add and is not a graph output. Gemm's output is 2-D, like the Add's.
 */
import { DataType } from '../../core/dtype.js';
import { Model, Node, Value } from '../../ir/ir.js';
import { constantOf } from '../../ir/ir.js';
import { matched, noMatch, type Match, type Pattern } from '../pass.js';
import { patternPass, notApplicable, insertNodeBefore, rankOf, replaceChain, soleUser } from '../patterns.js';

const GEMM_TYPES = new Set<number>([DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16]);

interface MatMulAddMatch {
  matmul: Node;
  bias: Value;
}

export const matmulAddToGemm: Pattern<MatMulAddMatch> = {
  name: 'matmul-add-to-gemm',
  anchors: ['Add'],
  match(add: Node): Match<MatMulAddMatch> {
    let mm: Node | null = null;
    let bias: Value | null = null;
    for (const [i, j] of [[0, 1], [1, 0]] as const) {
      const p = add.input(i)?.producer;
      if (p && p.opType === 'MatMul' && p.opDomain === '') {
        mm = p;
        bias = add.input(j);
        break;
      }
    }
    if (!mm || !bias) return notApplicable('no operand is produced by MatMul');
    if (soleUser(mm.output(0)) !== add) return noMatch(`MatMul output ${mm.output(0).name} has other users or is a graph output`);
    const rankA = rankOf(mm.input(0));
    if (rankA !== 2) return noMatch(rankA === undefined ? 'the rank of MatMul input A is unknown' : `MatMul input A has rank ${rankA}, Gemm needs 2`);
    const b = constantOf(mm.input(1));
    if (!b) return noMatch('MatMul input B is not a constant');
    if (b.dims.length !== 2) return noMatch(`MatMul input B has rank ${b.dims.length}`);
    if (!GEMM_TYPES.has(b.dataType)) return noMatch(`Gemm does not take ${b.dtype}`);
    const c = constantOf(bias);
    if (!c) return noMatch('the Add operand is not a constant');
    if (c.dataType !== b.dataType) return noMatch(`bias is ${c.dtype}, B is ${b.dtype}`);
    const n = b.dims[1]!;
    const d = c.dims;
    if (d.length > 2) return noMatch(`bias has rank ${d.length}; the output would become ${d.length}-D`);
    const last = d.length ? d[d.length - 1]! : 1;
    if (last !== 1 && last !== n) return noMatch(`bias last dim ${last} does not broadcast to ${n}`);
    if (d.length === 2 && d[0] !== 1) return noMatch(`bias first dim ${d[0]} may not broadcast to M`);
    return matched({ matmul: mm, bias });
  },
  rewrite(add: Node, m: MatMulAddMatch, model: Model): void {
    const gemm = insertNodeBefore(model, add, 'Gemm', [m.matmul.input(0), m.matmul.input(1), m.bias], `${add.output(0).name}_gemm`);
    if (m.matmul.name) gemm.name = m.matmul.name;
    replaceChain(add, gemm, [add, m.matmul]);
  },
};

export const PATTERNS = [matmulAddToGemm];

export default patternPass({
  name: 'fuse-matmul-add',
  description: 'Replace Add(MatMul(A, B), C) by Gemm(A, B, C) when A is 2-D and B, C are constants.',
  patterns: PATTERNS,
  stats: { fused: 'matmul-add-to-gemm' },
});
