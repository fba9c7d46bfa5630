// Times whole DiT forwards (random weights, batch 2 = one CFG pair) on the ONNX backend: the
// figure to compare with PyTorch eager's ~2.7 s for DiT-XL/2 on 2 cores (MEASUREMENTS.md).
//
//   pnpm tsx --conditions=source packages/backend-onnx/bench/dit.ts [--preset DiT-XL/2] [--runs 3] [--threads 2]
//
// Benchmarks print numbers, never assert them: the machine is shared and noisy.
import { parseArgs } from "node:util";
import type { DiTPresetName, HostArray } from "@ditcache/dit";
import { DiTModel, ditPreset, WEIGHT_LAYOUTS } from "@ditcache/dit";
import { createOnnxBackend } from "../src/index.js";

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "DiT-XL/2" },
    runs: { type: "string", default: "3" },
    threads: { type: "string", default: "2" },
    batch: { type: "string", default: "2" },
  },
});
const config = ditPreset(values.preset as DiTPresetName);
const runs = Number(values.runs);
const batch = Number(values.batch);

// Weight values do not change the time: a fast LCG fills them (675M values in seconds).
let seed = 12345;
function fill(size: number, scale: number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    out[i] = (seed / 2 ** 32 - 0.5) * 2 * scale;
  }
  return out;
}
const weights = new Map<string, HostArray>();
for (const [key, shape] of WEIGHT_LAYOUTS.official.expectedShapes(config)) {
  if (WEIGHT_LAYOUTS.official.optionalKeys.has(key)) continue;
  weights.set(key, {
    shape,
    data: fill(
      shape.reduce((a, b) => a * b, 1),
      0.02,
    ),
  });
}
const side = config.inputSize;
const latent = fill(batch * config.inChannels * side * side, 1);
const timesteps = Array.from({ length: batch }, () => 500);
const labels = Array.from({ length: batch }, (_, i) => (i % 2 === 0 ? 207 : config.numClasses));

const backend = await createOnnxBackend({ intraOpNumThreads: Number(values.threads) });
const model = DiTModel.fromWeights(weights, config, backend);
weights.clear();
const x = backend.tensor(latent.slice(), [batch, config.inChannels, side, side]);
const gmacs = (model.macs.forward * batch) / 1e9;
console.log(
  `${values.preset} forward, batch ${batch}, ${values.threads} intra-op threads, ${gmacs.toFixed(1)} GMAC`,
);
for (let run = 0; run <= runs; run++) {
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  const out = await model.forward(x, timesteps, labels);
  await backend.read(out);
  const ms = performance.now() - start;
  const cpu = process.cpuUsage(cpuStart);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  backend.dispose(out);
  const what = run === 0 ? "first (incl. compiling every unit)" : `run ${run}`;
  // CPU time shows how much work the forward did, whatever share of the cores it got.
  console.log(
    `${what.padEnd(36)} ${ms.toFixed(0).padStart(7)} ms  ${((2 * gmacs) / (ms / 1000)).toFixed(1).padStart(6)} GFLOP/s` +
      `   cpu ${cpuMs.toFixed(0).padStart(7)} ms (${((2 * gmacs) / (cpuMs / 1000)).toFixed(1)} GFLOP per cpu-second)`,
  );
}
model.dispose();
await backend.close();
