import { DitcacheError } from "@ditcache/core";
import { describe, expect, it } from "vitest";
import { input, reference } from "./__fixtures__/load.js";
import { FeatureStats } from "./feature-stats.js";
import { frechetDistance, frechetDistanceOfGaussians } from "./frechet.js";

function statsOf(name: string, dim: number): FeatureStats {
  return new FeatureStats(dim).add(input(name).data, dim);
}

function relativeError(got: number, want: number): number {
  return Math.abs(got - want) / Math.abs(want);
}

describe("frechetDistance against pytorch-fid (scipy sqrtm) fixtures", () => {
  it.each(Object.keys(reference.fid))("%s", (name) => {
    const { dim, pytorchFid, eigh } = reference.fid[name]!;
    const fid = frechetDistance(statsOf(`fid.${name}.a`, dim), statsOf(`fid.${name}.b`, dim));
    // Measured: <= 1e-9 relative on every case (see README).
    expect(relativeError(fid, pytorchFid)).toBeLessThan(1e-6);
    expect(relativeError(fid, eigh)).toBeLessThan(1e-6);
  });

  it("fits the mean and trace of the fixtures", () => {
    const { meanA, traceCovA } = reference.fid.dim16!;
    const stats = statsOf("fid.dim16.a", 16);
    const mean = stats.mean();
    for (const [i, value] of meanA!.entries()) expect(mean[i]).toBeCloseTo(value, 12);
    const covariance = stats.covariance();
    let trace = 0;
    for (let i = 0; i < 16; i++) trace += covariance[i * 16 + i]!;
    expect(relativeError(trace, traceCovA)).toBeLessThan(1e-12);
  });
});

describe("frechetDistance", () => {
  it("is zero for one set against itself and symmetric", () => {
    const a = statsOf("fid.dim64.a", 64);
    const b = statsOf("fid.dim64.b", 64);
    expect(Math.abs(frechetDistance(a, a.clone()))).toBeLessThan(1e-9);
    expect(frechetDistance(a, b)).toBeCloseTo(frechetDistance(b, a), 9);
  });

  it("gives |mu1 - mu2|^2 + sum (sqrt s1 - sqrt s2)^2 for diagonal Gaussians", () => {
    const fid = frechetDistanceOfGaussians(
      { mean: [0, 1], covariance: [4, 0, 0, 1] },
      { mean: [3, 1], covariance: [1, 0, 0, 9] },
      2,
    );
    expect(fid).toBeCloseTo(9 + (2 - 1) ** 2 + (1 - 3) ** 2, 12);
  });

  it("refuses stats of different extractors or dimensions", () => {
    const a = new FeatureStats(2, { extractor: { name: "mnist-classifier" } }).add(
      new Float32Array([0, 1, 2, 3, 4, 6]),
      2,
    );
    const b = new FeatureStats(2, { extractor: { name: "inception" } }).add(
      new Float32Array([0, 1, 2, 3, 4, 6]),
      2,
    );
    expect(() => frechetDistance(a, b)).toThrow(
      /b: stats from extractor "inception" \(dim 2\), expected extractor "mnist-classifier"/,
    );
    const c = new FeatureStats(3).add(new Float32Array(9), 3);
    expect(() => frechetDistance(a, c)).toThrow(DitcacheError);
    const single = new FeatureStats(2).add(new Float32Array([1, 2]), 2);
    expect(() => frechetDistance(single, a)).toThrow(/a.count: expected at least 2 samples/);
  });

  it("rejects mismatched moments", () => {
    expect(() =>
      frechetDistanceOfGaussians({ mean: [0], covariance: [1] }, { mean: [0, 0], covariance: [1] }, 1),
    ).toThrow(/b.mean.length: expected 1 values for dim 1, got 2/);
  });
});
