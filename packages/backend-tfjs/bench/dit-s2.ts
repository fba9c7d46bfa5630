// Times one full DiT-S/2 forward (256px latents: 4x32x32, batch 2 = one CFG pair, random
// weights) on tfjs engines and prints one row per engine, in ms.
//
//   pnpm --filter @ditcache/backend-tfjs bench                      # tfjs-wasm
//   pnpm --filter @ditcache/backend-tfjs bench -- --engine cpu,wasm --runs 3
//
// Benchmarks print numbers, never assert them: the machine is shared and noisy.
import { parseArgs } from "node:util";
import { createRng } from "@ditcache/core";
import { DiTModel, ditPreset } from "@ditcache/dit";
import { randomDiTWeights } from "@ditcache/dit/testing";
import { createTfjsBackend, TFJS_ENGINES, type TfjsEngine } from "../src/index.js";

const { values } = parseArgs({
  // `pnpm bench -- --engine cpu` passes the "--" through.
  args: process.argv.slice(2).filter((arg) => arg !== "--"),
  options: {
    engine: { type: "string", default: "wasm" },
    runs: { type: "string", default: "3" },
    batch: { type: "string", default: "2" },
  },
});
const engines = values.engine.split(",") as TfjsEngine[];
for (const engine of engines) {
  if (!TFJS_ENGINES.includes(engine))
    throw new Error(`--engine: expected some of ${TFJS_ENGINES.join(", ")}`);
}
const runs = Number(values.runs);
const batch = Number(values.batch);

const config = ditPreset("DiT-S/2");
const weights = randomDiTWeights(config, 0);
const rng = createRng(1);
const side = config.inputSize;
const latent = new Float32Array(batch * config.inChannels * side * side);
for (let i = 0; i < latent.length; i++) latent[i] = rng.normal();
const timesteps = Array.from({ length: batch }, () => 500);
const labels = Array.from({ length: batch }, (_, i) => (i % 2 === 0 ? 207 : config.numClasses));

console.log(
  `DiT-S/2 forward, batch ${batch}, ${config.inChannels}x${side}x${side}, median of ${runs} after 1 warm-up`,
);
for (const engine of engines) {
  const backend = await createTfjsBackend({ engine });
  const model = DiTModel.fromWeights(weights, config, backend);
  const x = backend.tensor(latent.slice(), [batch, config.inChannels, side, side]);
  const times: number[] = [];
  for (let run = 0; run <= runs; run++) {
    const start = performance.now();
    const out = await model.forward(x, timesteps, labels);
    await backend.read(out); // include the device-to-host copy, as a sampler would
    const elapsed = performance.now() - start;
    backend.dispose(out);
    if (run > 0) times.push(elapsed);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)]!;
  const gmacs = (model.macs.forward * batch) / 1e9;
  console.log(
    `tfjs-${engine.padEnd(8)} ${median.toFixed(1).padStart(9)} ms   (${((gmacs * 2) / (median / 1000)).toFixed(1)} GFLOP/s, ${gmacs.toFixed(2)} GMAC)`,
  );
  model.dispose();
  await backend.close();
}
