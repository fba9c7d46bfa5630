import { describe, expect, it } from "vitest";
import { input, reference } from "./__fixtures__/load.js";
import { meanSquaredError, psnr, ssim } from "./image-quality.js";

function closeAll(got: Float64Array, want: number[], tolerance: number): void {
  expect(got).toHaveLength(want.length);
  for (const [i, value] of want.entries()) {
    expect(Math.abs(got[i]! - value)).toBeLessThan(tolerance * Math.max(1, Math.abs(value)));
  }
}

describe("MSE / PSNR / SSIM against numpy + scipy.ndimage references", () => {
  it.each(["rgb", "gray"])("%s", (name) => {
    const test = input(`images.${name}.test`);
    const references = input(`images.${name}.reference`).data;
    const want = reference.images[name]!;
    const options = { dataRange: want.dataRange };
    closeAll(meanSquaredError(test.data, references, test.shape).perImage, want.mse, 1e-12);
    closeAll(psnr(test.data, references, test.shape, options).perImage, want.psnr, 1e-12);
    closeAll(ssim(test.data, references, test.shape, options).perImage, want.ssim, 1e-12);
    const mean = ssim(test.data, references, test.shape, options).mean;
    expect(mean).toBeCloseTo(want.ssim.reduce((a, b) => a + b, 0) / want.ssim.length, 12);
  });
});

describe("image metrics", () => {
  it("give 0 / Infinity / 1 for identical images", () => {
    const image = input("images.rgb.reference");
    expect(meanSquaredError(image.data, image.data, image.shape).mean).toBe(0);
    expect(psnr(image.data, image.data, image.shape).mean).toBe(Number.POSITIVE_INFINITY);
    expect(ssim(image.data, image.data, image.shape).mean).toBeCloseTo(1, 12);
  });

  it("rejects bad input", () => {
    const a = new Float32Array(2 * 1 * 12 * 12);
    expect(() => ssim(a, a, [2, 1, 12, 12], { dataRange: 0 })).toThrow(
      /options.dataRange: expected a positive number/,
    );
    expect(() => ssim(new Float32Array(100), new Float32Array(100), [1, 1, 10, 10])).toThrow(
      /H and W of at least 11/,
    );
    expect(() => psnr(a, new Float32Array(5), [2, 1, 12, 12])).toThrow(
      /references.length: expected 288 values/,
    );
    expect(() => meanSquaredError(a, a, [2, 144])).toThrow(/shape: expected \[N, C, H, W\]/);
  });
});
