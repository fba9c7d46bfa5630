/**
 * The embedders computed on the host: cheap, and exact to the float32 arithmetic of the official
 * code.
 */
import { DitcacheError } from "@ditcache/core";
import { TIMESTEP_FREQUENCY_SIZE } from "./layouts/official.js";

/**
 * Sinusoidal timestep features, `TimestepEmbedder.timestep_embedding` of the official code:
 * `[cos(t * f_k), sin(t * f_k)]` with `f_k = exp(-ln(maxPeriod) * k / half)`. Each operation is
 * rounded to float32 in the order PyTorch does it, so the features match to the last bit or so.
 *
 * @returns (N, dim) row-major.
 */
export function timestepEmbedding(
  timesteps: readonly number[],
  dim: number = TIMESTEP_FREQUENCY_SIZE,
  maxPeriod = 10000,
): Float32Array {
  const f = Math.fround;
  const half = Math.floor(dim / 2);
  const logPeriod = f(-Math.log(maxPeriod));
  const frequencies = new Float32Array(half);
  for (let k = 0; k < half; k++) frequencies[k] = f(Math.exp(f(f(logPeriod * k) / half)));
  const out = new Float32Array(timesteps.length * dim); // (N, dim); an odd dim leaves a zero column
  timesteps.forEach((t, n) => {
    const time = f(t);
    for (let k = 0; k < half; k++) {
      const arg = f(time * frequencies[k]!);
      out[n * dim + k] = Math.cos(arg);
      out[n * dim + half + k] = Math.sin(arg);
    }
  });
  return out;
}

/**
 * The fixed 2-D sin-cos position embedding, `get_2d_sincos_pos_embed(embedDim, gridSize)` of the
 * official code (float64, then float32). Quirk kept from the original: the first half of the
 * channels encodes the column (w) index, the second half the row (h) index.
 *
 * @returns (gridSize^2, embedDim) row-major; token m = row * gridSize + column.
 */
export function sincosPositionEmbedding(embedDim: number, gridSize: number): Float32Array {
  if (embedDim % 4 !== 0) {
    throw new DitcacheError("INVALID_ARGUMENT", `embedDim: expected a multiple of 4, got ${embedDim}`);
  }
  const axisDim = embedDim / 2; // channels per axis: sin half then cos half
  const quarter = axisDim / 2;
  const omega = Float64Array.from({ length: quarter }, (_, k) => 1 / 10000 ** (k / quarter));
  const out = new Float32Array(gridSize * gridSize * embedDim);
  for (let row = 0; row < gridSize; row++) {
    for (let column = 0; column < gridSize; column++) {
      const base = (row * gridSize + column) * embedDim;
      for (let k = 0; k < quarter; k++) {
        out[base + k] = Math.sin(column * omega[k]!);
        out[base + quarter + k] = Math.cos(column * omega[k]!);
        out[base + axisDim + k] = Math.sin(row * omega[k]!);
        out[base + axisDim + quarter + k] = Math.cos(row * omega[k]!);
      }
    }
  }
  return out;
}
