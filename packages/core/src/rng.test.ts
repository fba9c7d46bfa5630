import { describe, expect, it } from "vitest";
import { DitcacheError } from "./errors.js";
import { createRng, gaussianNoise } from "./rng.js";

describe("createRng", () => {
  // Golden values, cross-checked with an independent Python port of the documented algorithm.
  it("reproduces the documented xoshiro128** stream", () => {
    const rng = createRng(0);
    expect([rng.nextUint32(), rng.nextUint32(), rng.nextUint32(), rng.nextUint32()]).toEqual([
      3088788187, 3190674640, 2151701037, 225341625,
    ]);
    const large = createRng(2 ** 40 + 5);
    expect([large.nextUint32(), large.nextUint32()]).toEqual([3104507034, 2226309670]);
  });

  it("reproduces the documented uniforms and Box–Muller normals", () => {
    const rng = createRng(42);
    expect(rng.uniform()).toBe(0.36800107161050477);
    expect(rng.uniform()).toBe(0.8313511586835285);
    expect(rng.normal()).toBeCloseTo(0.11126611393800415, 14);
    expect(rng.normal()).toBeCloseTo(-0.14152395435917814, 14);
  });

  it("gives the same output for the same seed and different output for another", () => {
    expect(Array.from(createRng(7).normals(64))).toEqual(Array.from(createRng(7).normals(64)));
    expect(Array.from(createRng(7).normals(8))).not.toEqual(Array.from(createRng(8).normals(8)));
    expect(Array.from(gaussianNoise(3, [2, 3, 4]))).toEqual(Array.from(createRng(3).normals(24)));
  });

  it("draws uniforms in [0, 1) and normals with mean ~0 and std ~1", () => {
    const rng = createRng(123);
    let low = 1;
    let high = 0;
    for (let i = 0; i < 10_000; i++) {
      const u = rng.uniform();
      low = Math.min(low, u);
      high = Math.max(high, u);
    }
    expect(low).toBeGreaterThanOrEqual(0);
    expect(high).toBeLessThan(1);
    const values = gaussianNoise(5, [100_000]);
    const mean = values.reduce((s, v) => s + v, 0) / values.length;
    const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / values.length;
    expect(Math.abs(mean)).toBeLessThan(0.02); // 5 standard errors
    expect(Math.abs(Math.sqrt(variance) - 1)).toBeLessThan(0.02);
  });

  it("rejects bad seeds and sizes with INVALID_ARGUMENT", () => {
    for (const seed of [-1, 1.5, Number.NaN, 2 ** 53]) {
      expect(() => createRng(seed)).toThrow(DitcacheError);
    }
    expect(() => createRng(1).normals(-1)).toThrow(/n: expected a non-negative integer/);
    expect(() => gaussianNoise(1, [2, -1])).toThrow(/shape/);
  });
});
