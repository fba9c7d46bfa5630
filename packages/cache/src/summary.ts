/** Distribution of one runtime signal over a run, for tuning thresholds. */
export interface SignalStatistics {
  /** Number of measurements. */
  readonly count: number;
  /** Smallest value. */
  readonly min: number;
  /** 10th percentile (nearest rank). */
  readonly p10: number;
  /** 25th percentile. */
  readonly p25: number;
  /** Median. */
  readonly p50: number;
  /** 75th percentile. */
  readonly p75: number;
  /** 90th percentile. */
  readonly p90: number;
  /** Largest value. */
  readonly max: number;
  /** Arithmetic mean. */
  readonly mean: number;
}

/** Why the engine computed where the policy said reuse. */
export interface ForcedComputes {
  /** Guard rails (warmup, step mask, max consecutive reuse). */
  readonly guard: number;
  /** Nothing cached yet for that site. */
  readonly noCache: number;
  /** The cached value's shape did not fit the batch. */
  readonly shape: number;
  /** The memory budget refused to keep the site's value earlier. */
  readonly budget: number;
}

/**
 * What one cached sampling run did: JSON-serialisable (no Infinity, no tensors), produced by
 * `CacheEngine.summary()`.
 */
export interface CacheSummary {
  /** Policy spec, e.g. "fora:interval=2". */
  readonly policy: string;
  /** Corrector spec, e.g. "reuse". */
  readonly corrector: string;
  /** Distinct steps that ran a forward. */
  readonly steps: number;
  /** Model depth (blocks) the engine saw. */
  readonly depth: number;
  /** Column keys of `decisions`, in model order. */
  readonly sites: readonly string[];
  /**
   * One string per step, one character per site: C computed, R reused (computation skipped),
   * H some CFG halves reused but computation ran, - not called at that step.
   */
  readonly decisions: readonly string[];
  /** Fraction of (step x block) computations reused; attention and MLP each count half a block. */
  readonly cachingLevel: number;
  /** Multiply-accumulates of cacheable sites actually computed vs an uncached run. */
  readonly macs: { readonly computed: number; readonly full: number; readonly ratio: number };
  /** Per site key: steps at which the site was reused (R). */
  readonly reuseCounts: Readonly<Record<string, number>>;
  /** Where the engine overrode a reuse decision, by reason. */
  readonly forcedComputes: ForcedComputes;
  /** Per signal name: distribution of the measured relative-L1 changes. */
  readonly signals: Readonly<Record<string, SignalStatistics>>;
  /** Extra memory held by the cache. */
  readonly memory: {
    /** Bytes held now. */
    readonly currentBytes: number;
    /** Most bytes held at once during the run. */
    readonly peakBytes: number;
    /** The budget, or null when unlimited. */
    readonly budgetBytes: number | null;
    /** Times the budget made the engine compute instead of caching more. */
    readonly budgetRefusals: number;
  };
}

/** Nearest-rank percentile statistics of a list of values (empty list: all zeros). */
export function signalStatistics(values: readonly number[]): SignalStatistics {
  if (values.length === 0)
    return { count: 0, min: 0, p10: 0, p25: 0, p50: 0, p75: 0, p90: 0, max: 0, mean: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number) =>
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
  return {
    count: sorted.length,
    min: sorted[0]!,
    p10: rank(10),
    p25: rank(25),
    p50: rank(50),
    p75: rank(75),
    p90: rank(90),
    max: sorted[sorted.length - 1]!,
    mean: sorted.reduce((sum, value) => sum + value, 0) / sorted.length,
  };
}
