import { createRng } from "@ditcache/core";
import { input, reference } from "./__fixtures__/load.js";
import { FeatureStats } from "./feature-stats.js";
import { frechetDistance } from "./frechet.js";
import { psnr, ssim } from "./image-quality.js";
import { inceptionScore } from "./inception-score.js";

for (const [name, c] of Object.entries(reference.fid)) {
  const a = new FeatureStats(c.dim).add(input(`fid.${name}.a`).data, c.dim);
  const b = new FeatureStats(c.dim).add(input(`fid.${name}.b`).data, c.dim);
  const f = frechetDistance(a, b);
  console.log(
    name,
    f,
    "rel vs sqrtm",
    Math.abs(f - c.pytorchFid) / c.pytorchFid,
    "rel vs eigh",
    Math.abs(f - c.eigh) / c.eigh,
  );
}
for (const s of ["1", "10", "7"]) {
  const r = inceptionScore(input("is.logits").data, 10, { splits: Number(s) });
  console.log(
    "IS",
    s,
    Math.abs(r.mean - reference.inceptionScore[s]!.mean) / r.mean,
    Math.abs(r.std - reference.inceptionScore[s]!.std),
  );
}
for (const n of ["rgb", "gray"]) {
  const t = input(`images.${n}.test`);
  const r = input(`images.${n}.reference`).data;
  const w = reference.images[n]!;
  const s = ssim(t.data, r, t.shape, { dataRange: w.dataRange }).perImage;
  const p = psnr(t.data, r, t.shape, { dataRange: w.dataRange }).perImage;
  console.log(
    n,
    "ssim maxabs",
    Math.max(...w.ssim.map((v, i) => Math.abs(v - s[i]!))),
    "psnr maxabs",
    Math.max(...w.psnr.map((v, i) => Math.abs(v - p[i]!))),
  );
}
const dim = Number(process.env.DIM ?? 0);
if (dim) {
  const rng = createRng(1);
  let t = performance.now();
  const a = new FeatureStats(dim);
  const b = new FeatureStats(dim);
  for (let i = 0; i < 5; i++) {
    a.add(rng.normals(dim * 1000), dim);
    b.add(
      rng.normals(dim * 1000).map((v) => v * 1.1),
      dim,
    );
  }
  console.log("stats", dim, "10k samples", ((performance.now() - t) / 1000).toFixed(1), "s");
  t = performance.now();
  console.log("fid", frechetDistance(a, b), ((performance.now() - t) / 1000).toFixed(1), "s");
}
