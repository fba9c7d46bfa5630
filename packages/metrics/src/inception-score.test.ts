import { describe, expect, it } from "vitest";
import { input, reference } from "./__fixtures__/load.js";
import { inceptionScore } from "./inception-score.js";

describe("inceptionScore", () => {
  it.each(["1", "10", "7"])("matches the numpy reference with %s splits", (splits) => {
    const { mean, std } = reference.inceptionScore[splits]!;
    const score = inceptionScore(input("is.logits").data, 10, { splits: Number(splits) });
    expect(score.splits).toHaveLength(Number(splits));
    expect(Math.abs(score.mean - mean) / mean).toBeLessThan(1e-12);
    expect(Math.abs(score.std - std)).toBeLessThan(1e-12);
  });

  it("is 1 for identical predictions and the class count for confident balanced ones", () => {
    expect(inceptionScore(new Float32Array([1, 2, 3, 1, 2, 3]), 3, { splits: 1 }).mean).toBeCloseTo(1, 12);
    const confident = new Float32Array(4 * 4).fill(-50);
    for (let i = 0; i < 4; i++) confident[i * 4 + i] = 50;
    expect(inceptionScore(confident, 4, { splits: 1 }).mean).toBeCloseTo(4, 10);
  });

  it("rejects bad input", () => {
    expect(() => inceptionScore(new Float32Array(7), 3)).toThrow(
      /logits.length: expected a positive multiple of classes \(3\), got 7/,
    );
    expect(() => inceptionScore(new Float32Array(6), 3)).toThrow(
      /options.splits: expected an integer in \[1, 2\]/,
    );
    expect(() => inceptionScore(new Float32Array([0, Number.POSITIVE_INFINITY]), 2, { splits: 1 })).toThrow(
      /logits\[0\]/,
    );
  });
});
