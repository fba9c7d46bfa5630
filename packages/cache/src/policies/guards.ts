import type { ParamSchema, ParamValues } from "../params.js";
import { DEFAULT_GUARDS, type GuardRails } from "../policy.js";

/** Parameters every dynamic policy accepts: the shared guard rails and per-half decisions. */
export const guardParams: ParamSchema = {
  warmupSteps: { type: "integer", min: 0, description: "steps 0..warmupSteps-1 always compute" },
  maxConsecutiveReuse: {
    type: "integer",
    min: 1,
    description: "compute after this many consecutive reuses (inf allowed)",
  },
  stepMask: {
    type: "integer[]",
    description: "steps that always compute; negative counts from the end (-1 = last)",
  },
  perHalf: { type: "boolean", description: "decide per CFG half (rows of each half reuse independently)" },
};

/** Options of the shared guard rails, as each dynamic policy's options carry them. */
export interface GuardOptions {
  /** Steps `0 .. warmupSteps-1` always compute. */
  warmupSteps?: number;
  /** A site computes after this many consecutive reuses. */
  maxConsecutiveReuse?: number;
  /** Steps that always compute; negative indices count from the end. */
  stepMask?: readonly number[];
  /** Decide per CFG half. @defaultValue false */
  perHalf?: boolean;
}

/** The guard rails from validated parameters, over a policy's own defaults. */
export function guardsFrom(params: ParamValues, defaults: Partial<GuardRails> = {}): GuardRails {
  return {
    warmupSteps:
      (params.warmupSteps as number | undefined) ?? defaults.warmupSteps ?? DEFAULT_GUARDS.warmupSteps,
    maxConsecutiveReuse:
      (params.maxConsecutiveReuse as number | undefined) ??
      defaults.maxConsecutiveReuse ??
      DEFAULT_GUARDS.maxConsecutiveReuse,
    stepMask:
      (params.stepMask as readonly number[] | undefined) ?? defaults.stepMask ?? DEFAULT_GUARDS.stepMask,
  };
}
