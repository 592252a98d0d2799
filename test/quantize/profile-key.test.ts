/**
 * profileKey maps an onnxruntime profile row's node name back to the candidate names of the IR node:
 * onnxruntime renames the nodes it rewrites, and a row that matches no node would cost that unit
 * nothing in float (the latency search would then keep it float for a wrong reason).
 */
import { describe, expect, it } from 'vitest';
import { profileKey } from '../../passes/quantize/search.js';

describe('profileKey', () => {
  it('strips the names onnxruntime gives fused and relaid-out nodes', () => {
    expect(profileKey('fused Gemm_1')).toContain('Gemm_1');
    expect(profileKey('Conv_3_fused_Relu')).toContain('Conv_3');
    expect(profileKey('Conv_3_nchwc')).toContain('Conv_3');
    expect(profileKey('p2o.Conv.7/fused')).toContain('p2o.Conv.7');
  });

  it('keeps an unrenamed name as it is, first', () => {
    expect(profileKey('MatMul_0')).toEqual(['MatMul_0']);
    expect(profileKey('fused Gemm_1')[0]).toBe('fused Gemm_1');
  });
});
