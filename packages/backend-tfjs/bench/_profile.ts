import { createRng } from "@ditcache/core";
import type { HostArray } from "@ditcache/dit";
import { DiTModel, ditPreset, WEIGHT_LAYOUTS } from "@ditcache/dit";
import * as tf from "@tensorflow/tfjs-core";
import { createTfjsBackend } from "../src/index.js";

const config = ditPreset("DiT-S/2");
const rng = createRng(0);
const weights = new Map<string, HostArray>();
for (const [key, shape] of WEIGHT_LAYOUTS.official.expectedShapes(config)) {
  if (WEIGHT_LAYOUTS.official.optionalKeys.has(key)) continue;
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng.normal() * 0.02;
  weights.set(key, { shape, data });
}
const backend = await createTfjsBackend({ engine: "wasm" });
const model = DiTModel.fromWeights(weights, config, backend);
const x = backend.tensor(new Float32Array(2 * 4 * 32 * 32).fill(0.1), [2, 4, 32, 32]);
backend.dispose(await model.forward(x, [500, 500], [1, 1000]));
const info = await tf.profile(async () => {
  const o = await model.forward(x, [500, 500], [1, 1000]);
  backend.dispose(o);
});
const agg = new Map<string, [number, number]>();
for (const k of info.kernels) {
  const key = `${k.name} ${JSON.stringify(k.inputShapes)}`;
  const e = agg.get(key) ?? [0, 0];
  e[0] += k.kernelTimeMs as number;
  e[1]++;
  agg.set(key, e);
}
const rows = [...agg].sort((a, b) => b[1][0] - a[1][0]).slice(0, 25);
let total = 0;
for (const v of agg.values()) total += v[0];
console.log("total kernel ms", total.toFixed(0));
for (const [k, [ms, n]] of rows) console.log(ms.toFixed(1).padStart(8), String(n).padStart(4), k);
