import { describe, expect, it } from "vitest";
import { assertShape, broadcastShapes, formatShape, normalizeAxis, sizeOf } from "./shape.js";

describe("shape helpers", () => {
  it("sizeOf and formatShape", () => {
    expect(sizeOf([])).toBe(1);
    expect(sizeOf([2, 3, 4])).toBe(24);
    expect(sizeOf([2, 0])).toBe(0);
    expect(formatShape([2, 3])).toBe("[2, 3]");
  });

  it("broadcastShapes follows NumPy rules", () => {
    expect(broadcastShapes([2, 1, 4], [3, 1])).toEqual([2, 3, 4]);
    expect(broadcastShapes([], [5])).toEqual([5]);
    expect(broadcastShapes([1], [0])).toEqual([0]);
    expect(() => broadcastShapes([2, 3], [4])).toThrow(
      "cannot broadcast shapes [2, 3] and [4]: dimension -1 is 3 vs 4 (expected equal or 1)",
    );
    try {
      broadcastShapes([2], [3]);
    } catch (error) {
      expect((error as { code: string }).code).toBe("SHAPE_MISMATCH");
    }
  });

  it("normalizeAxis accepts [-rank, rank) only", () => {
    expect(normalizeAxis(-1, 3)).toBe(2);
    expect(normalizeAxis(0, 3)).toBe(0);
    expect(() => normalizeAxis(3, 3)).toThrow(/axis: expected an integer in \[-3, 3\)/);
    expect(() => normalizeAxis(-4, 3)).toThrow(/axis/);
    expect(() => normalizeAxis(0.5, 3)).toThrow(/axis/);
  });

  it("assertShape names the tensor and allows -1 wildcards", () => {
    expect(() => assertShape("x", [2, 3], [2, -1])).not.toThrow();
    expect(() => assertShape("x", [2, 3], [2, 4])).toThrow("x: expected shape [2, 4], got [2, 3]");
    expect(() => assertShape("x", [2, 3], [2, 3, 1])).toThrow(/SHAPE|expected shape/);
  });
});
