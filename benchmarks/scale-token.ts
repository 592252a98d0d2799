/**
 * One token (or a window of the token ids given) through a model in onnxruntime-node
 * (runtime/session.ts), its logits written to stdout as base64 float32:
 * `node --import tsx benchmarks/scale-token.ts <model.onnx> [ids...]`. A child process of the
 * scale benchmark, so loading a large model does not count against the benchmark's own memory.
 */
import { Session } from '../runtime/session.js';

const [model, ...given] = process.argv.slice(2);
if (!model) throw new Error('usage: scale-token.ts <model.onnx> [token ids (default: 42)]');
const ids = given.length ? given.map(BigInt) : [42n];
const s = await Session.create(model, { intraOpNumThreads: 1 }, model);
try {
  const out = await s.run({ input_ids: { type: 'int64', dims: [1, ids.length], data: BigInt64Array.from(ids) } });
  const d = out.logits!.data as Float32Array;
  process.stdout.write(Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64'));
} finally {
  await s.dispose();
}
