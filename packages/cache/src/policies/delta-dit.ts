import { invalidArgument } from "@ditcache/core";
import { formatSpec, type ParamSchema, validateParams } from "../params.js";
import type { BlockRange, CachePolicy } from "../policy.js";

/** Parameters of {@link deltaDitPolicy}. */
export const deltaDitPolicyParams: ParamSchema = {
  interval: { type: "integer", min: 1, description: "compute everything every N-th step" },
  blocks: { type: "integer", min: 1, description: "blocks in the cached front / rear range (<= depth/2)" },
  boundary: { type: "number", min: 0, max: 1, description: "fraction of steps in the early (outline) stage" },
};

/** Options of {@link deltaDitPolicy}. */
export interface DeltaDitPolicyOptions {
  /** N: every step s with s mod N = 0 computes all blocks. @defaultValue 2 */
  interval?: number;
  /** Nc: blocks in the cached range. @defaultValue floor(depth / 2) */
  blocks?: number;
  /** Steps s < round(boundary · steps) are the early stage. @defaultValue 0.5 */
  boundary?: number;
}

/**
 * Δ-DiT (Chen et al., "Δ-DiT: A Training-Free Acceleration Method Tailored for Diffusion
 * Transformers", 2024): caches the feature offset (residual) of a range of blocks rather than
 * single layers. Front blocks shape the outline and rear blocks the details, so in the early
 * stage the rear range `[depth-Nc, depth-1]` is reused and in the late stage the front range
 * `[0, Nc-1]`; every N-th step computes all. Level: reused steps · Nc / (steps · depth).
 */
export function deltaDitPolicy(options: DeltaDitPolicyOptions = {}): CachePolicy {
  const params = validateParams("delta-dit", deltaDitPolicyParams, { ...options });
  const interval = (params.interval as number | undefined) ?? 2;
  const boundary = (params.boundary as number | undefined) ?? 0.5;
  const blocksOption = params.blocks as number | undefined;
  const cachedBlocks = (depth: number): number => {
    const count = blocksOption ?? Math.floor(depth / 2);
    if (count < 1 || count > Math.floor(depth / 2)) {
      invalidArgument(
        "delta-dit blocks",
        count,
        `an integer in [1, ${Math.floor(depth / 2)}] for a ${depth}-block model`,
      );
    }
    return count;
  };
  const ranges = (depth: number): BlockRange[] => {
    const count = cachedBlocks(depth);
    return [
      { start: 0, end: count - 1 },
      { start: depth - count, end: depth - 1 },
    ];
  };
  const reusesRange = (index: number, count: number, front: boolean): boolean => {
    if (index % interval === 0) return false;
    const early = index < Math.round(boundary * count);
    return front ? !early : early;
  };
  return {
    name: "delta-dit",
    spec: formatSpec("delta-dit", deltaDitPolicyParams, { interval, blocks: blocksOption, boundary }),
    dynamic: false,
    sites: ["blocks"],
    ranges,
    decide: (query) =>
      reusesRange(query.step.index, query.step.count, query.site.block === 0) ? "reuse" : "compute",
    cachingLevel: (steps, depth) => {
      const count = cachedBlocks(depth);
      let reusedSteps = 0;
      for (let index = 0; index < steps; index++) if (index % interval !== 0) reusedSteps++;
      return steps > 0 ? (reusedSteps * count) / (steps * depth) : 0;
    },
  };
}
