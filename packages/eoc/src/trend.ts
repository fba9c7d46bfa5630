import { interpolationWeights } from "@ditcache/cache";

/**
 * Weights c_j of the trend observable t = Σ_j c_j F_j over a site's computed values (most recent
 * first, at `steps`): the order-k forecast at `step` minus the last value, where the forecast is
 * the degree-k polynomial through the last k+1 values (TaylorSeer's order-k forecast by divided
 * differences). With fewer values than k+1 it uses the order they allow; with one, there is no
 * trend (an empty list). Order 1 gives (F_last - F_prev)·(step - last)/(last - prev).
 */
export function trendWeights(steps: readonly number[], step: number, order: number): number[] {
  const points = steps.slice(0, order + 1);
  if (points.length < 2) return [];
  const weights = interpolationWeights(points, step);
  weights[0]! -= 1;
  return weights;
}

/**
 * The coefficients a correction adds to the computed values for its trend part: `gain`·t_k, or
 * with a `curvatureGain` c, gain·t_1 + c·(t_k - t_1) — the first-order trend and the rest of the
 * order-k forecast at separate gains (c = gain is the plain forecast, c = 0 the first-order one).
 * An empty list where no trend exists yet.
 */
export function trendIncrements(
  steps: readonly number[],
  step: number,
  order: number,
  gain: number,
  curvatureGain?: number,
): number[] {
  const trend = trendWeights(steps, step, order);
  if (curvatureGain === undefined || trend.length <= 2) return trend.map((weight) => gain * weight);
  const first = trendWeights(steps, step, 1);
  return trend.map((weight, j) => gain * (first[j] ?? 0) + curvatureGain * (weight - (first[j] ?? 0)));
}
