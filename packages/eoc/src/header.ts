/** How finely the mean feature P and the mean caching difference D are stored. */
export type Granularity = "token-channel" | "channel";

/** Which correction terms are active; each combination has its own fitted coefficients. */
export type TermsKey = "trend+prior" | "trend" | "prior";

/** The sampler configuration a priors file is tied to (the steps are stored beside it). */
export interface SamplerDescriptor {
  /** Respacing string as the sampler takes it, e.g. "ddim20" or "20". */
  readonly respacing: string;
  /** Sampler name, e.g. "ddim" or "ddpm". */
  readonly sampler: string;
  /** Classifier-free guidance scale (1 = unguided). */
  readonly cfgScale: number;
  /** eps channels CFG guides (the official DiT guides 3), or "all". */
  readonly guideChannels: number | "all";
}

/** The calibration set, as recorded in the file (for provenance; not checked on load). */
export interface CalibrationSetDescriptor {
  /** Seeds of the calibration runs. @defaultValue [] */
  readonly seeds?: readonly number[];
  /** Class labels of the calibration runs. @defaultValue [] */
  readonly labels?: readonly number[];
  /** Free text, e.g. "one label per class, seed 0". */
  readonly description?: string;
}

/** What `calibrate` records about the model and sampler the priors belong to. */
export interface PriorsDescriptor {
  /** Hash of the model weights (any stable string; loading checks it). */
  readonly modelHash: string;
  /** The sampler configuration of the target runs. */
  readonly sampler: SamplerDescriptor;
  /** Provenance of the calibration set. */
  readonly calibration?: CalibrationSetDescriptor;
}

/** Per-terms result of the held-out evaluation done at calibration. */
export interface TermsReport {
  /** Threshold on the relative prior error chosen by the held-out measurement. */
  readonly tau: number;
  /** Fraction of the held-out caching-error energy removed when correcting cells with e > tau. */
  readonly heldOutReduction: number;
  /** The same with tau = 0 (every cell corrected). */
  readonly heldOutReductionAll: number;
  /** Cells with e > tau. */
  readonly cellsCorrected: number;
}

/** What the calibration measured, stored in the file for the README / CLI to print. */
export interface CalibrationReport {
  /**
   * Whether the held-out numbers exist: rows are split into two folds by sample index parity,
   * coefficients fitted on one fold are scored on the other; one calibration sample gives none.
   */
  readonly heldOut: boolean;
  /** Σ ||F_true - F_cached||² over every reused cell and row of the calibration runs. */
  readonly errorEnergy: number;
  /** Per terms combination. */
  readonly terms: Readonly<Record<TermsKey, TermsReport>>;
  /**
   * The prior term b·D of the fixed-trend correction, on top of the unit-gain trend (its held-out
   * reduction is of the error that trend leaves, as a fraction of `errorEnergy`); its tau is
   * `defaults.fixedTrendTau`.
   */
  readonly fixedTrend: TermsReport;
  /** The closed-loop choice of the trend setting and the prior term (absent when it was not run). */
  readonly closedLoop?: ClosedLoopReport;
}

/**
 * How the trend coefficient is set at run time.
 * - "fitted": the per-cell least-squares a (or a'), times `trendScale`.
 * - "fixed": a = `trendScale` in every cell (1 = the first-order forecast F_last + t of
 *   TaylorSeer / GOC), with the prior coefficient fitted to what that trend leaves,
 *   b = priorGain - a·trendProjection.
 */
export type TrendGain = "fitted" | "fixed";

/**
 * How `defaults.trendGain`, `defaults.trendScale` and `defaults.prior` were chosen: calibration samples run with the
 * corrector at each candidate, scored by the relative squared error of the last step's block-stack input (the
 * embedded x of that step, a linear image of the final sample) against the uncached run of the
 * same sample.
 */
export interface ClosedLoopReport {
  /** Calibration samples the finalists ran (every candidate, without a screen). */
  readonly samples: number;
  /**
   * The race, where one was run: every candidate ran the first `samples`, the `keep` best of
   * them the rest (absent: every candidate ran every sample).
   */
  readonly screen?: { readonly samples: number; readonly keep: number };
  /**
   * Per candidate, in the order tried; `relativeError` is the geometric mean over the samples it
   * ran (`samples`; absent in older files: all) of Σ(h - h_uncached)² / Σh_uncached² (the mean of
   * logs, like a mean PSNR).
   */
  readonly candidates: readonly {
    /** Forecast order of the trend (absent in older files: 1). */
    readonly trendOrder?: number;
    /** Gain of the forecast's degree-2 part, where the candidate set one apart from `trendScale`. */
    readonly curvatureGain?: number;
    readonly trendGain: TrendGain;
    readonly trendScale: number;
    readonly prior: boolean;
    readonly relativeError: number;
    /** Samples it ran: all, or the screen's where it did not go on. */
    readonly samples?: number;
    /** Its error over the screen's samples alone, which every candidate ran (with a screen). */
    readonly screenError?: number;
  }[];
}

/** One (site, step) where the base policy reuses, with its prior. */
export type CellEntry = readonly [site: number, step: number, source: number];

/** Defaults the runtime corrector takes from the file. */
export interface PriorsDefaults {
  /** Judgment threshold on e = ||D|| / ||P|| per terms combination (chosen on held-out calibration rows). */
  readonly tau: Readonly<Record<TermsKey, number>>;
  /** Threshold on cos(trend, D) when the agreement check is on. */
  readonly kappa: number;
  /** Upper clip of the fitted gamma (lower clip 0). */
  readonly gammaMax: number;
  /** |a|, |b| and the trend-only gain are clipped to this. */
  readonly coefficientMax: number;
  /** One gamma fitted over every cell (the paper-style fallback), clipped like gamma. */
  readonly globalGamma: number;
  /**
   * With `trendGain` "fitted", multiplies every fitted trend coefficient (a, and the trend-only
   * gain): the least-squares fits are one-step optimal and come out shrunk, so their corrections
   * fall short over a whole run. With "fixed", it is the trend coefficient itself. Chosen with
   * `trendGain` on calibration samples run to the end (`report.closedLoop`); 1 without that pass.
   */
  readonly trendScale: number;
  /** How the trend coefficient is set (closed-loop choice; "fitted" without that pass). */
  readonly trendGain: TrendGain;
  /** Whether mode "trend" adds the prior term (closed-loop choice; true without that pass). */
  readonly prior: boolean;
  /** Judgment threshold of the prior term of the fixed-trend correction (chosen on held-out rows). */
  readonly fixedTrendTau: number;
  /**
   * With a fixed gain, no prior term and `trendOrder` >= 2: the gain of the forecast's part beyond
   * the first-order trend (the trend is trendScale·t1 + curvatureGain·(t_k - t1), t_k the order-k
   * trend; for k = 2, t_2 - t_1 is the forecast's degree-2 Newton term); absent: `trendScale`, the
   * plain order-k forecast at that gain. Closed-loop choice.
   */
  readonly curvatureGain?: number;
}

/** The JSON header of a priors file, stored in `__metadata__["ditcache.eoc"]`. */
export interface PriorsHeader {
  /** Always "ditcache-eoc-priors". */
  readonly format: typeof PRIORS_FORMAT;
  /** Format version. */
  readonly version: typeof PRIORS_VERSION;
  /** Hash of the model weights. */
  readonly modelHash: string;
  /** Sampler configuration. */
  readonly sampler: SamplerDescriptor;
  /** Sampling steps. */
  readonly steps: number;
  /** Model depth (blocks). */
  readonly depth: number;
  /** Spec string of the base policy (`parsePolicy` recreates it). */
  readonly basePolicy: string;
  /**
   * The base policy's `identity` where it has one (a table policy: a digest of its table), which
   * the compatibility check compares instead of the spec, so priors follow a schedule file that is
   * moved and notice one that is rewritten. Absent for policies whose spec says what they decide,
   * and in files written before it existed.
   */
  readonly basePolicyIdentity?: string;
  /** Storage granularity of P and D. */
  readonly granularity: Granularity;
  /** Element type of every tensor in the file. */
  readonly dtype: "F16" | "F32";
  /** Shape of one row of P / D: [tokens, channels] or [channels]. */
  readonly valueShape: readonly number[];
  /** Site keys, e.g. "block0.attn"; site index = position. */
  readonly sites: readonly string[];
  /** Whether the mean feature P is stored (tensor "mean"). */
  readonly hasMean: boolean;
  /**
   * Order k of the trend observable: t = P_k(step) - F_last, the increment of the degree-k
   * polynomial through the site's last k+1 computed values (TaylorSeer's order-k forecast; k = 1
   * gives (F_last - F_prev)·(step - last)/(last - prev)), with the order the history allows early in
   * a run. Every trend coefficient in the file was fitted for this trend. Chosen by the closed
   * loop (absent in older files: 1).
   */
  readonly trendOrder?: number;
  /** Reused cells, in the order of the per-cell tensors. */
  readonly cells: readonly CellEntry[];
  /** Calibration set. */
  readonly calibration: {
    readonly samples: number;
    readonly rows: number;
    readonly seeds: readonly number[];
    readonly labels: readonly number[];
    readonly description: string;
    /** Where the coefficients were fitted (absent in files from before the field: "rows"). */
    readonly fitSpace?: "guided" | "rows";
    /** Whether errors were weighted by the model's adaLN gates (absent in older files: false). */
    readonly gateWeighted?: boolean;
    /** The pass-2 trajectory of the fits (absent in older files: "reuse"). */
    readonly fitTrajectory?: "trend-corrected" | "reuse";
  };
  /** Runtime defaults. */
  readonly defaults: PriorsDefaults;
  /** Held-out measurement from calibration. */
  readonly report: CalibrationReport;
}

/** Value of the header's `format` field. */
export const PRIORS_FORMAT = "ditcache-eoc-priors";
/** Current priors format version. */
export const PRIORS_VERSION = 2;
/** Highest forecast order of the trend observable (`PriorsHeader.trendOrder`). */
export const MAX_TREND_ORDER = 3;

/** Whether a value is a valid trend order: an integer in [1, {@link MAX_TREND_ORDER}]. */
export function isTrendOrder(value: unknown): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= MAX_TREND_ORDER;
}

/** `__metadata__` key holding the JSON header. */
export const METADATA_KEY = "ditcache.eoc";
