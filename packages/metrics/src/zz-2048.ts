import { createRng } from "@ditcache/core";
import { FeatureStats } from "./feature-stats.js";
import { frechetDistance } from "./frechet.js";

const dim = 2048;
const rng = createRng(1);
let t = performance.now();
const a = new FeatureStats(dim).add(rng.normals(dim * 2100), dim);
const b = new FeatureStats(dim).add(
  rng.normals(dim * 2100).map((v, i) => v * 1.1 + (i % dim === 0 ? 1 : 0)),
  dim,
);
console.log("stats 2x2100 samples", ((performance.now() - t) / 1000).toFixed(1), "s");
t = performance.now();
const fid = frechetDistance(a, b);
console.log("fid", fid, ((performance.now() - t) / 1000).toFixed(1), "s");
t = performance.now();
console.log("self", frechetDistance(a, a.clone()), ((performance.now() - t) / 1000).toFixed(1), "s");
