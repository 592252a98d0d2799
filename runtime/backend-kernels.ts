/**
 * Integer kernels per backend: which int8 operators have a fast kernel, measured with the one-op probes
 * of test/runtime/web-probe.ts (onnxruntime-web 1.30.0 WASM, 1 thread, SIMD; onnxruntime-node 1.30.0
 * on the same shapes: Conv 32->64 3x3 over 24x96, MatMul [96,256]x[256,256]).
 *
 * What the probe found (fastest interleaved slot vs the float op, WASM; node alike):
 * - every int8 operator loads and runs in the WASM backend, ConvInteger included;
 * - uint8 activations with int8 weights (what `quantize --mode static` writes, in QDQ or QOperator
 *   form) run QLinearConv / QLinearMatMul at ~0.5x the float op's time;
 * - int8 *activations* in QLinearConv, QLinearMatMul and MatMulInteger, and ConvInteger with int8
 *   weights or activations, have no fast kernel: 4-11x slower than float on WASM, 5-11x natively;
 * - QDQ nodes with int8 activations are rewritten by onnxruntime into fast kernels (0.5x), so QDQ form
 *   is not restricted here.
 * `quantize --target` checks the written model against this table (nothing slow is written).
 */
import { DataType } from '../core/dtype.js';
import type { Model, Node } from '../ir/ir.js';
import { elemTypeOf, inferShapes } from '../analysis/shape-inference.js';
import type { Backend } from './backend.js';

export interface KernelIssue {
  node: string;
  op: string;
  reason: string;
}

/** Integer ops checked, with the input slots of activation and weight (the zero point gives the type when present). */
const INTEGER_OPS: Record<string, { act: number; actZp?: number; weight: number; weightZp?: number; slowWeightInt8: boolean }> = {
  QLinearConv: { act: 0, actZp: 2, weight: 3, weightZp: 5, slowWeightInt8: false },
  QLinearMatMul: { act: 0, actZp: 2, weight: 3, weightZp: 5, slowWeightInt8: false },
  ConvInteger: { act: 0, actZp: 2, weight: 1, weightZp: 3, slowWeightInt8: true },
  MatMulInteger: { act: 0, actZp: 2, weight: 1, weightZp: 3, slowWeightInt8: false },
};

function typeOf(n: Node, slot: number, zpSlot?: number): number | undefined {
  const zp = zpSlot !== undefined ? n.inputs[zpSlot] : undefined;
  return elemTypeOf(zp ?? null) ?? elemTypeOf(n.inputs[slot] ?? null);
}

/**
 * Nodes of `model` (main graph) that run an integer operator without a fast kernel on `backend`. The
 * table is the same for node and wasm (onnxruntime's CPU kernels, MLAS, natively and in WASM).
 */
export function slowIntegerKernels(model: Model, backend: Backend): KernelIssue[] {
  void backend;
  inferShapes(model);
  const out: KernelIssue[] = [];
  for (const n of model.graph.nodes) {
    const spec = (!n.domain || n.domain === 'ai.onnx') && INTEGER_OPS[n.opType];
    if (!spec) continue;
    const act = typeOf(n, spec.act, spec.actZp);
    const weight = typeOf(n, spec.weight, spec.weightZp);
    const name = n.name || n.label;
    if (act === DataType.INT8) out.push({ node: name, op: n.opType, reason: 'int8 activations have no fast kernel (4-11x slower than float, measured)' });
    else if (spec.slowWeightInt8 && weight === DataType.INT8) out.push({ node: name, op: n.opType, reason: 'ConvInteger with int8 weights has no fast kernel (uint8 weights do)' });
  }
  return out;
}
