/**
 * Sessions for in-memory IR models: serialize with the codec, then create from bytes (no temp file).
 * Kept apart from `session.ts` so that the runtime compiles without the codec's model writer.
 */
import { serializeModel } from '../onnx/index.js';
import { createSession, Session, SessionOptions } from './session.js';

type ModelArg = Parameters<typeof serializeModel>[0];

export function createSessionFromModel(model: ModelArg, options: SessionOptions = {}, name = '(in-memory model)'): Promise<Session> {
  return createSession(serializeModel(model), options, name);
}
