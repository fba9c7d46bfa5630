import { DitcacheError, firstNonFinite, formatShape } from "@ditcache/core";
import type { DiTConfig } from "./config.js";
import { DIFFUSERS_LAYOUT } from "./layouts/diffusers.js";
import { OFFICIAL_LAYOUT } from "./layouts/official.js";

/** A float32 array on the host with its shape (what `readSafetensors` returns, minus the dtype). */
export interface HostArray {
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Row-major values. */
  readonly data: Float32Array;
}

/**
 * A checkpoint key layout. The model itself is written against the official DiT names; a layout
 * says which keys a file of that layout holds and how to turn them into official-named arrays,
 * so a second layout (diffusers, with separate q/k/v) is one more file in `layouts/`.
 */
export interface WeightLayout {
  /** Name used in options and errors. */
  readonly name: string;
  /** Every key a file of this layout holds for a config, with its exact shape. */
  expectedShapes(config: DiTConfig): Map<string, readonly number[]>;
  /** Keys that may be absent (the model computes them, like the fixed `pos_embed`). */
  readonly optionalKeys: ReadonlySet<string>;
  /** Maps checked tensors onto official key names (identity for the official layout). */
  toOfficial(tensors: ReadonlyMap<string, HostArray>, config: DiTConfig): Map<string, HostArray>;
}

/** Layouts {@link DiTModel.load} understands, by name. */
export const WEIGHT_LAYOUTS = {
  official: OFFICIAL_LAYOUT,
  diffusers: DIFFUSERS_LAYOUT,
} as const satisfies Record<string, WeightLayout>;

/** Name of a supported checkpoint layout. */
export type WeightLayoutName = keyof typeof WEIGHT_LAYOUTS;

/**
 * Checks tensors against a layout: every expected key present (optional ones may be absent),
 * the exact shape, the data length matching the shape, and no unexpected key.
 *
 * @throws DitcacheError MISSING_WEIGHT, UNEXPECTED_WEIGHT or SHAPE_MISMATCH naming the key.
 */
export function checkWeights(
  tensors: ReadonlyMap<string, HostArray>,
  config: DiTConfig,
  layout: WeightLayout,
  source = "weights",
): void {
  const expected = layout.expectedShapes(config);
  for (const [key, shape] of expected) {
    const tensor = tensors.get(key);
    if (tensor === undefined) {
      if (layout.optionalKeys.has(key)) continue;
      throw new DitcacheError(
        "MISSING_WEIGHT",
        `${source}: missing weight "${key}" (expected shape ${formatShape(shape)}, ${layout.name} layout)`,
      );
    }
    const same = tensor.shape.length === shape.length && shape.every((dim, i) => dim === tensor.shape[i]);
    if (!same) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `${source}: weight "${key}" has shape ${formatShape(tensor.shape)}, expected ${formatShape(shape)} for this config`,
      );
    }
    const size = shape.reduce((product, dim) => product * dim, 1);
    if (tensor.data.length !== size) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `${source}: weight "${key}" holds ${tensor.data.length} values, expected ${size} for shape ${formatShape(shape)}`,
      );
    }
  }
  for (const key of tensors.keys()) {
    if (!expected.has(key)) {
      throw new DitcacheError(
        "UNEXPECTED_WEIGHT",
        `${source}: unexpected weight ${JSON.stringify(key)} (not part of a depth-${config.depth} DiT in the ${layout.name} layout)`,
      );
    }
  }
}

/** Number of parameters of a config, `pos_embed` included (as `sum(p.numel() for p in model.parameters())`). */
export function parameterCount(config: DiTConfig): number {
  let count = 0;
  for (const shape of OFFICIAL_LAYOUT.expectedShapes(config).values()) {
    count += shape.reduce((product, dim) => product * dim, 1);
  }
  return count;
}

/**
 * Checks that every weight is finite: one NaN or infinity in a checkpoint (a diverged training
 * run, a bad conversion) would otherwise surface as a black image many steps later.
 *
 * @throws DitcacheError NUMERIC_FAULT naming the key and the index of the first bad value.
 */
export function checkWeightsFinite(tensors: ReadonlyMap<string, HostArray>, source = "weights"): void {
  for (const [key, tensor] of tensors) {
    const index = firstNonFinite(tensor.data);
    if (index >= 0) {
      throw new DitcacheError(
        "NUMERIC_FAULT",
        `${source}: weight "${key}" holds a non-finite value (${tensor.data[index]}) at index ${index}; pass checkFinite: false to load it anyway`,
      );
    }
  }
}
