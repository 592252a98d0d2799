/**
 * Helper of fold-constants (not a pass): evaluates one node with onnxruntime on a one-node model whose
 * inputs are initializers, through the pass context's runner.
 */
import { Graph, Model, Node, Value } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import { onnxDataType } from '../../core/host-tensor.js';
import type { Runner } from '../../runtime/runner-types.js';

export async function runNodeWithRuntime(n: Node, ins: ReadonlyArray<Tensor | null>, model: Model, runner: Runner): Promise<Tensor[] | undefined> {
  const g = new Graph('fold');
  const inputs: Array<Value | null> = [];
  const byName = new Map<string, Value>();
  n.inputs.forEach((v, i) => {
    const t = ins[i];
    if (!v || !t) {
      inputs.push(null);
      return;
    }
    let iv = byName.get(v.name);
    if (!iv) {
      iv = g.addInitializer(t.clone(v.name), v.name);
      byName.set(v.name, iv);
    }
    inputs.push(iv);
  });
  const outs = n.outputs.map((o) => {
    const v = new Value(o.name);
    if (o.type) v.type = o.type;
    return v;
  });
  const node = new Node(n.opType, inputs, outs, n.domain);
  node.attributes = n.attributes;
  g.insertNode(node);
  for (const v of outs) g.addOutput(v);
  const m = new Model(g);
  m.irVersion = model.irVersion ?? 8;
  m.opsetImports = model.opsetImports;
  const s = await runner.open(m, { graphOptimizationLevel: 'disabled', logSeverityLevel: 3 }, `fold ${n.label}`);
  try {
    const res = await s.run({});
    return outs.map((v) => {
      const h = res[v.name];
      if (!h) throw new Error(`no output ${v.name}`);
      return Tensor.from(onnxDataType(h.type), h.dims, h.data as never, v.name);
    });
  } finally {
    await s.dispose();
  }
}
