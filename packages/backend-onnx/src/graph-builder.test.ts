import type { Ops } from "@ditcache/core";
import { describe, expect, it } from "vitest";
import { GraphBuilder, type Sym } from "./graph-builder.js";
import { DEFAULT_LOWERING } from "./lowering.js";
import { SymbolicOps } from "./symbolic-ops.js";

function trace(build: (ops: Ops<Sym>, graph: GraphBuilder) => Sym[], lowering = DEFAULT_LOWERING) {
  const graph = new GraphBuilder("test");
  const outputs = build(new SymbolicOps(graph, lowering), graph);
  return { model: graph.build(outputs), outputs };
}

describe("symbolic ops", () => {
  it("lowers linear with a constant weight to MatMul against a pre-transposed initializer plus Add", () => {
    const { model, outputs } = trace(
      (ops, graph) => {
        const x = graph.input([2, 5, 3]);
        const weight = graph.constant(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
        return [ops.linear(x, weight, ops.constant(new Float32Array(2), [2]))];
      },
      { ...DEFAULT_LOWERING, linear: "matmul" },
    );
    expect(outputs[0]!.shape).toEqual([2, 5, 2]);
    expect(model.nodes.map((node) => node.opType)).toEqual(["MatMul", "Add"]);
    const transposed = model.initializers.find((init) => init.name === model.nodes[0]!.inputs[1]);
    expect(transposed?.dims).toEqual([3, 2]);
    expect(Array.from(transposed!.data as Float32Array)).toEqual([1, 4, 2, 5, 3, 6]);
    // The untransposed weight is never used, so it is not stored.
    expect(model.initializers.some((init) => init.dims.join() === "2,3")).toBe(false);
  });

  it("lowers linear to Gemm(transB) on a 2-D view when asked", () => {
    const { model } = trace(
      (ops, graph) => [ops.linear(graph.input([2, 5, 3]), graph.constant(new Float32Array(6), [2, 3]))],
      { ...DEFAULT_LOWERING, linear: "gemm" },
    );
    expect(model.nodes.map((node) => node.opType)).toEqual(["Reshape", "Gemm", "Reshape"]);
    expect(model.nodes[1]!.attributes).toEqual({ transB: { i: 1 } });
  });

  it("infers shapes per op", () => {
    trace((ops, graph) => {
      const x = graph.input([2, 3, 8, 8]);
      expect(ops.shape(ops.add(x, graph.input([3, 1, 1])))).toEqual([2, 3, 8, 8]);
      expect(ops.conv2d(x, graph.input([4, 3, 3, 3]), undefined, { stride: 2, padding: 1 }).shape).toEqual([
        2, 4, 4, 4,
      ]);
      expect(ops.maxPool2d(x, { kernel: 2 }).shape).toEqual([2, 3, 4, 4]);
      expect(ops.upsampleNearest2d(x, 2).shape).toEqual([2, 3, 16, 16]);
      expect(ops.reshape(x, [2, -1]).shape).toEqual([2, 192]);
      expect(ops.transpose(x, [0, 2, 3, 1]).shape).toEqual([2, 8, 8, 3]);
      expect(ops.concat([x, x], -1).shape).toEqual([2, 3, 8, 16]);
      expect(ops.slice(x, 2, 1, -2).shape).toEqual([2, 3, 5, 8]);
      expect(ops.sum(x, [1, 3], false).shape).toEqual([2, 8]);
      expect(ops.mean(x, [1], true).shape).toEqual([2, 1, 8, 8]);
      expect(ops.matmul(graph.input([4, 1, 5, 6]), graph.input([3, 6, 7])).shape).toEqual([4, 3, 5, 7]);
      const q = graph.input([2, 4, 10, 8]);
      expect(ops.attention(q, graph.input([2, 4, 12, 8]), graph.input([2, 4, 12, 6]), 0.5).shape).toEqual([
        2, 4, 10, 6,
      ]);
      return [x];
    });
  });

  it("rejects mismatched shapes and bad arguments with DitcacheErrors naming the op", () => {
    trace((ops, graph) => {
      const x = graph.input([2, 3]);
      expect(() => ops.add(x, graph.input([4]))).toThrow(/cannot broadcast shapes \[2, 3\] and \[4\]/);
      expect(() => ops.matmul(x, graph.input([4, 5]))).toThrow(/matmul: inner dimensions differ/);
      expect(() => ops.linear(x, graph.input([5, 4]))).toThrow(/linear: input \[2, 3\]/);
      expect(() => ops.reshape(x, [4, -1])).toThrow(/reshape: cannot reshape/);
      expect(() => ops.transpose(x, [0, 0])).toThrow(/transpose: perm/);
      expect(() => ops.softmax(x, 2)).toThrow(/axis/);
      expect(() => ops.groupNorm(graph.input([1, 6, 2]), 4, 1e-5)).toThrow(/groupNorm: groups/);
      expect(() => ops.constant(new Float32Array(3), [2, 2])).toThrow(/constant: 3 values/);
      return [x];
    });
    const other = new GraphBuilder("other").input([1]);
    expect(() => trace((ops, graph) => [ops.add(graph.input([1]), other)])).toThrow(
      /not from this unit's trace/,
    );
  });

  it("gives every output its own node-produced name", () => {
    const { model } = trace((ops, graph) => {
      const x = graph.input([2]);
      const y = ops.relu(x);
      return [y, y, x];
    });
    const names = model.outputs.map((output) => output.name);
    expect(new Set(names).size).toBe(3);
    const produced = new Set(model.nodes.flatMap((node) => node.outputs));
    expect(names.every((name) => produced.has(name))).toBe(true);
  });

  it("shares int64 shape initializers between nodes", () => {
    const { model } = trace((ops, graph) => {
      const x = graph.input([2, 6]);
      return [ops.reshape(x, [3, 4]), ops.reshape(ops.relu(x), [3, 4])];
    });
    expect(model.initializers.filter((init) => init.data instanceof BigInt64Array)).toHaveLength(1);
  });
});
