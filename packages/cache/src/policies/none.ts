import type { ParamSchema } from "../params.js";
import type { CachePolicy } from "../policy.js";

/** Parameters of {@link nonePolicy}: none. */
export const nonePolicyParams: ParamSchema = {};

/** No caching: every site computes; the engine is then bit-identical to an uncached model. */
export function nonePolicy(): CachePolicy {
  return {
    name: "none",
    spec: "none",
    dynamic: false,
    sites: [],
    decide: () => "compute",
    cachingLevel: () => 0,
  };
}
