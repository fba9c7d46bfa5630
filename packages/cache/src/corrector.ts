import type { Backend, BatchHalf, SiteId, StepInfo, Tensor, WeightedTerm } from "@ditcache/core";

/** One computed value a site produced, with the step it was computed at. */
export interface ComputedValue {
  /** Step index the value was computed at. */
  readonly step: number;
  /** The value: pre-gate branch output for attn/mlp sites, the residual (output - input) for block sites. */
  readonly value: Tensor;
}

/** Compiled tensor arithmetic on the run's backend, for correctors. Results are new tensors the caller owns. */
export interface CacheMath {
  /** a + b. */
  add(a: Tensor, b: Tensor): Promise<Tensor>;
  /** a - b. */
  sub(a: Tensor, b: Tensor): Promise<Tensor>;
  /** Σ weight_i · tensor_i (tensors of one shape, or broadcasting to the first's), as one compiled unit. */
  combine(terms: readonly WeightedTerm[]): Promise<Tensor>;
}

/** Everything a corrector may use to turn a cached value into the value used at a reused step. */
export interface CorrectionContext {
  /** The site. */
  readonly site: SiteId;
  /** The site's stable key, e.g. "block3.attn" (priors are looked up by it). */
  readonly key: string;
  /** The CFG half when the policy decides per half; undefined when the value covers the whole batch. */
  readonly half: BatchHalf | undefined;
  /** The step being reused at. */
  readonly step: StepInfo;
  /** Step index the cached value was computed at (`history[0].step`). */
  readonly sourceStep: number;
  /** `step.index - sourceStep`. */
  readonly distance: number;
  /** The most recent computed value (`history[0].value`). */
  readonly cached: Tensor;
  /** Computed values, most recent first, at most {@link Corrector.historyLength} of them. */
  readonly history: readonly ComputedValue[];
  /** What the values are: pre-gate branch outputs or block residuals. */
  readonly valueKind: "branch" | "residual";
  /** The run's backend. */
  readonly backend: Backend;
  /** Compiled arithmetic on that backend. */
  readonly math: CacheMath;
}

/**
 * "How": turns the cached value into the value used at a reused site. Any corrector composes
 * with any policy. It returns either `context.cached` itself (plain reuse; the engine copies when
 * it must) or a new tensor, which the engine then owns. History tensors stay the engine's.
 */
export interface Corrector {
  /** Registered name, e.g. "taylor". */
  readonly name: string;
  /** Spec string that recreates it through `parseCorrector`, e.g. "taylor:order=1". */
  readonly spec: string;
  /** Computed values per site the corrector needs; the engine keeps no more (at least 1). */
  readonly historyLength: number;
  /** The value to use at a reused site. */
  correct(context: CorrectionContext): Promise<Tensor>;
  /**
   * Optional: the value `correct` returns, as Σ weight_i · tensor_i left unevaluated, for the
   * engine to hand to a model that applies it inside its gated residual (one unit instead of a
   * combine and then the residual). Its tensors are history values of the context or tensors
   * the corrector keeps until it is disposed, never new ones; `[{ tensor: context.cached,
   * weight: 1 }]` is plain reuse. Without it the engine calls `correct`.
   */
  correctTerms?(context: CorrectionContext): Promise<readonly WeightedTerm[]>;
}
