/**
 * Tasks of runtime/ that a helper thread runs ({@link ThreadTask}s for runtime/threads.ts): types
 * only here and in what it imports, so code built for the browser can name them too.
 */
import type { Feed } from '../core/host-tensor.js';
import type { ModelSource, SessionOptions, ThreadContext, ThreadTask } from './runner-types.js';

export interface RunModelArgs {
  model: ModelSource;
  options?: SessionOptions;
  /** Labels errors. */
  name?: string;
  /** One run per feed, in order. */
  feeds: Feed[];
  /** Outputs to return (default: all). */
  names?: string[];
}

/** Opens a session of `model` in the thread, runs it on each feed, closes it: the outputs per feed. */
export async function runModel(args: RunModelArgs, ctx: ThreadContext): Promise<Feed[]> {
  const s = await ctx.runner.open(args.model, args.options ?? {}, args.name);
  try {
    const out: Feed[] = [];
    for (const f of args.feeds) out.push(await s.run(f, args.names));
    return out;
  } finally {
    await s.dispose();
  }
}

export const RUN_MODEL: ThreadTask = { module: import.meta.url, name: 'runModel' };
