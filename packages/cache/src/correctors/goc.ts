import type { Tensor, WeightedTerm } from "@ditcache/core";
import type { CorrectionContext, Corrector } from "../corrector.js";
import { formatSpec, type ParamSchema, validateParams } from "../params.js";

/** Parameters of {@link gocCorrector}. */
export const gocCorrectorParams: ParamSchema = {
  k: { type: "number", min: -4, max: 4, description: "gradient coefficient" },
  scaleByDistance: {
    type: "boolean",
    description: "scale the gradient by (reuse distance / spacing of the two computed values)",
  },
};

/** Options of {@link gocCorrector}. */
export interface GocCorrectorOptions {
  /**
   * Coefficient k. The GOC paper uses 1.2 on FORA and 0.8 on Learning-to-Cache (DiT-XL/2); 0.5
   * is the value measured best on the project's small model (MEASUREMENTS.md). @defaultValue 0.5
   */
  k?: number;
  /** Multiply k by `distance / (s_last - s_older)`. @defaultValue false (the paper's form) */
  scaleByDistance?: boolean;
}

/**
 * Gradient-Optimized Cache (GOC; Qiu et al., 2025, by the authors of EOC): corrects a reused feature with its own recent
 * change, `F + k (F - F_older)`, F the last computed value and F_older the one before. With only
 * one computed value it is plain reuse. (The paper also restricts it to chosen steps; combine
 * with a policy or a step-limited schedule for that.)
 */
export function gocCorrector(options: GocCorrectorOptions = {}): Corrector {
  const params = validateParams("goc", gocCorrectorParams, { ...options });
  const k = (params.k as number | undefined) ?? 0.5;
  const scaleByDistance = (params.scaleByDistance as boolean | undefined) ?? false;
  /** The corrected value's terms; undefined for plain reuse (one computed value so far). */
  const termsOf = (context: CorrectionContext): WeightedTerm[] | undefined => {
    const [last, older] = context.history;
    if (last === undefined || older === undefined) return undefined;
    const coefficient = scaleByDistance ? (k * context.distance) / (last.step - older.step) : k;
    return [
      { tensor: last.value, weight: 1 + coefficient },
      { tensor: older.value, weight: -coefficient },
    ];
  };
  return {
    name: "goc",
    spec: formatSpec("goc", gocCorrectorParams, { k, ...(scaleByDistance ? { scaleByDistance } : {}) }),
    historyLength: 2,
    async correct(context): Promise<Tensor> {
      const terms = termsOf(context);
      return terms === undefined ? context.cached : context.math.combine(terms);
    },
    async correctTerms(context): Promise<readonly WeightedTerm[]> {
      return termsOf(context) ?? [{ tensor: context.cached, weight: 1 }];
    },
  };
}
