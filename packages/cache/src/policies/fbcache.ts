import { formatSpec, type ParamSchema, validateParams } from "../params.js";
import type { CachePolicy } from "../policy.js";
import { type GuardOptions, guardParams, guardsFrom } from "./guards.js";

/** Parameters of {@link fbcachePolicy}. */
export const fbcachePolicyParams: ParamSchema = {
  threshold: {
    type: "number",
    min: 0,
    description: "reuse while block 0's residual changed less than this (relative L1)",
  },
  ...guardParams,
};

/** Options of {@link fbcachePolicy}. */
export interface FbcachePolicyOptions extends GuardOptions {
  /** Relative-L1 threshold; 0 never reuses. @defaultValue 0.08 */
  threshold?: number;
}

/**
 * First-Block-Cache (ParaAttention's FBCache, also in diffusers as FirstBlockCache): block 0 is
 * always computed; its residual is compared with the residual it had at the last step where
 * everything was computed, and when the relative L1 change is under the threshold the residual
 * of blocks 1..depth-1 is reused as one range. Signal: "firstBlockResidual".
 */
export function fbcachePolicy(options: FbcachePolicyOptions = {}): CachePolicy {
  const params = validateParams("fbcache", fbcachePolicyParams, { ...options });
  const threshold = (params.threshold as number | undefined) ?? 0.08;
  const guards = guardsFrom(params);
  return {
    name: "fbcache",
    spec: formatSpec("fbcache", fbcachePolicyParams, { ...params, threshold }),
    dynamic: true,
    sites: ["blocks"],
    ranges: (depth) => (depth > 1 ? [{ start: 1, end: depth - 1 }] : []),
    perHalf: (params.perHalf as boolean | undefined) ?? false,
    guards,
    signals: [{ name: "firstBlockResidual", source: "block0", reference: "lastFullStep" }],
    decide(query) {
      const change = query.signal("firstBlockResidual");
      return change !== undefined && change < threshold ? "reuse" : "compute";
    },
  };
}
