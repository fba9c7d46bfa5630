import type { CachePolicy, CorrectionContext, Corrector } from "@ditcache/cache";
import {
  type Backend,
  DitcacheError,
  type Executable,
  formatShape,
  invalidArgument,
  type Tensor,
  type WeightedTerm,
} from "@ditcache/core";
import { fixedTrendPriorCoefficient } from "./fit.js";
import type { TermsKey, TrendGain } from "./header.js";
import { checkPriorsCompatible, type PriorCell, type Priors } from "./priors.js";
import { trendIncrements } from "./trend.js";

/** Options of {@link eocCorrector} and {@link eoc}. */
export interface EocOptions {
  /**
   * "trend": F_hat = F_cached + a·trend + b·D (correction (b), best fidelity to uncached samples
   * in MEASUREMENTS.md); "prior": F_hat = F_cached + gamma·D (correction (a), the paper's form).
   * The mode only sets the default of `trend`. @defaultValue "trend"
   */
  mode?: "trend" | "prior";
  /**
   * Use the sample's own trend: the increment of the order-k forecast over F_last, k the file's
   * `trendOrder` (order 1: (F_last - F_prev)·(step - last)/(last - prev)). @defaultValue mode === "trend"
   */
  trend?: boolean;
  /**
   * Use the prior mean caching difference D. @defaultValue true in mode "prior"; in mode "trend",
   * the file's closed-loop choice (`defaults.prior`)
   */
  prior?: boolean;
  /** Correct only cells whose relative prior error e = ||D||/||P|| exceeds tau. @defaultValue true */
  judgment?: boolean;
  /** The judgment threshold. @defaultValue the file's tau for the active terms (chosen on held-out calibration rows) */
  tau?: number;
  /**
   * Also require the runtime trend to agree in direction with D: cos(F_last - F_prev, D) > kappa
   * (one reduction read back per reused site; applies when both terms and a trend exist). @defaultValue false
   */
  agreement?: boolean;
  /** The agreement threshold. @defaultValue the file's kappa (0) */
  kappa?: number;
  /**
   * gamma of the prior-only correction: the per-cell fit, the one global fit stored in the file
   * (the paper-style fallback), or a fixed number. @defaultValue "site"
   */
  gamma?: "site" | "global" | number;
  /**
   * How the trend coefficient is set: "fitted" = the per-cell least-squares a (a' with the prior
   * off) times `trendScale`; "fixed" = a = `trendScale` in every cell (1 = the first-order forecast
   * of TaylorSeer / GOC) with the prior coefficient fitted to what that trend leaves,
   * b = priorGain - a·trendProjection, and the judgment deciding only whether b·D is added (the
   * trend is applied wherever a trend exists). @defaultValue the file's closed-loop choice (`defaults.trendGain`)
   */
  trendGain?: TrendGain;
  /**
   * With "fitted": the multiplier of the fitted trend coefficients (1 = the one-step least-squares
   * fits as they are); with "fixed": the trend coefficient. @defaultValue the file's closed-loop
   * choice (`defaults.trendScale`; for another trend gain or prior setting, the best closed-loop
   * candidate with those, else 1)
   */
  trendScale?: number;
  /**
   * With a fixed trend gain, no prior term and a file of trend order >= 2: the gain of the
   * forecast's part beyond the first-order trend, so the trend is trendScale·t1 + curvatureGain·(t_k - t1).
   * @defaultValue the file's closed-loop choice (`defaults.curvatureGain`) when trend gain, prior
   * setting and scale are the file's; else trendScale (the plain order-k forecast)
   */
  curvatureGain?: number;
  /** Path of the priors file, written into `spec` so `parseCorrector(spec)` recreates the corrector. */
  source?: string;
}

/** An EOC corrector: a {@link Corrector} that keeps its prior tensors on each backend it meets. */
export interface EocCorrector extends Corrector {
  /** The priors it corrects with. */
  readonly priors: Priors;
  /** Active terms. */
  readonly terms: TermsKey | "none";
  /** Judgment threshold in use (undefined when the judgment is off or has no prior term to gate). */
  readonly tau: number | undefined;
  /**
   * Counts since creation: corrected (value changed), judgment / agreement said no to the prior
   * term (with a fixed trend gain the trend is still applied, so a cell can count in both), no
   * prior for the cell.
   */
  readonly counts: { corrected: number; judged: number; disagreed: number; noPrior: number };
  /** Frees the prior tensors uploaded to backends; the corrector uploads again if used afterwards. */
  dispose(): void;
}

/**
 * The file's trend scale for a trend gain and prior setting: its default when both are the file's,
 * else the best closed-loop candidate with both, the file's trend order and one gain for the whole
 * forecast (1 when none was tried; among those the closed loop's race let run every sample, where
 * any did).
 */
function defaultTrendScale(priors: Priors, trendGain: TrendGain, prior: boolean): number {
  const { defaults, report } = priors.header;
  if (trendGain === defaults.trendGain && prior === defaults.prior) return defaults.trendScale;
  const order = priors.trendOrder;
  const loop = report.closedLoop;
  const matching = (loop?.candidates ?? []).filter(
    (c) =>
      (c.trendOrder ?? 1) === order &&
      c.trendGain === trendGain &&
      c.prior === prior &&
      c.curvatureGain === undefined,
  );
  // Errors compare over the same samples: the race's finalists if any of these went on, else
  // the screen's (every candidate ran those).
  const finalists = matching.filter((c) => (c.samples ?? loop!.samples) === loop!.samples);
  const tried = finalists.length > 0 ? finalists : matching;
  if (tried.length === 0) return 1;
  return tried.reduce((a, b) => (b.relativeError < a.relativeError ? b : a)).trendScale;
}

function termsOf(trend: boolean, prior: boolean): TermsKey | "none" {
  if (trend && prior) return "trend+prior";
  if (trend) return "trend";
  return prior ? "prior" : "none";
}

function specOf(
  source: string | undefined,
  options: Required<Pick<EocOptions, "mode" | "trend" | "prior" | "judgment" | "agreement">>,
  tau: number | undefined,
  kappa: number,
  gamma: EocOptions["gamma"],
  trendGain: TrendGain | undefined,
  trendScale: number | undefined,
  curvatureGain: number | undefined,
): string {
  const parts = source === undefined ? [] : [`priors=${source}`];
  parts.push(`mode=${options.mode}`);
  if (options.trend !== (options.mode === "trend")) parts.push(`trend=${options.trend}`);
  if (!options.prior) parts.push("prior=false");
  if (!options.judgment) parts.push("judgment=false");
  // With a fixed-gain trend alone there is no prior term for the judgment to gate: no tau.
  else if (tau !== undefined) parts.push(`tau=${tau}`);
  if (options.agreement) parts.push("agreement=true", `kappa=${kappa}`);
  if (gamma !== "site") parts.push(`gamma=${gamma}`);
  if (trendGain !== undefined) parts.push(`trendGain=${trendGain}`);
  if (trendScale !== undefined) parts.push(`trendScale=${trendScale}`);
  if (curvatureGain !== undefined) parts.push(`curvatureGain=${curvatureGain}`);
  return `eoc:${parts.join(",")}`;
}

/**
 * The Error-Optimized Cache corrector: at a reused branch (site, step) with a prior, and where
 * the judgment passes (e > tau; optionally cos(trend, D) > kappa), returns
 * - terms trend+prior: F_cached + a·trend + b·D,
 * - terms prior:       F_cached + gamma·D,
 * - terms trend:       F_cached + a'·trend,
 * with trend = the increment of the order-k forecast over F_last (`Priors.trendOrder`; order 1:
 * (F_last - F_prev)·(step - last)/(last - prev)), as one compiled unit on the run's
 * backend (`context.math.combine`), or as terms (`correctTerms`) that a model supporting
 * `SiteHook.runBranch` applies inside its gated residual, with no unit of its own. Elsewhere (no
 * prior, another reuse source, residual sites, judgment says no) it returns the cached value.
 * Without a trend yet (one computed value), the trend+prior terms fall back to gamma·D. Prior
 * tensors are uploaded once per backend and kept until {@link EocCorrector.dispose}.
 *
 * @throws DitcacheError INCOMPATIBLE_FILE at correction time when the run's steps or value shape
 *   differ from the priors'.
 */
export function eocCorrector(priors: Priors, options: EocOptions = {}): EocCorrector {
  if (priors === null || typeof priors?.cell !== "function")
    invalidArgument("priors", priors, "Priors (from calibrate or loadPriors)");
  if (options === null || typeof options !== "object") invalidArgument("options", options, "an object");
  const mode = options.mode ?? "trend";
  if (mode !== "trend" && mode !== "prior") invalidArgument("options.mode", mode, '"trend" or "prior"');
  const useTrend = options.trend ?? mode === "trend";
  const usePrior = options.prior ?? (mode === "prior" || priors.header.defaults.prior);
  const judgment = options.judgment ?? true;
  const agreement = options.agreement ?? false;
  for (const [name, value] of Object.entries({ trend: useTrend, prior: usePrior, judgment, agreement })) {
    if (typeof value !== "boolean") invalidArgument(`options.${name}`, value, "true or false");
  }
  const terms = termsOf(useTrend, usePrior);
  const defaults = priors.header.defaults;
  const trendGain = options.trendGain ?? defaults.trendGain;
  if (trendGain !== "fitted" && trendGain !== "fixed")
    invalidArgument("options.trendGain", trendGain, '"fitted" or "fixed"');
  const fixedTrend = trendGain === "fixed" && useTrend;
  const defaultTau =
    terms === "none" ? 0 : fixedTrend && usePrior ? defaults.fixedTrendTau : defaults.tau[terms];
  // A fixed-gain trend alone has no prior term for the judgment to gate.
  const tau = judgment && !(fixedTrend && !usePrior) ? (options.tau ?? defaultTau) : undefined;
  if (tau !== undefined && (typeof tau !== "number" || !(tau >= 0)))
    invalidArgument("options.tau", tau, "a number >= 0");
  const kappa = options.kappa ?? defaults.kappa;
  if (typeof kappa !== "number" || !(kappa >= -1 && kappa <= 1))
    invalidArgument("options.kappa", kappa, "a number in [-1, 1]");
  const gammaOption = options.gamma ?? "site";
  if (
    gammaOption !== "site" &&
    gammaOption !== "global" &&
    (typeof gammaOption !== "number" || !Number.isFinite(gammaOption))
  )
    invalidArgument("options.gamma", gammaOption, '"site", "global" or a number');
  if (
    options.trendScale !== undefined &&
    (typeof options.trendScale !== "number" ||
      !(options.trendScale >= 0) ||
      !Number.isFinite(options.trendScale))
  )
    invalidArgument("options.trendScale", options.trendScale, "a number >= 0");
  const trendScale = options.trendScale ?? defaultTrendScale(priors, trendGain, usePrior);
  const curvatureGain =
    options.curvatureGain ??
    (options.trendScale === undefined && trendGain === defaults.trendGain && usePrior === defaults.prior
      ? defaults.curvatureGain
      : undefined);
  if (curvatureGain !== undefined) {
    if (typeof curvatureGain !== "number" || !Number.isFinite(curvatureGain) || !(curvatureGain >= 0))
      invalidArgument("options.curvatureGain", curvatureGain, "a number >= 0");
    if (!fixedTrend || usePrior || priors.trendOrder < 2)
      invalidArgument(
        "options.curvatureGain",
        curvatureGain,
        `a setting of a fixed trend gain without the prior term on priors of trend order >= 2 (these: trendGain ${trendGain}, prior ${usePrior}, trend order ${priors.trendOrder})`,
      );
  }
  const order = priors.trendOrder;
  const gammaOf = (cell: PriorCell): number =>
    gammaOption === "site" ? cell.gamma : gammaOption === "global" ? defaults.globalGamma : gammaOption;

  const uploads = new Map<Backend, Map<number, Tensor>>();
  const agreementUnits = new Map<Backend, Executable>();
  const counts = { corrected: 0, judged: 0, disagreed: 0, noPrior: 0 };
  const rowShape = priors.valueShape;

  const differenceTensor = (backend: Backend, cell: PriorCell): Tensor => {
    let perBackend = uploads.get(backend);
    if (perBackend === undefined) {
      perBackend = new Map();
      uploads.set(backend, perBackend);
    }
    let tensor = perBackend.get(cell.index);
    if (tensor === undefined) {
      tensor = backend.tensor(cell.difference.slice(), rowShape);
      perBackend.set(cell.index, tensor);
    }
    return tensor;
  };

  const checkShape = (context: CorrectionContext): void => {
    const shape = context.cached.shape;
    const rest = shape.slice(1);
    const fits =
      priors.header.granularity === "token-channel"
        ? rest.length === rowShape.length && rest.every((dim, i) => dim === rowShape[i])
        : rest[rest.length - 1] === rowShape[0];
    if (!fits) {
      throw new DitcacheError(
        "INCOMPATIBLE_FILE",
        `eoc: site ${context.key} value ${formatShape(shape)} does not match the priors' ${priors.header.granularity} shape ${formatShape(rowShape)} (priors for another model?)`,
      );
    }
  };

  /** cos(F_last - F_prev, D) over the whole value, D broadcast over rows (and tokens). */
  const cosine = async (context: CorrectionContext, difference: Tensor): Promise<number> => {
    const backend = context.backend;
    let unit = agreementUnits.get(backend);
    if (unit === undefined) {
      unit = backend.compile({
        name: "ditcache.eoc.agreement",
        build: (ops, [last, previous, d]) => {
          const delta = ops.sub(last!, previous!);
          const broadcast = ops.add(ops.mul(delta, ops.constant(0)), d!);
          const axes = ops.shape(delta).map((_, i) => i);
          return [
            ops.sum(ops.mul(delta, broadcast), axes, false),
            ops.sum(ops.mul(delta, delta), axes, false),
            ops.sum(ops.mul(broadcast, broadcast), axes, false),
          ];
        },
      });
      agreementUnits.set(backend, unit);
    }
    const outputs = await unit.run([context.history[0]!.value, context.history[1]!.value, difference]);
    try {
      const [dot, deltaNorm, dNorm] = await Promise.all(outputs.map((output) => backend.read(output)));
      const denominator = Math.sqrt(deltaNorm![0]! * dNorm![0]!);
      return denominator > 0 ? dot![0]! / denominator : 0;
    } finally {
      for (const output of outputs) backend.dispose(output);
    }
  };

  /** The corrected value's terms; undefined where the cached value is used as it is. */
  const correctionTerms = async (context: CorrectionContext): Promise<WeightedTerm[] | undefined> => {
    if (context.valueKind !== "branch" || terms === "none") return undefined;
    if (context.step.count !== priors.steps) {
      throw new DitcacheError(
        "INCOMPATIBLE_FILE",
        `eoc: steps differ: the priors were made for ${priors.steps}, the run has ${context.step.count} (run calibrate for this configuration)`,
      );
    }
    const cell = priors.cell(context.key, context.step.index);
    if (cell === undefined || cell.sourceStep !== context.sourceStep) {
      counts.noPrior++;
      return undefined;
    }
    checkShape(context);
    const history = context.history;
    // A trend needs two computed values (trendWeights: fewer give none).
    const hasTrend = useTrend && history.length > 1;
    // Fitted gains: the judgment and the agreement decide on the whole correction. Fixed gain:
    // the trend is the base forecast, applied wherever it exists; they decide on the prior term.
    let withPrior = usePrior;
    if (tau !== undefined && !(cell.relativeError > tau)) {
      counts.judged++;
      if (!fixedTrend) return undefined;
      withPrior = false;
    }
    if (
      withPrior &&
      agreement &&
      hasTrend &&
      (await cosine(context, differenceTensor(context.backend, cell))) <= kappa
    ) {
      counts.disagreed++;
      if (!fixedTrend) return undefined;
      withPrior = false;
    }
    let a = 0;
    let b = 0;
    if (fixedTrend) {
      if (hasTrend) a = trendScale;
      if (withPrior)
        b = hasTrend ? fixedTrendPriorCoefficient(cell, a, defaults.coefficientMax) : gammaOf(cell);
    } else if (terms === "trend+prior" && hasTrend)
      [a, b] = [trendScale * cell.trendCoefficient, cell.priorCoefficient];
    else if (usePrior) b = gammaOf(cell);
    else if (hasTrend) a = trendScale * cell.trendGain;
    else return undefined;
    // Σ_j c_j F_j added to F_last: a·t, or with a curvature gain a·t1 + curvatureGain·(t_k - t1).
    const increments = hasTrend
      ? trendIncrements(
          history.map((value) => value.step),
          context.step.index,
          order,
          a,
          curvatureGain,
        )
      : [];
    const weights: WeightedTerm[] = [{ tensor: history[0]!.value, weight: 1 + (increments[0] ?? 0) }];
    for (let j = 1; j < increments.length; j++)
      if (increments[j] !== 0) weights.push({ tensor: history[j]!.value, weight: increments[j]! });
    if (b !== 0) weights.push({ tensor: differenceTensor(context.backend, cell), weight: b });
    if (weights.length === 1 && weights[0]!.weight === 1) return undefined;
    counts.corrected++;
    return weights;
  };

  return {
    name: "eoc",
    spec: specOf(
      options.source,
      { mode, trend: useTrend, prior: usePrior, judgment, agreement },
      tau,
      kappa,
      gammaOption,
      options.trendGain,
      options.trendScale,
      options.curvatureGain,
    ),
    historyLength: useTrend ? order + 1 : 1,
    priors,
    terms,
    tau,
    counts,
    async correct(context): Promise<Tensor> {
      const weighted = await correctionTerms(context);
      return weighted === undefined ? context.cached : context.math.combine(weighted);
    },
    async correctTerms(context): Promise<readonly WeightedTerm[]> {
      return (await correctionTerms(context)) ?? [{ tensor: context.cached, weight: 1 }];
    },
    dispose(): void {
      for (const [backend, tensors] of uploads)
        for (const tensor of tensors.values()) backend.dispose(tensor);
      for (const unit of agreementUnits.values()) unit.dispose();
      uploads.clear();
      agreementUnits.clear();
    },
  };
}

/**
 * EOC on top of a base policy: the policy unchanged (when to reuse) and the EOC corrector (how
 * to correct), ready for `createCacheEngine`.
 *
 * @throws DitcacheError INCOMPATIBLE_FILE when the priors were calibrated for another base policy.
 * @example
 * const priors = await loadPriors("priors.safetensors", { modelHash, steps: 20 });
 * const { policy, corrector } = eoc(parsePolicy("fora:interval=2"), priors);
 * const engine = createCacheEngine({ policy, corrector });
 */
export function eoc(
  basePolicy: CachePolicy,
  priors: Priors,
  options: EocOptions = {},
): { policy: CachePolicy; corrector: EocCorrector } {
  if (basePolicy === null || typeof basePolicy?.decide !== "function")
    invalidArgument("basePolicy", basePolicy, 'a CachePolicy (e.g. parsePolicy("fora:interval=2"))');
  checkPriorsCompatible(priors.header, { basePolicy });
  return { policy: basePolicy, corrector: eocCorrector(priors, options) };
}
