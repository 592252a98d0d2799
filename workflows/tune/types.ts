/**
 * The contract between `onnxforge tune` (the search) and whatever runs its trials: in this process,
 * in local child processes (`--workers K`) or on other machines through a queue (`--queue redis://…`,
 * `onnxforge worker`). A trial names its inputs by content hash so that a worker anywhere can fetch
 * them from the shared store and so that two machines can never run "the same" trial on different
 * files; its result carries latency as ratios measured in the worker's own process, never raw
 * milliseconds from different machines.
 */

import type { TuneContentRef, TuneTrialResult } from '../../report/tune.js';

/** A file in the content-addressed store (sha256 of its bytes, hex). */
export type ContentRef = TuneContentRef;

/**
 * A data spec a trial reads: either a spec that needs no files (`random:8:1`), or a folder/file tree
 * stored as a manifest (itself a content-addressed JSON file listing relative paths and their hashes).
 */
export type DataRef =
  | { kind: 'spec'; spec: string; preprocess?: ContentRef; limit?: number }
  | { kind: 'tree'; manifest: ContentRef; preprocess?: ContentRef; limit?: number };

/** One trial: a pipeline over the model, measured against the model itself. */
export interface TrialSpec {
  /** Stable id: a hash of everything below, so a resumed or retried search recognises the trial. */
  id: string;
  /** The pipeline in the text grammar `parsePipeline` reads (`default | quantize-static{...}`). */
  pipeline: string;
  model: ContentRef;
  calibration?: DataRef;
  eval: DataRef;
  /** Training data for pipelines that distil (a channel-pruning trial with recovery). */
  train?: DataRef;
  /** The metric name as `--metric` takes it (a built-in or a metric module in the store). */
  metric: string;
  target: 'node' | 'wasm';
  /** Intra-op threads the trial is timed with (the bench uses 1). */
  threads: number;
  shapes: Record<string, number[]>;
  /** Timed runs per side for the interleaved latency ratio. */
  latencyRuns: number;
}

export type TrialOutcome = TrialResult['outcome'];

/** What a trial measured (the report's row type: report/tune.ts). Budgets are judged by the search, not by the worker. */
export type TrialResult = TuneTrialResult;

/** Runs trials somewhere. One instance per search; `close` releases processes and connections. */
export interface TrialExecutor {
  /** Human-readable description for the report (`in-process`, `2 local workers`, `queue redis://…`). */
  readonly describe: string;
  /** Runs the given trials (in any order, possibly concurrently); calls `onResult` as each finishes. */
  run(trials: readonly TrialSpec[], onResult: (r: TrialResult) => void): Promise<TrialResult[]>;
  close(): Promise<void>;
}
