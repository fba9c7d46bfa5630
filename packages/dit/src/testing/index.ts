import { createRng } from "@ditcache/core";
import { type DiTConfig, validateConfig } from "../config.js";
import { OFFICIAL_LAYOUT } from "../layouts/official.js";
import type { HostArray } from "../weights.js";

/** A DiT small enough for unit tests on the cpu backend (8x8x4 input, 16 tokens, 2 blocks). */
export const TINY_DIT_CONFIG: DiTConfig = Object.freeze({
  inputSize: 8,
  patchSize: 2,
  inChannels: 4,
  hiddenSize: 32,
  depth: 2,
  numHeads: 4,
  mlpRatio: 4,
  numClasses: 10,
  learnSigma: true,
  classDropoutProb: 0.1,
});

/**
 * Seeded random weights in the official layout for any config: normal(0, scale / sqrt(fan_in))
 * everywhere (adaLN included, so gates are not zero as after the official init), `pos_embed` left
 * out so the model computes it.
 */
export function randomDiTWeights(config: DiTConfig, seed = 0, scale = 1): Map<string, HostArray> {
  const checked = validateConfig(config);
  const rng = createRng(seed);
  const out = new Map<string, HostArray>();
  for (const [key, shape] of OFFICIAL_LAYOUT.expectedShapes(checked)) {
    if (key === "pos_embed") continue;
    const size = shape.reduce((product, dim) => product * dim, 1);
    const fanIn = shape.length > 1 ? size / shape[0]! : shape[0]!;
    const data = rng.normals(size);
    const std = key.startsWith("y_embedder") ? 1 : scale / Math.sqrt(fanIn);
    for (let i = 0; i < size; i++) data[i] = data[i]! * std;
    out.set(key, { shape, data });
  }
  return out;
}
