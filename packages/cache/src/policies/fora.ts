import { DitcacheError } from "@ditcache/core";
import { formatSpec, type ParamSchema, validateParams } from "../params.js";
import type { CachePolicy } from "../policy.js";

/** Parameters of {@link foraPolicy}. */
export const foraPolicyParams: ParamSchema = {
  interval: { type: "integer", min: 1, description: "compute every N-th step, reuse the N-1 between" },
  reuseEvery: {
    type: "integer",
    min: 2,
    description: "reuse only at steps s with s mod M = 1, compute the rest",
  },
};

/** Options of {@link foraPolicy}; give `interval` or `reuseEvery`, not both. */
export interface ForaPolicyOptions {
  /**
   * N: compute at steps s with s mod N = 0, reuse the N-1 steps between (level (N-1)/N when N
   * divides the step count): 2 = 50%, 4 = 75%, 1 = no caching. @defaultValue 2
   */
  interval?: number;
  /** M: reuse only at steps s with s mod M = 1 (level 1/M): 4 = 25%; 2 is the same as interval 2. */
  reuseEvery?: number;
}

/**
 * FORA (Selvaraju et al., "FORA: Fast-Forward Caching in Diffusion Transformer Acceleration",
 * 2024): static caching of every block's attention and MLP outputs (before the adaLN gate, which
 * is re-applied with the current step's values), recomputed every N steps. `reuseEvery` gives
 * the lighter levels (25% at M = 4) the EOC paper reports for FORA: reused steps are always one
 * step after a computed one.
 */
export function foraPolicy(options: ForaPolicyOptions = {}): CachePolicy {
  const params = validateParams("fora", foraPolicyParams, { ...options });
  if (params.interval !== undefined && params.reuseEvery !== undefined) {
    throw new DitcacheError("INVALID_ARGUMENT", "fora: expected interval or reuseEvery, got both");
  }
  const reuseEvery = params.reuseEvery as number | undefined;
  const interval = (params.interval as number | undefined) ?? (reuseEvery === undefined ? 2 : undefined);
  const reuses = (index: number): boolean =>
    interval !== undefined ? index % interval !== 0 : index % reuseEvery! === 1;
  return {
    name: "fora",
    spec: formatSpec("fora", foraPolicyParams, interval !== undefined ? { interval } : { reuseEvery }),
    dynamic: false,
    sites: ["attn", "mlp"],
    decide: (query) => (reuses(query.step.index) ? "reuse" : "compute"),
    cachingLevel: (steps) => {
      let reused = 0;
      for (let index = 0; index < steps; index++) if (reuses(index)) reused++;
      return steps > 0 ? reused / steps : 0;
    },
  };
}
