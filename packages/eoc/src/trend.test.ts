import { describe, expect, it } from "vitest";
import { trendIncrements, trendWeights } from "./trend.js";

/** Σ c_j f(steps_j) for a function of the step. */
const apply = (weights: number[], steps: number[], f: (s: number) => number) =>
  weights.reduce((total, c, j) => total + c * f(steps[j]!), 0);

describe("trendWeights", () => {
  it("order 1 is (F_last - F_prev)·(step - last)/(last - prev)", () => {
    const weights = trendWeights([6, 4], 7, 1);
    expect(weights[0]).toBeCloseTo(0.5, 12);
    expect(weights[1]).toBeCloseTo(-0.5, 12);
  });

  it("order k is exact on a polynomial of degree k, also with uneven spacing", () => {
    const quadratic = (s: number) => 3 - 2 * s + 0.7 * s * s;
    const cubic = (s: number) => quadratic(s) + 0.05 * s ** 3;
    for (const steps of [
      [6, 4, 2],
      [9, 5, 4],
    ]) {
      const [last] = steps as [number];
      for (const step of [last + 1, last + 3]) {
        const expected = quadratic(step) - quadratic(last);
        expect(apply(trendWeights(steps, step, 2), steps, quadratic)).toBeCloseTo(expected, 9);
        // Order 1 misses the curvature.
        expect(Math.abs(apply(trendWeights(steps, step, 1), steps, quadratic) - expected)).toBeGreaterThan(
          0.1,
        );
      }
    }
    const steps = [9, 6, 3, 0];
    expect(apply(trendWeights(steps, 10, 3), steps, cubic)).toBeCloseTo(cubic(10) - cubic(9), 9);
  });

  it("uses the order the history allows, and no trend with one value", () => {
    expect(trendWeights([4, 2], 5, 2)).toEqual(trendWeights([4, 2], 5, 1));
    expect(trendWeights([4], 5, 2)).toEqual([]);
    // Values beyond order + 1 are not used.
    expect(trendWeights([6, 4, 2, 0], 7, 1)).toHaveLength(2);
  });

  it("increments: gain·t_k, or the first-order trend and the rest at separate gains", () => {
    const steps = [6, 4, 2];
    const scaled = (weights: number[], gain: number) => weights.map((w) => gain * w);
    expect(trendIncrements(steps, 7, 2, 0.9)).toEqual(scaled(trendWeights(steps, 7, 2), 0.9));
    const same = trendIncrements(steps, 7, 2, 0.9, 0.9);
    for (const [j, w] of scaled(trendWeights(steps, 7, 2), 0.9).entries()) expect(same[j]).toBeCloseTo(w, 12);
    const firstOnly = trendIncrements(steps, 7, 2, 0.9, 0);
    for (const [j, w] of [...scaled(trendWeights(steps, 7, 1), 0.9), 0].entries())
      expect(firstOnly[j]).toBeCloseTo(w, 12);
    // Two values: there is no part beyond the first-order trend to weigh.
    expect(trendIncrements([4, 2], 5, 2, 0.9, 1.4)).toEqual(scaled(trendWeights([4, 2], 5, 1), 0.9));
    expect(trendIncrements([4], 5, 2, 0.9, 1.4)).toEqual([]);
  });
});
