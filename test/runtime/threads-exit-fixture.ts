/**
 * Run by threads.test.ts in a child process: starts the helper threads (`start`: in the background;
 * `ready`: waits until they are up; `job`: runs a model in one) and then ends its script, which must
 * let the process exit on its own: an idle helper thread never holds the process open.
 */
import { GraphBuilder } from '../../ir/builder.js';
import { serializeModel } from '../../onnx/index.js';
import { RUN_MODEL } from '../../runtime/thread-tasks.js';
import { nodeThreads } from '../../runtime/threads.js';

const mode = process.argv[2];
const threads = nodeThreads();
if (mode === 'start') threads.start();
if (mode === 'ready') process.stdout.write(`ready ${await threads.ready()}\n`);
if (mode === 'job') {
  const b = new GraphBuilder({ opset: 17 });
  const [y] = b.op('Relu', [b.input('x', 'float', [2])]);
  b.output(y!, 'y', 'float');
  const [out] = await threads.run<Array<Record<string, { data: Float32Array }>>>(RUN_MODEL, { model: serializeModel(b.model()), feeds: [{ x: { type: 'float32', dims: [2], data: Float32Array.of(-1, 2) } }] });
  process.stdout.write(`job ${Array.from(out!.y!.data).join(',')}\n`);
}
process.stdout.write(`end of script (${mode})\n`);
