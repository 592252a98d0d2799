/**
 * Which inputs a report's data-dependent parts (latency, output error, accuracy) run on, for commands
 * whose transformation itself needs no data (weight compression, dynamic quantization, magnitude
 * pruning, data-free channel pruning, a pipeline without calibration).
 *
 * The first data set the user gave wins (evaluation data, then calibration data): real samples carry
 * their own shapes. Without any, random inputs are generated when every input dimension is known (declared
 * or given with --shape). Otherwise those parts are left out, with one line saying which flag adds them,
 * instead of failing a command that did not need the data.
 */
import { OnnxForgeError } from '../core/errors.js';
import type { Feed } from '../core/host-tensor.js';
import type { ValueInfo } from '../runtime/session.js';
import { resolveShape } from './generate.js';
import { DataSourceOptions, openDataSource, Sample } from './index.js';

export interface GivenData {
  /** A data spec as on the command line (`--eval SPEC`). */
  spec: string;
  options?: DataSourceOptions;
  /** The flag it came from, for messages: '--eval', '--calibration'. */
  flag: string;
}

export type MeasurementData =
  | { ok: true; spec: string; from: string; open(limit?: number): AsyncIterable<Sample>; feeds(limit: number): Promise<Feed[]> }
  | { ok: false; skipped: string };

/**
 * Picks the measurement data: the first of `given`, else `random:count` when all input dims resolve
 * from the model and `shapes`; else `{ ok: false, skipped }` whose sentence names what was left out
 * (`what`, e.g. 'latency and output error') and the flags that add it.
 */
export interface MeasurementHints {
  /** Random samples generated when no data is given (default 4). */
  count?: number;
  /** How the user adds data, for the message (default '--eval SPEC'). */
  data?: string;
  /** How the user gives an input's dims, for the message (default `--shape name=dims`). */
  shape?: (input: string, dims: string) => string;
}

export function measurementData(inputs: readonly ValueInfo[], given: readonly (GivenData | undefined)[], shapes: Record<string, number[]>, what: string, hints: MeasurementHints = {}): MeasurementData {
  const count = hints.count ?? 4;
  const shapeHint = hints.shape ?? ((name: string, dims: string) => `--shape ${name}=${dims}`);
  for (const g of given) {
    if (!g) continue;
    return chosen(g.spec, g.flag, (limit) => openDataSource(g.spec, inputs, { ...g.options, shapes, ...(limit !== undefined ? { limit } : {}) }));
  }
  const unresolved = symbolicInputs(inputs, shapes);
  if (unresolved.length === 0) {
    const spec = `random:${count}`;
    return chosen(spec, 'random inputs', (limit) => openDataSource(spec, inputs, { shapes, ...(limit !== undefined ? { limit } : {}) }));
  }
  const example = unresolved.map((u) => shapeHint(u.name, u.dims)).join(' ');
  return { ok: false, skipped: `${what} left out: ${unresolved.map((u) => `input '${u.name}' has symbolic dims ${u.symbolic.map((d) => `'${d}'`).join(', ')}`).join('; ')}. Add ${hints.data ?? '--eval SPEC'} (samples carry their shapes) or ${example} to measure ${what.includes(' and ') ? 'them' : 'it'}.` };
}

function chosen(spec: string, from: string, open: (limit?: number) => AsyncIterable<Sample>): MeasurementData {
  return {
    ok: true,
    spec,
    from,
    open,
    async feeds(limit) {
      const out: Feed[] = [];
      for await (const x of open(limit)) out.push(x.feed);
      return out;
    },
  };
}

/** Inputs whose dims do not all resolve from the model and `shapes`, with the symbolic names. */
export function symbolicInputs(inputs: readonly ValueInfo[], shapes: Record<string, number[]>): { name: string; symbolic: string[]; dims: string }[] {
  const out: { name: string; symbolic: string[]; dims: string }[] = [];
  for (const info of inputs) {
    try {
      resolveShape(info, shapes);
    } catch (e) {
      if (!(e instanceof OnnxForgeError) || e.code !== 'DATA_SYMBOLIC_DIM') throw e;
      const symbolic = info.shape.filter((d): d is string => typeof d === 'string' && !(d !== '' && shapes[d]?.length === 1)).map((d) => d || '?');
      out.push({ name: info.name, symbolic, dims: info.shape.map((d) => (typeof d === 'number' ? d : d !== '' && shapes[d]?.length === 1 ? shapes[d]![0] : 'N')).join(',') });
    }
  }
  return out;
}
