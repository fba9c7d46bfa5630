import { describe, expect, it } from "vitest";
import { quantile } from "./stats.js";

describe("quantile", () => {
  it("interpolates between ranks, whatever the input order", () => {
    expect(quantile([3, 1, 2], 0.5)).toBe(2);
    expect(quantile([4, 1, 3, 2], 0.5)).toBe(2.5);
    expect(quantile([-6.5, 2, 2], 0.25)).toBe(-2.25);
    expect(quantile([5], 0.75)).toBe(5);
    expect(quantile([10, 0], 0)).toBe(0);
    expect(quantile([10, 0], 1)).toBe(10);
  });
});
