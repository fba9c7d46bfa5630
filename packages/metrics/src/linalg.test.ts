import { createRng, DitcacheError } from "@ditcache/core";
import { describe, expect, it } from "vitest";
import { symmetricEigen, traceSqrtProduct } from "./linalg.js";

/** A random symmetric PSD matrix X X^T / cols with X of shape (n, cols): rank min(n, cols). */
function randomPsd(n: number, cols: number, seed: number): Float64Array {
  const rng = createRng(seed);
  const x = Float64Array.from({ length: n * cols }, () => rng.normal());
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let k = 0; k < cols; k++) sum += x[i * cols + k]! * x[j * cols + k]!;
      out[i * n + j] = sum / cols;
    }
  }
  return out;
}

function trace(matrix: Float64Array, n: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += matrix[i * n + i]!;
  return sum;
}

describe("symmetricEigen", () => {
  it("solves a 2x2 matrix exactly", () => {
    const { values, vectors } = symmetricEigen(new Float64Array([2, 1, 1, 2]), 2);
    expect(values[0]).toBeCloseTo(1, 14);
    expect(values[1]).toBeCloseTo(3, 14);
    expect(Math.abs(vectors![0]!)).toBeCloseTo(Math.SQRT1_2, 14);
    expect(vectors![0]! * vectors![1]!).toBeCloseTo(-0.5, 14); // (1, -1)/sqrt 2 for eigenvalue 1
  });

  it.each([1, 3, 17, 120])("gives A w = lambda w with orthonormal w (n = %i)", (n) => {
    const a = randomPsd(n, n + 3, n);
    // Make it indefinite too: subtract a multiple of the identity.
    for (let i = 0; i < n; i++) a[i * n + i] = a[i * n + i]! - 0.5;
    const { values, vectors } = symmetricEigen(a, n);
    const w = vectors!;
    let residual = 0;
    let orthogonality = 0;
    for (let j = 0; j < n; j++) {
      for (let i = 0; i < n; i++) {
        let sum = 0;
        for (let k = 0; k < n; k++) sum += a[i * n + k]! * w[j * n + k]!;
        residual = Math.max(residual, Math.abs(sum - values[j]! * w[j * n + i]!));
      }
      for (let l = 0; l < n; l++) {
        let sum = 0;
        for (let k = 0; k < n; k++) sum += w[j * n + k]! * w[l * n + k]!;
        orthogonality = Math.max(orthogonality, Math.abs(sum - (j === l ? 1 : 0)));
      }
      if (j > 0) expect(values[j]).toBeGreaterThanOrEqual(values[j - 1]!);
    }
    expect(residual).toBeLessThan(1e-12 * n);
    expect(orthogonality).toBeLessThan(1e-13 * n);
    const sum = values.reduce((s, v) => s + v, 0);
    expect(sum).toBeCloseTo(trace(a, n), 10);
    expect(symmetricEigen(a, n, false).values).toEqual(values);
  });

  it("handles diagonal and zero matrices", () => {
    expect(Array.from(symmetricEigen(new Float64Array([3, 0, 0, 0, -1, 0, 0, 0, 2]), 3).values)).toEqual([
      -1, 2, 3,
    ]);
    expect(Array.from(symmetricEigen(new Float64Array(16), 4).values)).toEqual([0, 0, 0, 0]);
  });

  it("rejects bad input", () => {
    expect(() => symmetricEigen(new Float64Array(3), 2)).toThrow(/expected 2x2/);
    const error = (() => {
      try {
        symmetricEigen(new Float64Array([1, Number.NaN, Number.NaN, 1]), 2);
      } catch (caught) {
        return caught;
      }
    })();
    expect(DitcacheError.isInstance(error) && error.code).toBe("NUMERIC_FAULT");
  });
});

describe("traceSqrtProduct", () => {
  it("equals tr(A) for B = A, including singular A", () => {
    for (const [n, cols] of [
      [10, 20],
      [30, 8],
    ] as const) {
      const a = randomPsd(n, cols, n + cols);
      expect(traceSqrtProduct(a, a, n)).toBeCloseTo(trace(a, n), 10);
    }
  });

  it("equals sum sqrt(a_i b_i) for commuting diagonal matrices", () => {
    const a = new Float64Array([4, 0, 0, 0, 9, 0, 0, 0, 0]);
    const b = new Float64Array([1, 0, 0, 0, 4, 0, 0, 0, 5]);
    expect(traceSqrtProduct(a, b, 3)).toBeCloseTo(2 + 6 + 0, 13);
  });

  it("is symmetric in its arguments", () => {
    const a = randomPsd(25, 40, 1);
    const b = randomPsd(25, 12, 2);
    expect(Math.abs(traceSqrtProduct(a, b, 25) / traceSqrtProduct(b, a, 25) - 1)).toBeLessThan(1e-11);
  });
});
