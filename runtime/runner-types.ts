/**
 * The types of the runner (runtime/runner.ts) and of what it opens: session options, the values a
 * model declares, per-operator profiles. Types only, no onnxruntime: code that must also build for
 * the browser (passes, `onnxforge/web`) names a runner without loading onnxruntime-node.
 */
import type { Feed, HostDType } from '../core/host-tensor.js';
import type { Model } from '../ir/ir.js';

export interface SessionOptions {
  /** Default 'all'. */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'layout' | 'all';
  /** 0 or absent: onnxruntime's default (one thread per physical core). */
  intraOpNumThreads?: number;
  interOpNumThreads?: number;
  executionMode?: 'sequential' | 'parallel';
  enableProfiling?: boolean;
  profileFilePrefix?: string;
  /** Writes the optimized model here (debugging aid). */
  optimizedModelFilePath?: string;
  /**
   * onnxruntime's log level for this session (0 verbose ... 4 fatal). Default 3 (errors): its
   * warnings describe the input model (initializers it drops as unused, ...), which a command's own
   * report covers, and they would otherwise reach the user as raw, colored log lines.
   */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
  /**
   * Whether idle intra-op threads spin waiting for work (onnxruntime's default: yes). Spinning
   * threads of one session steal CPU from another session running on the same cores, so onnxforge
   * turns it off wherever several sessions alternate (A/B latency rounds, comparisons).
   */
  allowSpinning?: boolean;
  /**
   * onnxruntime's CPU memory arena (default on): it keeps the largest buffers a session has used for
   * its later runs. Off for long-lived helper sessions whose products vary in size, so their memory
   * goes back after each run.
   */
  enableCpuMemArena?: boolean;
  /**
   * onnxruntime's memory pattern (default on): it plans a run's buffers from the runs before it, which
   * costs a session that runs only a few times more than it saves (a moments run with extra outputs
   * took 2-4x as long on the session's second run as on later ones with it, not at all without it).
   */
  enableMemPattern?: boolean;
  /** Raw onnxruntime session config entries (`extra`), e.g. { session: { intra_op: { allow_spinning: '0' } } }. */
  extra?: Record<string, unknown>;
}

/** What a model declares for one input or output. Symbolic dims are strings ('' when unnamed). */
export interface ValueInfo {
  name: string;
  type: HostDType | string;
  shape: (number | string)[];
  isTensor: boolean;
}

export type ModelSource = Uint8Array | string;

export interface OpProfileRow {
  node: string;
  opType: string;
  /** Total kernel time over all calls, microseconds. */
  totalUs: number;
  calls: number;
  /** Fastest single call, microseconds: load on a shared machine only ever adds time. */
  minUs?: number;
  /** Fraction of the total kernel time of all nodes. */
  share: number;
}

export interface OpTypeRow {
  opType: string;
  totalUs: number;
  calls: number;
  nodes: number;
  share: number;
}

export interface ProfileReport {
  /** Rows per node, slowest first. */
  nodes: OpProfileRow[];
  /** Rows per op type, slowest first. */
  opTypes: OpTypeRow[];
  totalUs: number;
  runs: number;
}

/** What a pass needs of a session. `Session` (runtime/session.ts) is one. */
export interface ModelSession {
  readonly name: string;
  readonly inputs: ValueInfo[];
  readonly outputs: ValueInfo[];
  run(feed: Feed, outputNames?: readonly string[]): Promise<Feed>;
  dispose(): Promise<void>;
}

/** A model as bytes, a file path or an in-memory IR model. */
export type RunnableModel = ModelSource | Model;

export interface Runner {
  /** Opens a session; `name` labels errors (a file path or a description of an in-memory model). */
  open(model: RunnableModel, options?: SessionOptions, name?: string): Promise<ModelSession>;
  /** onnxruntime's per-node profile of `runs` runs on each feed. */
  profile(model: RunnableModel, feeds: readonly Feed[], options?: SessionOptions & { runs?: number; warmup?: number }): Promise<ProfileReport>;
}

/**
 * A function a helper thread can run: the module that exports it (its own `import.meta.url`, so the
 * thread loads the same file the caller did) and the export's name. The thread calls it as
 * `fn(args, { runner })` with a runner of its own and posts back what it returns (typed arrays moved,
 * not copied). Its module must not keep state the caller needs: the thread has its own copy.
 */
export interface ThreadTask {
  module: string;
  name: string;
}

/** What a task function receives besides its arguments, in the thread that runs it. */
export interface ThreadContext {
  runner: Runner;
}

/**
 * Helper threads (runtime/threads.ts: Node worker threads), for work a caller splits into independent
 * jobs: it runs some itself and hands others to {@link Threads.run}. Absent (or `size` 0) in the
 * browser, on one core and with ONNXFORGE_THREADS=0: the caller then runs every job itself.
 */
export interface Threads {
  /** Helper threads (not counting the caller's). */
  readonly size: number;
  /** Starts the threads in the background if they are not (they never hold the process open). */
  start(): void;
  /**
   * Resolves true once the threads are up (starting them if they are not), false when they cannot
   * start; the process stays open until then. A caller with work of its own races it against
   * finishing that work, so a cold start (the thread loads its modules and onnxruntime) never makes
   * it wait.
   */
  ready(): Promise<boolean>;
  /** Runs `task` with `args` (copied; `transfer`'s buffers moved) on an idle thread, waiting for one. Rejects when the thread fails. */
  run<R>(task: ThreadTask, args: unknown, transfer?: ArrayBuffer[]): Promise<R>;
}
