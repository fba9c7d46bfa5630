/**
 * DiT-XL/2 branch benchmark for the ONNX backend: times the MLP branch (LayerNorm + modulate +
 * fc1 1152->4608 + gelu-tanh + fc2) and the attention branch (LayerNorm + modulate + qkv +
 * attention + proj) at 512 tokens (batch 2 x 256), under several lowerings and session options,
 * and prints GFLOP/s side by side. Then estimates a whole 28-block forward from a chain of
 * blocks with distinct weights (distinct sessions, as a real model has).
 *
 * Run: pnpm tsx --conditions=source packages/backend-onnx/bench/mlp.ts [--quick]
 */
import type { Backend, Ops, Tensor, Unit } from "@ditcache/core";
import * as ort from "onnxruntime-node";
import { createOnnxBackend, type OnnxBackendOptions } from "../src/index.js";

const HIDDEN = 1152;
const HEADS = 16;
const MLP_HIDDEN = 4 * HIDDEN;
const BATCH = 2;
const TOKENS = 256;
const ROWS = BATCH * TOKENS;
const quick = process.argv.includes("--quick");
const REPEATS = quick ? 3 : 7;

const MLP_FLOP = 2 * ROWS * HIDDEN * MLP_HIDDEN * 2;
const ATTENTION_FLOP =
  2 * ROWS * HIDDEN * 3 * HIDDEN +
  2 * ROWS * HIDDEN * HIDDEN +
  2 * 2 * BATCH * HEADS * TOKENS * TOKENS * (HIDDEN / HEADS);

let seed = 1;
function random(size: number, scale: number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    out[i] = (seed / 2 ** 32 - 0.5) * 2 * scale;
  }
  return out;
}

function modulate<T>(ops: Ops<T>, x: T, shift: T, scale: T): T {
  return ops.add(ops.mul(ops.layerNorm(x, 1e-6), ops.add(scale, ops.constant(1))), shift); // (N, T, D)
}

function mlpUnit(backend: Backend, name: string): Unit {
  const params = {
    fc1Weight: backend.tensor(random(MLP_HIDDEN * HIDDEN, 0.03), [MLP_HIDDEN, HIDDEN]),
    fc1Bias: backend.tensor(random(MLP_HIDDEN, 0.01), [MLP_HIDDEN]),
    fc2Weight: backend.tensor(random(HIDDEN * MLP_HIDDEN, 0.015), [HIDDEN, MLP_HIDDEN]),
    fc2Bias: backend.tensor(random(HIDDEN, 0.01), [HIDDEN]),
  };
  return {
    name,
    params,
    build: (ops, [x, shift, scale], p) => {
      const h = ops.gelu(ops.linear(modulate(ops, x!, shift!, scale!), p.fc1Weight!, p.fc1Bias), "tanh"); // (N, T, 4D)
      return [ops.linear(h, p.fc2Weight!, p.fc2Bias)]; // (N, T, D)
    },
  };
}

function attentionUnit(backend: Backend, name: string): Unit {
  const params = {
    qkvWeight: backend.tensor(random(3 * HIDDEN * HIDDEN, 0.03), [3 * HIDDEN, HIDDEN]),
    qkvBias: backend.tensor(random(3 * HIDDEN, 0.01), [3 * HIDDEN]),
    projWeight: backend.tensor(random(HIDDEN * HIDDEN, 0.03), [HIDDEN, HIDDEN]),
    projBias: backend.tensor(random(HIDDEN, 0.01), [HIDDEN]),
  };
  const depth = HIDDEN / HEADS;
  return {
    name,
    params,
    build: (ops, [x, shift, scale], p) => {
      const qkv = ops.linear(modulate(ops, x!, shift!, scale!), p.qkvWeight!, p.qkvBias); // (N, T, 3D)
      const heads = ops.transpose(ops.reshape(qkv, [BATCH, TOKENS, 3, HEADS, depth]), [2, 0, 3, 1, 4]); // (3, N, H, T, Dh)
      const part = (i: number) => ops.reshape(ops.slice(heads, 0, i, i + 1), [BATCH, HEADS, TOKENS, depth]);
      const o = ops.attention(part(0), part(1), part(2), 1 / Math.sqrt(depth)); // (N, H, T, Dh)
      const merged = ops.reshape(ops.transpose(o, [0, 2, 1, 3]), [BATCH, TOKENS, HIDDEN]); // (N, T, D)
      return [ops.linear(merged, p.projWeight!, p.projBias)];
    },
  };
}

interface Inputs {
  readonly tensors: Tensor[];
}

function branchInputs(backend: Backend): Inputs {
  return {
    tensors: [
      backend.tensor(random(ROWS * HIDDEN, 1), [BATCH, TOKENS, HIDDEN]),
      backend.tensor(random(BATCH * HIDDEN, 0.1), [BATCH, 1, HIDDEN]),
      backend.tensor(random(BATCH * HIDDEN, 0.1), [BATCH, 1, HIDDEN]),
    ],
  };
}

async function median(run: () => Promise<void>): Promise<number> {
  await run();
  await run();
  const times: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    const start = performance.now();
    await run();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

async function timeUnit(
  backend: Backend,
  unit: Unit,
  inputs: Inputs,
): Promise<{ ms: number; compileMs: number }> {
  const executable = backend.compile(unit);
  const start = performance.now();
  for (const t of await executable.run(inputs.tensors)) backend.dispose(t);
  const compileMs = performance.now() - start;
  const ms = await median(async () => {
    for (const t of await executable.run(inputs.tensors)) backend.dispose(t);
  });
  executable.dispose();
  return { ms, compileMs };
}

const gflops = (flop: number, ms: number) => (flop / ms / 1e6).toFixed(1);

async function variant(label: string, options: OnnxBackendOptions): Promise<void> {
  const backend = await createOnnxBackend(options);
  const inputs = branchInputs(backend);
  const mlp = await timeUnit(backend, mlpUnit(backend, "mlp"), inputs);
  const attention = await timeUnit(backend, attentionUnit(backend, "attn"), inputs);
  console.log(
    `${label.padEnd(44)} mlp ${mlp.ms.toFixed(1).padStart(6)} ms ${gflops(MLP_FLOP, mlp.ms).padStart(6)} GFLOP/s` +
      `   attn ${attention.ms.toFixed(1).padStart(6)} ms ${gflops(ATTENTION_FLOP, attention.ms).padStart(6)} GFLOP/s` +
      `   (first run incl. compile: ${mlp.compileMs.toFixed(0)} / ${attention.compileMs.toFixed(0)} ms)`,
  );
  await backend.close();
}

/** A plain ORT MatMul session with B as a graph input (no pre-packing): the baseline figure. */
async function plainMatMul(threads: number): Promise<void> {
  const { modelWriter } = await import("../src/onnx-proto.js");
  const bytes = modelWriter({
    name: "matmul",
    opsets: { "": 20 },
    nodes: [{ opType: "MatMul", inputs: ["a", "b"], outputs: ["c"] }],
    initializers: [],
    inputs: [
      { name: "a", dims: [ROWS, HIDDEN] },
      { name: "b", dims: [HIDDEN, MLP_HIDDEN] },
    ],
    outputs: [{ name: "c", dims: [ROWS, MLP_HIDDEN] }],
  }).finish();
  const session = await ort.InferenceSession.create(bytes, {
    intraOpNumThreads: threads,
    graphOptimizationLevel: "all",
  });
  const feeds = {
    a: new ort.Tensor("float32", random(ROWS * HIDDEN, 1), [ROWS, HIDDEN]),
    b: new ort.Tensor("float32", random(HIDDEN * MLP_HIDDEN, 1), [HIDDEN, MLP_HIDDEN]),
  };
  const ms = await median(async () => {
    await session.run(feeds);
  });
  const flop = 2 * ROWS * HIDDEN * MLP_HIDDEN;
  console.log(
    `${`plain MatMul 512x1152x4608, B an input, ${threads} thr`.padEnd(44)} ${ms.toFixed(1).padStart(6)} ms ${gflops(flop, ms).padStart(6)} GFLOP/s`,
  );
  await session.release();
}

/** A chain of blocks with distinct weights, the way a DiT forward alternates sessions. */
async function chain(label: string, options: OnnxBackendOptions, blocks: number): Promise<void> {
  const backend = await createOnnxBackend(options);
  const inputs = branchInputs(backend);
  const executables = [];
  for (let b = 0; b < blocks; b++) {
    executables.push(backend.compile(attentionUnit(backend, `block${b}.attn`)));
    executables.push(backend.compile(mlpUnit(backend, `block${b}.mlp`)));
  }
  const forward = async () => {
    let x = inputs.tensors[0]!;
    for (const executable of executables) {
      const [y] = await executable.run([x, inputs.tensors[1]!, inputs.tensors[2]!]);
      if (x !== inputs.tensors[0]) backend.dispose(x);
      x = y!;
    }
    if (x !== inputs.tensors[0]) backend.dispose(x);
  };
  const ms = await median(forward);
  const perBlock = ms / blocks;
  const flop = (MLP_FLOP + ATTENTION_FLOP) * blocks;
  console.log(
    `${label.padEnd(44)} ${blocks} blocks ${ms.toFixed(0)} ms = ${perBlock.toFixed(1)} ms/block ${gflops(flop, ms)} GFLOP/s` +
      ` -> 28 blocks ~${((perBlock * 28) / 1000).toFixed(2)} s`,
  );
  await backend.close();
}

console.log(
  `DiT-XL/2 branches, ${ROWS} tokens, fp32; median of ${REPEATS}; MLP ${(MLP_FLOP / 1e9).toFixed(2)} GFLOP, attention ${(ATTENTION_FLOP / 1e9).toFixed(2)} GFLOP`,
);
await plainMatMul(2);
await variant("default (Gemm transB, Gelu-20), 2 threads", { intraOpNumThreads: 2 });
await variant("1 thread", { intraOpNumThreads: 1 });
await variant("linear as MatMul, W pre-transposed in JS", {
  intraOpNumThreads: 2,
  lowering: { linear: "matmul" },
});
await variant("gelu as com.microsoft FastGelu", { intraOpNumThreads: 2, lowering: { gelu: "contrib" } });
if (!quick) {
  await variant("graphOptimizationLevel basic", { intraOpNumThreads: 2, graphOptimizationLevel: "basic" });
  await variant("enableCpuMemArena false", { intraOpNumThreads: 2, enableCpuMemArena: false });
  await variant("allowSpinning false", { intraOpNumThreads: 2, allowSpinning: false });
  await variant("executionMode parallel", { intraOpNumThreads: 2, executionMode: "parallel" });
}
const blocks = quick ? 2 : 4;
await chain("chain, default (spin in run, stop after)", { intraOpNumThreads: 2 }, blocks);
await chain("chain, allowSpinning false", { intraOpNumThreads: 2, allowSpinning: false }, blocks);
await chain(
  "chain, spinning also after a run",
  {
    intraOpNumThreads: 2,
    sessionConfigEntries: { "session.force_spinning_stop": "0" },
  },
  blocks,
);
