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
   * Runs on the session this thread keeps under this key (made by an earlier task's `then`), which
   * is closed afterwards; a thread without one opens `model` as usual (the same outputs either way).
   */
  kept?: string;
  /**
   * After the runs, this thread opens `then.model` and keeps the session under `then.key` for a
   * later task's `kept`: the session is ready by the time that task comes (opening one while the
   * caller's thread opens another made both take several times as long).
   */
  then?: ThreadModel & { key: string };
}

/**
 * Sessions this thread keeps for later tasks ({@link RunModelArgs.then}), oldest first; at most
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
 * feed, closes it: the outputs per feed. `then`'s session opens once they are posted back.
 */
export async function runModel(args: RunModelArgs, ctx: ThreadContext): Promise<Feed[]> {
  const mine = args.kept !== undefined ? kept.get(args.kept) : undefined;
  if (mine) kept.delete(args.kept!);
  const s = (await mine?.catch(() => undefined)) ?? (await ctx.runner.open(args.model, args.options ?? {}, args.name));
  try {
    const out: Feed[] = [];
    for (const f of args.feeds) out.push(await s.run(f, args.names));
    return out;
  } finally {
    await s.dispose();
    // not awaited: onnxruntime opens it in a later turn of the event loop, after the answer is posted
    const then = args.then;
    if (then) keep(then.key, ctx.runner.open(then.model, then.options ?? {}, then.name));
  }
}

export const RUN_MODEL: ThreadTask = { module: import.meta.url, name: 'runModel' };
