/**
 * fold-constants: replaces a node whose inputs are all constant by initializers holding its outputs.
 *
 * - Small shape and arithmetic ops run in the TypeScript evaluator (`graph/eval`); any other standard op
 *   runs in onnxruntime on a one-node model built from the constants (option `use-runtime`).
 * - `Shape`/`Size` of a value with a static shape fold without the value being constant, and shape
 *   arithmetic (`Shape -> Gather/Slice -> Concat -> Cast ...`) folds when every element it picks is
 *   static (shape inference tracks these "shape values").
 * - It never inflates the model: an output may be at most `max-growth` times the bytes of the constant
 *   inputs that disappear with the node (inputs read elsewhere stay in the model and do not count), or
 *   `max-output-bytes` (whichever is larger). A `ConstantOfShape` fill that would become megabytes stays
 *   a fill.
 * - Non-deterministic ops (RandomX, Multinomial, Bernoulli, Dropout in training) never fold, and
 *   Shape/Size of static shapes do not fold where that would make an If condition constant
 *   (onnxruntime would inline the branch and re-check shapes the model only satisfies at run time).
 * - `lift` (default on): every `Constant` node becomes an initializer (the weights of models that keep
 *   them in Constant nodes), except Constants that are graph outputs. Needs IR version >= 4.
 * Opset-aware (the evaluator follows the model's opset) and applied inside subgraphs too.
 */
import { DataType } from '../../core/dtype.js';
import { evaluateNode, hasKernel } from '../../analysis/eval/index.js';
import { Attribute, constantOf, Graph, Model, Node, Value } from '../../ir/ir.js';
import { ShapeAnalysis, staticShape } from '../../analysis/shape-inference.js';
import { sharedShapes } from '../analyses.js';
import { Tensor } from '../../core/tensor.js';
import { definePass, PassContext } from '../pass.js';
import { replaceWithInitializer } from '../../ir/edits.js';
import { runNodeWithRuntime } from './fold-runtime.js';

export const NONDETERMINISTIC = new Set(['RandomNormal', 'RandomNormalLike', 'RandomUniform', 'RandomUniformLike', 'Multinomial', 'Bernoulli']);
/** Ops that have effects or state beyond their outputs, or whose folding would be meaningless. */
const NEVER = new Set(['Constant', 'If', 'Loop', 'Scan', 'SequenceConstruct', 'SequenceEmpty', 'Optional', 'OptionalGetElement', 'OptionalHasElement']);

interface Options extends Record<string, unknown> {
  'max-output-bytes': number;
  'max-growth': number;
  lift: boolean;
  'use-runtime': boolean;
}

interface Stats {
  folded: number;
  foldedByRuntime: number;
  lifted: number;
  skippedTooLarge: number;
}

export default definePass<Options>({
  name: 'fold-constants',
  description: 'Evaluates nodes whose inputs are constant and stores their outputs as initializers; Constant nodes become initializers.',
  options: {
    'max-output-bytes': { type: 'integer', min: 0, default: 1024, description: 'Outputs up to this many bytes always fold.' },
    'max-growth': { type: 'number', min: 0, default: 1, description: 'Larger outputs fold only when at most this many times the bytes of the constant inputs.' },
    lift: { type: 'boolean', default: true, description: 'Turn Constant nodes into initializers.' },
    'use-runtime': { type: 'boolean', default: true, description: 'Use onnxruntime for ops the TypeScript evaluator does not cover.' },
  },
  async run(model, o, ctx) {
    const stats: Stats = { folded: 0, foldedByRuntime: 0, lifted: 0, skippedTooLarge: 0 };
    const analysis = sharedShapes(model, ctx);
    conditionCone = ifConditionCone(model);
    const opset = model.opset('') ?? 1;
    for (const g of [...model.graph.allGraphs()]) {
      for (const n of [...g.nodes]) {
        if (!n.graph) continue;
        await foldNode(n, g, model, opset, o, ctx, analysis, stats);
      }
    }
    if (o.lift && Number(model.irVersion ?? 0) >= 4) {
      for (const g of [...model.graph.allGraphs()]) {
        for (const n of [...g.nodes]) {
          if (n.opType !== 'Constant' || n.opDomain !== '') continue;
          const v = n.outputs[0];
          const t = constantOf(v);
          if (!v || !t || n.outputs.length !== 1 || v.isGraphOutput) continue;
          replaceWithInitializer(g, v, t.clone());
          g.removeNode(n);
          stats.lifted++;
        }
      }
    }
    const changed = stats.folded + stats.lifted > 0;
    return { changed, stats: { ...stats } };
  },
});

let conditionCone: Set<Value> = new Set();

/** Values an If condition depends on (through any nodes, in every graph). */
function ifConditionCone(model: Model): Set<Value> {
  const cone = new Set<Value>();
  const stack: Value[] = [];
  for (const n of model.graph.allNodes()) if (n.opType === 'If' && n.input(0)) stack.push(n.input(0)!);
  while (stack.length) {
    const v = stack.pop()!;
    if (cone.has(v)) continue;
    cone.add(v);
    const p = v.producer;
    if (p) for (const i of [...p.inputs, ...p.implicitInputs()]) if (i) stack.push(i);
  }
  return cone;
}

function constantBytes(t: Tensor): number {
  return t.dataType === DataType.STRING ? t.strings().reduce((s, x) => s + x.length, 0) : t.byteLength;
}

async function foldNode(n: Node, g: Graph, model: Model, opset: number, o: Options, ctx: PassContext, a: ShapeAnalysis, stats: Stats): Promise<void> {
  if (NEVER.has(n.opType) || n.opDomain !== '' || n.subgraphs().length > 0) return;
  if (n.outputs.length === 0 || n.outputs.every((v) => v.uses.length === 0 && !v.isGraphOutput)) return;
  if (NONDETERMINISTIC.has(n.opType)) {
    ctx.explain({ node: n.label, reason: `${n.opType} is not deterministic` });
    return;
  }
  let outs: Tensor[] | undefined;
  let inputBytes = 0;
  let viaRuntime = false;
  // A Shape/Size fold can make an If condition constant; onnxruntime then inlines one branch and
  // re-checks its shapes statically, which models relying on run-time leniency (e.g. [1]-shaped Range
  // inputs in the ONNX function expansions) fail. Conditions that were not constant stay computed.
  let shapeFolded = foldFromShapes(n, a);
  if (shapeFolded && n.outputs.some((v) => conditionCone.has(v))) {
    ctx.explain({ node: n.label, reason: 'folding its shape would make an If condition constant' });
    shapeFolded = undefined;
  }
  if (shapeFolded) outs = shapeFolded;
  else {
    const ins: Array<Tensor | null> = [];
    for (const v of n.inputs) {
      if (!v) {
        ins.push(null);
        continue;
      }
      const c = constantOf(v);
      if (!c) return; // not constant: nothing to explain (most nodes)
      if (c.isExternal) return;
      ins.push(c);
      // only bytes that disappear with the node pay for its outputs (a constant read elsewhere stays)
      if (!v.isGraphOutput && v.uses.every((u) => u.node === n)) inputBytes += constantBytes(c);
    }
    if (n.opType === 'Dropout' && n.outputs.length > 1 && n.outputs[1]!.uses.length > 0) return;
    // estimate big outputs before computing them (ConstantOfShape, Expand, Tile, Range)
    const estimate = estimateOutputBytes(n, ins);
    const limit = Math.max(o['max-output-bytes'], o['max-growth'] * inputBytes);
    if (estimate !== undefined && estimate > limit) {
      stats.skippedTooLarge++;
      ctx.explain({ node: n.label, reason: `its output would take ${estimate} bytes, more than the limit of ${limit} (max-output-bytes, max-growth)` });
      return;
    }
    outs = hasKernel(n) ? evaluateNode(n, ins, opset) : undefined;
    if (!outs && o['use-runtime']) {
      try {
        outs = await runNodeWithRuntime(n, ins, model, ctx.runner);
        viaRuntime = !!outs;
      } catch (e) {
        ctx.explain({ node: n.label, reason: `onnxruntime could not evaluate it: ${(e as Error).message.split('\n')[0]}` });
        return;
      }
    }
    if (!outs) {
      ctx.explain({ node: n.label, reason: `the evaluator does not cover this ${n.opType} and use-runtime is off` });
      return;
    }
  }
  const outBytes = outs.reduce((s, t) => s + constantBytes(t), 0);
  const limit = Math.max(o['max-output-bytes'], o['max-growth'] * inputBytes);
  if (outBytes > limit) {
    stats.skippedTooLarge++;
    ctx.explain({ node: n.label, reason: `its outputs take ${outBytes} bytes, more than the limit of ${limit} (max-output-bytes, max-growth)` });
    return;
  }
  replaceNodeByConstants(n, g, outs);
  stats.folded++;
  if (viaRuntime) stats.foldedByRuntime++;
}

/** Shape/Size of static shapes and shape arithmetic whose elements are all static. */
function foldFromShapes(n: Node, a: ShapeAnalysis): Tensor[] | undefined {
  if (n.outputs.length !== 1) return undefined;
  const v = n.outputs[0]!;
  if (n.opType === 'Size') {
    const s = staticShape(n.input(0));
    return s ? [Tensor.from(DataType.INT64, [], BigInt64Array.of(BigInt(s.reduce((x, y) => x * y, 1))), v.name)] : undefined;
  }
  if (n.inputs.every((x) => !x || constantOf(x))) return undefined; // ordinary folding handles it
  const sv = a.shapeValue(v);
  if (!sv || !sv.vals.every((d) => typeof d === 'number')) return undefined;
  const elem = v.type?.tensor?.elemType ?? DataType.INT64;
  const vals = sv.vals as number[];
  const dims = sv.scalar ? [] : [vals.length];
  if (elem === DataType.INT64) return [Tensor.from(DataType.INT64, dims, BigInt64Array.from(vals.map((x) => BigInt(x))), v.name)];
  if (elem === DataType.INT32) return [Tensor.from(DataType.INT32, dims, Int32Array.from(vals), v.name)];
  return undefined;
}

function estimateOutputBytes(n: Node, ins: ReadonlyArray<Tensor | null>): number | undefined {
  const nums = (t: Tensor | null | undefined) => (t && t.dataType !== DataType.STRING && t.size <= 64 ? t.toNumbers() : undefined);
  switch (n.opType) {
    case 'ConstantOfShape': {
      const dims = nums(ins[0]);
      const t = n.getTensor('value');
      const width = t ? Math.max(1, t.byteLength / Math.max(1, t.size)) : 4;
      return dims ? dims.reduce((a, b) => a * Math.max(b, 0), 1) * width : undefined;
    }
    case 'Expand':
    case 'Tile': {
      const x = ins[0];
      const s = nums(ins[1]);
      if (!x || !s) return undefined;
      const width = x.byteLength / Math.max(1, x.size);
      if (n.opType === 'Tile') return x.size * s.reduce((a, b) => a * b, 1) * width;
      const r = Math.max(x.dims.length, s.length);
      let total = 1;
      for (let i = 0; i < r; i++) {
        const a = x.dims[i - (r - x.dims.length)] ?? 1;
        const b = s[i - (r - s.length)] ?? 1;
        total *= Math.max(a, b);
      }
      return total * width;
    }
    case 'Range': {
      const [s, l, d] = [nums(ins[0]), nums(ins[1]), nums(ins[2])];
      if (!s || !l || !d || d[0] === 0) return undefined;
      return Math.max(0, Math.ceil((l[0]! - s[0]!) / d[0]!)) * 8;
    }
  }
  return undefined;
}

/** Replaces the node: outputs that are graph outputs become a Constant node, others initializers. */
function replaceNodeByConstants(n: Node, g: Graph, outs: Tensor[]): void {
  const keep: Array<[Value, Tensor]> = [];
  n.outputs.forEach((v, i) => {
    const t = outs[i]!;
    if (v.isGraphOutput) keep.push([v, t]);
    else if (v.uses.length > 0) replaceWithInitializer(g, v, t);
  });
  if (keep.length === 0) {
    g.removeNode(n, true);
    return;
  }
  // graph outputs keep their value (and name): each gets its own Constant node
  for (const [v, t] of keep) {
    const c = new Node('Constant', [], []);
    if (n.name) c.name = g.names.fresh(`${n.name}_folded_${v.outputIndex}`);
    delete t.name;
    c.attributes.push(Attribute.tensor('value', t));
    g.insertBefore(n, c);
    const idx = v.outputIndex;
    const placeholder = new Value(g.names.fresh(`${v.name}__was`));
    n.setOutput(idx, placeholder);
    c.appendOutput(v);
  }
  g.removeNode(n, true);
}

