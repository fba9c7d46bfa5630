// Where the memory of a DiT forward on the ONNX backend goes: resident set size (RSS) at each
// stage of one process, as a multiple of the weights' size. One variant per process, so that
// peaks do not mix.
//
//   pnpm tsx --conditions=source packages/backend-onnx/bench/memory.ts [--preset DiT-B/2] [--threads 2]
//     [--config session.disable_prepacking=1] [--no-arena] [--release] [--host-params release] [--runs 2]
//
// --release calls backend.releaseHostParams() after the first forward. Run with node --expose-gc
// for RSS after a full collection at each stage.
//
// Benchmarks print numbers, never assert them.
import { parseArgs } from "node:util";
import type { DiTPresetName, HostArray } from "@ditcache/dit";
import { DiTModel, ditPreset, parameterCount, WEIGHT_LAYOUTS } from "@ditcache/dit";
import { createOnnxBackend } from "../src/index.js";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "DiT-B/2" },
    threads: { type: "string", default: "2" },
    runs: { type: "string", default: "2" },
    config: { type: "string", multiple: true, default: [] },
    "no-arena": { type: "boolean", default: false },
    release: { type: "boolean", default: false },
    "host-params": { type: "string", default: "keep" },
  },
});
const config = ditPreset(values.preset as DiTPresetName);
const weightBytes = parameterCount(config) * 4;
const gb = (bytes: number): string => `${(bytes / 1e9).toFixed(2)} GB (${(bytes / weightBytes).toFixed(2)}x)`;
const stage = (what: string): void => {
  const rss = process.memoryUsage().rss;
  const peak = process.resourceUsage().maxRSS * 1024;
  console.log(`${what.padEnd(34)} rss ${gb(rss).padEnd(22)} peak ${gb(peak)}`);
};

let seed = 12345;
function fill(size: number, scale: number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    out[i] = (seed / 2 ** 32 - 0.5) * 2 * scale;
  }
  return out;
}
const sessionConfigEntries = Object.fromEntries(
  (values.config as string[]).map((entry) => entry.split("=", 2) as [string, string]),
);
console.log(
  `${values.preset}: ${(weightBytes / 1e9).toFixed(2)} GB of fp32 weights; ${JSON.stringify(sessionConfigEntries)}${values["no-arena"] ? " arena off" : ""} host params ${values["host-params"]}`,
);
stage("start");
const backend = await createOnnxBackend({
  intraOpNumThreads: Number(values.threads),
  sessionConfigEntries,
  enableCpuMemArena: !values["no-arena"],
  hostParams: values["host-params"] as "keep" | "release",
});
// Weights made on access (a getter per key): the benchmark holds no copy next to the model's.
const weights = new Map<string, HostArray>();
for (const [key, shape] of WEIGHT_LAYOUTS.official.expectedShapes(config)) {
  if (WEIGHT_LAYOUTS.official.optionalKeys.has(key)) continue;
  weights.set(key, {
    shape,
    get data() {
      return fill(
        shape.reduce((a, b) => a * b, 1),
        0.02,
      );
    },
  });
}
const model = DiTModel.fromWeights(weights, config, backend);
(globalThis as { gc?: () => void }).gc?.();
stage("model built (host params)");
const batch = 2;
const side = config.inputSize;
const x = backend.tensor(fill(batch * config.inChannels * side * side, 1), [
  batch,
  config.inChannels,
  side,
  side,
]);
const timesteps = [500, 500];
const labels = [207, config.numClasses];
for (let run = 0; run < Number(values.runs); run++) {
  const start = performance.now();
  const out = await model.forward(x, timesteps, labels);
  await backend.read(out);
  backend.dispose(out);
  (globalThis as { gc?: () => void }).gc?.();
  stage(`forward ${run} (${(performance.now() - start).toFixed(0)} ms)`);
  if (run === 0 && values.release) {
    const bytes = backend.releaseHostParams();
    (globalThis as { gc?: () => void }).gc?.();
    stage(`released ${(bytes / 1e9).toFixed(2)} GB of host params`);
  }
}
model.dispose();
await backend.close();
stage("closed");
