/**
 * What a gradient rule sees: the forward node, the cotangents of its outputs, static shapes and
 * element types of forward values, and an emitter that appends standard ONNX nodes to the graph.
 *
 * Gradient graphs are built for static shapes (a training step has a fixed batch shape), so rules
 * compute broadcast axes, paddings and output paddings in JavaScript and bake them into attributes
 * and constant inputs. Every emitted op is valid from opset 17 on (axes of ReduceSum/Squeeze/Unsqueeze
 * as inputs, no ReduceMean, ScatterElements with `reduction`).
 */
import { DataType } from '../../core/dtype.js';
import { internalError, inputError } from '../../core/errors.js';
import { Graph, Node, Value } from '../../ir/ir.js';
import type { NameAuthority } from '../../ir/names.js';
import { toAttribute, AttrValue } from '../../ir/builder.js';
import { Tensor } from '../../core/tensor.js';

/** Static dims and element type of a forward value. */
export interface ValueShape {
  dims: number[];
  dtype: number;
}

/** Shapes by value name (from a runtime probe or the model's own type information). */
export type ShapeMap = Map<string, ValueShape>;

/** Appends nodes with names from the graph's name authority (ir/names.ts): `prefix/hint_k`. */
export class Emitter {
  private readonly names: NameAuthority;

  constructor(
    readonly graph: Graph,
    readonly prefix = 'grad',
  ) {
    this.names = graph.names;
  }

  /** A name not used in the model yet. */
  name(hint: string): string {
    return this.names.numbered(`${this.prefix}/${hint}_`);
  }

  /** Reserves an exact name (throws when taken). */
  reserve(name: string): string {
    if (this.names.has(name)) throw inputError('AUTODIFF_NAME_TAKEN', `the training graph needs the name ${name}, which the model already uses`, { tensor: name });
    this.names.claim(name);
    return name;
  }

  /** Appends `opType(inputs)` and returns its outputs. */
  ops(opType: string, inputs: Array<Value | null>, attrs: Record<string, AttrValue | undefined> = {}, outputs = 1, floats: string[] = []): Value[] {
    const outs: Value[] = [];
    for (let i = 0; i < outputs; i++) outs.push(new Value(this.name(opType.toLowerCase())));
    const node = new Node(opType, inputs, outs);
    node.name = this.name(opType);
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined) node.attributes.push(toAttribute(k, v, floats.includes(k)));
    this.graph.insertNode(node);
    return outs;
  }

  op(opType: string, inputs: Array<Value | null>, attrs: Record<string, AttrValue | undefined> = {}, floats: string[] = []): Value {
    return this.ops(opType, inputs, attrs, 1, floats)[0]!;
  }

  /** A Constant node holding `t`. */
  constant(t: Tensor, hint = 'const'): Value {
    const [v] = this.ops('Constant', [], { value: t });
    v!.name = this.name(hint);
    return v!;
  }

  int64s(values: readonly number[], hint = 'ints'): Value {
    return this.constant(Tensor.from(DataType.INT64, [values.length], BigInt64Array.from(values.map((x) => BigInt(x)))), hint);
  }

  /** A scalar (rank 0) of a float type. */
  scalar(x: number, dtype: number, hint = 'scalar'): Value {
    return this.constant(floatTensor(dtype, [], [x]), hint);
  }
}

/** A float tensor of `dtype` (FLOAT or DOUBLE) from numbers. */
export function floatTensor(dtype: number, dims: readonly number[], values: ArrayLike<number>): Tensor {
  if (dtype === DataType.DOUBLE) return Tensor.from(DataType.DOUBLE, dims, Float64Array.from(values));
  if (dtype === DataType.FLOAT) return Tensor.from(DataType.FLOAT, dims, Float32Array.from(values));
  throw inputError('AUTODIFF_DTYPE', `gradients are built for float32 and float64 only, not data type ${dtype}`);
}

export class GradContext {
  constructor(
    readonly node: Node,
    /** Cotangent of each output of the node (null: the output does not reach the loss). */
    readonly gradOutputs: ReadonlyArray<Value | null>,
    /** Which inputs need a gradient. */
    readonly needs: readonly boolean[],
    readonly emit: Emitter,
    private readonly shapes: ShapeMap,
    /** Opset of the default domain the graph runs at. */
    readonly opset: number,
  ) {}

  /** Static shape of a forward value (throws AUTODIFF_SHAPE naming the node when unknown). */
  dims(v: Value | null): number[] {
    return this.info(v).dims;
  }

  dtype(v: Value | null): number {
    return this.info(v).dtype;
  }

  private info(v: Value | null): ValueShape {
    if (!v) throw internalError('AUTODIFF_NO_VALUE', `node ${this.node.label}: a gradient rule asked for the shape of a missing input`);
    const s = this.shapes.get(v.name);
    if (!s) throw inputError('AUTODIFF_SHAPE', `node ${this.node.label}: the static shape of ${v.name} is unknown; probe the shapes with the batch shape first`, { node: this.node.name, tensor: v.name });
    return s;
  }

  /** Cotangent of output `i`; throws when absent (rules that need a cotangent call this). */
  gy(i = 0): Value {
    const g = this.gradOutputs[i];
    if (!g) throw internalError('AUTODIFF_NO_COTANGENT', `node ${this.node.label}: output ${i} has no cotangent`);
    return g;
  }

  need(i: number): boolean {
    return this.needs[i] === true;
  }

  unsupported(why: string): never {
    throw inputError('AUTODIFF_UNSUPPORTED', `node ${this.node.label}: ${why}`, { node: this.node.name });
  }

  /** The constant int64 values of input `i` (Reshape shapes, Slice starts, axes, ...). */
  constInts(i: number, constantOf: (v: Value | null) => Tensor | undefined): number[] | undefined {
    const t = constantOf(this.node.input(i));
    return t ? t.toNumbers().map(Number) : undefined;
  }

  // -- helpers shared by rules --------------------------------------------------------------

  scalar(x: number, like: Value | null): Value {
    return this.emit.scalar(x, this.dtype(like));
  }

  reshape(g: Value, dims: readonly number[]): Value {
    return this.emit.op('Reshape', [g, this.emit.int64s(dims, 'shape')]);
  }

  reduceSum(g: Value, axes: readonly number[], keepdims: boolean): Value {
    if (axes.length === 0) return g;
    return this.emit.op('ReduceSum', [g, this.emit.int64s(axes, 'axes')], { keepdims: keepdims ? 1 : 0 });
  }

  /**
   * Sums `g` (shaped like the broadcast result `outDims`) down to `inDims`: ReduceSum over the
   * leading axes the input lacks and over axes where the input has size 1, then Reshape.
   */
  unbroadcast(g: Value, inDims: readonly number[], outDims: readonly number[]): Value {
    if (sameDims(inDims, outDims)) return g;
    const lead = outDims.length - inDims.length;
    const axes: number[] = [];
    for (let a = 0; a < outDims.length; a++) {
      if (a < lead) axes.push(a);
      else if (inDims[a - lead] === 1 && outDims[a] !== 1) axes.push(a);
    }
    const r = this.reduceSum(g, axes, true);
    return this.reshape(r, inDims);
  }

  /** Zeros shaped `dims` with the element type of `like`. */
  zeros(dims: readonly number[], like: Value | null): Value {
    const value = floatTensor(this.dtype(like), [1], [0]);
    return this.emit.op('ConstantOfShape', [this.emit.int64s(dims, 'shape')], { value });
  }
}

export function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export function product(dims: readonly number[]): number {
  return dims.reduce((p, x) => p * x, 1);
}

/** Normalizes a possibly negative axis against `rank`. */
export function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}
