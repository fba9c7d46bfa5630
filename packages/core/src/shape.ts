import { DitcacheError, invalidArgument } from "./errors.js";

/** Number of elements of a shape (1 for a scalar shape `[]`). */
export function sizeOf(shape: readonly number[]): number {
  let size = 1;
  for (const dim of shape) size *= dim;
  return size;
}

/** Prints a shape the way error messages show it, e.g. `[2, 3, 4]`. */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * The shape two operands broadcast to under NumPy rules: dimensions are aligned from the end and
 * each pair must be equal or contain a 1.
 *
 * @throws DitcacheError SHAPE_MISMATCH when the shapes do not broadcast.
 */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `cannot broadcast shapes ${formatShape(a)} and ${formatShape(b)}: dimension ${i - rank} is ${da} vs ${db} (expected equal or 1)`,
      );
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/**
 * Turns a possibly negative axis into an index in `[0, rank)`.
 *
 * @throws DitcacheError INVALID_ARGUMENT when the axis is not an integer in `[-rank, rank)`.
 */
export function normalizeAxis(axis: number, rank: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    invalidArgument("axis", axis, `an integer in [${-rank}, ${rank}) for rank ${rank}`);
  }
  return axis < 0 ? axis + rank : axis;
}

/**
 * Checks a tensor's shape against the expected one; `-1` in `expected` matches any size.
 *
 * @throws DitcacheError SHAPE_MISMATCH naming the tensor, both shapes.
 */
export function assertShape(name: string, got: readonly number[], expected: readonly number[]): void {
  const matches = got.length === expected.length && expected.every((dim, i) => dim === -1 || dim === got[i]);
  if (!matches) {
    throw new DitcacheError(
      "SHAPE_MISMATCH",
      `${name}: expected shape ${formatShape(expected)}, got ${formatShape(got)}`,
    );
  }
}
