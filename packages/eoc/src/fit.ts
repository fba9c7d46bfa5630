import type { CalibrationReport, TermsKey, TermsReport } from "./header.js";

/**
 * Sufficient statistics of one cell (one reused site and step) over calibration rows, with
 * t = trend, D = prior difference, e = F_true - F_cached (true caching error):
 * [rows, Σ<t,t>, Σ<t,D>, Σ<D,D>, Σ<t,e>, Σ<D,e>, Σ<e,e>]. Every fit and score is a closed form of them.
 */
export const STATISTICS = 7;
const N = 0;
const TT = 1;
const TD = 2;
const DD = 3;
const TE = 4;
const DE = 5;
const EE = 6;

/** Coefficients fitted for one cell. */
export interface CellFit {
  /** gamma of e ≈ gamma·D, clipped to [0, gammaMax]. */
  readonly gamma: number;
  /** a of e ≈ a·t, clipped to ±coefficientMax. */
  readonly trendGain: number;
  /** a of e ≈ a·t + b·D. */
  readonly trendCoefficient: number;
  /** b of e ≈ a·t + b·D. */
  readonly priorCoefficient: number;
  /**
   * Σ<D,e> / Σ<D,D>, unclipped but for float16 range: with {@link CellFit.trendProjection} it gives
   * the prior coefficient that goes with a fixed trend gain s, b(s) = priorGain - s·trendProjection
   * (the least-squares b of e - s·t ≈ b·D).
   */
  readonly priorGain: number;
  /** Σ<t,D> / Σ<D,D>: how much of the trend lies along D. */
  readonly trendProjection: number;
}

/** Clipping bounds of the fits. */
export interface FitLimits {
  /** gamma ∈ [0, gammaMax]. */
  readonly gammaMax: number;
  /** |a|, |b|, |trend gain| <= coefficientMax. */
  readonly coefficientMax: number;
}

const clip = (value: number, low: number, high: number): number => Math.min(high, Math.max(low, value));
const ratio = (numerator: number, denominator: number): number =>
  denominator > 0 ? numerator / denominator : 0;
/** Bound of the stored unclipped ratios: inside float16's range, far beyond any useful coefficient. */
const RATIO_MAX = 1e4;

/**
 * The prior coefficient b of the fixed-trend correction e ≈ s·t + b·D: least squares on what the
 * trend at gain s leaves, clipped to ±max.
 */
export function fixedTrendPriorCoefficient(
  fit: Pick<CellFit, "priorGain" | "trendProjection">,
  trendGain: number,
  max: number,
): number {
  return clip(fit.priorGain - trendGain * fit.trendProjection, -max, max);
}

/**
 * Where the fits measure the caching error.
 * - "guided": per CFG pair, in the guided combination w·cond + (1 - w)·uncond of the rows —
 *   the combination the sampler's output is made of, so a fit there minimises the error that
 *   reaches the sample (with w = 4 the cond - uncond difference weighs 4x, which per-row fitting
 *   ignores). Rows without a partner fall back to "rows".
 * - "rows": every batch row on its own.
 */
export type FitSpace = "guided" | "rows";

/** The cached trajectory the fits are measured on (see `CalibrateOptions.fitTrajectory`). */
export type FitTrajectory = "trend-corrected" | "reuse";

/** One observed batch row at a reused cell: the true value, the cached one and the scaled trend. */
export interface ObservedRow {
  /** CFG half of the row. */
  readonly half: "cond" | "uncond";
  /** F_true, the shadow-computed value. */
  readonly trueValue: Float32Array;
  /** F_cached. */
  readonly cached: Float32Array;
  /**
   * The trend observable of each forecast order the statistics are kept for (order 1:
   * (F_last - F_prev)·(step - last)/(last - prev)); undefined with one computed value so far.
   */
  readonly trends: readonly (Float32Array | undefined)[];
  /** The row's adaLN gate (one weight per channel), when the fit is gate-weighted. */
  readonly gate?: Float32Array;
}

/** One row of the statistics: values weighted and combined as the fit space says, with its D. */
export interface FitRow {
  /** F_true. */
  readonly trueValue: Float32Array;
  /** F_cached. */
  readonly cached: Float32Array;
  /** The scaled trend of each order, if any. */
  readonly trends: readonly (Float32Array | undefined)[];
  /** D as it enters this row (gated when the row is), broadcast over tokens when shorter. */
  readonly difference: Float32Array;
}

/** x ⊙ gate, the gate broadcast over tokens (x is tokens x channels, channel fastest). */
function gated(x: Float32Array, gate: Float32Array | undefined): Float32Array {
  if (gate === undefined) return x;
  const channels = gate.length;
  return x.map((value, i) => value * gate[i % channels]!);
}

function weighted(row: ObservedRow, difference: Float32Array): FitRow {
  return {
    trueValue: gated(row.trueValue, row.gate),
    cached: gated(row.cached, row.gate),
    trends: row.trends.map((trend) => trend && gated(trend, row.gate)),
    difference: gated(difference, row.gate),
  };
}

function blend(w: number, cond: Float32Array, uncond: Float32Array): Float32Array {
  return cond.map((value, i) => w * value + (1 - w) * uncond[i]!);
}

/**
 * The rows the statistics are accumulated over, in the given fit space: each value multiplied by
 * its row's gate where one is given (the error as it enters the residual stream), and the k-th
 * cond row paired with the k-th uncond row (the sampler's batch layout) when `cfgScale` ≠ 1.
 */
export function fitRows(
  observed: readonly ObservedRow[],
  space: FitSpace,
  cfgScale: number,
  difference: Float32Array,
): FitRow[] {
  const cond = observed.filter((row) => row.half === "cond");
  const uncond = observed.filter((row) => row.half === "uncond");
  if (space === "rows" || cfgScale === 1 || cond.length !== uncond.length)
    return observed.map((row) => weighted(row, difference));
  return cond.map((condRow, k) => {
    const [c, u] = [weighted(condRow, difference), weighted(uncond[k]!, difference)];
    // D broadcast over tokens is gated per channel, so both halves' D have one length.
    return {
      trueValue: blend(cfgScale, c.trueValue, u.trueValue),
      cached: blend(cfgScale, c.cached, u.cached),
      trends: c.trends.map((trend, o) => {
        const other = u.trends[o];
        return trend && other ? blend(cfgScale, trend, other) : undefined;
      }),
      difference: blend(cfgScale, c.difference, u.difference),
    };
  });
}

/**
 * Per-row dot products of one calibration row, added to the same slot of one statistics array per
 * trend order (`targets[o]` gets `row.trends[o]`'s sums); the sums without a trend are the same
 * for every order and are computed once.
 */
export function accumulateRow(targets: readonly Float64Array[], offset: number, row: FitRow): void {
  const { trueValue, cached, difference, trends } = row;
  const channels = difference.length;
  const orders = targets.length;
  const tt = new Float64Array(orders);
  const tD = new Float64Array(orders);
  const te = new Float64Array(orders);
  let dd = 0;
  let de = 0;
  let ee = 0;
  for (let i = 0; i < trueValue.length; i++) {
    const d = difference[i % channels]!; // broadcasts a per-channel D over tokens
    const e = trueValue[i]! - cached[i]!;
    dd += d * d;
    de += d * e;
    ee += e * e;
  }
  for (let o = 0; o < orders; o++) {
    const trend = trends[o];
    if (trend === undefined) continue;
    let sumTT = 0;
    let sumTD = 0;
    let sumTE = 0;
    for (let i = 0; i < trueValue.length; i++) {
      const t = trend[i]!;
      sumTT += t * t;
      sumTD += t * difference[i % channels]!;
      sumTE += t * (trueValue[i]! - cached[i]!);
    }
    tt[o] = sumTT;
    tD[o] = sumTD;
    te[o] = sumTE;
  }
  targets.forEach((target, o) => {
    target[offset + N]! += 1;
    target[offset + TT]! += tt[o]!;
    target[offset + TD]! += tD[o]!;
    target[offset + DD]! += dd;
    target[offset + TE]! += te[o]!;
    target[offset + DE]! += de;
    target[offset + EE]! += ee;
  });
}

/** Least-squares coefficients of one cell, closed form (2x2 normal equations for (a, b)). */
export function fitCell(s: ArrayLike<number>, limits: FitLimits): CellFit {
  const max = limits.coefficientMax;
  const gamma = clip(ratio(s[DE]!, s[DD]!), 0, limits.gammaMax);
  const trendGain = clip(ratio(s[TE]!, s[TT]!), -max, max);
  // Ridge relative to the diagonal keeps the system solvable when t ≡ 0 (one computed value so
  // far) or t ∥ D; it then degrades to the single-term fit.
  const ridge = 1e-9 * (s[TT]! + s[DD]!) + 1e-30;
  const a11 = s[TT]! + ridge;
  const a22 = s[DD]! + ridge;
  const a12 = s[TD]!;
  const det = a11 * a22 - a12 * a12;
  let a = 0;
  let b = 0;
  if (det > 0) {
    a = (a22 * s[TE]! - a12 * s[DE]!) / det;
    b = (a11 * s[DE]! - a12 * s[TE]!) / det;
  }
  return {
    gamma,
    trendGain,
    trendCoefficient: clip(a, -max, max),
    priorCoefficient: clip(b, -max, max),
    priorGain: clip(ratio(s[DE]!, s[DD]!), -RATIO_MAX, RATIO_MAX),
    trendProjection: clip(ratio(s[TD]!, s[DD]!), -RATIO_MAX, RATIO_MAX),
  };
}

/** Σ ||e||² - Σ ||e - correction||² on the rows summarised by `s`, for the given terms and fit. */
export function errorReduction(s: ArrayLike<number>, fit: CellFit, terms: TermsKey): number {
  const [a, b] =
    terms === "trend+prior"
      ? [fit.trendCoefficient, fit.priorCoefficient]
      : terms === "trend"
        ? [fit.trendGain, 0]
        : [0, fit.gamma];
  return 2 * (a * s[TE]! + b * s[DE]!) - (a * a * s[TT]! + 2 * a * b * s[TD]! + b * b * s[DD]!);
}

/**
 * Σ ||r||² - Σ ||r - b·D||² with r = e - t, the error the unit-gain trend leaves: what the prior
 * term adds on top of the first-order forecast (b = the fixed-trend coefficient at gain 1).
 */
export function fixedTrendReduction(s: ArrayLike<number>, fit: CellFit, limits: FitLimits): number {
  const b = fixedTrendPriorCoefficient(fit, 1, limits.coefficientMax);
  return 2 * b * (s[DE]! - s[TD]!) - b * b * s[DD]!;
}

/** Sum of two statistics slots. */
function sum(x: ArrayLike<number>, y: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: STATISTICS }, (_, i) => x[i]! + y[i]!);
}

/**
 * Two-fold statistics of every cell (fold = sample index parity), the fits they give and the
 * held-out choice of tau.
 */
export class CellStatistics {
  /** [cell][fold][statistic]. */
  readonly data: Float64Array;

  constructor(readonly cells: number) {
    this.data = new Float64Array(cells * 2 * STATISTICS);
  }

  /** Offset of a cell's fold slot, for {@link accumulateRow}. */
  offset(cell: number, fold: number): number {
    return (cell * 2 + fold) * STATISTICS;
  }

  private fold(cell: number, fold: number): Float64Array {
    const offset = this.offset(cell, fold);
    return this.data.subarray(offset, offset + STATISTICS);
  }

  /** Both folds together. */
  total(cell: number): Float64Array {
    return sum(this.fold(cell, 0), this.fold(cell, 1));
  }

  /** Fits of every cell on all rows. */
  fits(limits: FitLimits): CellFit[] {
    return Array.from({ length: this.cells }, (_, cell) => fitCell(this.total(cell), limits));
  }

  /** gamma of one fit over every cell (the paper-style global fallback). */
  globalGamma(limits: FitLimits): number {
    let de = 0;
    let dd = 0;
    for (let cell = 0; cell < this.cells; cell++) {
      const s = this.total(cell);
      de += s[DE]!;
      dd += s[DD]!;
    }
    return clip(ratio(de, dd), 0, limits.gammaMax);
  }

  /**
   * Held-out evaluation: per cell and terms, the error reduction of coefficients fitted on one
   * fold, scored on the other (both ways, summed). Then, per terms, the tau that maximises the
   * summed held-out reduction of the cells with relative prior error e > tau.
   */
  report(relativeErrors: ArrayLike<number>, limits: FitLimits): CalibrationReport {
    let errorEnergy = 0;
    let heldOut = this.cells > 0;
    for (let cell = 0; cell < this.cells; cell++) {
      errorEnergy += this.total(cell)[EE]!;
      if (this.fold(cell, 0)[N] === 0 || this.fold(cell, 1)[N] === 0) heldOut = false;
    }
    // Each cell's coefficients fitted on either fold, once; every variant scores them on the other.
    const foldFits = heldOut
      ? Array.from(
          { length: this.cells },
          (_, cell) => [fitCell(this.fold(cell, 0), limits), fitCell(this.fold(cell, 1), limits)] as const,
        )
      : [];
    const choose = (score: (s: ArrayLike<number>, fit: CellFit) => number): TermsReport => {
      if (!heldOut)
        return { tau: 0, heldOutReduction: 0, heldOutReductionAll: 0, cellsCorrected: this.cells };
      const gains = foldFits.map(
        ([first, second], cell) => score(this.fold(cell, 1), first) + score(this.fold(cell, 0), second),
      );
      return chooseTau(relativeErrors, gains, errorEnergy);
    };
    const terms = {} as Record<TermsKey, TermsReport>;
    for (const key of ["trend+prior", "trend", "prior"] as const)
      terms[key] = choose((s, fit) => errorReduction(s, fit, key));
    const fixedTrend = choose((s, fit) => fixedTrendReduction(s, fit, limits));
    return { heldOut, errorEnergy, terms, fixedTrend };
  }
}

/**
 * The threshold tau on e maximising Σ_{e_c > tau} gain_c; ties keep the smaller tau. tau = 0
 * corrects every cell, tau = max e none.
 */
export function chooseTau(
  relativeErrors: ArrayLike<number>,
  gains: readonly number[],
  errorEnergy: number,
): TermsReport {
  const order = gains.map((_, i) => i).sort((x, y) => relativeErrors[x]! - relativeErrors[y]!);
  const all = gains.reduce((total, gain) => total + gain, 0);
  let best = { tau: 0, gain: all, corrected: gains.length };
  let remaining = all;
  for (let k = 0; k < order.length; k++) {
    remaining -= gains[order[k]!]!;
    const tau = relativeErrors[order[k]!]!;
    // Cells with e equal to tau are also excluded (the judgment corrects e > tau only).
    if (k + 1 < order.length && relativeErrors[order[k + 1]!]! === tau) continue;
    if (remaining > best.gain) best = { tau, gain: remaining, corrected: order.length - k - 1 };
  }
  const fraction = (gain: number) => (errorEnergy > 0 ? gain / errorEnergy : 0);
  return {
    tau: best.tau,
    heldOutReduction: fraction(best.gain),
    heldOutReductionAll: fraction(all),
    cellsCorrected: best.corrected,
  };
}
