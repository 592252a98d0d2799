/**
 * Measurements on candidate models, against the float model on fixed calibration feeds:
 * - output error: sum of squared differences over every float output and feed, divided by the float
 *   outputs' energy (relative MSE; SQNR = -10 log10 of it);
 * Used to decide which layers keep 8 bits: {@link endTrials} measures several settings of the
 * first and last weights in one session (the weights as graph inputs fed per trial).
 */
import type { Feed } from '../../../core/host-tensor.js';
import { DataType } from '../../../core/dtype.js';
import { Attribute, constantOf, Value, type Model } from '../../../ir/ir.js';
import type { Linalg } from './linalg.js';
import { cloneModel, serializeModel } from '../../../onnx/codec.js';
import type { ModelSession, Runner, Threads } from '../../../runtime/runner-types.js';
import { shareLarge, shareWork, type WorkHelpers } from '../../../core/share-work.js';
import { RUN_MODEL, type RunModelArgs, type ThreadModel } from '../../../runtime/thread-tasks.js';
import { concatFeeds, stackFeeds } from './activations.js';

export interface Reference {
  feeds: readonly Feed[];
  /** Float outputs per feed (float32 outputs only). */
  outputs: Array<Record<string, Float32Array>>;
  energy: number;
}

/**
 * Sessions of the trial model and the float reference: one thread, no spinning, and no graph
 * optimization (level disabled), as the moments' run that gives the reference when there is one: the
 * trial model is the prepared model with its weights fed as inputs, with nothing left to fold; at
 * level all its sessions took longer to open, here and in the helper thread while GPTQ ran there (the
 * trained LM's q4 cost 0.90-0.93x paired of level all's over 16 rounds; the same decisions and bytes).
 * No memory pattern and no CPU memory arena, as the moments' session (activations.ts momentsSession):
 * each runs once or twice.
 */
const SESSION = { intraOpNumThreads: 1, allowSpinning: false, graphOptimizationLevel: 'disabled', enableMemPattern: false, enableCpuMemArena: false } as const;

function floatOutputs(out: Feed): Record<string, Float32Array> {
  const r: Record<string, Float32Array> = {};
  for (const [k, t] of Object.entries(out)) if (t.data instanceof Float32Array) r[k] = t.data;
  return r;
}

/** The reference from float outputs already computed on `feeds`. */
export function referenceOf(feeds: readonly Feed[], outputs: Array<Record<string, Float32Array>>): Reference {
  let energy = 0;
  for (const o of outputs) for (const v of Object.values(o)) for (let i = 0; i < v.length; i++) energy += v[i]! * v[i]!;
  return { feeds, outputs, energy };
}

/** The float model's outputs on `feeds`. */
export async function reference(model: Model, feeds: readonly Feed[], runner: Runner): Promise<Reference> {
  const s = await runner.open(model, SESSION, '(float model)');
  try {
    const outputs: Array<Record<string, Float32Array>> = [];
    for (const f of feeds) outputs.push(floatOutputs(await s.run(f)));
    return referenceOf(feeds, outputs);
  } finally {
    await s.dispose();
  }
}

/** A run's float outputs by name. */
type Outputs = Record<string, Float32Array>;

/** Outputs of one run rewritten into those of another weight setting (see {@link endTrials}). */
type OutputVariant = (outputs: Outputs) => Promise<Outputs>;

/**
 * Relative output errors against `ref` of one run of `s` per probe group (stacked feeds, or one run
 * per feed when the outputs do not stack) with `extra` fed: the run's own, then each variant's.
 * `runs`: the groups' stacked runs when they were made elsewhere (a helper thread); `s` then runs
 * only the groups whose outputs do not stack.
 */
async function errorsOf(session: ModelSession, ref: Reference, extra: Feed, groups: readonly Feed[][], variants: readonly OutputVariant[] = [], runs?: readonly Outputs[]): Promise<number[]> {
  const run = async (feed: Feed) => floatOutputs(await session.run(feed));
  const sse = new Array<number>(1 + variants.length).fill(0);
  let i = 0;
  for (const [gi, group] of groups.entries()) {
    const wants = ref.outputs.slice(i, i + group.length);
    const o = runs?.[gi] ?? (await run({ ...concatFeeds(group), ...extra }));
    // a stacked run's outputs hold the feeds' outputs one after the other (batch axis first); else one run per feed
    const stacked = Object.keys(wants[0]!).every((k) => o[k]?.length === wants.reduce((a, w) => a + w[k]!.length, 0));
    const outs = [o];
    if (!stacked) {
      outs.length = 0;
      for (const f of group) outs.push(await run({ ...f, ...extra }));
    }
    const settings: Outputs[][] = [];
    for (const out of outs) {
      const all = [out];
      for (const v of variants) all.push(await v(out));
      settings.push(all);
    }
    for (const k of Object.keys(wants[0]!)) {
      let at = 0;
      wants.forEach((w, j) => {
        const want = w[k]!;
        settings[stacked ? 0 : j]!.forEach((out, t) => (sse[t]! += squaredError(out[k]!, stacked ? at : 0, want)));
        at += want.length;
      });
    }
    i += group.length;
  }
  return sse.map((e) => (ref.energy > 0 ? e / ref.energy : e));
}

/**
 * Sum of squared differences of got[from ..] and `want` (Infinity for a non-finite one). A plain
 * function, not a loop in the async errorOf: V8 compiles hot loops in async functions less well.
 */
function squaredError(got: Float32Array, from: number, want: Float32Array): number {
  let sse = 0;
  for (let e = 0; e < want.length; e++) {
    const d = got[from + e]! - want[e]!;
    sse += d * d;
  }
  // a NaN difference made the sum NaN (an infinite one made it Infinity): no call in the loop, which V8 then compiles tight
  return Number.isNaN(sse) ? Infinity : sse;
}

/** Relative output error of `model` against the reference. */
export async function relativeError(model: Model, ref: Reference, runner: Runner): Promise<number> {
  const s = await runner.open(model, SESSION, '(candidate model)');
  try {
    return (await errorsOf(s, ref, {}, ref.feeds.map((f) => [f])))[0]!;
  } finally {
    await s.dispose();
  }
}

/**
 * A weight input of one node: node index in the model's node list (the same in a clone), input index,
 * and the dims of the float32 value given to it ([K, N] for MatMul and Gemm, whose transB and alpha
 * are then reset; [rows, D] for a Gather table).
 */
export interface WeightSlot {
  node: number;
  input: number;
  dims: [number, number];
}

/**
 * `model` with weights replaced: every `fixed` and `varied` weight a graph input (their names returned
 * in order), and `observe` (values of the model) extra outputs. Inputs, not initializers: the model
 * holds no weights (the float ones replaced are dropped), so a session of it is neither serialized
 * with them nor made to pre-pack them for two runs, and it is made before their values are known.
 * Returned serialized, for the session here and the one a helper thread may open.
 */
function trialModel(model: Model, fixed: readonly WeightSlot[], varied: readonly WeightSlot[], observe: readonly string[] = []): { bytes: Uint8Array; fixed: string[]; varied: string[] } {
  const m = cloneModel(model);
  const g = m.graph;
  const nodes = [...g.nodes];
  const replaced: Value[] = [];
  const put = (slot: WeightSlot): string => {
    const node = nodes[slot.node]!;
    const v = new Value(m.names.fresh('trial_weight'));
    v.setTensorType(DataType.FLOAT, slot.dims);
    g.addInput(v);
    replaced.push(node.inputs[slot.input]!);
    node.setInput(slot.input, v);
    if (node.opType === 'Gemm') {
      node.setAttr(Attribute.int('transB', 0));
      node.setAttr(Attribute.float('alpha', 1));
    }
    return v.name;
  };
  const fixedNames = fixed.map(put);
  const variedNames = varied.map(put);
  for (const name of observe) {
    const v = nodes.flatMap((n) => n.outputs).find((x) => x.name === name);
    if (v && !v.isGraphOutput) g.addOutput(v);
  }
  dropUnread(m, replaced);
  return { bytes: serializeModel(m), fixed: fixedNames, varied: variedNames };
}

/** What one trial runs: the weights fed (beside the fixed ones) and the output variants computed from its run. */
interface Setting {
  feed: Feed;
  variants?: readonly OutputVariant[];
}

const TRIALS = '(first/last layer trials)';

/**
 * errorsOf for each setting, in a session of the trial model here and, when a helper thread is up, in
 * a session of the same model there: the first setting runs here while the helper opens its session
 * and runs the second, and so on (core/share-work.ts; the same model and options give the same
 * outputs wherever they run).
 */
async function settingErrors(trial: { bytes: Uint8Array; session: ModelSession; kept?: string; helperReady?: boolean }, settings: readonly Setting[], ref: Reference, groups: readonly Feed[][], threads?: Threads): Promise<number[][]> {
  const { session } = trial;
  // a helper's setting: the thread opens its own session of the model and makes the groups' stacked
  // runs (this thread's session is open by now: onnxruntime took 9 ms each for two sessions opened at
  // the same time instead of 3, while two runs at once take no longer); the errors are taken here
  const helpers: WorkHelpers<Setting, number[]> | undefined = threads && {
    size: Math.min(threads.size, 1),
    ready: () => threads.ready(),
    run: async (x) => {
      const runs = await threads.run<Feed[]>(RUN_MODEL, { model: trial.bytes, options: SESSION, name: TRIALS, feeds: shareLarge(groups.map((g) => ({ ...concatFeeds(g), ...x.feed }))), ...(trial.kept !== undefined ? { kept: trial.kept } : {}) } satisfies RunModelArgs);
      return errorsOf(session, ref, x.feed, groups, x.variants, runs.map(floatOutputs));
    },
  };
  // backup: this thread also runs a setting a helper still holds once it is out of its own (a helper
  // busy elsewhere, or slow in a cold process, never makes it wait much longer than running it
  // itself); when the helper's session was opened ahead, only after waiting as long as its own
  // setting took: a trial's one run cannot stop half way, and a backup started while the helper's
  // result was on its way cost the trained LM's trials ~5 ms of their ~15
  let own = 0;
  const local = async (x: Setting): Promise<number[]> => {
    const t0 = performance.now();
    const r = await errorsOf(session, ref, x.feed, groups, x.variants);
    own = Math.max(own, performance.now() - t0);
    return r;
  };
  return shareWork(settings, local, helpers, { backup: true, ...(trial.helperReady ? { backupAfter: () => own } : {}) });
}

/** The values in `values` nothing reads any more, and the nodes (Transposes, Constants) that made only them. */
export function dropUnread(m: Model, values: readonly Value[]): void {
  const g = m.graph;
  const pending = [...values];
  while (pending.length) {
    const v = pending.pop()!;
    if (v.uses.length > 0 || v.isGraphOutput || g.inputs.includes(v)) continue;
    if (v.producer) {
      const p = v.producer;
      if (p.outputs.some((x) => x.uses.length > 0 || x.isGraphOutput)) continue;
      const ins = p.inputs.filter((x): x is Value => x !== null);
      g.removeNode(p);
      pending.push(...ins);
    } else if (g.initializers.get(v.name) === v) g.removeInitializer(v);
  }
}

const fedWith = (inputs: readonly string[], slots: readonly WeightSlot[], values: readonly Float32Array[]): Feed => Object.fromEntries(inputs.map((n, i) => [n, { type: 'float32' as const, dims: slots[i]!.dims, data: values[i]! }]));

/**
 * Relative output errors against `ref` of `model` with weights replaced, one per trial, in one
 * session (and one in a helper thread when there are any): each `fixed` weight is fed with every run,
 * each of `varied` a graph input that trial t feeds with trials[t][i]. (Stands for the quantized model:
 * onnxruntime unpacks a block-quantized weight to exactly these float32 values at load.)
 */
export async function trialErrors(model: Model, fixed: ReadonlyArray<[WeightSlot, Float32Array]>, varied: readonly WeightSlot[], trials: ReadonlyArray<readonly Float32Array[]>, ref: Reference, runner: Runner, threads?: Threads): Promise<number[]> {
  const trial = trialModel(model, fixed.map(([slot]) => slot), varied);
  const fixedFeed = fedWith(trial.fixed, fixed.map(([slot]) => slot), fixed.map(([, data]) => data));
  const session = await runner.open(trial.bytes, SESSION, TRIALS);
  try {
    // the probe feeds stacked on the batch axis where the model allows it (stackFeeds), one run per group
    const settings = trials.map((t): Setting => ({ feed: { ...fixedFeed, ...fedWith(trial.varied, varied, t) } }));
    return (await settingErrors({ bytes: trial.bytes, session }, settings, ref, stackFeeds(model, ref.feeds), threads)).map((e) => e[0]!);
  } finally {
    await session.dispose();
  }
}

/**
 * The graph output that the MatMul/Gemm weight in `slot` reaches linearly, with the weight's input:
 * the node's output is a graph output itself, or only an Add of a constant (a bias) reads it and
 * that Add's output is one. Then the output with another weight W' is Y + X (W' - W).
 */
function linearOutput(model: Model, slot: WeightSlot): { input: string; output: string } | undefined {
  const node = model.graph.nodes[slot.node];
  if (!node || node.opDomain !== '' || (node.opType !== 'MatMul' && node.opType !== 'Gemm') || slot.input !== 1 || node.outputs.length !== 1) return undefined;
  const x = node.inputs[0];
  const y = node.outputs[0]!;
  if (!x?.producer) return undefined; // observed as an extra output of the trial model
  if (y.isGraphOutput) return y.uses.length === 0 ? { input: x.name, output: y.name } : undefined;
  const add = y.uses.length === 1 ? y.uses[0]!.node : undefined;
  if (!add || add.opType !== 'Add' || add.opDomain !== '' || !add.outputs[0]?.isGraphOutput || add.outputs[0].uses.length > 0) return undefined;
  const other = add.inputs.find((v) => v !== y);
  return other && constantOf(other) ? { input: x.name, output: add.outputs[0].name } : undefined;
}

/**
 * The first/last-layer trials of {@link endTrials}, prepared before the weights' values are known:
 * the trial model, and this thread's session of it, opened on first use ({@link openEndTrials}).
 */
export interface EndTrials {
  model: Model;
  fixed: readonly WeightSlot[];
  first: WeightSlot;
  last: WeightSlot;
  linear?: { input: string; output: string };
  trial: { bytes: Uint8Array; fixed: string[]; varied: string[] };
  runner: Runner;
  session?: Promise<ModelSession>;
  /** What a helper thread opens ahead of the trials and keeps under `key` (runtime/thread-tasks.ts KEEP_MODEL), for its trial. */
  helperModel: ThreadModel & { key: string };
  /** A helper thread was asked to open `helperModel` ahead (it then runs its trial without waiting for a session). */
  helperOpens?: boolean;
}

/** Builds the trial model of `model` for weights in `fixed`, `first` and `last`. */
export function prepareEndTrials(model: Model, fixed: readonly WeightSlot[], first: WeightSlot, last: WeightSlot, runner: Runner): EndTrials {
  const linear = linearOutput(model, last);
  const trial = trialModel(model, fixed, [first, last], linear ? [linear.input] : []);
  const helperModel = { key: `end-trials-${Math.random().toString(36).slice(2)}`, model: trial.bytes, options: SESSION, name: TRIALS };
  return { model, fixed, first, last, ...(linear ? { linear } : {}), trial, runner, helperModel };
}

/** This thread's session of the trial model, opened on the first call (a caller opens it early while it would otherwise wait). */
export function openEndTrials(t: EndTrials): Promise<ModelSession> {
  if (!t.session) {
    t.session = t.runner.open(t.trial.bytes, SESSION, TRIALS);
    t.session.catch(() => {});
  }
  return t.session;
}

/** Closes the prepared trials' session. */
export async function disposeEndTrials(t: EndTrials): Promise<void> {
  await (await t.session?.catch(() => undefined))?.dispose();
}

/**
 * The first/last-layer trials: relative output errors of the model with every fixed weight at
 * `fixedValues`, and the first and last weights at 4 bits, first at 8, last at 8 (values [4-bit,
 * 8-bit] in each slot's dims). When the last weight reaches a graph output linearly
 * ({@link linearOutput}, as an LM head does), its 8-bit trial is the all-4-bit run's output plus X (W8
 * - W4) (one float32 MatMul) instead of a third pass of the model; the other weights' inputs are the
 * same in both settings.
 */
export async function runEndTrials(t: EndTrials, fixedValues: readonly Float32Array[], firstValues: readonly [Float32Array, Float32Array], lastValues: readonly [Float32Array, Float32Array], ref: Reference, linalg: Linalg, threads?: Threads): Promise<[number, number, number]> {
  const slots = [t.first, t.last];
  const fixedFeed = fedWith(t.trial.fixed, t.fixed, fixedValues);
  const feed = (first: Float32Array, last: Float32Array): Feed => ({ ...fixedFeed, ...fedWith(t.trial.varied, slots, [first, last]) });
  const trial = { bytes: t.trial.bytes, session: await openEndTrials(t), kept: t.helperModel.key, helperReady: t.helperOpens === true };
  const groups = stackFeeds(t.model, ref.feeds);
  const linear = t.linear;
  if (!linear) {
    const settings = [feed(firstValues[0], lastValues[0]), feed(firstValues[1], lastValues[0]), feed(firstValues[0], lastValues[1])].map((f): Setting => ({ feed: f }));
    const [[all4], [first8], [last8]] = (await settingErrors(trial, settings, ref, groups, threads)) as [number[], number[], number[]];
    return [all4!, first8!, last8!];
  }
  const [K, N] = t.last.dims;
  const delta = difference(lastValues[1], lastValues[0]);
  const last8: OutputVariant = async (o) => {
    const x = o[linear.input]!;
    return { ...o, [linear.output]: sum(o[linear.output]!, await linalg.matmul32(x, x.length / K, K, delta, N)) };
  };
  const settings: Setting[] = [{ feed: feed(firstValues[0], lastValues[0]), variants: [last8] }, { feed: feed(firstValues[1], lastValues[0]) }];
  const [[all4, with8Last], [with8First]] = (await settingErrors(trial, settings, ref, groups, threads)) as [number[], number[]];
  return [all4!, with8First!, with8Last!];
}

/** {@link prepareEndTrials} and {@link runEndTrials} in one. */
export async function endTrials(model: Model, fixed: ReadonlyArray<[WeightSlot, Float32Array]>, first: WeightSlot, firstValues: readonly [Float32Array, Float32Array], last: WeightSlot, lastValues: readonly [Float32Array, Float32Array], ref: Reference, runner: Runner, linalg: Linalg, threads?: Threads): Promise<[number, number, number]> {
  const t = prepareEndTrials(model, fixed.map(([slot]) => slot), first, last, runner);
  try {
    return await runEndTrials(t, fixed.map(([, data]) => data), firstValues, lastValues, ref, linalg, threads);
  } finally {
    await disposeEndTrials(t);
  }
}

/** a - b, elementwise, float32. */
function difference(a: Float32Array, b: Float32Array): Float32Array {
  const d = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) d[i] = a[i]! - b[i]!;
  return d;
}

/** a + b, elementwise, float32. */
function sum(a: Float32Array, b: Float32Array): Float32Array {
  const d = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) d[i] = a[i]! + b[i]!;
  return d;
}

export const sqnrDb = (relative: number): number => (relative > 0 ? -10 * Math.log10(relative) : Infinity);
