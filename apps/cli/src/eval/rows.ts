import type { EocOptions, Granularity } from "@ditcache/eoc";
import type { EocFit } from "./calibration.js";

/** A base caching policy of the grid. */
export interface BaseSpec {
  /** Short id used in row ids ("fora50"). */
  readonly id: string;
  /** Printable name. */
  readonly label: string;
  /** Static policies (fixed reuse table) can take EOC; dynamic ones cannot. */
  readonly dynamic: boolean;
  /** Fixed policy spec; undefined when calibrated in the run (learned table, thresholds). */
  readonly spec?: string;
}

/** A corrector of the grid. */
export interface CorrectorSpec {
  /** Short id used in row ids and the plot legend. */
  readonly id: string;
  /** Printable name. */
  readonly label: string;
  /** Registry spec for the plain correctors. */
  readonly spec?: string;
  /** EOC settings (EOC rows only). */
  readonly eoc?: EocFit & { readonly options: EocOptions; readonly granularity: Granularity };
}

/** One row of the grid: a base policy with a corrector (or no cache at all). */
export interface RowSpec {
  /** Unique id, also the file name of the finished row ("fora50+taylor"). */
  readonly id: string;
  readonly base: BaseSpec;
  readonly corrector: CorrectorSpec;
  /** Part of the EOC ablation table rather than the main grid. */
  readonly ablation: boolean;
  /** Why the row cannot run (EOC on a dynamic policy). */
  readonly notApplicable?: string;
}

/** The base policies, uncached first. */
export const BASES: readonly BaseSpec[] = [
  { id: "none", label: "no cache", dynamic: false },
  { id: "fora25", label: "FORA 25%", dynamic: false, spec: "fora:reuseEvery=4" },
  { id: "fora50", label: "FORA 50%", dynamic: false, spec: "fora:interval=2" },
  { id: "fora75", label: "FORA 75%", dynamic: false, spec: "fora:interval=4" },
  { id: "learned", label: "learned ~22%", dynamic: false },
  { id: "fbcache", label: "FBCache (speed of FORA 50%)", dynamic: true },
  { id: "teacache", label: "TeaCache (speed of FORA 50%)", dynamic: true },
];

/** The correctors every cached base is paired with. */
export const CORRECTORS: readonly CorrectorSpec[] = [
  { id: "reuse", label: "plain reuse", spec: "reuse" },
  { id: "taylor", label: "TaylorSeer (order 1)", spec: "taylor:order=1" },
  { id: "taylor2", label: "TaylorSeer (order 2)", spec: "taylor:order=2" },
  { id: "goc", label: "GOC (k 0.5)", spec: "goc:k=0.5" },
  {
    id: "eoc-trend",
    label: "EOC (mode trend, closed-loop settings)",
    eoc: { options: { mode: "trend" }, granularity: "channel" },
  },
  {
    id: "eoc-prior",
    label: "EOC prior (gamma D)",
    eoc: { options: { mode: "prior" }, granularity: "channel" },
  },
];

/**
 * EOC variants of the ablation, each one part off or another granularity. "Trend term off" is
 * the main grid's eoc-prior row (F + gamma D) and "all parts on" its eoc-trend row, so they are not
 * run twice.
 */
export const ABLATIONS: readonly CorrectorSpec[] = [
  {
    id: "eoc-nojudgment",
    label: "judgment off",
    eoc: { options: { mode: "trend", judgment: false }, granularity: "channel" },
  },
  {
    id: "eoc-noprior",
    label: "prior term off (trend only)",
    eoc: { options: { mode: "trend", prior: false }, granularity: "channel" },
  },
  {
    id: "eoc-order1",
    label: "forecast order 1 only (the closed loop chooses among the first-order candidates)",
    eoc: { options: { mode: "trend" }, granularity: "channel", trendOrder: 1 },
  },
  {
    id: "eoc-noscale",
    label: "fitted trend gains at scale 1: the one-step fits as they are (no closed-loop setting)",
    eoc: { options: { mode: "trend", trendGain: "fitted", trendScale: 1 }, granularity: "channel" },
  },
  {
    id: "eoc-fitted",
    label: "fitted trend gains at the closed loop's best fitted scale",
    eoc: { options: { mode: "trend", trendGain: "fitted" }, granularity: "channel" },
  },
  {
    id: "eoc-fixed",
    label: "fixed trend gain 1 (the plain forecast of the file's order) + fitted prior term",
    eoc: {
      options: { mode: "trend", trendGain: "fixed", trendScale: 1, prior: true },
      granularity: "channel",
    },
  },
  {
    id: "eoc-rowfit",
    label: "coefficients fitted per row (instead of on the CFG-guided pair)",
    eoc: { options: { mode: "trend" }, granularity: "channel", fitSpace: "rows" },
  },
  {
    id: "eoc-nogate",
    label: "errors not weighted by the adaLN gates",
    eoc: { options: { mode: "trend" }, granularity: "channel", gateWeighted: false },
  },
  {
    id: "eoc-reusefit",
    label: "coefficients fitted on the plain-reuse run (instead of the trend-corrected one)",
    eoc: { options: { mode: "trend" }, granularity: "channel", fitTrajectory: "reuse" },
  },
  {
    id: "eoc-token",
    label: "granularity token-channel (instead of channel)",
    eoc: { options: { mode: "trend" }, granularity: "token-channel" },
  },
];

/** Bases of the EOC ablation. */
export const ABLATION_BASES: readonly string[] = ["fora50", "fora75"];

/** Every row of the grid and the ablation, in run order (the uncached row first: it is the reference). */
export function allRows(): RowSpec[] {
  const rows: RowSpec[] = [];
  for (const base of BASES) {
    if (base.id === "none") {
      rows.push({ id: "none", base, corrector: { id: "none", label: "—" }, ablation: false });
      continue;
    }
    for (const corrector of CORRECTORS) {
      rows.push({
        id: `${base.id}+${corrector.id}`,
        base,
        corrector,
        ablation: false,
        ...(corrector.eoc && base.dynamic
          ? {
              notApplicable:
                "EOC needs a static branch policy: a dynamic policy's reuse source depends on the sample",
            }
          : {}),
      });
    }
  }
  for (const baseId of ABLATION_BASES) {
    const base = BASES.find((candidate) => candidate.id === baseId)!;
    for (const corrector of ABLATIONS)
      rows.push({ id: `${base.id}+${corrector.id}`, base, corrector, ablation: true });
  }
  return rows;
}

/**
 * Rows kept by a --rows filter: comma-separated ids or prefixes ("fora50", "fora50+eoc-trend",
 * "none"); undefined keeps all. The uncached row always stays: every other row is compared with it.
 */
export function selectRows(rows: readonly RowSpec[], filter: string | undefined): RowSpec[] {
  if (filter === undefined || filter.trim() === "") return [...rows];
  const terms = filter
    .split(",")
    .map((term) => term.trim())
    .filter(Boolean);
  return rows.filter(
    (row) =>
      row.id === "none" ||
      terms.some((term) => row.id === term || row.id.startsWith(`${term}+`) || row.corrector.id === term),
  );
}
