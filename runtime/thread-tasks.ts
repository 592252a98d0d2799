/**
 * Tasks of runtime/ that a helper thread runs ({@link ThreadTask}s for runtime/threads.ts): types
 * only here and in what it imports, so code built for the browser can name them too.
 */
import type { Feed } from '../core/host-tensor.js';
import type { ModelSession, ModelSource, SessionOptions, ThreadContext, ThreadTask } from './runner-types.js';

/** A model a thread opens a session of. */
export interface ThreadModel {
  model: ModelSource;
  options?: SessionOptions;
  /** Labels errors. */
  name?: string;
}

export interface RunModelArgs extends ThreadModel {
  /** One run per feed, in order. */
  feeds: Feed[];
  /** Outputs to return (default: all). */
  names?: string[];
  /**
   * Runs on the session this thread keeps under this key (opened by an earlier {@link KEEP_MODEL}
   * task), which is closed afterwards; a thread without one opens `model` as usual (the same outputs
   * either way).
   */
  kept?: string;
}

/**
 * Sessions this thread keeps for later tasks ({@link KEEP_MODEL}), oldest first; at most
 * {@link KEPT}: a caller that failed before using its session never leaves more than that open.
 */
const kept = new Map<string, Promise<ModelSession>>();
const KEPT = 2;

function keep(key: string, session: Promise<ModelSession>): void {
  kept.set(key, session);
  session.catch(() => kept.delete(key));
  while (kept.size > KEPT) {
    const [oldest, s] = kept.entries().next().value!;
    kept.delete(oldest);
    void s.then((x) => x.dispose(), () => {});
  }
}

/**
 * Opens a session of `model` in the thread (or takes the one kept under `kept`), runs it on each
 * feed, closes it: the outputs per feed.
 */
export async function runModel(args: RunModelArgs, ctx: ThreadContext): Promise<Feed[]> {
  const mine = args.kept !== undefined ? kept.get(args.kept) : undefined;
  if (mine) kept.delete(args.kept!);
  const s = (await mine?.catch(() => undefined)) ?? (await ctx.runner.open(args.model, args.options ?? {}, args.name));
  try {
    const out: Feed[] = [];
    for (const feed of args.feeds) out.push(await s.run(feed, args.names));
    return out;
  } finally {
    await s.dispose();
  }
}

export const RUN_MODEL: ThreadTask = { module: import.meta.url, name: 'runModel' };

/**
 * Opens a session of `model` in the thread and keeps it under `key` for a later task's
 * {@link RunModelArgs.kept} (resolves once it is open): a caller that will hand the thread work on
 * that model opens it there while its own thread is busy.
 */
export async function keepModel(args: ThreadModel & { key: string }, ctx: ThreadContext): Promise<void> {
  const s = ctx.runner.open(args.model, args.options ?? {}, args.name);
  keep(args.key, s);
  await s.catch(() => undefined);
}

export const KEEP_MODEL: ThreadTask = { module: import.meta.url, name: 'keepModel' };
