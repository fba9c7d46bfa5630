import type { Unit } from "@ditcache/core";
import { DitcacheError } from "@ditcache/core";
import { GraphBuilder, Sym } from "./graph-builder.js";
import type { OnnxLowering } from "./lowering.js";
import { modelWriter, type OnnxModel } from "./onnx-proto.js";
import { PROTOBUF_MAX_BYTES } from "./protobuf.js";
import { SymbolicOps } from "./symbolic-ops.js";
import type { OnnxTensor } from "./tensor.js";

/**
 * Runs `unit.build` over symbolic values of the given input shapes and returns the recorded
 * ONNX graph; params become initializers holding the param tensors' data (not copied yet).
 */
export function traceUnit(
  unit: Unit,
  inputShapes: readonly (readonly number[])[],
  params: Readonly<Record<string, OnnxTensor>>,
  lowering: Required<OnnxLowering>,
): OnnxModel {
  const graph = new GraphBuilder(unit.name);
  const inputs = inputShapes.map((shape) => graph.input(shape));
  const symbolicParams: Record<string, Sym> = {};
  for (const [name, tensor] of Object.entries(params)) {
    const value = tensor.ort;
    if (value.location !== "cpu") {
      throw new DitcacheError(
        "UNSUPPORTED",
        `unit "${unit.name}": param "${name}" is not in host memory (expected a tensor made by backend.tensor)`,
      );
    }
    symbolicParams[name] = graph.constant(value.data as Float32Array, value.dims, "param");
  }
  const outputs = unit.build(new SymbolicOps(graph, lowering), inputs, symbolicParams);
  if (!Array.isArray(outputs) || outputs.some((output) => !(output instanceof Sym))) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `unit "${unit.name}": build must return an array of values made by its ops`,
    );
  }
  return graph.build(outputs);
}

/** Serialises a model to ModelProto bytes, copying each weight exactly once. */
export function encodeModel(model: OnnxModel): Uint8Array {
  const writer = modelWriter(model);
  if (writer.length > PROTOBUF_MAX_BYTES) {
    throw new DitcacheError(
      "UNSUPPORTED",
      `unit "${model.name}": its ONNX model would be ${(writer.length / 2 ** 30).toFixed(2)} GiB, over protobuf's 2 GiB limit (split the unit into smaller units)`,
    );
  }
  return writer.finish();
}
