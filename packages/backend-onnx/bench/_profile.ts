import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-node";
import { GraphBuilder } from "../src/graph-builder.js";
import { DEFAULT_LOWERING } from "../src/lowering.js";
import { SymbolicOps } from "../src/symbolic-ops.js";
import { encodeModel } from "../src/trace.js";

const [linear, gelu] = [process.argv[2] ?? "matmul", process.argv[3] ?? "onnx"] as [
  "matmul" | "gemm",
  "onnx" | "contrib",
];
const H = 1152,
  F = 4608;
const g = new GraphBuilder("mlp");
const ops = new SymbolicOps(g, { ...DEFAULT_LOWERING, linear, gelu });
const x = g.input([2, 256, H]),
  sh = g.input([2, 1, H]),
  sc = g.input([2, 1, H]);
const r = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 0.02 - 0.01);
const m = ops.add(ops.mul(ops.layerNorm(x, 1e-6), ops.add(sc, ops.constant(1))), sh);
const h = ops.gelu(ops.linear(m, g.constant(r(F * H), [F, H]), g.constant(r(F), [F])), "tanh");
const y = ops.linear(h, g.constant(r(F * H), [H, F]), g.constant(r(H), [H]));
const bytes = encodeModel(g.build([y]));
const s = await ort.InferenceSession.create(bytes, {
  intraOpNumThreads: 2,
  graphOptimizationLevel: "all",
  enableProfiling: true,
  profileFilePrefix: "/tmp/onnxprof/p",
  optimizedModelFilePath: `/tmp/onnxprof/opt-${linear}-${gelu}.onnx`,
} as never);
const feeds = {
  input0: new ort.Tensor("float32", r(2 * 256 * H), [2, 256, H]),
  input1: new ort.Tensor("float32", r(2 * H), [2, 1, H]),
  input2: new ort.Tensor("float32", r(2 * H), [2, 1, H]),
};
for (let i = 0; i < 6; i++) await s.run(feeds);
const file = (s as unknown as { endProfiling(): string }).endProfiling?.();
console.log("profile", file);
