import type { BatchHalf, SiteId, SiteKind, StepInfo } from "@ditcache/core";

/** What a policy decides for one site at one step. */
export type Decision = "compute" | "reuse";

/** An inclusive range of blocks whose combined residual a policy caches as one site. */
export interface BlockRange {
  /** First block. */
  readonly start: number;
  /** Last block, inclusive. */
  readonly end: number;
}

/**
 * A runtime signal the engine measures for a dynamic policy: the relative L1 change
 * `mean|x - x_ref| / mean|x_ref|` of a value between the current step and a reference step.
 */
export interface SignalRequest {
  /** Name the policy reads it by, e.g. "indicator". */
  readonly name: string;
  /**
   * What is measured: `"indicator"` (the timestep-modulated input of block 0 that the model
   * offers on the `blocks` site starting at block 0), or a site key (e.g. `"block0"`) whose value
   * is measured each time it is computed (the residual for block sites, the output for branches).
   */
  readonly source: string;
  /**
   * Which earlier value it is compared with: the previous forward (`"previousStep"`, TeaCache),
   * or the last forward in which nothing was reused (`"lastFullStep"`, First-Block-Cache).
   */
  readonly reference: "previousStep" | "lastFullStep";
}

/**
 * Guard rails every dynamic policy shares; the engine enforces them after the policy's own
 * decision, so a policy cannot reuse where they say compute.
 */
export interface GuardRails {
  /** Steps `0 .. warmupSteps-1` always compute. @defaultValue 1 */
  readonly warmupSteps: number;
  /** A site computes after this many consecutive reuses. @defaultValue Infinity */
  readonly maxConsecutiveReuse: number;
  /** Steps that always compute; negative indices count from the end (-1 = last step). @defaultValue [] */
  readonly stepMask: readonly number[];
}

/** What a policy sees when asked about one site at one step. */
export interface DecisionQuery {
  /** The site (a `blocks` range for range policies). */
  readonly site: SiteId;
  /** The step. */
  readonly step: StepInfo;
  /** The CFG half decided for, when the policy asked for per-half decisions; undefined otherwise. */
  readonly half: BatchHalf | undefined;
  /** Number of blocks of the model, once the engine has seen the `blocks` site. */
  readonly depth: number | undefined;
  /** Step at which this site (and half) was last computed; undefined before the first. */
  readonly lastComputedStep: number | undefined;
  /** Reuses since the last compute. */
  readonly consecutiveReuses: number;
  /** A signal's value at a step (default: the current step); undefined where it was not measured. */
  signal(name: string, step?: number): number | undefined;
}

/**
 * "When": decides, per site and step, whether to compute or reuse. A policy holds no per-run
 * state (the engine owns all of it and hands the history in through {@link DecisionQuery}), so
 * one policy object can serve any number of runs and engines at once.
 */
export interface CachePolicy {
  /** Registered name, e.g. "fora". */
  readonly name: string;
  /** Spec string that recreates the policy through `parsePolicy`, e.g. "fora:interval=2". */
  readonly spec: string;
  /**
   * What the policy decides, where the spec does not say it: a table policy's spec names a file
   * (or nothing, for a table given inline), so two specs may decide alike (the same table under
   * another path) or differently (the file rewritten). Then this is a digest of the table, and
   * whatever was made for the policy (EOC priors) is tied to it. @defaultValue the spec
   */
  readonly identity?: string;
  /** Dynamic policies read runtime signals; static ones decide from the step and site alone. */
  readonly dynamic: boolean;
  /** Site kinds the policy decides on; the engine computes every other site untouched. */
  readonly sites: readonly SiteKind[];
  /**
   * Block ranges cached as one residual site when `sites` holds "blocks"; a range that is not
   * the model's own whole-stack site is assembled by the engine from the per-block sites.
   * @defaultValue the whole stack `[0, depth-1]`
   */
  ranges?(depth: number): readonly BlockRange[];
  /** Decide per CFG half (rows of each half reuse independently). @defaultValue false */
  readonly perHalf?: boolean;
  /** Guard rails the engine enforces; dynamic policies carry them, static ones usually do not. */
  readonly guards?: GuardRails;
  /** Signals the engine must measure for this policy. */
  readonly signals?: readonly SignalRequest[];
  /** Compute or reuse this site at this step. */
  decide(query: DecisionQuery): Decision;
  /**
   * The caching level (fraction of step x block computations reused) a static policy achieves
   * on a run of `steps` steps of a `depth`-block model; the shared suite checks it is achieved.
   */
  cachingLevel?(steps: number, depth: number): number;
}

/** Guard rails with nothing enforced beyond the first step. */
export const DEFAULT_GUARDS: GuardRails = {
  warmupSteps: 1,
  maxConsecutiveReuse: Number.POSITIVE_INFINITY,
  stepMask: [],
};

/** True when the guard rails force a compute at this step for a site with this many consecutive reuses. */
export function guardForcesCompute(guards: GuardRails, step: StepInfo, consecutiveReuses: number): boolean {
  if (step.index < guards.warmupSteps) return true;
  if (consecutiveReuses >= guards.maxConsecutiveReuse) return true;
  return guards.stepMask.some(
    (mask) => mask === step.index || (mask < 0 && mask + step.count === step.index),
  );
}
