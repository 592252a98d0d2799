/**
 * A small WebAssembly assembler: enough of the binary format (types, functions, one memory, exports,
 * code) and of the instruction set (i32 and f64 scalars, the fixed-width SIMD of WebAssembly 2.0) to
 * write numeric kernels in TypeScript as instruction lists, with no compiler or .wasm file in the
 * build. Browser-safe: only the WebAssembly global.
 *
 * Instructions are arrays of bytes; `Asm` collects them. Numbers are LEB128 (unsigned for indices,
 * signed for i32 constants); f64 constants little-endian IEEE 754. Alignment hints are log2 bytes.
 */

export type ValType = 'i32' | 'f64' | 'v128';

const VALTYPE: Record<ValType, number> = { i32: 0x7f, f64: 0x7c, v128: 0x7b };

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const name = (s: string): number[] => [...uleb(s.length), ...new TextEncoder().encode(s)];
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];

/** One function: parameters, locals (after the parameters, in declaration order), body instructions. */
export interface WasmFunction {
  name: string;
  params: ValType[];
  /** Result types (default none). */
  results?: ValType[];
  locals: ValType[];
  body: number[];
}

/** A module of `functions` (each exported under its name) and one memory of `pages` 64 KiB pages, exported as `memory`. */
export function wasmModule(functions: readonly WasmFunction[], pages: number): Uint8Array<ArrayBuffer> {
  const types = functions.map((f) => [0x60, ...vec(f.params.map((p) => [VALTYPE[p]])), ...vec((f.results ?? []).map((r) => [VALTYPE[r]]))]);
  const code = functions.map((f) => {
    // locals as runs of one type
    const runs: number[][] = [];
    for (let i = 0; i < f.locals.length; ) {
      let j = i;
      while (j < f.locals.length && f.locals[j] === f.locals[i]) j++;
      runs.push([...uleb(j - i), VALTYPE[f.locals[i]!]]);
      i = j;
    }
    const body = [...vec(runs), ...f.body, 0x0b];
    return [...uleb(body.length), ...body];
  });
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec(types)),
    ...section(3, vec(functions.map((_, i) => uleb(i)))),
    ...section(5, vec([[0x00, ...uleb(pages)]])),
    ...section(7, vec([...functions.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]), [...name('memory'), 0x02, 0]])),
    ...section(10, vec(code)),
  ];
  return new Uint8Array(bytes);
}

const simd = (op: number, ...rest: number[]): number[] => [0xfd, ...uleb(op), ...rest];
const memarg = (align: number, offset: number): number[] => [...uleb(align), ...uleb(offset)];

/** Instructions by name (the text format's, dots as underscores). */
export const op = {
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  if: [0x04, 0x40],
  else: [0x05],
  end: [0x0b],
  br: (depth: number) => [0x0c, ...uleb(depth)],
  br_if: (depth: number) => [0x0d, ...uleb(depth)],
  local_get: (i: number) => [0x20, ...uleb(i)],
  local_set: (i: number) => [0x21, ...uleb(i)],
  local_tee: (i: number) => [0x22, ...uleb(i)],
  i32_const: (v: number) => [0x41, ...sleb(v)],
  f64_const: (v: number) => [0x44, ...new Uint8Array(Float64Array.of(v).buffer)],
  i32_add: [0x6a],
  i32_sub: [0x6b],
  i32_mul: [0x6c],
  i32_shl: [0x74],
  i32_shr_u: [0x76],
  i32_eq: [0x46],
  i32_ne: [0x47],
  i32_lt_s: [0x48],
  i32_gt_s: [0x4a],
  i32_le_s: [0x4c],
  i32_ge_s: [0x4e],
  i32_store8: (offset = 0) => [0x3a, ...memarg(0, offset)],
  f64_load: (offset = 0) => [0x2b, ...memarg(3, offset)],
  f64_store: (offset = 0) => [0x39, ...memarg(3, offset)],
  f64_add: [0xa0],
  f64_sub: [0xa1],
  f64_mul: [0xa2],
  f64_div: [0xa3],
  f64_sqrt: [0x9f],
  f64_neg: [0x9a],
  f64_eq: [0x61],
  f64_gt: [0x64],
  return: [0x0f],
  v128_load: (offset = 0) => simd(0x00, ...memarg(4, offset)),
  v128_store: (offset = 0) => simd(0x0b, ...memarg(4, offset)),
  v128_load64_zero: (offset = 0) => simd(0x5d, ...memarg(3, offset)),
  v128_store64_lane: (lane: number, offset = 0) => simd(0x5b, ...memarg(3, offset), lane),
  v128_bitselect: simd(0x52),
  f64x2_splat: simd(0x14),
  f64x2_extract_lane: (lane: number) => simd(0x21, lane),
  f64x2_eq: simd(0x47),
  f64x2_lt: simd(0x49),
  f64x2_gt: simd(0x4a),
  f64x2_floor: simd(0x75),
  f64x2_abs: simd(0xec),
  f64x2_neg: simd(0xed),
  f64x2_pmin: simd(0xf6),
  f64x2_pmax: simd(0xf7),
  f64x2_add: simd(0xf0),
  f64x2_sub: simd(0xf1),
  f64x2_mul: simd(0xf2),
  f64x2_div: simd(0xf3),
  f32x4_demote_f64x2_zero: simd(0x5e),
  f64x2_promote_low_f32x4: simd(0x5f),
  i32x4_trunc_sat_f64x2_s_zero: simd(0xfc),
  i32x4_extract_lane: (lane: number) => simd(0x1b, lane),
} as const;

/** Instructions and byte arrays flattened into one body. */
export function code(...parts: Array<number[] | readonly number[]>): number[] {
  return parts.flat();
}

/**
 * Named locals for a function being written: parameters first (in order), then locals as declared;
 * `get`/`set`/`tee` emit the instructions by name.
 */
export class Locals {
  private readonly index = new Map<string, number>();
  readonly params: ValType[] = [];
  readonly locals: ValType[] = [];

  constructor(params: ReadonlyArray<[string, ValType]>) {
    for (const [n, t] of params) {
      this.index.set(n, this.index.size);
      this.params.push(t);
    }
  }

  declare(type: ValType, ...names: string[]): void {
    for (const n of names) {
      this.index.set(n, this.index.size);
      this.locals.push(type);
    }
  }

  private at(n: string): number {
    const i = this.index.get(n);
    if (i === undefined) throw new Error(`internal: wasm local '${n}' is not declared`);
    return i;
  }

  get(n: string): number[] {
    return op.local_get(this.at(n));
  }

  set(n: string): number[] {
    return op.local_set(this.at(n));
  }

  tee(n: string): number[] {
    return op.local_tee(this.at(n));
  }
}

/** Whether this runtime compiles WebAssembly with fixed-width SIMD (a one-function probe module). */
export function simdAvailable(): boolean {
  try {
    if (typeof WebAssembly !== 'object') return false;
    const probe = wasmModule([{ name: 'f', params: [], locals: ['v128'], body: code(op.local_get(0), op.f64x2_extract_lane(0), [0x1a]) }], 0);
    return WebAssembly.validate(probe);
  } catch {
    return false;
  }
}

/** `memory`'s buffer, grown first to at least `bytes` (whole 64 KiB pages); views of an earlier buffer are detached by a growth. */
export function reserveMemory(memory: WebAssembly.Memory, bytes: number): ArrayBuffer {
  const have = memory.buffer.byteLength;
  if (have < bytes) memory.grow(Math.ceil((bytes - have) / 65536));
  return memory.buffer;
}

/**
 * A kernel compiled on first use from `functions()` (with fixed-width SIMD; a browser's main thread,
 * which refuses to compile modules over 4 KB synchronously, gets none) and instantiated once per
 * thread by `make`: `get()` is undefined where it cannot be, or after `use(false)` (tests compare a
 * kernel with the JS it replaces), and also with ONNXFORGE_WASM=0 in the environment.
 */
export function lazyKernel<T>(functions: () => WasmFunction[], make: (module: WebAssembly.Module) => T): { get(): T | undefined; use(on: boolean): void } {
  let compiled: WebAssembly.Module | null | undefined;
  let instance: T | undefined;
  let enabled = true;
  return {
    use(on) {
      enabled = on;
    },
    get() {
      if (!enabled) return undefined;
      if (compiled === undefined) {
        compiled = null;
        const off = typeof process !== 'undefined' && process.env?.ONNXFORGE_WASM === '0';
        if (!off && simdAvailable()) {
          try {
            compiled = new WebAssembly.Module(wasmModule(functions(), 1));
          } catch {
            compiled = null;
          }
        }
      }
      if (!compiled) return undefined;
      return (instance ??= make(compiled));
    },
  };
}
