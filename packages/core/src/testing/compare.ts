import { DitcacheError } from "../errors.js";

/**
 * max |actual - expected| / max |expected|: the error relative to the reference's scale, the
 * measure every parity test against the PyTorch fixtures uses.
 */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) {
    throw new DitcacheError(
      "SHAPE_MISMATCH",
      `relativeError: ${actual.length} values vs ${expected.length} expected`,
    );
  }
  let error = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    error = Math.max(error, Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  return error / scale;
}
