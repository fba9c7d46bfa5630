/**
 * Micro benchmark of the cpu backend's linear at the DiT-XL MLP shape: x (512, 1152) times
 * weight (4608, 1152)^T. Prints GFLOP/s (2·M·N·K flops per run). Run:
 *   pnpm --filter @ditcache/backend-cpu exec tsx --conditions=source bench/matmul.ts
 */
import { createRng } from "@ditcache/core";
import { cpuOps } from "../src/index.js";
import { CpuTensor } from "../src/tensor.js";

const [m, k, n] = [512, 1152, 4608];
const repeats = Number(process.env.REPEATS ?? 3);
const rng = createRng(0);
const x = new CpuTensor(rng.normals(m * k), [m, k]);
const weight = new CpuTensor(rng.normals(n * k), [n, k]);
const bias = new CpuTensor(rng.normals(n), [n]);
const flops = 2 * m * n * k;

cpuOps.linear(x, weight, bias); // warm-up (JIT)
const times: number[] = [];
for (let i = 0; i < repeats; i++) {
  const start = performance.now();
  cpuOps.linear(x, weight, bias);
  times.push((performance.now() - start) / 1000);
}
const best = Math.min(...times);
console.log(
  `linear ${m}x${k}x${n}: best ${best.toFixed(3)} s, ${(flops / best / 1e9).toFixed(2)} GFLOP/s ` +
    `(runs: ${times.map((t) => t.toFixed(3)).join(", ")} s)`,
);
