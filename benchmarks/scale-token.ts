/**
 * One token through a model in onnxruntime-node (runtime/session.ts), its logits written to stdout as
 * base64 float32: `node --import tsx benchmarks/scale-token.ts <model.onnx>`. A child process of the
 * scale benchmark, so loading a large model does not count against the benchmark's own memory.
 */
import { Session } from '../runtime/session.js';

const model = process.argv[2];
if (!model) throw new Error('usage: scale-token.ts <model.onnx>');
const s = await Session.create(model, { intraOpNumThreads: 1 }, model);
try {
  const out = await s.run({ input_ids: { type: 'int64', dims: [1, 1], data: BigInt64Array.from([42n]) } });
  const d = out.logits!.data as Float32Array;
  process.stdout.write(Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64'));
} finally {
  await s.dispose();
}
