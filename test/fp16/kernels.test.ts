import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModelSync, serializeModel } from '../../onnx/index.js';
import { CPU_WASM_HALF_KERNELS, opKey } from '../../passes/convert/float16/kernels.js';
import { createSession } from '../../runtime/session.js';
import { PROBES, probeModel } from './kernel-probe.js';

/** Whether onnxruntime-node runs the probe's node natively in float16 (no Cast inserted around it). */
async function native(i: number): Promise<boolean | 'invalid'> {
  const p = PROBES[i]!;
  const out = join(dir, `${i}.onnx`);
  try {
    const s = await createSession(serializeModel(probeModel(p)), { graphOptimizationLevel: 'basic', optimizedModelFilePath: out });
    await s.dispose();
  } catch {
    return 'invalid';
  }
  const m = loadModelSync(new Uint8Array(readFileSync(out)));
  const own = p.op === 'Cast' || p.op === 'CastLike' ? 1 : 0;
  return m.graph.nodes.filter((n) => n.opType === 'Cast').length <= own;
}
const dir = mkdtempSync(join(tmpdir(), 'fp16-kernels-'));

describe('float16 kernel table', () => {
  it('matches what onnxruntime-node runs natively in float16 (CPU EP)', async () => {
    const mismatches: string[] = [];
    for (let i = 0; i < PROBES.length; i++) {
      const p = PROBES[i]!;
      const r = await native(i);
      if (r === 'invalid') continue; // the op has no float16 form at this opset (Mish, IsInf, Range)
      // ops the CPU EP folds or rewrites away on a single-node model (Shape, ConstantOfShape) still count as native
      const key = opKey(p.domain ?? '', p.op);
      if (r !== CPU_WASM_HALF_KERNELS.has(key)) mismatches.push(`${key}: onnxruntime ${r ? 'native' : 'wrapped in Casts'}, table ${CPU_WASM_HALF_KERNELS.has(key)}`);
    }
    expect(mismatches).toEqual([]);
  });
});
