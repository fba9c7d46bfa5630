import { createRng } from "@ditcache/core";
import { describe, expect, it } from "vitest";
import { input, reference } from "./__fixtures__/load.js";
import { precisionRecall } from "./precision-recall.js";

describe("precisionRecall", () => {
  it.each(["3", "5"])("matches the numpy reference with k = %s", (k) => {
    const result = precisionRecall(input("pr.real").data, input("pr.fake").data, 16, { k: Number(k) });
    expect(result.precision).toBe(reference.precisionRecall[k]!.precision);
    expect(result.recall).toBe(reference.precisionRecall[k]!.recall);
  });

  it("does not depend on the block size", () => {
    const real = input("pr.real").data;
    const fake = input("pr.fake").data;
    const expected = precisionRecall(real, fake, 16);
    expect(precisionRecall(real, fake, 16, { blockSize: 1 })).toEqual(expected);
    expect(precisionRecall(real, fake, 16, { blockSize: 1000 })).toEqual(expected);
  });

  it("is 1/1 for a set against itself and 0/0 for disjoint sets", () => {
    const points = createRng(3).normals(50 * 4);
    expect(precisionRecall(points, points, 4)).toEqual({ precision: 1, recall: 1 });
    const far = points.map((value) => value + 100);
    expect(precisionRecall(points, far, 4)).toEqual({ precision: 0, recall: 0 });
  });

  it("rejects bad input", () => {
    expect(() => precisionRecall(new Float32Array(12), new Float32Array(12), 4)).toThrow(
      /real: expected more than k = 3 samples, got "3 samples"/,
    );
    expect(() => precisionRecall(new Float32Array(20), new Float32Array(21), 4)).toThrow(
      /generated.length: expected a multiple of dim 4/,
    );
    expect(() => precisionRecall(new Float32Array(20), new Float32Array(20), 4, { k: 0 })).toThrow(
      /options.k/,
    );
  });
});
