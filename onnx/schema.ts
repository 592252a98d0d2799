/**
 * The ONNX protobuf schema (onnx.proto, proto2, ONNX 1.22 / IR version 13) as a table the generic
 * wire codec in `wire.ts` walks. Each message lists its fields by number; `repeated` fields keep the
 * encoding the .proto declares (`packed` only where onnx.proto says `[packed = true]`), and the decoder
 * accepts both encodings as protobuf requires. Fields not in this table survive as unknown fields.
 */

export type ScalarKind = 'int32' | 'int64' | 'uint64' | 'float' | 'double' | 'string' | 'bytes' | 'enum';

export interface FieldSpec {
  readonly no: number;
  readonly name: string;
  readonly kind: ScalarKind | 'message';
  readonly msg?: string;
  readonly repeated?: boolean;
  readonly packed?: boolean;
}

export interface MessageSpec {
  readonly name: string;
  readonly fields: readonly FieldSpec[];
  /** Filled in by `indexSchema`: field number -> spec. */
  byNo?: Map<number, FieldSpec>;
  /** Filled in by `indexSchema`: fields sorted by number (the canonical encoding order). */
  ordered?: FieldSpec[];
}

const s = (no: number, name: string, kind: ScalarKind): FieldSpec => ({ no, name, kind });
const rs = (no: number, name: string, kind: ScalarKind, packed = false): FieldSpec => ({ no, name, kind, repeated: true, packed });
const m = (no: number, name: string, msg: string): FieldSpec => ({ no, name, kind: 'message', msg });
const rm = (no: number, name: string, msg: string): FieldSpec => ({ no, name, kind: 'message', msg, repeated: true });

export const SCHEMA: Record<string, MessageSpec> = {
  AttributeProto: {
    name: 'AttributeProto',
    fields: [
      s(1, 'name', 'string'), s(21, 'ref_attr_name', 'string'), s(13, 'doc_string', 'string'), s(20, 'type', 'enum'),
      s(2, 'f', 'float'), s(3, 'i', 'int64'), s(4, 's', 'bytes'), m(5, 't', 'TensorProto'), m(6, 'g', 'GraphProto'),
      m(22, 'sparse_tensor', 'SparseTensorProto'), m(14, 'tp', 'TypeProto'), rs(7, 'floats', 'float'), rs(8, 'ints', 'int64'),
      rs(9, 'strings', 'bytes'), rm(10, 'tensors', 'TensorProto'), rm(11, 'graphs', 'GraphProto'),
      rm(23, 'sparse_tensors', 'SparseTensorProto'), rm(15, 'type_protos', 'TypeProto'),
    ],
  },
  ValueInfoProto: {
    name: 'ValueInfoProto',
    fields: [s(1, 'name', 'string'), m(2, 'type', 'TypeProto'), s(3, 'doc_string', 'string'), rm(4, 'metadata_props', 'StringStringEntryProto')],
  },
  NodeProto: {
    name: 'NodeProto',
    fields: [
      rs(1, 'input', 'string'), rs(2, 'output', 'string'), s(3, 'name', 'string'), s(4, 'op_type', 'string'), s(7, 'domain', 'string'),
      s(8, 'overload', 'string'), rm(5, 'attribute', 'AttributeProto'), s(6, 'doc_string', 'string'),
      rm(9, 'metadata_props', 'StringStringEntryProto'), rm(10, 'device_configurations', 'NodeDeviceConfigurationProto'),
    ],
  },
  IntIntListEntryProto: { name: 'IntIntListEntryProto', fields: [s(1, 'key', 'int64'), rs(2, 'value', 'int64')] },
  NodeDeviceConfigurationProto: {
    name: 'NodeDeviceConfigurationProto',
    fields: [s(1, 'configuration_id', 'string'), rm(2, 'sharding_spec', 'ShardingSpecProto'), s(3, 'pipeline_stage', 'int32')],
  },
  ShardingSpecProto: {
    name: 'ShardingSpecProto',
    fields: [
      s(1, 'tensor_name', 'string'), rs(2, 'device', 'int64'), rm(3, 'index_to_device_group_map', 'IntIntListEntryProto'),
      rm(4, 'sharded_dim', 'ShardedDimProto'),
    ],
  },
  ShardedDimProto: { name: 'ShardedDimProto', fields: [s(1, 'axis', 'int64'), rm(2, 'simple_sharding', 'SimpleShardedDimProto')] },
  SimpleShardedDimProto: {
    name: 'SimpleShardedDimProto',
    fields: [s(1, 'dim_value', 'int64'), s(2, 'dim_param', 'string'), s(3, 'num_shards', 'int64')],
  },
  TrainingInfoProto: {
    name: 'TrainingInfoProto',
    fields: [
      m(1, 'initialization', 'GraphProto'), m(2, 'algorithm', 'GraphProto'), rm(3, 'initialization_binding', 'StringStringEntryProto'),
      rm(4, 'update_binding', 'StringStringEntryProto'),
    ],
  },
  ModelProto: {
    name: 'ModelProto',
    fields: [
      s(1, 'ir_version', 'int64'), rm(8, 'opset_import', 'OperatorSetIdProto'), s(2, 'producer_name', 'string'),
      s(3, 'producer_version', 'string'), s(4, 'domain', 'string'), s(5, 'model_version', 'int64'), s(6, 'doc_string', 'string'),
      m(7, 'graph', 'GraphProto'), rm(14, 'metadata_props', 'StringStringEntryProto'), rm(20, 'training_info', 'TrainingInfoProto'),
      rm(25, 'functions', 'FunctionProto'), rm(26, 'configuration', 'DeviceConfigurationProto'),
    ],
  },
  DeviceConfigurationProto: {
    name: 'DeviceConfigurationProto',
    fields: [s(1, 'name', 'string'), s(2, 'num_devices', 'int32'), rs(3, 'device', 'string')],
  },
  StringStringEntryProto: { name: 'StringStringEntryProto', fields: [s(1, 'key', 'string'), s(2, 'value', 'string')] },
  TensorAnnotation: {
    name: 'TensorAnnotation',
    fields: [s(1, 'tensor_name', 'string'), rm(2, 'quant_parameter_tensor_names', 'StringStringEntryProto')],
  },
  GraphProto: {
    name: 'GraphProto',
    fields: [
      rm(1, 'node', 'NodeProto'), s(2, 'name', 'string'), rm(5, 'initializer', 'TensorProto'), rm(15, 'sparse_initializer', 'SparseTensorProto'),
      s(10, 'doc_string', 'string'), rm(11, 'input', 'ValueInfoProto'), rm(12, 'output', 'ValueInfoProto'), rm(13, 'value_info', 'ValueInfoProto'),
      rm(14, 'quantization_annotation', 'TensorAnnotation'), rm(16, 'metadata_props', 'StringStringEntryProto'),
    ],
  },
  TensorProto: {
    name: 'TensorProto',
    fields: [
      rs(1, 'dims', 'int64'), s(2, 'data_type', 'int32'), m(3, 'segment', 'TensorProto.Segment'), rs(4, 'float_data', 'float', true),
      rs(5, 'int32_data', 'int32', true), rs(6, 'string_data', 'bytes'), rs(7, 'int64_data', 'int64', true), s(8, 'name', 'string'),
      s(12, 'doc_string', 'string'), s(9, 'raw_data', 'bytes'), rm(13, 'external_data', 'StringStringEntryProto'),
      s(14, 'data_location', 'enum'), rs(10, 'double_data', 'double', true), rs(11, 'uint64_data', 'uint64', true),
      rm(16, 'metadata_props', 'StringStringEntryProto'),
    ],
  },
  'TensorProto.Segment': { name: 'TensorProto.Segment', fields: [s(1, 'begin', 'int64'), s(2, 'end', 'int64')] },
  SparseTensorProto: {
    name: 'SparseTensorProto',
    fields: [m(1, 'values', 'TensorProto'), m(2, 'indices', 'TensorProto'), rs(3, 'dims', 'int64')],
  },
  TensorShapeProto: { name: 'TensorShapeProto', fields: [rm(1, 'dim', 'TensorShapeProto.Dimension')] },
  'TensorShapeProto.Dimension': {
    name: 'TensorShapeProto.Dimension',
    fields: [s(1, 'dim_value', 'int64'), s(2, 'dim_param', 'string'), s(3, 'denotation', 'string')],
  },
  TypeProto: {
    name: 'TypeProto',
    fields: [
      m(1, 'tensor_type', 'TypeProto.Tensor'), m(4, 'sequence_type', 'TypeProto.Sequence'), m(5, 'map_type', 'TypeProto.Map'),
      m(9, 'optional_type', 'TypeProto.Optional'), m(8, 'sparse_tensor_type', 'TypeProto.SparseTensor'), s(6, 'denotation', 'string'),
    ],
  },
  'TypeProto.Tensor': { name: 'TypeProto.Tensor', fields: [s(1, 'elem_type', 'int32'), m(2, 'shape', 'TensorShapeProto')] },
  'TypeProto.Sequence': { name: 'TypeProto.Sequence', fields: [m(1, 'elem_type', 'TypeProto')] },
  'TypeProto.Map': { name: 'TypeProto.Map', fields: [s(1, 'key_type', 'int32'), m(2, 'value_type', 'TypeProto')] },
  'TypeProto.Optional': { name: 'TypeProto.Optional', fields: [m(1, 'elem_type', 'TypeProto')] },
  'TypeProto.SparseTensor': { name: 'TypeProto.SparseTensor', fields: [s(1, 'elem_type', 'int32'), m(2, 'shape', 'TensorShapeProto')] },
  OperatorSetIdProto: { name: 'OperatorSetIdProto', fields: [s(1, 'domain', 'string'), s(2, 'version', 'int64')] },
  FunctionProto: {
    name: 'FunctionProto',
    fields: [
      s(1, 'name', 'string'), rs(4, 'input', 'string'), rs(5, 'output', 'string'), rs(6, 'attribute', 'string'),
      rm(11, 'attribute_proto', 'AttributeProto'), rm(7, 'node', 'NodeProto'), s(8, 'doc_string', 'string'),
      rm(9, 'opset_import', 'OperatorSetIdProto'), s(10, 'domain', 'string'), s(13, 'overload', 'string'),
      rm(12, 'value_info', 'ValueInfoProto'), rm(14, 'metadata_props', 'StringStringEntryProto'),
    ],
  },
  // Sequence/Map/Optional values appear in the conformance suite's test data (onnx-ml.proto / onnx-data.proto).
  SequenceProto: {
    name: 'SequenceProto',
    fields: [
      s(1, 'name', 'string'), s(2, 'elem_type', 'int32'), rm(3, 'tensor_values', 'TensorProto'),
      rm(4, 'sparse_tensor_values', 'SparseTensorProto'), rm(5, 'sequence_values', 'SequenceProto'), rm(6, 'map_values', 'MapProto'),
      rm(7, 'optional_values', 'OptionalProto'),
    ],
  },
  MapProto: {
    name: 'MapProto',
    fields: [s(1, 'name', 'string'), s(2, 'key_type', 'int32'), rs(3, 'keys', 'int64'), rs(4, 'string_keys', 'bytes'), m(5, 'values', 'SequenceProto')],
  },
  OptionalProto: {
    name: 'OptionalProto',
    fields: [
      s(1, 'name', 'string'), s(2, 'elem_type', 'int32'), m(3, 'tensor_value', 'TensorProto'), m(4, 'sparse_tensor_value', 'SparseTensorProto'),
      m(5, 'sequence_value', 'SequenceProto'), m(6, 'map_value', 'MapProto'), m(7, 'optional_value', 'OptionalProto'),
    ],
  },
};

for (const spec of Object.values(SCHEMA)) {
  spec.byNo = new Map(spec.fields.map((f) => [f.no, f]));
  spec.ordered = [...spec.fields].sort((a, b) => a.no - b.no);
  for (const f of spec.fields) {
    if (f.kind === 'message' && !SCHEMA[f.msg!]) throw new Error(`schema: ${spec.name}.${f.name} names unknown message ${f.msg}`);
  }
}
