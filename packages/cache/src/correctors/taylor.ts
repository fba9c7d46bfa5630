import type { Tensor, WeightedTerm } from "@ditcache/core";
import type { CorrectionContext, Corrector } from "../corrector.js";
import { formatSpec, type ParamSchema, validateParams } from "../params.js";

/** Parameters of {@link taylorCorrector}. */
export const taylorCorrectorParams: ParamSchema = {
  order: {
    type: "integer",
    min: 0,
    max: 4,
    description: "derivative order of the forecast (0 = plain reuse)",
  },
};

/** Options of {@link taylorCorrector}. */
export interface TaylorCorrectorOptions {
  /** Order k of the forecast; it uses the last k+1 computed values. @defaultValue 1 */
  order?: number;
}

/**
 * Weights w_j with Σ w_j F(s_j) = P(s), where P is the polynomial through the points
 * (s_j, F(s_j)): Lagrange interpolation, exact for polynomials of degree < points.length.
 */
export function interpolationWeights(steps: readonly number[], at: number): number[] {
  return steps.map((sj, j) => {
    let weight = 1;
    steps.forEach((sm, m) => {
      if (m !== j) weight *= (at - sm) / (sj - sm);
    });
    return weight;
  });
}

/**
 * TaylorSeer (Liu et al., "From Reusing to Forecasting: Accelerating Diffusion Models with
 * TaylorSeers", ICCV 2025): forecasts the feature at the reused step from its derivatives,
 * estimated by finite differences of the last k+1 computed values. With the step index as the
 * variable and uneven spacing allowed, the order-k Taylor forecast by divided differences equals
 * the degree-k polynomial through those values, evaluated at the reused step: so order 1 is exact
 * on a linear trajectory and order 2 on a quadratic. With fewer computed values than k+1 (early
 * in a run) it uses the order the history allows.
 */
export function taylorCorrector(options: TaylorCorrectorOptions = {}): Corrector {
  const params = validateParams("taylor", taylorCorrectorParams, { ...options });
  const order = (params.order as number | undefined) ?? 1;
  /** The forecast's terms; undefined for plain reuse (one computed value so far). */
  const termsOf = (context: CorrectionContext): WeightedTerm[] | undefined => {
    const points = context.history.slice(0, order + 1);
    if (points.length < 2) return undefined;
    const weights = interpolationWeights(
      points.map((point) => point.step),
      context.step.index,
    );
    return points.map((point, j) => ({ tensor: point.value, weight: weights[j]! }));
  };
  return {
    name: "taylor",
    spec: formatSpec("taylor", taylorCorrectorParams, { order }),
    historyLength: order + 1,
    async correct(context): Promise<Tensor> {
      const terms = termsOf(context);
      return terms === undefined ? context.cached : context.math.combine(terms);
    },
    async correctTerms(context): Promise<readonly WeightedTerm[]> {
      return termsOf(context) ?? [{ tensor: context.cached, weight: 1 }];
    },
  };
}
