/**
 * Inputs for stateful models, where an output of one step is an input of the next (Silero VAD:
 * `stateN` -> `state`). The state sequence is produced by running a reference model (normally the
 * float original) on the frames in order; each yielded sample carries the state that the reference
 * would see at that step, so a quantized or optimized model is evaluated and calibrated on the
 * trajectory of the original.
 */
import { inputError } from '../core/errors.js';
import { Feed, HostTensor } from '../core/host-tensor.js';
import type { Sample } from './sample.js';

export interface StateLink {
  /** Output name of the step that produces the state (e.g. 'stateN'). */
  output: string;
  /** Input name of the next step that consumes it (e.g. 'state'). */
  input: string;
  /** State for the first step (e.g. zeros [2, 1, 128]). */
  initial: HostTensor;
}

/**
 * Adds state inputs to `frames`. `run` is called once per frame with the complete feed and must
 * return at least the linked outputs. `resetEvery` restarts from the initial state every N frames.
 */
export async function* statefulSource(
  frames: AsyncIterable<Sample | Feed> | Iterable<Sample | Feed>,
  links: readonly StateLink[],
  run: (feed: Feed) => Promise<Feed>,
  options: { resetEvery?: number } = {},
): AsyncGenerator<Sample> {
  let state = new Map(links.map((l) => [l.input, l.initial]));
  let i = 0;
  for await (const f of frames as AsyncIterable<Sample | Feed>) {
    const sample: Sample = 'feed' in f && typeof f.id === 'string' ? (f as Sample) : { id: `frame#${i}`, feed: f as Feed };
    if (options.resetEvery && i > 0 && i % options.resetEvery === 0) state = new Map(links.map((l) => [l.input, l.initial]));
    const feed: Feed = { ...sample.feed };
    for (const l of links) feed[l.input] = state.get(l.input)!;
    yield { ...sample, feed };
    const out = await run(feed);
    for (const l of links) {
      const next = out[l.output];
      if (!next) throw inputError('DATA_STATE_MISSING', `${sample.id}: the model produced no output '${l.output}' to feed '${l.input}'`, { tensor: l.output });
      state.set(l.input, next);
    }
    i++;
  }
}
