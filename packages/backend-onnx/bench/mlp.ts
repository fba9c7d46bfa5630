/**
 * DiT-XL/2 branch benchmark for the ONNX backend: times the MLP branch (LayerNorm + modulate +
 * fc1 1152->4608 + gelu-tanh + fc2) and the attention branch (LayerNorm + modulate + qkv +
 * attention + proj) at 512 tokens (batch 2 x 256), under several lowerings and session options,
 * and prints GFLOP/s side by side. Then estimates a whole 28-block forward from a chain of
 * blocks with distinct weights (distinct sessions, as a real model has).
 *
 * Run: pnpm tsx --conditions=source packages/backend-onnx/bench/mlp.ts [--quick]
 */
import type { Backend, Executable, Ops, Tensor, Unit } from "@ditcache/core";
import * as ort from "onnxruntime-node";
import { createOnnxBackend, type OnnxBackendOptions } from "../src/index.js";
import { modelWriter } from "../src/onnx-proto.js";

const HIDDEN = 1152;
const HEADS = 16;
const MLP_HIDDEN = 4 * HIDDEN;
const BATCH = 2;
const TOKENS = 256;
const ROWS = BATCH * TOKENS;
const quick = process.argv.includes("--quick");
const ROUNDS = quick ? 3 : 7;

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

function branchInputs(backend: Backend): Tensor[] {
  return [
    backend.tensor(random(ROWS * HIDDEN, 1), [BATCH, TOKENS, HIDDEN]),
    backend.tensor(random(BATCH * HIDDEN, 0.1), [BATCH, 1, HIDDEN]),
    backend.tensor(random(BATCH * HIDDEN, 0.1), [BATCH, 1, HIDDEN]),
  ];
}

/** A timed thing: prepared once (compile + first run), then timed once per round. */
interface Runner {
  readonly label: string;
  readonly flop: number;
  readonly run: () => Promise<void>;
  best: number;
  /** CPU time (all threads) of the best round. */
  bestCpu: number;
}

async function prepare(label: string, flop: number, run: () => Promise<void>): Promise<Runner> {
  const start = performance.now();
  await run();
  const firstMs = performance.now() - start;
  await run();
  console.log(`  prepared ${label} (first run incl. session creation ${firstMs.toFixed(0)} ms)`);
  return { label, flop, run, best: Number.POSITIVE_INFINITY, bestCpu: Number.NaN };
}

function unitRunner(backend: Backend, unit: Unit, inputs: readonly Tensor[]): () => Promise<void> {
  const executable = backend.compile(unit);
  return async () => {
    for (const t of await executable.run(inputs)) backend.dispose(t);
  };
}

/** A plain ORT MatMul session with B as a graph input (no pre-packing): the baseline figure. */
async function plainMatMul(threads: number): Promise<() => Promise<void>> {
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
  return async () => {
    await session.run(feeds);
  };
}

/** A chain of blocks with distinct weights, the way a DiT forward alternates sessions. */
function chainRunner(backend: Backend, blocks: number, inputs: readonly Tensor[]): () => Promise<void> {
  const executables: Executable[] = [];
  for (let b = 0; b < blocks; b++) {
    executables.push(backend.compile(attentionUnit(backend, `block${b}.attn`)));
    executables.push(backend.compile(mlpUnit(backend, `block${b}.mlp`)));
  }
  return async () => {
    let x = inputs[0]!;
    for (const executable of executables) {
      const [y] = await executable.run([x, inputs[1]!, inputs[2]!]);
      if (x !== inputs[0]) backend.dispose(x);
      x = y!;
    }
    if (x !== inputs[0]) backend.dispose(x);
  };
}

const variants: [string, OnnxBackendOptions][] = [
  ["default: Gemm(transB), Gelu-20, 2 threads", { intraOpNumThreads: 2 }],
  ["1 thread", { intraOpNumThreads: 1 }],
  ["linear as MatMul, W pre-transposed in JS", { intraOpNumThreads: 2, lowering: { linear: "matmul" } }],
  ["gelu as com.microsoft FastGelu", { intraOpNumThreads: 2, lowering: { gelu: "contrib" } }],
];
if (!quick) {
  variants.push(
    ["graphOptimizationLevel basic", { intraOpNumThreads: 2, graphOptimizationLevel: "basic" }],
    ["enableCpuMemArena false", { intraOpNumThreads: 2, enableCpuMemArena: false }],
    ["allowSpinning true", { intraOpNumThreads: 2, allowSpinning: true }],
    ["executionMode parallel", { intraOpNumThreads: 2, executionMode: "parallel" }],
  );
}
const CHAIN_BLOCKS = 2;
const chains: [string, OnnxBackendOptions][] = [
  ["default: no spinning", { intraOpNumThreads: 2 }],
  ["allowSpinning true (spin during a run)", { intraOpNumThreads: 2, allowSpinning: true }],
  [
    "spinning, also after a run",
    {
      intraOpNumThreads: 2,
      allowSpinning: true,
      sessionConfigEntries: { "session.force_spinning_stop": "0" },
    },
  ],
];

console.log(
  `DiT-XL/2 branches at ${ROWS} tokens, fp32. MLP ${(MLP_FLOP / 1e9).toFixed(2)} GFLOP, attention ${(ATTENTION_FLOP / 1e9).toFixed(2)} GFLOP.`,
);
console.log(
  `Runs are interleaved over ${ROUNDS} rounds; each figure is the best round (least disturbed on a shared machine).`,
);
const runners: Runner[] = [];
runners.push(
  await prepare(
    "plain MatMul 512x1152x4608, B an input",
    2 * ROWS * HIDDEN * MLP_HIDDEN,
    await plainMatMul(2),
  ),
);
for (const [label, options] of variants) {
  const backend = await createOnnxBackend(options);
  const inputs = branchInputs(backend);
  runners.push(
    await prepare(`${label} | mlp`, MLP_FLOP, unitRunner(backend, mlpUnit(backend, "mlp"), inputs)),
  );
  runners.push(
    await prepare(
      `${label} | attn`,
      ATTENTION_FLOP,
      unitRunner(backend, attentionUnit(backend, "attn"), inputs),
    ),
  );
}
for (const [label, options] of chains) {
  const backend = await createOnnxBackend(options);
  const flop = (MLP_FLOP + ATTENTION_FLOP) * CHAIN_BLOCKS;
  runners.push(
    await prepare(
      `chain of ${CHAIN_BLOCKS} blocks, ${label}`,
      flop,
      chainRunner(backend, CHAIN_BLOCKS, branchInputs(backend)),
    ),
  );
}
for (let round = 0; round < ROUNDS; round++) {
  for (const runner of runners) {
    const start = performance.now();
    const cpuStart = process.cpuUsage();
    await runner.run();
    const ms = performance.now() - start;
    const cpu = process.cpuUsage(cpuStart);
    if (ms < runner.best) {
      runner.best = ms;
      runner.bestCpu = (cpu.user + cpu.system) / 1000;
    }
  }
}
for (const runner of runners) {
  const gflops = runner.flop / runner.best / 1e6;
  const forward = runner.label.startsWith("chain")
    ? `   -> 28-block forward ~${(((runner.best / CHAIN_BLOCKS) * 28) / 1000).toFixed(2)} s`
    : "";
  const perCpuSecond = runner.flop / runner.bestCpu / 1e6;
  console.log(
    `${runner.label.padEnd(62)} ${runner.best.toFixed(1).padStart(7)} ms ${gflops.toFixed(1).padStart(6)} GFLOP/s` +
      `  cpu ${runner.bestCpu.toFixed(0).padStart(5)} ms ${perCpuSecond.toFixed(1).padStart(6)} GFLOP/cpu-s${forward}`,
  );
}
