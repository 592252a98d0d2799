/**
 * What a helper thread of runtime/threads.ts runs: it says it is up, then for each message
 * `{ task, args }` imports the task's module (once), calls the named export with the arguments and
 * onnxruntime-node's runner, and posts back `{ value }` with the typed arrays in it moved, or
 * `{ error }`.
 */
import { parentPort } from 'node:worker_threads';
import { nodeRunner } from './runner.js';
import type { ThreadContext, ThreadTask } from './runner-types.js';

type TaskFn = (args: unknown, ctx: ThreadContext) => unknown;

const modules = new Map<string, Promise<Record<string, unknown>>>();

/** The buffers of the typed arrays in `value` (nested in arrays and plain objects), each once; shared ones stay shared. */
function buffersOf(value: unknown, out = new Set<ArrayBuffer>(), depth = 0): Set<ArrayBuffer> {
  if (depth > 8 || value === null || typeof value !== 'object') return out;
  if (ArrayBuffer.isView(value)) {
    if (value.buffer instanceof ArrayBuffer) out.add(value.buffer);
    return out;
  }
  for (const v of Array.isArray(value) ? value : Object.values(value)) buffersOf(v, out, depth + 1);
  return out;
}

const port = parentPort;
if (port) {
  const ctx: ThreadContext = { runner: nodeRunner };
  port.on('message', async ({ task, args }: { task: ThreadTask; args: unknown }) => {
    try {
      let mod = modules.get(task.module);
      if (!mod) modules.set(task.module, (mod = import(task.module) as Promise<Record<string, unknown>>));
      const fn = (await mod)[task.name];
      if (typeof fn !== 'function') throw new Error(`${task.module} exports no function ${task.name}`);
      const value = await (fn as TaskFn)(args, ctx);
      port.postMessage({ value }, [...buffersOf(value)]);
    } catch (e) {
      port.postMessage({ error: { message: e instanceof Error ? e.message : String(e) } });
    }
  });
  port.postMessage({ ready: true });
}
