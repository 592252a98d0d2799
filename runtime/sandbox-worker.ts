/**
 * Child-process side of the sandbox (see `sandbox.ts`): receives one task, runs it, answers, exits.
 * Reports its own RSS periodically for platforms without /proc.
 */
import { pathToFileURL } from 'node:url';
import { isOnnxForgeError } from '../core/errors.js';
import { Feed } from '../core/host-tensor.js';
import type { SandboxTask, WorkerMessage } from './sandbox.js';
import { Session } from './session.js';

function send(m: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) return resolve();
    process.send(m, undefined, {}, () => resolve());
  });
}

async function execute(task: SandboxTask): Promise<unknown> {
  if (task.kind === 'run') {
    const model = typeof task.model === 'string' ? task.model : new Uint8Array(task.model);
    const session = await Session.create(model, task.options ?? {});
    const outputs: Feed[] = [];
    for (const f of task.feeds) outputs.push(await session.run(f, task.outputNames));
    await session.dispose();
    return outputs;
  }
  const url = task.module.startsWith('file:') ? task.module : pathToFileURL(task.module).href;
  const mod = (await import(url)) as Record<string, unknown>;
  const fn = mod[task.export];
  if (typeof fn !== 'function') throw new Error(`${task.module} has no exported function ${task.export}`);
  const args = task.progress ? [...task.args, (done: number, total: number) => void send({ type: 'progress', done, total })] : task.args;
  return await (fn as (...a: unknown[]) => unknown)(...args);
}

const reporter = setInterval(() => void send({ type: 'rss', bytes: process.memoryUsage.rss() }), 100);
reporter.unref();

process.once('message', (task: SandboxTask) => {
  execute(task).then(
    async (value) => {
      await send({ type: 'result', value });
      process.exit(0);
    },
    async (e: unknown) => {
      const error = isOnnxForgeError(e)
        ? { code: e.code, message: e.message, kind: e.kind, details: e.details }
        : { code: 'RUNTIME_ERROR' as const, message: e instanceof Error ? e.message : String(e), kind: 'internal' as const, details: {} };
      await send({ type: 'error', error });
      process.exit(0);
    },
  );
});
