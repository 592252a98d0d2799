/**
 * The runner: how the library above this layer reaches onnxruntime. Passes get one in their context
 * (`ctx.runner`), so a pass can be tested with a fake runner; `nodeRunner` is onnxruntime-node's.
 */
import type { Feed } from '../core/host-tensor.js';
import type { Model } from '../ir/ir.js';
import { serializeModel } from '../onnx/index.js';
import { profileModel, type ProfileReport } from './profile.js';
import { Session, type ModelSource, type SessionOptions, type ValueInfo } from './session.js';

// What the layers above need of sessions and profiles, so they import the runner and nothing else of runtime/'s sessions.
export type { ModelSource, SessionOptions, ValueInfo } from './session.js';
export type { OpProfileRow, ProfileReport } from './profile.js';
export { firstLine } from './session.js';

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

const source = (m: RunnableModel): ModelSource => (typeof m === 'string' || m instanceof Uint8Array ? m : serializeModel(m));

/** onnxruntime-node. */
export const nodeRunner: Runner = {
  open: (model, options = {}, name) => Session.create(source(model), options, name ?? (typeof model === 'string' ? model : '(in-memory model)')),
  profile: (model, feeds, options = {}) => profileModel(source(model), feeds, options),
};
