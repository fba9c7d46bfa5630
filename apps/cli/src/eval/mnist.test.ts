import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { digitsToImages, loadMnistDigits } from "./mnist.js";
import { LegacyRandomState } from "./numpy-random.js";

describe("the MNIST digits and the held-out split of tools/train/export_mnist.py", () => {
  it("matches numpy's RandomState(seed).permutation", () => {
    // Values printed by numpy 2.4: np.random.RandomState(20240607).permutation(10), RandomState(5).permutation(1001)[:8].
    expect(new LegacyRandomState(20240607).permutation(10)).toEqual([4, 3, 2, 8, 1, 9, 6, 7, 0, 5]);
    expect(new LegacyRandomState(5).permutation(1001).slice(0, 8)).toEqual([
      544, 515, 193, 11, 279, 653, 643, 763,
    ]);
  });

  it("reproduces export_mnist.py's sha256 of images + labels + held-out indices", async () => {
    const digits = await loadMnistDigits();
    expect(digits.labels.length).toBe(10_000);
    expect(digits.heldout).toHaveLength(1000);
    expect(digits.heldout.slice(0, 5)).toEqual([30, 40, 51, 62, 71]);
    const hash = createHash("sha256");
    hash.update(digits.pixels);
    hash.update(new Uint8Array(BigInt64Array.from(Array.from(digits.labels, BigInt)).buffer));
    hash.update(new Uint8Array(BigInt64Array.from(digits.heldout.map((index) => BigInt(index))).buffer));
    expect(hash.digest("hex").slice(0, 16)).toBe("b9602dc4387f3c78");
    const images = digitsToImages(digits, [0]);
    expect(images).toHaveLength(1024);
    expect(images[0]).toBe(-1);
    expect(Math.max(...images)).toBeLessThanOrEqual(1);
  });
});
