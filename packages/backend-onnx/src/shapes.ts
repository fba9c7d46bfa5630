import { DitcacheError, invalidArgument } from "@ditcache/core";

/** Number of elements of a shape (1 for a scalar). */
export function sizeOf(shape: readonly number[]): number {
  let size = 1;
  for (const dim of shape) size *= dim;
  return size;
}

/** Prints a shape for error messages, e.g. `[2, 3, 4]`. */
export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** NumPy broadcasting of two shapes; SHAPE_MISMATCH naming the op when they do not broadcast. */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `${op}: shapes ${formatShape(a)} and ${formatShape(b)} do not broadcast (dimension ${i - rank}: ${da} vs ${db}, expected equal or 1)`,
      );
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** A possibly negative axis as an index in [0, rank). */
export function normalizeAxis(op: string, axis: number, rank: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    invalidArgument(`${op}: axis`, axis, `an integer in [${-rank}, ${rank - 1}] for rank ${rank}`);
  }
  return axis < 0 ? axis + rank : axis;
}

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
