import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRng, DitcacheError, writeSafetensors } from "@ditcache/core";
import { afterAll, describe, expect, it } from "vitest";
import { input } from "./__fixtures__/load.js";
import { FeatureStats } from "./feature-stats.js";

const directory = mkdtempSync(join(tmpdir(), "ditcache-metrics-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

function maxRelativeDifference(a: Float64Array, b: Float64Array): number {
  let scale = 0;
  let difference = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]!));
    difference = Math.max(difference, Math.abs(a[i]! - b[i]!));
  }
  return difference / scale;
}

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return DitcacheError.isInstance(error) ? error.code : "not a DitcacheError";
  }
  return undefined;
}

async function asyncCodeOf(action: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await action();
  } catch (error) {
    return DitcacheError.isInstance(error) ? error.code : "not a DitcacheError";
  }
  return undefined;
}

const features = input("fid.dim64.a").data; // 400 x 64
const dim = 64;

describe("FeatureStats", () => {
  it("matches a two-pass mean and covariance", () => {
    const stats = new FeatureStats(dim).add(features, dim);
    const count = features.length / dim;
    const mean = new Float64Array(dim);
    for (let s = 0; s < count; s++)
      for (let i = 0; i < dim; i++) mean[i] = mean[i]! + features[s * dim + i]! / count;
    const covariance = new Float64Array(dim * dim);
    for (let s = 0; s < count; s++) {
      for (let i = 0; i < dim; i++) {
        for (let j = 0; j < dim; j++) {
          covariance[i * dim + j] =
            covariance[i * dim + j]! +
            ((features[s * dim + i]! - mean[i]!) * (features[s * dim + j]! - mean[j]!)) / (count - 1);
        }
      }
    }
    expect(stats.count).toBe(count);
    expect(maxRelativeDifference(stats.mean(), mean)).toBeLessThan(1e-13);
    expect(maxRelativeDifference(stats.covariance(), covariance)).toBeLessThan(1e-13);
  });

  it("gives the same stats for any batching and for merged shards", () => {
    const whole = new FeatureStats(dim).add(features, dim);
    const streamed = new FeatureStats(dim);
    for (let start = 0; start < 400; start += 37)
      streamed.add(features.subarray(start * dim, Math.min(start + 37, 400) * dim), dim);
    const shards = [0, 1, 150, 151, 400].slice(1).map((end, index, ends) => {
      const start = index === 0 ? 0 : ends[index - 1]!;
      return new FeatureStats(dim).add(features.subarray(start * dim, end * dim), dim);
    });
    const merged = new FeatureStats(dim);
    for (const shard of shards) merged.merge(shard);
    for (const other of [streamed, merged]) {
      expect(other.count).toBe(400);
      expect(maxRelativeDifference(other.mean(), whole.mean())).toBeLessThan(1e-13);
      expect(maxRelativeDifference(other.covariance(), whole.covariance())).toBeLessThan(1e-13);
    }
    // Merging into a shard leaves the argument untouched.
    const firstCount = shards[1]!.count;
    shards[0]!.merge(shards[1]!);
    expect(shards[1]!.count).toBe(firstCount);
  });

  it("keeps memory flat in the sample count", () => {
    const rng = createRng(5);
    const small = new FeatureStats(8).add(rng.normals(8 * 10), 8);
    const large = new FeatureStats(8);
    for (let i = 0; i < 50; i++) large.add(rng.normals(8 * 1000), 8);
    expect(large.count).toBe(50_000);
    expect(large.toSafetensors().length).toBe(small.toSafetensors().length);
    expect(JSON.stringify(large.toJSON()).length).toBeLessThan(2 * JSON.stringify(small.toJSON()).length);
  });

  it("stays accurate when the mean is large against the spread", () => {
    // Values 1e4 + N(0, 1e-2): a float64 sum of squares would lose ~8 digits to cancellation.
    const rng = createRng(9);
    const count = 2000;
    const values = new Float64Array(count * 2);
    for (let i = 0; i < values.length; i++) values[i] = 1e4 + 1e-2 * rng.normal();
    const stats = new FeatureStats(2);
    for (let start = 0; start < count; start += 100)
      stats.add(values.subarray(start * 2, (start + 100) * 2), 2);
    let mean = 0;
    for (let s = 0; s < count; s++) mean += values[s * 2]! / count;
    let variance = 0;
    for (let s = 0; s < count; s++) variance += (values[s * 2]! - mean) ** 2 / (count - 1);
    expect(Math.abs(stats.covariance()[0]! - variance) / variance).toBeLessThan(1e-9);
  });

  it("round-trips through safetensors files and JSON", async () => {
    const stats = new FeatureStats(dim, { extractor: { name: "mnist-classifier", hash: "abc123" } }).add(
      features,
      dim,
    );
    const path = join(directory, "stats.safetensors");
    await stats.save(path);
    const loaded = await FeatureStats.load(path, { name: "mnist-classifier", dim: 64, hash: "abc123" });
    expect(loaded.count).toBe(400);
    expect(loaded.extractor).toEqual({ name: "mnist-classifier", hash: "abc123" });
    expect(maxRelativeDifference(loaded.mean(), stats.mean())).toBeLessThan(1e-13);
    expect(maxRelativeDifference(loaded.covariance(), stats.covariance())).toBeLessThan(1e-13);
    const fromJson = FeatureStats.fromJSON(JSON.parse(JSON.stringify(stats)));
    expect(maxRelativeDifference(fromJson.covariance(), stats.covariance())).toBeLessThan(1e-15);
    expect(fromJson.extractor).toEqual(stats.extractor);
    // A loaded shard merges exactly like the original.
    const half = new FeatureStats(dim, { extractor: { name: "mnist-classifier", hash: "abc123" } }).add(
      features.subarray(0, 200 * dim),
      dim,
    );
    const rest = new FeatureStats(dim, { extractor: { name: "mnist-classifier", hash: "abc123" } }).add(
      features.subarray(200 * dim),
      dim,
    );
    const reloaded = FeatureStats.fromSafetensors(half.toSafetensors()).merge(
      FeatureStats.fromSafetensors(rest.toSafetensors()),
    );
    expect(maxRelativeDifference(reloaded.covariance(), stats.covariance())).toBeLessThan(1e-12);
  });

  it("refuses stats of another extractor, hash or dimension", async () => {
    const stats = new FeatureStats(4, { extractor: { name: "mnist-classifier", hash: "abc" } }).add(
      new Float32Array(12).fill(1),
      4,
    );
    const path = join(directory, "other.safetensors");
    await stats.save(path);
    await expect(FeatureStats.load(path, { name: "inception-v3", dim: 2048 })).rejects.toThrow(
      /other.safetensors: stats were computed with extractor "mnist-classifier" \(hash abc\) \(dim 4\), expected extractor "inception-v3", dim 2048/,
    );
    expect(await asyncCodeOf(() => FeatureStats.load(path, { dim: 8 }))).toBe("INCOMPATIBLE_FILE");
    expect(await asyncCodeOf(() => FeatureStats.load(path, { name: "mnist-classifier", hash: "def" }))).toBe(
      "INCOMPATIBLE_FILE",
    );
    expect(await asyncCodeOf(() => FeatureStats.load(join(directory, "missing.safetensors")))).toBe(
      "NOT_FOUND",
    );
    const weights = join(directory, "weights.safetensors");
    writeFileSync(weights, writeSafetensors({ w: { shape: [1], data: new Float32Array(1) } }));
    await expect(FeatureStats.load(weights)).rejects.toThrow(
      /metadata kind is undefined, expected "ditcache.feature-stats"/,
    );
    const mnist = new FeatureStats(4, { extractor: { name: "mnist-classifier" } });
    const inception = new FeatureStats(4, { extractor: { name: "inception-v3" } });
    expect(codeOf(() => mnist.merge(inception))).toBe("INVALID_ARGUMENT");
  });

  it("rejects bad input", () => {
    expect(() => new FeatureStats(0)).toThrow(/dim: expected a positive integer, got 0/);
    const stats = new FeatureStats(3);
    expect(() => stats.add(new Float32Array(7), 3)).toThrow(
      /features.length: expected a multiple of dim 3, got 7/,
    );
    expect(() => stats.add(new Float32Array(6), 2)).toThrow(
      /dim: expected 3 \(the stats' dimension\), got 2/,
    );
    expect(codeOf(() => stats.add(new Float32Array([1, Number.NaN, 3]), 3))).toBe("NUMERIC_FAULT");
    expect(stats.count).toBe(0);
    expect(codeOf(() => new FeatureStats(1).add(new Float32Array([1e30, -1e30]), 1).toSafetensors())).toBe(
      "NUMERIC_FAULT",
    );
  });
});
