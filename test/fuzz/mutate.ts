/**
 * Seeded mutations of ONNX models for the fuzzer: byte-level (flips, truncation, insertion,
 * duplication, varint runs) and field-level edits through the wire codec (dims, data types, raw data,
 * external-data locations/offsets/lengths, node inputs/outputs/op types, attributes, model fields).
 * Every choice comes from one PRNG seeded by (seed, case), so a case reproduces on its own.
 */
import { decode, encode, ProtoObject } from '../../onnx/wire.js';

/** murmur3's 32-bit finalizer: a bijective mix of all input bits. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** A small, fast PRNG (mulberry32) over a 32-bit state derived from (seed, case). */
export class Rng {
  private s: number;
  constructor(seed: number, caseNo: number) {
    // hash the seed on its own first, so that (seed, case) pairs do not alias each other
    this.s = mix32((mix32(seed >>> 0) + Math.imul(caseNo + 1, 0x9e3779b9)) >>> 0);
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** Locations tried by the external-data mutator; the fixture folder provides the ones that exist. */
export const LOCATIONS = [
  'w.bin',
  'sub/w.bin',
  './w.bin',
  'sub//w.bin',
  '../w.bin',
  'sub/../../w.bin',
  '/etc/passwd',
  '/dev/zero',
  'C:\\w.bin',
  '\\\\srv\\share\\w.bin',
  '',
  'w.bin\0x',
  '*/_ORT_MEM_ADDR_/*',
  'link.bin',
  'sublink/w.bin',
  'hard.bin',
  'sub',
  'fifo',
  'missing.bin',
  '__proto__',
  'mutated.onnx',
  'model.data',
];

const NUMBERS = ['0', '64', '1024', '-1', 'abc', '', '1e3', '0x10', '18446744073709551616', '9007199254740993', '4294967296', '65536', '999999999'];

const DIMS: number[][] = [[], [0], [-1], [1], [1, 1, 1, 1], [2 ** 31], [2 ** 31, 2 ** 31], [9007199254740991], [3, -3], [65536, 65536]];

// ---------------------------------------------------------------------------------------------
// byte-level

function flip(b: Uint8Array, r: Rng): Uint8Array {
  const out = new Uint8Array(b);
  const n = 1 + r.int(16);
  for (let i = 0; i < n; i++) out[r.int(out.length)] ^= 1 << r.int(8);
  return out;
}

function truncate(b: Uint8Array, r: Rng): Uint8Array {
  return b.slice(0, r.int(b.length));
}

function insert(b: Uint8Array, r: Rng): Uint8Array {
  const at = r.int(b.length + 1);
  const junk = new Uint8Array(1 + r.int(32));
  for (let i = 0; i < junk.length; i++) junk[i] = r.int(256);
  if (r.chance(0.3)) junk.fill(0xff); // varint continuation runs
  return Buffer.concat([b.subarray(0, at), junk, b.subarray(at)]);
}

function duplicate(b: Uint8Array, r: Rng): Uint8Array {
  const from = r.int(b.length);
  const len = Math.min(b.length - from, 1 + r.int(4096));
  const at = r.int(b.length + 1);
  return Buffer.concat([b.subarray(0, at), b.subarray(from, from + len), b.subarray(at)]);
}

function overwriteVarint(b: Uint8Array, r: Rng): Uint8Array {
  // a tag-length pair claiming a huge length somewhere in the file
  const out = new Uint8Array(b);
  const at = r.int(Math.max(1, out.length - 8));
  const bytes = [0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f];
  for (let i = 0; i < bytes.length && at + i < out.length; i++) out[at + i] = bytes[i]!;
  return out;
}

const BYTE_MUTATORS = { flip, truncate, insert, duplicate, overwriteVarint };

// ---------------------------------------------------------------------------------------------
// field-level

interface Refs {
  tensors: ProtoObject[];
  nodes: ProtoObject[];
  graphs: ProtoObject[];
  attributes: ProtoObject[];
  valueInfos: ProtoObject[];
}

function collect(model: ProtoObject): Refs {
  const refs: Refs = { tensors: [], nodes: [], graphs: [], attributes: [], valueInfos: [] };
  const stack: ProtoObject[] = model.graph ? [model.graph as ProtoObject] : [];
  while (stack.length) {
    const g = stack.pop()!;
    refs.graphs.push(g);
    for (const t of (g.initializer as ProtoObject[] | undefined) ?? []) refs.tensors.push(t);
    for (const v of [...((g.input as ProtoObject[] | undefined) ?? []), ...((g.output as ProtoObject[] | undefined) ?? []), ...((g.value_info as ProtoObject[] | undefined) ?? [])]) refs.valueInfos.push(v);
    for (const n of (g.node as ProtoObject[] | undefined) ?? []) {
      refs.nodes.push(n);
      for (const a of (n.attribute as ProtoObject[] | undefined) ?? []) {
        refs.attributes.push(a);
        if (a.t) refs.tensors.push(a.t as ProtoObject);
        if (a.g) stack.push(a.g as ProtoObject);
        for (const sg of (a.graphs as ProtoObject[] | undefined) ?? []) stack.push(sg);
      }
    }
  }
  return refs;
}

type FieldMutator = (m: ProtoObject, refs: Refs, r: Rng) => string;

const FIELD_MUTATORS: Record<string, FieldMutator> = {
  dims(_m, refs, r) {
    const t = r.pick(refs.tensors);
    if (!t) return 'dims: no tensor';
    const dims = (t.dims as number[] | undefined) ?? [];
    const choice = r.int(4);
    if (choice === 0) t.dims = r.pick(DIMS);
    else if (choice === 1) t.dims = [...dims, 1 + r.int(4)];
    else if (choice === 2) t.dims = dims.slice(1);
    else t.dims = dims.map((d) => (r.chance(0.5) ? d * (1 + r.int(3)) : -d));
    return `dims of ${String(t.name)} -> [${(t.dims as number[]).join(',')}]`;
  },
  dataType(_m, refs, r) {
    const t = r.pick(refs.tensors);
    if (!t) return 'dtype: no tensor';
    t.data_type = r.chance(0.2) ? r.pick([0, 8, 99, -1, 16, 23]) : r.int(27);
    return `data_type of ${String(t.name)} -> ${String(t.data_type)}`;
  },
  rawData(_m, refs, r) {
    const t = r.pick(refs.tensors);
    if (!t) return 'raw: no tensor';
    const raw = t.raw_data as Uint8Array | undefined;
    if (!raw || r.chance(0.2)) {
      delete t.raw_data;
      return `raw_data of ${String(t.name)} removed`;
    }
    t.raw_data = r.chance(0.5) ? raw.subarray(0, r.int(raw.length)) : Buffer.concat([raw, new Uint8Array(1 + r.int(64))]);
    return `raw_data of ${String(t.name)} -> ${(t.raw_data as Uint8Array).length} bytes`;
  },
  external(_m, refs, r) {
    const t = r.pick(refs.tensors);
    if (!t) return 'external: no tensor';
    const entries: ProtoObject[] = [{ key: 'location', value: r.pick(LOCATIONS) }];
    if (r.chance(0.6)) entries.push({ key: 'offset', value: r.pick(NUMBERS) });
    if (r.chance(0.6)) entries.push({ key: 'length', value: r.chance(0.5) ? String(((t.raw_data as Uint8Array | undefined)?.length ?? 0)) : r.pick(NUMBERS) });
    if (r.chance(0.1)) entries.push({ key: r.pick(['__proto__', 'constructor', 'location', 'checksum']), value: r.pick(NUMBERS) });
    if (r.chance(0.1)) r.pick(entries).key = r.pick(['__proto__', '', 'prototype']);
    t.external_data = entries;
    if (r.chance(0.9)) t.data_location = 1;
    if (r.chance(0.8)) delete t.raw_data;
    return `external ${String(t.name)} -> ${JSON.stringify(entries.map((e) => [e.key, e.value]))}`;
  },
  externalEdit(_m, refs, r) {
    const t = refs.tensors.find((x) => x.external_data && r.chance(0.5)) ?? refs.tensors.find((x) => x.external_data);
    if (!t) return FIELD_MUTATORS.external!(_m, refs, r);
    const e = r.pick(t.external_data as ProtoObject[]);
    e.value = r.chance(0.5) ? r.pick(NUMBERS) : r.pick(LOCATIONS);
    return `external entry ${String(e.key)} of ${String(t.name)} -> ${JSON.stringify(e.value)}`;
  },
  nodeInput(_m, refs, r) {
    const n = r.pick(refs.nodes);
    const inputs = n?.input as string[] | undefined;
    if (!n || !inputs?.length) return 'input: none';
    const other = r.pick(refs.nodes);
    const outs = (other?.output as string[] | undefined) ?? [];
    inputs[r.int(inputs.length)] = r.chance(0.5) && outs.length ? r.pick(outs) : r.pick(['ghost', '', 'x', 'y']);
    return `input of ${String(n.name)} -> ${inputs.join(',')}`;
  },
  nodeOutput(_m, refs, r) {
    const n = r.pick(refs.nodes);
    const outs = n?.output as string[] | undefined;
    if (!n || !outs?.length) return 'output: none';
    const other = r.pick(refs.nodes);
    outs[r.int(outs.length)] = r.chance(0.6) ? r.pick(((other?.input as string[] | undefined) ?? ['x']).concat(['x', ''])) : 'dup';
    return `output of ${String(n.name)} -> ${outs.join(',')}`;
  },
  opType(_m, refs, r) {
    const n = r.pick(refs.nodes);
    if (!n) return 'op: none';
    if (r.chance(0.5)) n.op_type = r.pick(['If', 'Loop', 'Constant', 'Frob', '', 'Conv', 'Scan']);
    else n.domain = r.pick(['com.example', 'ai.onnx.ml', '', 'com.microsoft']);
    return `node ${String(n.name)} -> ${String(n.domain ?? '')}::${String(n.op_type)}`;
  },
  attribute(_m, refs, r) {
    const a = r.pick(refs.attributes);
    if (!a) return 'attr: none';
    const k = r.int(5);
    if (k === 0) a.type = r.int(16);
    else if (k === 1) a.i = r.pick([-1, 0, 2 ** 40, 9223372036854775807n]);
    else if (k === 2) a.ints = [r.int(5) - 2, 2 ** 31, -(2 ** 31)];
    else if (k === 3) delete a.t;
    else a.g = { name: 'fuzz', node: [{ op_type: 'Relu', input: ['ghost'], output: ['o'] }], output: [{ name: 'o' }] };
    return `attribute ${String(a.name)} edited (${k})`;
  },
  valueType(_m, refs, r) {
    const v = r.pick(refs.valueInfos);
    if (!v) return 'vi: none';
    const tt = ((v.type as ProtoObject | undefined)?.tensor_type as ProtoObject | undefined) ?? undefined;
    if (tt && r.chance(0.5)) tt.elem_type = r.int(30) - 1;
    else v.type = r.chance(0.5) ? { sequence_type: { elem_type: v.type ?? {} } } : { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: -5 }, { dim_param: '' }] } } };
    return `type of ${String(v.name)} edited`;
  },
  model(m, _refs, r) {
    const k = r.int(6);
    if (k === 0) delete m.ir_version;
    else if (k === 1) delete m.opset_import;
    else if (k === 2) m.ir_version = r.pick([0, -1, 99, 2 ** 40]);
    else if (k === 3) m.opset_import = [{ domain: '', version: r.pick([0, 1, 7, 99, -3]) }, ...((m.opset_import as ProtoObject[] | undefined) ?? [])];
    else if (k === 4) delete m.graph;
    else m.functions = [{ name: 'f', domain: 'l', input: ['a'], output: ['b'], node: [{ op_type: 'f', domain: 'l', input: ['a'], output: ['b'] }] }];
    return `model field edit ${k}`;
  },
  reorder(_m, refs, r) {
    const g = r.pick(refs.graphs);
    const nodes = g?.node as ProtoObject[] | undefined;
    if (!nodes || nodes.length < 2) return 'reorder: none';
    const i = r.int(nodes.length);
    const j = r.int(nodes.length);
    [nodes[i], nodes[j]] = [nodes[j]!, nodes[i]!];
    if (r.chance(0.3)) nodes.push({ ...nodes[i]! });
    return `nodes ${i} and ${j} swapped`;
  },
};

export interface Mutation {
  bytes: Uint8Array;
  ops: string[];
}

/** Applies 1-3 mutations (field-level ones through decode/encode) to `base`. */
export function mutate(base: Uint8Array, r: Rng): Mutation {
  const ops: string[] = [];
  let bytes = base;
  const fieldLevel = r.chance(0.6);
  if (fieldLevel) {
    const proto = decode(bytes, 'ModelProto');
    const refs = collect(proto);
    const n = 1 + r.int(2);
    const names = Object.keys(FIELD_MUTATORS);
    for (let i = 0; i < n; i++) {
      const name = r.pick(names);
      ops.push(`field:${FIELD_MUTATORS[name]!(proto, refs, r)}`);
    }
    bytes = encode(proto, 'ModelProto');
  }
  if (!fieldLevel || r.chance(0.15)) {
    const names = Object.keys(BYTE_MUTATORS) as Array<keyof typeof BYTE_MUTATORS>;
    const n = 1 + r.int(2);
    for (let i = 0; i < n; i++) {
      const name = r.pick(names);
      bytes = BYTE_MUTATORS[name](bytes, r);
      ops.push(`bytes:${name}`);
    }
  }
  return { bytes, ops };
}
