import { createRng } from "@ditcache/core";
import { symmetricEigen } from "./linalg.js";

const n = Number(process.env.N ?? 512);
const rng = createRng(2);
const a = new Float64Array(n * n);
for (let i = 0; i < n; i++)
  for (let j = 0; j <= i; j++) {
    const v = rng.normal();
    a[i * n + j] = v;
    a[j * n + i] = v;
  }
let t = performance.now();
symmetricEigen(a, n, false);
console.log("values only", ((performance.now() - t) / 1000).toFixed(2));
t = performance.now();
symmetricEigen(a, n, true);
console.log("with vectors", ((performance.now() - t) / 1000).toFixed(2));
