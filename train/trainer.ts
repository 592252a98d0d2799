/**
 * Training on onnxruntime: one session runs the whole step (forward, backward, optimizer update), and
 * parameters and optimizer state stay `ort.Tensor`s between steps: the output tensors of step k are
 * fed unchanged as the inputs of step k+1 (no copy through JavaScript arrays). The trained model is
 * written as the original inference graph with the updated weights as its constants.
 */
import * as ort from 'onnxruntime-node';
import { DataType } from '../core/dtype.js';
import { inputError } from '../core/errors.js';
import { Attribute, Model, Value } from '../ir/ir.js';
import { cloneModel, serializeModel } from '../onnx/index.js';
import { ShapeMap } from './autodiff/context.js';
import { LossSpec } from './autodiff/losses.js';
import { OptimizerSpec } from './autodiff/optimizers.js';
import { buildTrainingGraph, TrainingGraph, TrainingSpec } from './autodiff/training.js';
import { ProgressBar } from '../core/progress.js';
import { Tensor } from '../core/tensor.js';
import { hostDType, onnxDataType } from '../core/host-tensor.js';
import { firstLine, SessionOptions, toOrtOptions } from '../runtime/session.js';

/** Element type and dims of one model input. */
export interface InputSpec {
  dims: number[];
  /** ONNX type name ('float32', 'int64', ...); default: the model's declared type. */
  type?: string;
}

function ortTypeOf(v: Value): ort.Tensor.Type {
  const t = v.elemType === undefined ? undefined : hostDType(v.elemType);
  if (!t || t === 'float16' || t === 'string') throw inputError('TRAIN_INPUT_TYPE', `input ${v.name} has an element type onnxruntime training graphs do not take`, { tensor: v.name });
  return t as ort.Tensor.Type;
}

/** A zero-filled ort.Tensor. */
export function zerosTensor(type: ort.Tensor.Type, dims: readonly number[]): ort.Tensor {
  const n = dims.reduce((p, x) => p * x, 1);
  switch (type) {
    case 'float32':
      return new ort.Tensor('float32', new Float32Array(n), dims);
    case 'float64':
      return new ort.Tensor('float64', new Float64Array(n), dims);
    case 'int64':
      return new ort.Tensor('int64', new BigInt64Array(n), dims);
    case 'int32':
      return new ort.Tensor('int32', new Int32Array(n), dims);
    case 'uint8':
      return new ort.Tensor('uint8', new Uint8Array(n), dims);
    case 'bool':
      return new ort.Tensor('bool', new Uint8Array(n), dims);
    default:
      throw inputError('TRAIN_INPUT_TYPE', `cannot make a zero ${type} tensor`);
  }
}

/** ort.Tensor -> IR Tensor (shares nothing mutable: the bytes are copied once). */
export function irTensorOf(t: ort.Tensor, name: string): Tensor {
  const type = hostDType(t.type);
  if (!type || type === 'string') throw inputError('TRAIN_OUTPUT_TYPE', `tensor ${name} has type ${t.type}`, { tensor: name });
  const data = t.data as Float32Array;
  return Tensor.from(onnxDataType(type), [...t.dims], data.slice(), name);
}

/** IR Tensor (float) -> ort.Tensor of the same element type. */
export function ortTensorOf(t: Tensor): ort.Tensor {
  if (t.dataType === DataType.DOUBLE) return new ort.Tensor('float64', Float64Array.from(t.data() as Float64Array), t.dims);
  if (t.dataType === DataType.FLOAT) return new ort.Tensor('float32', Float32Array.from(t.data() as Float32Array), t.dims);
  throw inputError('TRAIN_PARAM_TYPE', `parameter ${t.name ?? '?'} is not float32 or float64`, { tensor: t.name });
}

/**
 * Static shapes and element types of every value of `model` for the given input shapes, found by
 * running it once on zeros in onnxruntime with every node output exposed as a graph output. (Exact for
 * any op onnxruntime runs; the gradient rules need static shapes.)
 */
export async function probeShapes(model: Model, inputs: Record<string, InputSpec>): Promise<ShapeMap> {
  const probe = cloneModel(model);
  const g = probe.graph;
  const shapes: ShapeMap = new Map();
  for (const [name, v] of g.initializers) {
    const t = g.initializerTensor(v);
    if (t) shapes.set(name, { dims: [...t.dims], dtype: t.dataType });
  }
  const have = new Set(g.outputs);
  for (const n of g.nodes) for (const o of n.outputs) if (o.name && !have.has(o)) {
    g.addOutput(o);
    have.add(o);
  }
  const feeds: Record<string, ort.Tensor> = {};
  for (const v of g.inputs) {
    if (g.initializers.has(v.name) && !inputs[v.name]) continue;
    const spec = inputs[v.name];
    if (!spec) throw inputError('TRAIN_MISSING_INPUT', `no shape given for model input ${v.name}`, { tensor: v.name });
    const type = (spec.type as ort.Tensor.Type | undefined) ?? ortTypeOf(v);
    feeds[v.name] = zerosTensor(type, spec.dims);
    shapes.set(v.name, { dims: [...spec.dims], dtype: onnxDataType(hostDType(type)!) });
  }
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(serializeModel(probe), { graphOptimizationLevel: 'disabled' });
  } catch (e) {
    throw inputError('TRAIN_PROBE_FAILED', `onnxruntime could not load the model to probe its shapes: ${firstLine(e)}`);
  }
  try {
    const out = await session.run(feeds);
    for (const [name, t] of Object.entries(out)) {
      const type = hostDType(t.type);
      if (type) shapes.set(name, { dims: [...t.dims], dtype: onnxDataType(type) });
      t.dispose?.();
    }
  } catch (e) {
    throw inputError('TRAIN_PROBE_FAILED', `onnxruntime could not run the model to probe its shapes: ${firstLine(e)}`);
  } finally {
    await session.release();
  }
  return shapes;
}

// ---------------------------------------------------------------------------------------------
// The training loop

export interface TrainerOptions {
  /** Shapes (and types) of the inference model's inputs for one batch. */
  inputs: Record<string, InputSpec>;
  losses: LossSpec[];
  optimizer: OptimizerSpec;
  params?: string[];
  /** Inference values to return from every step (e.g. logits). */
  keepOutputs?: string[];
  session?: SessionOptions;
}

export interface StepResult {
  loss: number;
  /** The kept outputs of this step (see `keepOutputs`). */
  outputs: Record<string, ort.Tensor>;
}

export interface FitOptions {
  steps: number;
  /** Batch for step i (0-based): the data inputs (inference inputs and loss targets). */
  batch: (step: number) => Record<string, ort.Tensor>;
  /** Learning rate, constant or per step. */
  lr: number | ((step: number) => number);
  /** Progress bar on stderr (default: when stderr is a TTY). */
  progress?: boolean;
  /** Called after each step. */
  onStep?: (step: number, result: StepResult) => void;
}

export interface FitResult {
  losses: number[];
  stepsPerSecond: number;
  seconds: number;
}

export class Trainer {
  private params: Map<string, ort.Tensor>;
  private state: Map<string, ort.Tensor>;
  private stepCount = 0;
  private readonly dtype: 'float32' | 'float64';

  private constructor(
    readonly inference: Model,
    readonly graph: TrainingGraph,
    private readonly session: ort.InferenceSession,
  ) {
    this.params = new Map(graph.params.map((p) => [p.input, ortTensorOf(p.initial)]));
    this.state = new Map(graph.state.map((s) => [s.input, zerosTensor(s.dtype === DataType.DOUBLE ? 'float64' : 'float32', s.dims)]));
    this.dtype = graph.params[0]!.initial.dataType === DataType.DOUBLE ? 'float64' : 'float32';
  }

  /** Probes shapes, builds the training graph and opens its session. */
  static async create(model: Model, opts: TrainerOptions): Promise<Trainer> {
    const shapes = await probeShapes(model, opts.inputs);
    const spec: TrainingSpec = { shapes, losses: opts.losses, optimizer: opts.optimizer };
    if (opts.params) spec.params = opts.params;
    if (opts.keepOutputs) spec.keepOutputs = opts.keepOutputs;
    const graph = buildTrainingGraph(model, spec);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(serializeModel(graph.model), toOrtOptions(opts.session ?? {}));
    } catch (e) {
      throw inputError('TRAIN_SESSION_FAILED', `onnxruntime could not load the training graph: ${firstLine(e)}`);
    }
    return new Trainer(model, graph, session);
  }

  get steps(): number {
    return this.stepCount;
  }

  /** One optimizer step on `batch`; parameters and state move to the step's output tensors. */
  async step(batch: Record<string, ort.Tensor>, lr: number): Promise<StepResult> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const name of this.graph.dataInputs) {
      const t = batch[name];
      if (!t) throw inputError('TRAIN_MISSING_INPUT', `the batch has no tensor for ${name}`, { tensor: name });
      feeds[name] = t;
    }
    for (const [k, v] of this.params) feeds[k] = v;
    for (const [k, v] of this.state) feeds[k] = v;
    this.stepCount++;
    feeds[this.graph.lrInput] = this.scalar(lr);
    feeds[this.graph.stepInput] = this.scalar(this.stepCount);
    let out: ort.InferenceSession.OnnxValueMapType;
    try {
      out = await this.session.run(feeds);
    } catch (e) {
      this.stepCount--;
      throw inputError('TRAIN_STEP_FAILED', `training step ${this.stepCount + 1} failed: ${firstLine(e)}`);
    }
    for (const p of this.graph.params) this.params.set(p.input, out[p.output] as ort.Tensor);
    for (const s of this.graph.state) this.state.set(s.input, out[s.output] as ort.Tensor);
    const loss = Number((out[this.graph.lossOutput] as ort.Tensor).data[0]);
    const outputs: Record<string, ort.Tensor> = {};
    for (const k of this.graph.keptOutputs) outputs[k] = out[k] as ort.Tensor;
    return { loss, outputs };
  }

  /** Runs `steps` steps with a progress bar showing the loss and steps per second. */
  async fit(opts: FitOptions): Promise<FitResult> {
    const bar = new ProgressBar({ label: 'train', total: opts.steps, ...(opts.progress === undefined ? {} : { enabled: opts.progress }) });
    const losses: number[] = [];
    const t0 = performance.now();
    let ema = NaN;
    try {
      for (let i = 0; i < opts.steps; i++) {
        const lr = typeof opts.lr === 'number' ? opts.lr : opts.lr(i);
        const r = await this.step(opts.batch(i), lr);
        losses.push(r.loss);
        ema = Number.isNaN(ema) ? r.loss : 0.9 * ema + 0.1 * r.loss;
        bar.setLabel(`train loss ${ema.toPrecision(4)}`);
        bar.update(i + 1);
        opts.onStep?.(i, r);
      }
    } finally {
      bar.done();
    }
    const seconds = (performance.now() - t0) / 1000;
    return { losses, seconds, stepsPerSecond: opts.steps / seconds };
  }

  /** Copies of the parameters and optimizer state (a checkpoint), keyed by training-graph input name. */
  snapshot(): { step: number; tensors: Record<string, ort.Tensor> } {
    const tensors: Record<string, ort.Tensor> = {};
    for (const [k, v] of [...this.params, ...this.state]) tensors[k] = new ort.Tensor(v.type, (v.data as Float32Array).slice(), v.dims);
    return { step: this.stepCount, tensors };
  }

  /** Restores a {@link snapshot} (the tensors are used as they are, not copied). */
  restore(snap: { step: number; tensors: Record<string, ort.Tensor> }): void {
    for (const map of [this.params, this.state]) {
      for (const k of map.keys()) {
        const t = snap.tensors[k];
        if (!t) throw inputError('TRAIN_BAD_SNAPSHOT', `the snapshot has no tensor for ${k}`, { tensor: k });
        const cur = map.get(k)!;
        if (t.type !== cur.type || t.dims.join(',') !== cur.dims.join(',')) {
          throw inputError('TRAIN_BAD_SNAPSHOT', `snapshot tensor ${k} is ${t.type} [${t.dims.join(',')}], the model needs ${cur.type} [${cur.dims.join(',')}]`, { tensor: k });
        }
        map.set(k, t);
      }
    }
    this.stepCount = snap.step;
  }

  /** Current value of a parameter (a copy). */
  param(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw inputError('TRAIN_BAD_PARAM', `no parameter ${name}`, { tensor: name });
    return irTensorOf(t, name);
  }

  /**
   * The inference model with the trained weights: the original graph (no training op) whose
   * initializers or Constant nodes hold the current parameter values.
   */
  toInferenceModel(): Model {
    const m = cloneModel(this.inference);
    const g = m.graph;
    for (const p of this.graph.params) {
      const v = g.findValue(p.name);
      const t = irTensorOf(this.params.get(p.input)!, p.name);
      if (!v) throw inputError('TRAIN_BAD_PARAM', `parameter ${p.name} vanished from the model`, { tensor: p.name });
      if (p.source === 'initializer') g.setInitializerTensor(v, t);
      else v.producer!.setAttr(Attribute.tensor('value', t));
    }
    return m;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }

  private scalar(x: number): ort.Tensor {
    return this.dtype === 'float64' ? new ort.Tensor('float64', Float64Array.of(x), []) : new ort.Tensor('float32', Float32Array.of(x), []);
  }
}
