import { invalidArgument } from "@ditcache/core";

/** Options of {@link psnr} and {@link ssim}. */
export interface ImageQualityOptions {
  /**
   * Width of the value range, max - min (2 for images in [-1, 1], 1 for [0, 1], 255 for bytes).
   * @defaultValue 2 (images in [-1, 1], as the diffusion models produce them)
   */
  dataRange?: number;
}

/** A per-image metric and its mean over the batch. */
export interface ImageScores {
  /** One value per image (N). */
  perImage: Float64Array;
  /** Mean of `perImage`. */
  mean: number;
}

/** Gaussian window of SSIM (Wang et al. 2004): sigma 1.5, 11 taps (radius int(3.5 sigma + 0.5)). */
const SSIM_SIGMA = 1.5;
const SSIM_RADIUS = 5;
const SSIM_K1 = 0.01;
const SSIM_K2 = 0.03;

function checkPair(
  images: Float32Array,
  references: Float32Array,
  shape: readonly number[],
): [number, number, number, number] {
  if (!(images instanceof Float32Array)) invalidArgument("images", images, "a Float32Array");
  if (!(references instanceof Float32Array)) invalidArgument("references", references, "a Float32Array");
  if (!Array.isArray(shape) || shape.length !== 4 || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
    invalidArgument("shape", shape, "[N, C, H, W] positive integers");
  }
  const [n, c, h, w] = shape as [number, number, number, number];
  const size = n * c * h * w;
  if (images.length !== size)
    invalidArgument("images.length", images.length, `${size} values for shape [${shape.join(", ")}]`);
  if (references.length !== size) {
    invalidArgument("references.length", references.length, `${size} values for shape [${shape.join(", ")}]`);
  }
  return [n, c, h, w];
}

function dataRangeOf(options: ImageQualityOptions): number {
  const range = options.dataRange ?? 2;
  if (!(typeof range === "number" && Number.isFinite(range) && range > 0)) {
    invalidArgument("options.dataRange", range, "a positive number (max - min of the pixel range)");
  }
  return range;
}

function scores(perImage: Float64Array): ImageScores {
  let sum = 0;
  for (const value of perImage) sum += value;
  return { perImage, mean: sum / perImage.length };
}

/**
 * Mean squared error per image (over all channels and pixels), in float64.
 *
 * @param shape - [N, C, H, W] of both arrays.
 * @throws DitcacheError INVALID_ARGUMENT on size mismatches.
 */
export function meanSquaredError(
  images: Float32Array,
  references: Float32Array,
  shape: readonly number[],
): ImageScores {
  const [n, c, h, w] = checkPair(images, references, shape);
  const size = c * h * w;
  const perImage = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let j = i * size; j < (i + 1) * size; j++) {
      const delta = images[j]! - references[j]!;
      sum += delta * delta;
    }
    perImage[i] = sum / size;
  }
  return scores(perImage);
}

/**
 * Peak signal-to-noise ratio per image, 10 log10(dataRange^2 / MSE) in dB; Infinity for
 * identical images (then the mean is Infinity too).
 *
 * @param shape - [N, C, H, W] of both arrays.
 * @throws DitcacheError INVALID_ARGUMENT on size mismatches or a bad data range.
 */
export function psnr(
  images: Float32Array,
  references: Float32Array,
  shape: readonly number[],
  options: ImageQualityOptions = {},
): ImageScores {
  const range = dataRangeOf(options);
  const { perImage: mse } = meanSquaredError(images, references, shape);
  return scores(mse.map((value) => 10 * Math.log10((range * range) / value)));
}

/**
 * Structural similarity per image (Wang et al. 2004) with a Gaussian window (11 taps, sigma
 * 1.5), K1 = 0.01, K2 = 0.03 and population (not sample) variances, as
 * `skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
 * use_sample_covariance=False, data_range=...)`: the SSIM map is averaged over the pixels
 * whose window lies inside the image (a 5-pixel border is left out) and over channels.
 *
 * @param shape - [N, C, H, W] of both arrays; H and W at least 11.
 * @throws DitcacheError INVALID_ARGUMENT on size mismatches, images smaller than the window,
 *   or a bad data range.
 */
export function ssim(
  images: Float32Array,
  references: Float32Array,
  shape: readonly number[],
  options: ImageQualityOptions = {},
): ImageScores {
  const range = dataRangeOf(options);
  const [n, c, h, w] = checkPair(images, references, shape);
  const window = 2 * SSIM_RADIUS + 1;
  if (h < window || w < window)
    invalidArgument("shape", shape, `H and W of at least ${window} (the SSIM window)`);
  const kernel = new Float64Array(window);
  let kernelSum = 0;
  for (let t = -SSIM_RADIUS; t <= SSIM_RADIUS; t++) {
    const value = Math.exp((-0.5 * t * t) / (SSIM_SIGMA * SSIM_SIGMA));
    kernel[t + SSIM_RADIUS] = value;
    kernelSum += value;
  }
  for (let t = 0; t < window; t++) kernel[t] = kernel[t]! / kernelSum;
  const c1 = (SSIM_K1 * range) ** 2;
  const c2 = (SSIM_K2 * range) ** 2;
  const outH = h - 2 * SSIM_RADIUS;
  const outW = w - 2 * SSIM_RADIUS;
  // Five planes (x, y, xx, yy, xy), filtered along rows (valid) then columns (valid).
  const planes = new Float64Array(5 * h * w);
  const rows = new Float64Array(5 * h * outW);
  const filtered = new Float64Array(5 * outH * outW);
  const perImage = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let total = 0;
    for (let channel = 0; channel < c; channel++) {
      const offset = (i * c + channel) * h * w;
      for (let p = 0; p < h * w; p++) {
        const x = images[offset + p]!;
        const y = references[offset + p]!;
        planes[p] = x;
        planes[h * w + p] = y;
        planes[2 * h * w + p] = x * x;
        planes[3 * h * w + p] = y * y;
        planes[4 * h * w + p] = x * y;
      }
      for (let plane = 0; plane < 5; plane++) {
        const source = plane * h * w;
        const target = plane * h * outW;
        for (let r = 0; r < h; r++) {
          for (let col = 0; col < outW; col++) {
            let sum = 0;
            for (let t = 0; t < window; t++) sum += kernel[t]! * planes[source + r * w + col + t]!;
            rows[target + r * outW + col] = sum;
          }
        }
        const out = plane * outH * outW;
        for (let r = 0; r < outH; r++) {
          for (let col = 0; col < outW; col++) {
            let sum = 0;
            for (let t = 0; t < window; t++) sum += kernel[t]! * rows[target + (r + t) * outW + col]!;
            filtered[out + r * outW + col] = sum;
          }
        }
      }
      const area = outH * outW;
      let channelSum = 0;
      for (let p = 0; p < area; p++) {
        const muX = filtered[p]!;
        const muY = filtered[area + p]!;
        const varianceX = filtered[2 * area + p]! - muX * muX;
        const varianceY = filtered[3 * area + p]! - muY * muY;
        const covariance = filtered[4 * area + p]! - muX * muY;
        channelSum +=
          ((2 * muX * muY + c1) * (2 * covariance + c2)) /
          ((muX * muX + muY * muY + c1) * (varianceX + varianceY + c2));
      }
      total += channelSum / area;
    }
    perImage[i] = total / c;
  }
  return scores(perImage);
}
