import { ProtoWriter } from "./protobuf.js";

/**
 * Plain-object ONNX graph and its encoder to ModelProto bytes. Field numbers follow
 * onnx/onnx.proto (proto2); only the fields a traced unit needs are written.
 */

/** An attribute value, tagged by its ONNX attribute type. */
export type OnnxAttribute =
  | { readonly f: number }
  | { readonly i: number }
  | { readonly s: string }
  | { readonly ints: readonly number[] }
  | { readonly floats: readonly number[] };

/** One node of the graph. */
export interface OnnxNode {
  readonly opType: string;
  /** Operator set domain; "" (the default) is the standard ONNX domain. */
  readonly domain?: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attributes?: Readonly<Record<string, OnnxAttribute>>;
}

/** A constant tensor stored in the model (weights, shapes for Reshape, constants). */
export interface OnnxInitializer {
  readonly name: string;
  readonly dims: readonly number[];
  /** float32 data is stored as raw_data without copying until the model is serialised. */
  readonly data: Float32Array | BigInt64Array;
}

/** A graph input or output: always float32 with a static shape. */
export interface OnnxValueInfo {
  readonly name: string;
  readonly dims: readonly number[];
}

/** A whole single-graph model. */
export interface OnnxModel {
  readonly name: string;
  readonly nodes: readonly OnnxNode[];
  readonly initializers: readonly OnnxInitializer[];
  readonly inputs: readonly OnnxValueInfo[];
  readonly outputs: readonly OnnxValueInfo[];
  /** Imported operator sets, e.g. `{ "": 18, "com.microsoft": 1 }`. */
  readonly opsets: Readonly<Record<string, number>>;
}

/** ONNX IR version written into the model; IR 9 covers opsets up to 20. */
export const IR_VERSION = 9;

const TENSOR_FLOAT = 1;
const TENSOR_INT64 = 7;

const ATTRIBUTE_FLOAT = 1;
const ATTRIBUTE_INT = 2;
const ATTRIBUTE_STRING = 3;
const ATTRIBUTE_FLOATS = 6;
const ATTRIBUTE_INTS = 7;

/** Encodes a model as ModelProto and returns a writer whose `length` is the final size. */
export function modelWriter(model: OnnxModel): ProtoWriter {
  const graph = new ProtoWriter();
  for (const node of model.nodes) graph.message(1, nodeWriter(node));
  graph.string(2, model.name);
  for (const initializer of model.initializers) graph.message(5, tensorWriter(initializer));
  for (const input of model.inputs) graph.message(11, valueInfoWriter(input));
  for (const output of model.outputs) graph.message(12, valueInfoWriter(output));

  const writer = new ProtoWriter().int(1, IR_VERSION).string(2, "ditcache").string(3, "0.1.0");
  for (const [domain, version] of Object.entries(model.opsets)) {
    writer.message(8, new ProtoWriter().string(1, domain).int(2, version));
  }
  return writer.message(7, graph);
}

function nodeWriter(node: OnnxNode): ProtoWriter {
  const writer = new ProtoWriter();
  for (const input of node.inputs) writer.string(1, input);
  for (const output of node.outputs) writer.string(2, output);
  writer.string(4, node.opType);
  for (const [name, value] of Object.entries(node.attributes ?? {}))
    writer.message(5, attributeWriter(name, value));
  if (node.domain) writer.string(7, node.domain);
  return writer;
}

function attributeWriter(name: string, value: OnnxAttribute): ProtoWriter {
  const writer = new ProtoWriter().string(1, name);
  if ("f" in value) return writer.float(2, value.f).int(20, ATTRIBUTE_FLOAT);
  if ("i" in value) return writer.int(3, value.i).int(20, ATTRIBUTE_INT);
  if ("s" in value) return writer.string(4, value.s).int(20, ATTRIBUTE_STRING);
  if ("floats" in value) return writer.floats(7, value.floats).int(20, ATTRIBUTE_FLOATS);
  return writer.ints(8, value.ints).int(20, ATTRIBUTE_INTS);
}

function tensorWriter(tensor: OnnxInitializer): ProtoWriter {
  const writer = new ProtoWriter().ints(1, tensor.dims);
  writer.int(2, tensor.data instanceof Float32Array ? TENSOR_FLOAT : TENSOR_INT64);
  writer.string(8, tensor.name);
  // raw_data is little-endian; typed arrays are in platform order, little-endian on every target ORT ships for.
  return writer.bytes(9, new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength));
}

function valueInfoWriter(value: OnnxValueInfo): ProtoWriter {
  const shape = new ProtoWriter();
  for (const dim of value.dims) shape.message(1, new ProtoWriter().int(1, dim));
  const tensorType = new ProtoWriter().int(1, TENSOR_FLOAT).message(2, shape);
  const type = new ProtoWriter().message(1, tensorType);
  return new ProtoWriter().string(1, value.name).message(2, type);
}
