// DiT forward time under several backend settings, interleaved run by run in one process (one
// model per setting, same random weights), so that the shared machine's noise hits all of them.
//
//   pnpm tsx --conditions=source packages/backend-onnx/bench/variants.ts [--preset DiT-B/2] [--runs 5] [--threads 2]
//     [--only default,arena,dynamic-blocks,spinning]
//
// Benchmarks print numbers, never assert them.
import { parseArgs } from "node:util";
import type { DiTPresetName, HostArray } from "@ditcache/dit";
import { DiTModel, ditMacs, ditPreset, WEIGHT_LAYOUTS } from "@ditcache/dit";
import { createOnnxBackend, type OnnxBackendOptions } from "../src/index.js";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "DiT-B/2" },
    runs: { type: "string", default: "5" },
    threads: { type: "string", default: "2" },
    only: { type: "string", default: "default,arena" },
  },
});
const config = ditPreset(values.preset as DiTPresetName);
const threads = Number(values.threads);

function fill(size: number, scale: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let state = seed;
  for (let i = 0; i < size; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = (state / 2 ** 32 - 0.5) * 2 * scale;
  }
  return out;
}
const weights = new Map<string, HostArray>();
for (const [key, shape] of WEIGHT_LAYOUTS.official.expectedShapes(config)) {
  if (WEIGHT_LAYOUTS.official.optionalKeys.has(key)) continue;
  weights.set(key, {
    shape,
    get data() {
      return fill(
        shape.reduce((a, b) => a * b, 1),
        0.02,
        key.length,
      );
    },
  });
}
const ALL: Record<string, [string, OnnxBackendOptions]> = {
  default: ["default (arena off)", {}],
  arena: ["ORT arena on", { enableCpuMemArena: true }],
  // Threads claim work in small blocks instead of one fixed share each: helps when another
  // process preempts one of the threads (a shared machine).
  "dynamic-blocks": ["dynamic_block_base 4", { sessionConfigEntries: { "session.dynamic_block_base": "4" } }],
  spinning: ["intra-op spinning", { allowSpinning: true }],
};
const variants = (values.only as string).split(",").map((name) => {
  const variant = ALL[name];
  if (variant === undefined) throw new Error(`--only: expected some of ${Object.keys(ALL).join(",")}`);
  return variant;
});
const side = config.inputSize;
const runners = await Promise.all(
  variants.map(async ([name, options]) => {
    const backend = await createOnnxBackend({ intraOpNumThreads: threads, ...options });
    const model = DiTModel.fromWeights(weights, config, backend);
    const x = backend.tensor(fill(2 * config.inChannels * side * side, 1, 7), [
      2,
      config.inChannels,
      side,
      side,
    ]);
    const forward = async (): Promise<number> => {
      const start = performance.now();
      const out = await model.forward(x, [500, 500], [207, config.numClasses]);
      await backend.read(out);
      backend.dispose(out);
      return performance.now() - start;
    };
    await forward(); // compile
    return { name, forward, times: [] as number[] };
  }),
);
for (let run = 0; run < Number(values.runs); run++) {
  for (const runner of runners) runner.times.push(await runner.forward());
}
const gflop = (4 * ditMacs(config).forward) / 1e9;
console.log(`${values.preset} forward, batch 2, ${threads} threads, ${values.runs} interleaved runs each`);
for (const runner of runners) {
  const sorted = [...runner.times].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  console.log(
    `${runner.name.padEnd(24)} min ${sorted[0]!.toFixed(0).padStart(6)} ms  median ${median.toFixed(0).padStart(6)} ms  (${(gflop / (median / 1000)).toFixed(1)} GFLOP/s)`,
  );
}
