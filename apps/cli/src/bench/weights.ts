import type { Backend } from "@ditcache/core";
import { type DiTConfig, DiTModel, type HostArray, WEIGHT_LAYOUTS } from "@ditcache/dit";

/**
 * Random DiT weights (official layout, uniform in ±scale/sqrt(fan-in)) that are made on access:
 * each `data` read returns a fresh array from a per-key LCG, so the benchmark never holds a
 * second copy of the weights next to the model's own (675M values for DiT-XL/2 take seconds).
 * Values do not change the time of a forward; they only have to be finite and not tiny.
 */
export function lazyRandomWeights(config: DiTConfig): Map<string, HostArray> {
  const weights = new Map<string, HostArray>();
  let keyIndex = 0;
  for (const [key, shape] of WEIGHT_LAYOUTS.official.expectedShapes(config)) {
    if (WEIGHT_LAYOUTS.official.optionalKeys.has(key)) continue;
    const size = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length > 1 ? size / shape[0]! : shape[0]!;
    const scale = key.startsWith("y_embedder") ? 1 : 1 / Math.sqrt(fanIn);
    const seed = 12345 + 7919 * keyIndex++;
    weights.set(key, {
      shape,
      get data(): Float32Array {
        return lcgFill(size, scale, seed);
      },
    });
  }
  return weights;
}

/** Uniform values in ±scale from a 32-bit LCG. */
export function lcgFill(size: number, scale: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let state = seed >>> 0;
  for (let i = 0; i < size; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = (state / 2 ** 32 - 0.5) * 2 * scale;
  }
  return out;
}

/** A DiT with random weights on a backend. */
export function randomModel(config: DiTConfig, backend: Backend): DiTModel {
  return DiTModel.fromWeights(lazyRandomWeights(config), config, backend);
}

/** Bytes of the model's fp32 weights. */
export function weightBytes(config: DiTConfig): number {
  let total = 0;
  for (const [key, shape] of WEIGHT_LAYOUTS.official.expectedShapes(config)) {
    if (WEIGHT_LAYOUTS.official.optionalKeys.has(key)) continue;
    total += shape.reduce((a, b) => a * b, 1) * 4;
  }
  return total;
}
