/**
 * Tasks of runtime/ that a helper thread runs ({@link ThreadTask}s for runtime/threads.ts): types
 * only here and in what it imports, so code built for the browser can name them too.
 */
import type { Feed } from '../core/host-tensor.js';
import type { ModelSession, ModelSource, SessionOptions, ThreadContext, ThreadTask } from './runner-types.js';
import { nextIndex, nextTurn } from '../core/share-work.js';

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
  /**
   * A counter shared with the caller (one int32 of a SharedArrayBuffer): this thread runs only the
   * feeds whose index it takes from it (Atomics.add), until it passes the last, and returns
   * undefined for the others; the caller takes runs from the same counter.
   */
  claim?: Int32Array;
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
export async function runModel(args: RunModelArgs, ctx: ThreadContext): Promise<Array<Feed | undefined>> {
  const mine = args.kept !== undefined ? kept.get(args.kept) : undefined;
  if (mine) kept.delete(args.kept!);
  const s = (await mine?.catch(() => undefined)) ?? (await ctx.runner.open(args.model, args.options ?? {}, args.name));
  try {
    const out = new Array<Feed | undefined>(args.feeds.length);
    const next = nextIndex(args.claim);
    for (let i = next(); i < args.feeds.length; i = next()) out[i] = await s.run(args.feeds[i]!, args.names);
    return out;
  } finally {
    await s.dispose();
    // in a later turn of the event loop, once the answer is posted: onnxruntime-node loads a model
    // synchronously, and opened in this turn it held the answer back for the whole open (6-10 ms)
    const then = args.then;
    if (then) keep(then.key, nextTurn().then(() => ctx.runner.open(then.model, then.options ?? {}, then.name)));
  }
}

export const RUN_MODEL: ThreadTask = { module: import.meta.url, name: 'runModel' };
