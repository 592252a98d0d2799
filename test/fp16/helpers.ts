/**
 * Shared checks of converted models: structure (topological order, no Cast -> Cast, every Cast at a
 * precision boundary, no Cast of a constant) and numerics against the float32 model in onnxruntime.
 */
import { expect } from 'vitest';
import { DataType } from '../../core/dtype.js';
import type { Feed, HostTensor } from '../../core/host-tensor.js';
import { toFloat64 } from '../../core/host-tensor.js';
import { checkModel } from '../../ir/checker.js';
import { constantOf, Model, Node } from '../../ir/ir.js';
import { serializeModel } from '../../onnx/index.js';
import { createSession } from '../../runtime/session.js';

const HALF = new Set<number>([DataType.FLOAT16, DataType.BFLOAT16]);

/** Every node reads only graph inputs, initializers or outputs of nodes before it. */
export function expectTopological(m: Model): void {
  const seen = new Set<unknown>();
  for (const n of m.graph.nodes) {
    for (const v of n.inputs) if (v && v.producer && v.producer.graph === m.graph) expect(seen.has(v.producer), `${n.label} reads ${v.name} before it is produced`).toBe(true);
    seen.add(n);
  }
}

/** Casts the conversion added: no chains, none on a constant, one per value and target type. */
export function castStructure(m: Model, original: number): { casts: Node[] } {
  const casts = m.graph.nodes.filter((n) => n.opType === 'Cast');
  const keys = new Set<string>();
  for (const c of casts) {
    const src = c.input(0)!;
    expect(src.producer?.opType, `Cast ${c.label} reads the output of another Cast`).not.toBe('Cast');
    const key = `${src.name}->${c.getInt('to')}`;
    expect(keys.has(key), `two Casts of ${key}`).toBe(false);
    keys.add(key);
    // a Cast reading a constant is only the upcast of a half-stored weight
    if (constantOf(src)) expect(HALF.has(constantOf(src)!.dataType) && c.getInt('to') === DataType.FLOAT).toBe(true);
  }
  expect(casts.length).toBeGreaterThanOrEqual(original);
  return { casts };
}

export function expectValid(m: Model): void {
  expect(checkModel(m).map((i) => `${i.code} ${i.message}`)).toEqual([]);
  expectTopological(m);
}

/** Runs both models on `feeds`; returns per-output worst relative L2 error and the non-finite count. */
export async function compareRuns(fp32: Model, half: Model, feeds: Feed[]): Promise<{ relErr: Record<string, number>; nonFinite: number; fp32NonFinite: number }> {
  const a = await createSession(serializeModel(fp32));
  const b = await createSession(serializeModel(half));
  const relErr: Record<string, number> = {};
  let nonFinite = 0;
  let fp32NonFinite = 0;
  const count = (t: HostTensor) => toFloat64(t).filter((x) => !Number.isFinite(x)).length;
  try {
    for (const feed of feeds) {
      const ra = await a.run(feed);
      const rb = await b.run(feed);
      for (const k of Object.keys(ra)) {
        const x = toFloat64(ra[k]!);
        const y = toFloat64(rb[k]!);
        fp32NonFinite += count(ra[k]!);
        nonFinite += count(rb[k]!);
        let num = 0;
        let den = 0;
        for (let i = 0; i < x.length; i++) {
          num += (x[i]! - y[i]!) ** 2;
          den += x[i]! ** 2;
        }
        relErr[k] = Math.max(relErr[k] ?? 0, Math.sqrt(num / Math.max(den, 1e-30)));
      }
    }
  } finally {
    await a.dispose();
    await b.dispose();
  }
  return { relErr, nonFinite, fp32NonFinite };
}
