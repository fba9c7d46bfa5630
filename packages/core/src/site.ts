import type { Backend } from "./backend.js";
import type { Tensor } from "./tensor.js";

/**
 * What a cacheable site computes.
 * - `attn` / `mlp`: a block's attention or MLP branch output BEFORE its adaLN gate (the model
 *   re-applies the current step's gate to whatever the site returns, so a reused value is
 *   re-gated as FORA and Learning-to-Cache do).
 * - `block`: one whole block; output = input + residual.
 * - `blocks`: a range of blocks `[block, end]`; output = input + residual.
 */
export type SiteKind = "attn" | "mlp" | "block" | "blocks";

/** Identity of a site inside one model. */
export interface SiteId {
  /** What the site computes. */
  readonly kind: SiteKind;
  /** Block index (first block of a range). */
  readonly block: number;
  /** Last block of a `blocks` range, inclusive; equals `block` otherwise. */
  readonly end: number;
  /** Stable printable key, e.g. "block3.attn", "blocks0-27". */
  readonly key: string;
}

/** Builds a {@link SiteId} with its canonical key. */
export function siteId(kind: SiteKind, block: number, end: number = block): SiteId {
  const key =
    kind === "attn" || kind === "mlp"
      ? `block${block}.${kind}`
      : kind === "block"
        ? `block${block}`
        : `blocks${block}-${end}`;
  return { kind, block, end, key };
}

/** Which half of a classifier-free-guidance batch a row belongs to. */
export type BatchHalf = "cond" | "uncond";

/** Where one model forward stands in a sampling run. */
export interface StepInfo {
  /** 0-based index of this denoising step in the run. */
  readonly index: number;
  /** Number of denoising steps in the run. */
  readonly count: number;
  /** Diffusion timestep the model sees (original 0..T-1 scale). */
  readonly timestep: number;
  /** Row layout of the batch: one entry per row, tagged explicitly (never inferred from call parity). */
  readonly rows: readonly BatchHalf[];
  /**
   * The timestep of every step of the run, in sampling order (`timesteps[index] === timestep`),
   * when the sampler knows them up front: a model may then prepare work for the whole run at once
   * (the DiT computes every step's adaLN modulation in one batched pass).
   */
  readonly timesteps?: readonly number[];
}

/** One call of a site during a forward, handed to the active {@link SiteHook}. */
export interface SiteCall {
  /** The site. */
  readonly site: SiteId;
  /** The step. */
  readonly step: StepInfo;
  /** The site's input hidden state, (N, T, D). */
  readonly input: Tensor;
  /** Runs the real computation; the result is pre-gate for branch sites, the block output otherwise. */
  compute(): Promise<Tensor>;
  /** Multiply-accumulates one `compute()` costs, for the MAC accounting. */
  readonly macs: number;
  /**
   * Branch sites (`attn`, `mlp`): the adaLN gate the model multiplies the returned value by,
   * (N, 1, channels), owned by the model and valid during the call — how much each channel of the
   * value reaches the residual stream (EOC calibration weighs errors by it).
   */
  readonly gate?: Tensor;
  /**
   * A cheap indicator some dynamic policies read (TeaCache: the timestep-modulated input of the
   * first block). Present on `blocks` sites that start at block 0.
   */
  readonly indicator?: () => Promise<Tensor>;
}

/** One term of a {@link WeightedSum}. */
export interface WeightedTerm {
  /** The value's shape, or one that broadcasts to it (a per-channel prior (D,), say). */
  readonly tensor: Tensor;
  readonly weight: number;
}

/**
 * A branch value left unevaluated, Σ weight_i · tensor_i (from {@link SiteHook.runBranch}). Its
 * tensors stay the hook's: the model disposes none of them and uses them before it calls the
 * hook again.
 */
export interface WeightedSum {
  readonly terms: readonly WeightedTerm[];
}

/** Whether a {@link SiteHook.runBranch} answer is a {@link WeightedSum} (else a tensor). */
export function isWeightedSum(value: Tensor | WeightedSum): value is WeightedSum {
  return Array.isArray((value as Partial<WeightedSum>).terms);
}

/**
 * The seam between a model and a cache: the model calls `run` at every cacheable site. The
 * default hook computes; a cache engine is another implementation. The model knows nothing else
 * of caching, and a hook needs nothing of the model's internals.
 */
export interface SiteHook {
  /** Called once at the start of every model forward. */
  beginForward?(step: StepInfo, backend: Backend): void | Promise<void>;
  /** Returns the value the site produces at this call (computed or reused). */
  run(call: SiteCall): Promise<Tensor>;
  /**
   * Optional, branch sites (`attn`, `mlp`) only: like `run`, but may answer a value as a
   * {@link WeightedSum} for the model to apply in its gated residual, x + gate · Σ w_i T_i, as
   * one unit (no copy or combined tensor made first): a reused value, or a computed one the hook
   * keeps (one term, weight 1). A model that supports it calls it instead of `run` at branch
   * sites; a hook that wraps another one and reads its values leaves it out.
   */
  runBranch?(call: SiteCall): Promise<Tensor | WeightedSum>;
  /** Called once at the end of every model forward. */
  endForward?(step: StepInfo): void | Promise<void>;
}

/** The hook that always computes: an uncached model. */
export const computeHook: SiteHook = { run: (call) => call.compute() };
