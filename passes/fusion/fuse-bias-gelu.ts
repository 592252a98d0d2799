/**
 * fuse-bias-gelu (target microsoft): `Gelu(Add(x, bias))` with a constant 1-D bias becomes
 * `com.microsoft.BiasGelu(x, bias)` (erf form) or `com.microsoft.FastGelu(x, bias)` (tanh form,
 * `approximate='tanh'`); a tanh `Gelu` without a bias becomes `FastGelu(x)`. Runs on the `Gelu`
 * nodes fuse-gelu writes (opset 20). The generic target keeps ONNX `Gelu`: the pass explains.
 */
import { DataType } from '../../core/dtype.js';
import { constantOf, Model, Node, Value } from '../../ir/ir.js';
import { matched, noMatch, type Match, type Pattern } from '../pass.js';
import { notApplicable, replaceChain } from '../patterns.js';
import { msNode, producerOf, targetPass } from './transformer-target.js';

interface BiasGeluMatch {
  x: Value;
  bias?: Value;
  tanh: boolean;
  add?: Node;
}

export const biasGeluPattern: Pattern<BiasGeluMatch> = {
  name: 'bias-gelu',
  anchors: ['Gelu'],
  match(gelu: Node): Match<BiasGeluMatch> {
    const approx = gelu.getString('approximate', 'none');
    const tanh = approx === 'tanh';
    const add = producerOf(gelu.input(0), 'Add');
    const sole = add && !add.output(0).isGraphOutput && add.output(0).uses.length === 1;
    if (add && sole) {
      for (const i of [0, 1]) {
        const b = constantOf(add.input(1 - i));
        if (b && b.dims.length === 1 && b.dataType === DataType.FLOAT && !constantOf(add.input(i))) return matched({ x: add.input(i)!, bias: add.input(1 - i)!, tanh, add });
      }
    }
    if (tanh) return matched({ x: gelu.input(0)!, tanh });
    if (!add) return notApplicable('the Gelu input is not an Add');
    return noMatch(sole ? 'the Add before Gelu has no constant 1-D bias operand' : `the bias sum ${add.output(0).name} has other users`);
  },
  rewrite(gelu: Node, m: BiasGeluMatch, model: Model): void {
    const out = new Value(model.names.fresh(`${gelu.output(0).name}_${m.tanh ? 'fastgelu' : 'biasgelu'}`));
    const node = msNode(model, gelu, m.tanh ? 'FastGelu' : 'BiasGelu', m.bias ? [m.x, m.bias] : [m.x], [out]);
    replaceChain(gelu, node, [gelu, ...(m.add ? [m.add] : [])]);
  },
};

export const PATTERNS = { microsoft: [biasGeluPattern], generic: [] };

export default targetPass({
  name: 'fuse-bias-gelu',
  description: 'Replace Gelu(Add(x, bias)) by com.microsoft.BiasGelu (erf) or FastGelu (tanh) (target microsoft only).',
  patterns: PATTERNS,
  stats: { fused: 'bias-gelu' },
});
