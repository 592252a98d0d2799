/**
 * Hostile and broken input (notes/robustness.md): every container, graph and tensor case gets an
 * OnnxForgeError with a stable code that names the file and the node, tensor or byte offset; the CLI
 * exits 2 and writes nothing. External-data and writing cases live in external.test.ts and save.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OnnxForgeError, exitCodeFor } from '../../core/errors.js';
import { assertValid } from '../../ir/checker.js';
import { encodeTensor, loadModelSync, MAX_SUBGRAPH_DEPTH, serializeModel } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import { decode, encode, ProtoObject } from '../../onnx/wire.js';
import { CLS_MODEL, runCli, smallModel, tempLeftovers, tmpDir } from './helpers.js';

let root: string;
let counter = 0;
beforeAll(() => {
  root = tmpDir('onnxforge-hostile-');
});
afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

function write(bytes: Uint8Array, name = `case${counter++}.onnx`): string {
  const p = path.join(root, name);
  fs.writeFileSync(p, bytes);
  return p;
}

/** The small model's proto, edited. */
function edited(edit: (m: ProtoObject, g: ProtoObject) => void): Uint8Array {
  const proto = decode(serializeModel(smallModel()), 'ModelProto');
  edit(proto, proto.graph as ProtoObject);
  return encode(proto, 'ModelProto');
}

function apiError(file: string): OnnxForgeError {
  try {
    assertValid(loadModelSync(file), file);
  } catch (e) {
    if (!(e instanceof OnnxForgeError)) throw e;
    return e;
  }
  throw new Error(`${file} was accepted`);
}

/** API and CLI both reject `bytes` with `code`, naming the file and each of `mentions`; nothing is written. */
async function expectRejected(bytes: Uint8Array, code: string | RegExp, mentions: string[] = []): Promise<OnnxForgeError> {
  const file = write(bytes);
  const e = apiError(file);
  if (typeof code === 'string') expect(e.code).toBe(code);
  else expect(e.code).toMatch(code);
  expect(exitCodeFor(e)).toBe(2);
  expect(e.format()).toContain(file);
  for (const m of mentions) expect(e.message).toContain(m);
  const out = path.join(root, `out-${counter++}.onnx`);
  const r = await runCli(['convert', file, '-o', out]);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain(`error[${e.code}]`);
  expect(r.stderr).toContain(file);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  expect(fs.existsSync(out)).toBe(false);
  expect(fs.existsSync(`${out}.data`)).toBe(false);
  expect(tempLeftovers(root)).toEqual([]);
  return e;
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

function field(no: number, body: Uint8Array): Uint8Array {
  return Buffer.concat([Uint8Array.from([...varint((no << 3) | 2), ...varint(body.length)]), body]);
}

describe('container', () => {
  it('empty file', async () => {
    await expectRejected(new Uint8Array(0), 'ONNX_EMPTY');
  });

  it('truncation at many offsets of a real model', async () => {
    const bytes = fs.readFileSync(CLS_MODEL);
    const codes = new Set<string>();
    for (let i = 1; i < 64; i++) {
      const cut = Math.floor((bytes.length * i) / 64) + (i % 7);
      const file = write(bytes.subarray(0, cut));
      const e = apiError(file);
      codes.add(e.code);
      expect(e.format()).toContain(file);
      if (e.code === 'ONNX_TRUNCATED') expect(e.details.offset).toBeTypeOf('number');
      fs.rmSync(file);
    }
    expect(codes.has('ONNX_TRUNCATED')).toBe(true);
    await expectRejected(bytes.subarray(0, bytes.length - 3), /^ONNX_/);
  });

  for (const [what, magic] of [
    ['PNG', [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]],
    ['ZIP', [0x50, 0x4b, 0x03, 0x04, 0x14, 0x00]],
    ['GGUF', [0x47, 0x47, 0x55, 0x46, 0x03, 0x00, 0x00, 0x00]],
  ] as const) {
    it(`a ${what} file`, async () => {
      const bytes = new Uint8Array(1024);
      bytes.set(magic);
      await expectRejected(bytes, 'ONNX_NOT_A_MODEL', ['not an ONNX model']);
    });
  }

  it('a bare TensorProto', async () => {
    await expectRejected(encodeTensor(Tensor.from('float32', [2, 3], new Float32Array(6), 'w')), 'ONNX_NOT_A_MODEL', ['TensorProto']);
  });

  it('invalid varints and wire types, with the byte offset', async () => {
    const e1 = await expectRejected(Uint8Array.from([0x08, ...new Array(11).fill(0xff), 0x01]), 'ONNX_BAD_VARINT', ['byte offset 1']);
    expect(e1.details.offset).toBe(1);
    await expectRejected(Uint8Array.from([0x08, 0x07, 0x0f, 0x01]), 'ONNX_BAD_WIRE', ['byte offset 2']);
    await expectRejected(Uint8Array.from([0x08, 0x07, 0x12, 0x05, 0x01]), 'ONNX_TRUNCATED');
  });

  it('a length prefix claiming gigabytes in a 1 KB file allocates nothing', async () => {
    const bytes = new Uint8Array(1024);
    bytes.set([0x3a, ...varint(3 * 2 ** 30)]); // graph (field 7) of 3 GiB
    const rss = process.memoryUsage().rss;
    const e = await expectRejected(bytes, 'ONNX_TRUNCATED', ['length prefix 3221225472']);
    expect(e.details.offset).toBe(1);
    expect(process.memoryUsage().rss - rss).toBeLessThan(512 << 20);
  });

  it('thousands of nested messages: a depth error, not a stack overflow', async () => {
    // TypeProto.sequence_type (4) -> Sequence.elem_type (1) -> TypeProto ..., 8,000 levels deep
    let body: Uint8Array = new Uint8Array(0);
    for (let i = 0; i < 4_000; i++) body = field(4, field(1, body));
    const vi = Buffer.concat([field(1, new TextEncoder().encode('x')), field(2, body)]);
    const graph = field(11, vi); // GraphProto.input
    const model = Buffer.concat([Uint8Array.from([0x08, 0x08]), field(7, graph)]);
    await expectRejected(model, 'ONNX_TOO_DEEP', ['nested deeper than']);
  });

  function nestedIf(depth: number): Uint8Array {
    return edited((_m, g) => {
      let inner: ProtoObject = { name: `g${depth}`, output: [{ name: 'y' }] };
      for (let d = depth; d >= 1; d--) {
        inner = {
          name: `g${d - 1}`,
          node: [{ op_type: 'If', name: `if${d}`, input: ['cond'], output: [d === 1 ? 'z' : 'y'], attribute: [{ name: 'then_branch', type: 5, g: inner }, { name: 'else_branch', type: 5, g: { name: 'e', output: [{ name: 'y' }] } }] }],
        };
      }
      (g.node as ProtoObject[]).push(...(inner.node as ProtoObject[]));
    });
  }

  it(`subgraphs nested up to the documented limit (${MAX_SUBGRAPH_DEPTH}) load; deeper ones are rejected`, async () => {
    expect(MAX_SUBGRAPH_DEPTH).toBe(32);
    const ok = loadModelSync(write(nestedIf(MAX_SUBGRAPH_DEPTH)));
    expect([...ok.graph.allGraphs()].length).toBeGreaterThan(MAX_SUBGRAPH_DEPTH);
    const e = await expectRejected(nestedIf(MAX_SUBGRAPH_DEPTH + 1), 'ONNX_SUBGRAPH_TOO_DEEP', [`deeper than ${MAX_SUBGRAPH_DEPTH}`, `if${MAX_SUBGRAPH_DEPTH + 1}`]);
    expect(e.details.node).toBe(`if${MAX_SUBGRAPH_DEPTH + 1}`);
    await expectRejected(nestedIf(200), 'ONNX_TOO_DEEP', [`subgraphs may nest at most ${MAX_SUBGRAPH_DEPTH}`]);
  });

  it('a single protobuf over 2 GiB is refused without reading it', async () => {
    const file = path.join(root, 'huge.onnx');
    const fd = fs.openSync(file, 'w');
    fs.ftruncateSync(fd, 2 ** 31 + 16);
    fs.closeSync(fd);
    const e = apiError(file);
    expect(e.code).toBe('ONNX_TOO_LARGE');
    expect(e.message).toContain('external data');
    const r = await runCli(['convert', file, '-o', path.join(root, 'huge-out.onnx')]);
    expect(r.code).toBe(2);
    expect(fs.existsSync(path.join(root, 'huge-out.onnx'))).toBe(false);
    fs.rmSync(file);
  });

  it('a folder or a missing file instead of a model', async () => {
    expect(apiError(root).code).toBe('FILE_NOT_REGULAR');
    expect(apiError(path.join(root, 'nope.onnx')).code).toBe('FILE_NOT_FOUND');
  });
});

describe('graph', () => {
  it('a cycle names both nodes', async () => {
    const bytes = edited((_m, g) => {
      (g.node as ProtoObject[]).push({ op_type: 'Relu', name: 'A', input: ['b'], output: ['a'] }, { op_type: 'Relu', name: 'B', input: ['a'], output: ['b'] });
    });
    await expectRejected(bytes, 'IR_CYCLE', ['A', 'B']);
  });

  it('an input nobody produces', async () => {
    const bytes = edited((_m, g) => {
      (g.node as ProtoObject[]).push({ op_type: 'Relu', name: 'R', input: ['ghost'], output: ['r'] });
    });
    await expectRejected(bytes, 'IR_DANGLING_INPUT', ['ghost']);
  });

  it('duplicate initializers (of another shape: onnxruntime refuses those too) and duplicate definitions', async () => {
    // a graph output listed twice and a repeated initializer of the same shape are what onnxruntime
    // accepts (test/graph/exporter-quirks.test.ts); these are what it refuses
    await expectRejected(
      edited((_m, g) => {
        const inits = g.initializer as ProtoObject[];
        inits.push({ ...inits[0]!, dims: [256] });
      }),
      'IR_DUPLICATE_INITIALIZER',
      ['W'],
    );
    await expectRejected(
      edited((_m, g) => {
        (g.node as ProtoObject[]).push({ op_type: 'Relu', name: 'R2', input: ['x'], output: ['y'] });
      }),
      'IR_DUPLICATE_NAME',
      ['"y"'],
    );
  });

  it('a graph output nobody produces', async () => {
    await expectRejected(
      edited((_m, g) => {
        (g.output as ProtoObject[]).push({ name: 'nowhere' });
      }),
      /^IR_(OUTPUT_UNDEFINED|DANGLING_INPUT)$/,
      ['nowhere'],
    );
  });

  it('an unknown domain is rejected; an unknown op of an imported domain passes through untouched', async () => {
    await expectRejected(
      edited((_m, g) => {
        (g.node as ProtoObject[]).push({ op_type: 'Frobnicate', domain: 'com.example', name: 'F', input: ['x'], output: ['f'] });
      }),
      'IR_DOMAIN_NOT_IMPORTED',
      ['F'],
    );
    const ok = write(
      edited((m, g) => {
        (m.opset_import as ProtoObject[]).push({ domain: 'com.example', version: 1 });
        (g.node as ProtoObject[]).push({ op_type: 'Frobnicate', domain: 'com.example', name: 'F', input: ['x'], output: ['f'], attribute: [{ name: 'knob', type: 2, i: 3 }] });
      }),
    );
    const out = path.join(root, 'unknown-op-out.onnx');
    const r = await runCli(['convert', ok, '-o', out]);
    expect(r.code).toBe(0);
    expect(fs.readFileSync(out).equals(fs.readFileSync(ok))).toBe(true);
  });

  it('missing ir_version or opset_import', async () => {
    await expectRejected(edited((m) => delete m.ir_version), 'MODEL_NO_IR_VERSION');
    await expectRejected(edited((m) => delete m.opset_import), 'MODEL_NO_OPSET');
  });

  it('recursive local functions', async () => {
    await expectRejected(
      edited((m) => {
        (m.opset_import as ProtoObject[]).push({ domain: 'local', version: 1 });
        m.functions = [
          { name: 'f', domain: 'local', input: ['a'], output: ['b'], node: [{ op_type: 'g', domain: 'local', input: ['a'], output: ['b'] }], opset_import: [{ domain: '', version: 17 }, { domain: 'local', version: 1 }] },
          { name: 'g', domain: 'local', input: ['a'], output: ['b'], node: [{ op_type: 'f', domain: 'local', input: ['a'], output: ['b'] }], opset_import: [{ domain: '', version: 17 }, { domain: 'local', version: 1 }] },
        ];
      }),
      'FUNCTION_RECURSIVE',
      ['f', 'g'],
    );
  });
});

describe('tensors', () => {
  const editW = (edit: (t: ProtoObject) => void) =>
    edited((_m, g) => {
      edit((g.initializer as ProtoObject[]).find((t) => t.name === 'W')!);
    });

  it('raw_data shorter or longer than dims x dtype reports both byte counts', async () => {
    await expectRejected(editW((t) => (t.raw_data = (t.raw_data as Uint8Array).subarray(0, 1000))), 'TENSOR_BAD_LENGTH', ['W', '1000', '1024']);
    await expectRejected(editW((t) => (t.raw_data = new Uint8Array(1030))), 'TENSOR_BAD_LENGTH', ['W', '1030', '1024']);
  });

  it('negative dims', async () => {
    await expectRejected(editW((t) => (t.dims = [-16, 16])), 'TENSOR_BAD_DIMS', ['W', '-16']);
  });

  it('dims whose product overflows or exceeds the element cap, rejected before allocating', async () => {
    await expectRejected(editW((t) => (t.dims = [2 ** 40, 2 ** 40, 2 ** 40])), 'TENSOR_TOO_LARGE', ['W']);
    await expectRejected(editW((t) => (t.dims = [9007199254740991, 4])), 'TENSOR_TOO_LARGE', ['W']);
  });

  it('unknown data_type', async () => {
    await expectRejected(editW((t) => (t.data_type = 77)), 'TENSOR_BAD_DTYPE', ['W', '77']);
  });
});
