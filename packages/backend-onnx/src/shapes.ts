import { DitcacheError, formatShape, invalidArgument } from "@ditcache/core";

/** Operand checks shared by the symbolic ops; general shape helpers come from @ditcache/core. */

/** Throws SHAPE_MISMATCH unless `got` has rank `rank`. */
export function expectRank(op: string, what: string, got: readonly number[], rank: number): void {
  if (got.length !== rank) {
    throw new DitcacheError(
      "SHAPE_MISMATCH",
      `${op}: ${what} must have rank ${rank}, got shape ${formatShape(got)}`,
    );
  }
}

/** Throws SHAPE_MISMATCH unless the two shapes are equal. */
export function expectShape(
  op: string,
  what: string,
  got: readonly number[],
  expected: readonly number[],
): void {
  if (got.length !== expected.length || got.some((dim, i) => dim !== expected[i])) {
    throw new DitcacheError(
      "SHAPE_MISMATCH",
      `${op}: ${what} must have shape ${formatShape(expected)}, got ${formatShape(got)}`,
    );
  }
}

/** Throws INVALID_ARGUMENT unless `value` is an integer >= `min`. */
export function expectInteger(op: string, name: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
    invalidArgument(`${op}: ${name}`, value, `an integer >= ${min}`);
  }
  return value;
}
