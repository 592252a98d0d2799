/**
 * What the loader does with files that bend the ONNX rules the way real exporters do and onnxruntime
 * tolerates (the decoder in `serde.ts` handles the cases that are about name resolution: repeated
 * initializers, Constant nodes named like an initializer, a graph input or another Constant, repeated
 * descriptions of a value). Each departure it fixes is reported as a
 * {@link LoadWarning}; anything onnxruntime refuses is left for the checker to refuse.
 *
 * - Nodes out of topological order (onnxconverter-common's float16 converter with keep_io_types puts
 *   the Cast nodes of the graph inputs after their consumers): every graph (the main graph, subgraphs,
 *   function bodies, training graphs) is sorted, stably, so an already sorted graph keeps its order and
 *   its bytes. A graph with a cycle is left as it is for the checker to name the cycle.
 * - opset_import listing a domain more than once ('' and 'ai.onnx' are one domain): kept as it is;
 *   onnxruntime uses the last entry and so does `Model.opset()`.
 */
import { OnnxForgeError } from '../core/errors.js';
import { Graph, Model, OpsetImport } from '../ir/ir.js';
import type { LoadWarning } from './serde.js';

/** Every graph of the model: main graph, function bodies and training graphs, with their subgraphs. */
function* everyGraph(model: Model): Generator<Graph> {
  if (!model.graphUnset) yield* model.graph.allGraphs();
  for (const f of model.functions) yield* f.body.allGraphs();
  for (const t of model.trainingInfo) {
    if (t.initialization) yield* t.initialization.allGraphs();
    if (t.algorithm) yield* t.algorithm.allGraphs();
  }
}

function graphName(g: Graph, model: Model): string {
  if (g === model.graph) return `main graph${g.name ? ` ${g.name}` : ''}`;
  if (g.parentNode) return `subgraph ${g.name || '?'} of ${g.parentNode.label}`;
  const f = model.functions.find((x) => x.body === g);
  if (f) return `function ${f.domain ? `${f.domain}.` : ''}${f.name ?? '?'}`;
  return `graph ${g.name || '?'}`;
}

/** Sorts the nodes of every graph that is not in topological order; returns the warning, if any. */
export function sortNodes(model: Model): LoadWarning | undefined {
  let moved = 0;
  const where: string[] = [];
  for (const g of [...everyGraph(model)]) {
    let n: number;
    try {
      n = g.toposort();
    } catch (e) {
      if (e instanceof OnnxForgeError && e.code === 'IR_CYCLE') continue; // the checker reports it
      throw e;
    }
    if (n > 0) {
      moved += n;
      where.push(`${n} of ${g.nodes.length} in the ${graphName(g, model)}`);
    }
  }
  if (moved === 0) return undefined;
  return {
    code: 'LOAD_NODES_SORTED',
    message: `nodes were not in topological order (onnxruntime sorts them when it loads the model): moved ${where.slice(0, 4).join(', ')}${where.length > 4 ? `, and in ${where.length - 4} more graphs` : ''}`,
    count: moved,
  };
}

function domainOf(o: OpsetImport): string {
  return o.domain === 'ai.onnx' ? '' : (o.domain ?? '');
}

/** A warning for domains that opset_import lists more than once (the model is not changed). */
export function repeatedOpsets(model: Model): LoadWarning | undefined {
  const lists: Array<[string, OpsetImport[]]> = [['the model', model.opsetImports]];
  for (const f of model.functions) lists.push([`function ${f.name ?? '?'}`, f.opsetImports]);
  const notes: string[] = [];
  let count = 0;
  for (const [owner, list] of lists) {
    const byDomain = new Map<string, OpsetImport[]>();
    for (const o of list) byDomain.set(domainOf(o), [...(byDomain.get(domainOf(o)) ?? []), o]);
    for (const [d, entries] of byDomain) {
      if (entries.length < 2) continue;
      count += entries.length - 1;
      const versions = entries.map((o) => String(o.version ?? '?'));
      notes.push(`${owner} imports domain "${d || 'ai.onnx'}" ${entries.length} times (versions ${versions.join(', ')}): version ${versions[versions.length - 1]} is used, the last, as onnxruntime does`);
    }
  }
  if (count === 0) return undefined;
  return { code: 'LOAD_REPEATED_OPSET', message: notes.join('; '), count };
}
