import { DitcacheError, invalidArgument } from "@ditcache/core";
import { assertCompatible, FeatureStats } from "./feature-stats.js";
import { traceSqrtProduct } from "./linalg.js";

/** A Gaussian given by its mean (dim) and covariance (dim x dim, row-major, symmetric PSD). */
export interface GaussianMoments {
  /** Mean vector. */
  readonly mean: ArrayLike<number>;
  /** Covariance matrix, row-major. */
  readonly covariance: ArrayLike<number>;
}

/**
 * Fréchet distance between two Gaussians, computed in float64:
 * |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)).
 * The cross term is the sum of the square roots of the eigenvalues of sqrt(S1) S2 sqrt(S1),
 * a symmetric PSD matrix similar to S1 S2, so no complex arithmetic or non-symmetric matrix
 * square root is needed (and none of the imaginary residue scipy's `sqrtm` leaves on singular
 * covariances). Tiny negative eigenvalues from rounding are clamped to 0.
 *
 * @throws DitcacheError INVALID_ARGUMENT on length mismatches; NUMERIC_FAULT on non-finite input.
 */
export function frechetDistanceOfGaussians(a: GaussianMoments, b: GaussianMoments, dim: number): number {
  if (!Number.isSafeInteger(dim) || dim < 1) invalidArgument("dim", dim, "a positive integer");
  const check = (value: ArrayLike<number>, name: string, size: number): Float64Array => {
    if (value?.length !== size)
      invalidArgument(`${name}.length`, value?.length, `${size} values for dim ${dim}`);
    return value instanceof Float64Array ? value : Float64Array.from(value);
  };
  const mean1 = check(a.mean, "a.mean", dim);
  const mean2 = check(b.mean, "b.mean", dim);
  const cov1 = check(a.covariance, "a.covariance", dim * dim);
  const cov2 = check(b.covariance, "b.covariance", dim * dim);
  let meanTerm = 0;
  let traces = 0;
  for (let i = 0; i < dim; i++) {
    const delta = mean1[i]! - mean2[i]!;
    meanTerm += delta * delta;
    traces += cov1[i * dim + i]! + cov2[i * dim + i]!;
  }
  if (!Number.isFinite(meanTerm))
    throw new DitcacheError("NUMERIC_FAULT", "frechetDistance: non-finite means");
  const cross = traceSqrtProduct(cov1, cov2, dim);
  return meanTerm + traces - 2 * cross;
}

/**
 * FID-style Fréchet distance between the Gaussians fitted to two feature sets (usually generated
 * images against a reference set, both through the same {@link FeatureExtractor}).
 *
 * @example
 * const fid = frechetDistance(generatedStats, await FeatureStats.load("reference.safetensors", classifier));
 * @throws DitcacheError INVALID_ARGUMENT when the stats come from different extractors or
 *   dimensions, or hold fewer than 2 samples.
 */
export function frechetDistance(a: FeatureStats, b: FeatureStats): number {
  if (!(a instanceof FeatureStats)) invalidArgument("a", a, "a FeatureStats");
  if (!(b instanceof FeatureStats)) invalidArgument("b", b, "a FeatureStats");
  assertCompatible(a, b, "b");
  if (a.count < 2) invalidArgument("a.count", a.count, "at least 2 samples for a covariance");
  if (b.count < 2) invalidArgument("b.count", b.count, "at least 2 samples for a covariance");
  return frechetDistanceOfGaussians(
    { mean: a.mean(), covariance: a.covariance() },
    { mean: b.mean(), covariance: b.covariance() },
    a.dim,
  );
}
