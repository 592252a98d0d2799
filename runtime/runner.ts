/**
 * The runner: how the library above this layer reaches onnxruntime. Passes get one in their context
 * (`ctx.runner`), so a pass can be tested with a fake runner; `nodeRunner` is onnxruntime-node's.
 */
import { serializeModel } from '../onnx/index.js';
import { profileModel } from './profile.js';
import { Session } from './session.js';
import type { ModelSource, RunnableModel, Runner } from './runner-types.js';

// What the layers above need of sessions and profiles, so they import the runner and nothing else of runtime/'s sessions.
export type { ModelSession, ModelSource, OpProfileRow, ProfileReport, RunnableModel, Runner, SessionOptions, ValueInfo } from './runner-types.js';
export { firstLine } from './session.js';

const source = (m: RunnableModel): ModelSource => (typeof m === 'string' || m instanceof Uint8Array ? m : serializeModel(m));

/** onnxruntime-node. */
export const nodeRunner: Runner = {
  open: (model, options = {}, name) => Session.create(source(model), options, name ?? (typeof model === 'string' ? model : '(in-memory model)')),
  profile: (model, feeds, options = {}) => profileModel(source(model), feeds, options),
};
