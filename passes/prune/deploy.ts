/**
 * Deployed size of a (pruned) model: the dense serialization, and the variant with sparse storage
 * where that is smaller (see `sparse.ts`), kept only when onnxruntime loads it and gives the same
 * outputs as the dense model on a sample input (measured here, not assumed; without a sample input
 * the sparse variant is sized but not accepted). Each variant is reported
 * raw, gzip (level 9) and brotli (quality 11), with node:zlib.
 */
import { brotliCompressSync, constants as zc, gzipSync } from 'node:zlib';
import { Model } from '../../ir/ir.js';
import { serializeModel } from '../../onnx/index.js';
import type { Feed } from '../../core/host-tensor.js';
import { firstLine, nodeRunner, type Runner } from '../../runtime/runner.js';
import { IndexType, SparseEntry, toSparseStorage } from './sparse.js';

export interface SizeSet {
  raw: number;
  gzip: number;
  brotli: number;
}

export interface DeployedSizes {
  dense: SizeSet;
  sparse?: SizeSet & { converted: SparseEntry[]; loads: boolean; maxAbsDiff?: number; error?: string };
  /**
   * The smallest size of each kind over the variants onnxruntime loads and runs identically (for
   * raw files sparse storage usually wins; once compressed, the dense zeros often compress better).
   */
  best: Record<keyof SizeSet, { bytes: number; variant: 'dense' | 'sparse' }>;
}

function best(dense: SizeSet, sparse?: SizeSet): DeployedSizes['best'] {
  const pick = (k: keyof SizeSet) => (sparse && sparse[k] < dense[k] ? { bytes: sparse[k], variant: 'sparse' as const } : { bytes: dense[k], variant: 'dense' as const });
  return { raw: pick('raw'), gzip: pick('gzip'), brotli: pick('brotli') };
}

export function sizesOf(bytes: Uint8Array): SizeSet {
  return {
    raw: bytes.length,
    gzip: gzipSync(bytes, { level: 9, memLevel: 9 }).length,
    brotli: brotliCompressSync(bytes, { params: { [zc.BROTLI_PARAM_QUALITY]: 11, [zc.BROTLI_PARAM_SIZE_HINT]: bytes.length } }).length,
  };
}

async function runBytes(runner: Runner, bytes: Uint8Array, feed: Feed): Promise<Feed> {
  const s = await runner.open(bytes, { graphOptimizationLevel: 'disabled' }, '(in-memory model)');
  try {
    return await s.run(feed);
  } finally {
    await s.dispose();
  }
}

/** Every index type onnxruntime is asked to load (the narrowest that fits each tensor is used). */
const ALL_INDEX_TYPES: readonly IndexType[] = ['int8', 'int16', 'int32', 'int64'];

export async function deployedSizes(model: Model, feed: Feed | undefined, indexTypes: readonly IndexType[] = ALL_INDEX_TYPES, runner: Runner = nodeRunner): Promise<DeployedSizes> {
  return (await measureDeployed(model, feed, indexTypes, runner)).sizes;
}

/** `deployedSizes`, plus the sparse-storage model it measured (to write exactly what was run). */
export async function measureDeployed(model: Model, feed: Feed | undefined, indexTypes: readonly IndexType[] = ALL_INDEX_TYPES, runner: Runner = nodeRunner): Promise<{ sizes: DeployedSizes; sparseModel?: Model }> {
  const denseBytes = serializeModel(model);
  const dense = sizesOf(denseBytes);
  const result: DeployedSizes = { dense, best: best(dense) };
  const sp = toSparseStorage(model, indexTypes);
  if (sp.converted.length === 0) return { sizes: result };
  const bytes = serializeModel(sp.model);
  const sizes = sizesOf(bytes);
  if (!feed) {
    result.sparse = { ...sizes, converted: sp.converted, loads: false, error: 'not checked: no input to run it on' };
    return { sizes: result, sparseModel: sp.model };
  }
  try {
    const want = await runBytes(runner, denseBytes, feed);
    const got = await runBytes(runner, bytes, feed);
    let diff = 0;
    for (const [k, w] of Object.entries(want)) {
      const g = got[k];
      if (!g || g.data.length !== w.data.length) throw new Error(`output ${k} differs in shape`);
      for (let i = 0; i < w.data.length; i++) diff = Math.max(diff, Math.abs(Number(g.data[i]) - Number(w.data[i])));
    }
    result.sparse = { ...sizes, converted: sp.converted, loads: true, maxAbsDiff: diff };
    if (diff === 0) result.best = best(dense, sizes);
  } catch (e) {
    result.sparse = { ...sizes, converted: sp.converted, loads: false, error: firstLine(e) };
  }
  return { sizes: result, sparseModel: sp.model };
}
