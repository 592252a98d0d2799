/**
 * Builds a training-step graph from an inference model: one graph whose inputs are the data batch,
 * the loss targets, the parameters, the optimizer state, `lr` and `step`, and whose outputs are `loss`,
 * the updated parameters and the updated state (see `TrainingGraph` for the names).
 *
 * Parameters are float initializers or Constant-node outputs read at a differentiable slot (see
 * {@link defaultParams}; pass `params` to choose). They become graph inputs in the
 * training graph; the inference model itself is never modified.
 *
 * Opset: gradient ops need opset 13+ semantics (axes as inputs); a model at opset 13-16 is raised to
 * 17 (no op used by the rules changes meaning between 13 and 17); below 13 is AUTODIFF_OPSET.
 */
import { DataType } from '../../core/dtype.js';
import { inputError } from '../../core/errors.js';
import { constantOf, Model, Node, Value } from '../../ir/ir.js';
import { cloneModel } from '../../onnx/index.js';
import { Tensor } from '../../core/tensor.js';
import { appendBackward } from './backward.js';
import { Emitter, ShapeMap } from './context.js';
import { buildLoss, LossSpec } from './losses.js';
import { appendOptimizer, OptimizerSpec } from './optimizers.js';
import { gradientRule, isDifferentiableSlot } from './registry.js';

export interface TrainingSpec {
  /** Static shapes of the inference model's values for the training batch shape. */
  shapes: ShapeMap;
  /** Loss terms, added with their weights. */
  losses: LossSpec[];
  optimizer: OptimizerSpec;
  /** Parameter names (initializers or Constant outputs); default: see {@link defaultParams}. */
  params?: string[];
  /** Also output these inference values (e.g. logits, to measure accuracy during training). */
  keepOutputs?: string[];
}

export interface ParamInfo {
  name: string;
  /** Graph input and output of the training graph. */
  input: string;
  output: string;
  initial: Tensor;
  /** Where the weight lives in the inference model. */
  source: 'initializer' | 'constant';
}

export interface StateInfo {
  param: string;
  input: string;
  output: string;
  dims: number[];
  dtype: number;
}

export interface TrainingGraph {
  model: Model;
  params: ParamInfo[];
  state: StateInfo[];
  /** Inputs of the inference model and those the losses added (targets, labels, teacher logits). */
  dataInputs: string[];
  lossOutput: string;
  lrInput: string;
  stepInput: string;
  keptOutputs: string[];
  /** Forward nodes whose gradient rules were used. */
  differentiated: number;
}

const FLOATS = new Set<number>([DataType.FLOAT, DataType.DOUBLE]);

/** Ops whose constant operands at differentiable slots are weights, whatever their size. */
const WEIGHT_OPS = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul', 'BatchNormalization']);

/**
 * Float initializers and Constant outputs read at a differentiable slot: every such operand of Conv,
 * ConvTranspose, Gemm, MatMul and BatchNormalization (scale, bias), and those with more than one
 * element elsewhere (a scalar in Add/Mul/Div is a hyperparameter, like hard-swish's 3 and 6).
 */
export function defaultParams(model: Model): string[] {
  const out: string[] = [];
  const g = model.graph;
  const seen = new Set<Value>();
  for (const n of g.nodes) {
    const rule = gradientRule(n.opType, n.opDomain);
    if (!rule) continue;
    n.inputs.forEach((v, slot) => {
      if (!v || seen.has(v) || !isDifferentiableSlot(rule, slot)) return;
      const t = constantOf(v);
      if (!t || !FLOATS.has(t.dataType)) return;
      if (!WEIGHT_OPS.has(n.opType) && t.dims.reduce((p, x) => p * x, 1) <= 1) return;
      seen.add(v);
      out.push(v.name);
    });
  }
  return out;
}

export function buildTrainingGraph(inference: Model, spec: TrainingSpec): TrainingGraph {
  const opset = inference.opset('') ?? 1;
  if (opset < 13) throw inputError('AUTODIFF_OPSET', `the model uses opset ${opset}; training graphs need opset 13 or newer (convert the model first)`);
  const model = cloneModel(inference);
  if (opset < 17) model.setOpset('', 17);
  const g = model.graph;
  const emit = new Emitter(g, 'train');
  const dataInputs = g.inputs.filter((v) => !g.initializers.has(v.name)).map((v) => v.name);

  // parameters become graph inputs
  const names = spec.params ?? defaultParams(inference);
  if (names.length === 0) throw inputError('TRAIN_NO_PARAMS', 'the model has no trainable parameters');
  const params: ParamInfo[] = [];
  const paramValues: Value[] = [];
  for (const name of names) {
    const v = g.findValue(name);
    const t = constantOf(v);
    if (!v || !t) throw inputError('TRAIN_BAD_PARAM', `parameter ${name} is not an initializer or Constant of the model`, { tensor: name });
    if (!FLOATS.has(t.dataType)) throw inputError('TRAIN_BAD_PARAM', `parameter ${name} is not float32 or float64`, { tensor: name });
    let input: Value;
    let source: ParamInfo['source'];
    if (v.producer) {
      const constNode: Node = v.producer;
      input = new Value(`${name}.param`);
      v.replaceAllUsesWith(input);
      g.removeNode(constNode, true);
      input.name = name;
      source = 'constant';
    } else {
      g.removeInitializer(v);
      input = v;
      source = 'initializer';
    }
    input.setTensorType(t.dataType, [...t.dims]);
    g.addInput(input);
    paramValues.push(input);
    params.push({ name, input: name, output: `${name}.updated`, initial: t, source });
  }
  const dtype = params[0]!.initial.dataType;

  // losses
  if (spec.losses.length === 0) throw inputError('TRAIN_NO_LOSS', 'a training graph needs at least one loss');
  const terms = spec.losses.map((l) => buildLoss(g, emit, l, spec.shapes));
  for (const t of terms) dataInputs.push(...t.inputs.map((v) => v.name));
  let loss = terms.length === 1 && (spec.losses[0]!.weight ?? 1) === 1 ? terms[0]!.loss : emit.op('Sum', terms.map((t, i) => emit.op('Mul', [t.loss, emit.scalar(spec.losses[i]!.weight ?? 1, dtype)])));
  const lossOut = emit.reserve('loss');
  loss = emit.op('Identity', [loss]);
  loss.name = lossOut;

  // backward
  const shapes: ShapeMap = new Map(spec.shapes);
  const { grads, visited } = appendBackward(g, { seeds: terms.map((t) => t.seed), wrt: paramValues, shapes, emitter: emit });

  // optimizer
  const scalarInput = (name: string): Value => {
    const v = new Value(emit.reserve(name));
    v.setTensorType(dtype, []);
    g.addInput(v);
    return v;
  };
  const lr = scalarInput('lr');
  const step = scalarInput('step');
  const optParams = params.flatMap((p, i) => {
    const grad = grads.get(paramValues[i]!);
    if (!grad) throw inputError('TRAIN_PARAM_UNUSED', `the loss does not depend on parameter ${p.name}`, { tensor: p.name });
    return [{ name: p.name, value: paramValues[i]!, grad, dims: [...p.initial.dims], dtype: p.initial.dataType }];
  });
  const opt = appendOptimizer(g, emit, optParams, spec.optimizer, lr, step);

  // outputs: loss, updated params, updated state, kept inference values
  for (const o of g.outputs) o.outputOf.delete(g);
  g.outputs = [];
  g.addOutput(loss);
  for (const p of params) {
    const u = emit.op('Identity', [opt.updated.get(p.name)!]);
    u.name = emit.reserve(p.output);
    g.addOutput(u);
  }
  const state: StateInfo[] = [];
  for (const s of opt.state) {
    const u = emit.op('Identity', [s.output]);
    u.name = emit.reserve(`${s.input.name}.updated`);
    g.addOutput(u);
    state.push({ param: s.param, input: s.input.name, output: u.name, dims: s.dims, dtype: s.dtype });
  }
  const keptOutputs: string[] = [];
  for (const name of spec.keepOutputs ?? []) {
    const v = g.findValue(name);
    if (!v) throw inputError('TRAIN_NO_OUTPUT', `cannot keep output ${name}: the model does not produce it`, { tensor: name });
    g.addOutput(v);
    keptOutputs.push(name);
  }
  return { model, params, state, dataInputs, lossOutput: lossOut, lrInput: lr.name, stepInput: step.name, keptOutputs, differentiated: visited.length };
}
