import {
  type CacheEngine,
  type CachePolicy,
  type Corrector,
  createCacheEngine,
  taylorCorrector,
} from "@ditcache/cache";
import {
  type Backend,
  type BatchHalf,
  DitcacheError,
  float16ToFloat32Array,
  float32ToFloat16Array,
  invalidArgument,
  type SiteCall,
  type SiteHook,
  type StepInfo,
  sizeOf,
  type Tensor,
} from "@ditcache/core";
import { eocCorrector } from "./corrector.js";
import {
  accumulateRow,
  CellStatistics,
  type FitLimits,
  type FitSpace,
  type FitTrajectory,
  fitRows,
  type ObservedRow,
} from "./fit.js";
import {
  type CellEntry,
  type Granularity,
  isTrendOrder,
  MAX_TREND_ORDER,
  PRIORS_FORMAT,
  PRIORS_VERSION,
  type PriorsDescriptor,
  type PriorsHeader,
  type TrendGain,
} from "./header.js";
import { Priors, type PriorsData } from "./priors.js";
import { policyBranchSites, staticReuseSources } from "./reuse-table.js";
import { trendWeights } from "./trend.js";

/** A progress event of {@link calibrate}. */
export interface CalibrationProgress {
  /**
   * "mean": uncached pass (P, D); "fit": cached pass with shadow compute (coefficients);
   * "closed-loop": runs with the fitted corrector choosing the trend scale; "done".
   */
  readonly status: "mean" | "fit" | "closed-loop" | "done";
  /** Runs finished in this pass. */
  readonly sample: number;
  /** Runs in this pass (samples, or samples x candidates for "closed-loop"). */
  readonly samples: number;
}

/** Options of {@link calibrate}. */
export interface CalibrateOptions {
  /**
   * Runs calibration sample `sampleIndex` (0-based) with `hook` as the model's site hook, with the
   * exact model, sampler, steps and CFG of the target runs; the app binds seeds and labels to the
   * index. Called twice per index (once per pass) and must be deterministic per index.
   */
  runSample: (hook: SiteHook, sampleIndex: number) => Promise<void>;
  /** The caching policy EOC will correct (static: its reuse table defines src(step)). */
  basePolicy: CachePolicy;
  /** Sampling steps of the target runs. */
  steps: number;
  /** Model depth (blocks). */
  depth: number;
  /** Model hash, sampler configuration and calibration set recorded in the file. */
  descriptor: PriorsDescriptor;
  /** Number of calibration samples (calls of `runSample` per pass). */
  samples: number;
  /**
   * Storage of P and D: per token and channel, or per channel (averaged over tokens; the
   * correction broadcasts it over tokens). "channel" matched or beat "token-channel" on fidelity
   * on the synthetic model and the tiny DiT (README) at 1/tokens of the size. @defaultValue "channel"
   */
  granularity?: Granularity;
  /** Element type of the stored tensors. @defaultValue "F16" */
  dtype?: "F16" | "F32";
  /**
   * Where the coefficients are fitted: the CFG-guided combination of each cond/uncond pair, or
   * each row alone (see {@link FitSpace}). @defaultValue "guided"
   */
  fitSpace?: FitSpace;
  /**
   * The trajectory the coefficients are fitted on, in pass 2. "reuse": the base policy with plain
   * reuse — its errors pile up, so the caching error measured there belongs to a run far from
   * the uncached one. "trend-corrected": reused branches get the first-order forecast
   * F_last + trend, which keeps the run close to the uncached one, where a fitted corrector keeps
   * it too. On the demo model the coefficients fitted on the plain-reuse run made final samples
   * worse than plain reuse (docs/results). @defaultValue "trend-corrected"
   */
  fitTrajectory?: FitTrajectory;
  /**
   * Weigh each channel's error by the adaLN gate the model applies to the value (`SiteCall.gate`),
   * i.e. fit the error as it enters the residual stream, not the pre-gate value (whose large
   * channels may be gated to almost nothing). Needs a model that passes its gates. @defaultValue true
   */
  gateWeighted?: boolean;
  /**
   * Forecast order of the trend whose fits the file keeps when no closed loop chooses one
   * (`closedLoop: false`, or a model without a block-stack site); see `PriorsHeader.trendOrder`.
   * @defaultValue 1
   */
  trendOrder?: number;
  /** Store the mean feature P (only e = ||D||/||P|| is needed at run time). @defaultValue true */
  storeMean?: boolean;
  /** Upper clip of gamma. @defaultValue 2 */
  gammaMax?: number;
  /** Clip of |a|, |b| and the trend-only gain. @defaultValue 4 */
  coefficientMax?: number;
  /** Default cosine threshold of the trend-agreement check written to the file. @defaultValue 0 */
  kappa?: number;
  /**
   * Pass 3, choosing the trend order, `defaults.trendGain`, `defaults.trendScale` and `defaults.prior`: the first `samples`
   * calibration samples run with the corrector (default options) at each candidate, and the one
   * whose last-step block-stack inputs (the embedded x of the last step, a linear image of the
   * final sample) land closest to the uncached ones wins. The one-step least-squares trend
   * coefficients come out shrunk (the trend is a noisy regressor), and on the demo model their
   * under-correction added up over a run; the fixed-gain candidates keep the trend at a set gain
   * and fit only the prior term. `false` keeps fitted gains at scale 1 and skips the pass. Memory
   * grows with `samples` (one stack input per sample kept from pass 1), hence its own, small
   * count. Needs the model to pass its block stack through the hook (a "blocks" site, as DiTModel
   * does); by default the pass is skipped for a model that does not.
   * With `screen`, every candidate first runs only the first `screen.samples` samples, and only
   * the `screen.keep` best of them go on to run the rest (a race: the candidates differ by up to
   * 10x in error, so a few samples tell the clearly worse ones apart, and the full count is spent
   * where the choice is close). `screen: false` runs every candidate on every sample.
   * @defaultValue { samples: min(32, options.samples), candidates: {@link CLOSED_LOOP_CANDIDATES}, screen: {@link CLOSED_LOOP_SCREEN} }
   */
  closedLoop?:
    | false
    | {
        samples?: number;
        candidates?: readonly ClosedLoopCandidate[];
        screen?: false | { samples?: number; keep?: number };
      };
  /** Called after every sample of each pass. */
  onProgress?: (event: CalibrationProgress) => void;
  /** Stops between samples with an ABORTED error. */
  signal?: AbortSignal;
}

interface Recorded {
  readonly half: BatchHalf | undefined;
  readonly sourceStep: number;
  /** The computed values of the site, most recent (the cached value) first. */
  readonly history: readonly { readonly step: number; readonly data: Float32Array }[];
}

function positiveInteger(name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1)
    invalidArgument(name, value, "an integer >= 1");
  return value;
}

function positiveNumber(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0)
    invalidArgument(name, value, "a number > 0");
  return value;
}

function rowsOf(rows: readonly BatchHalf[], half: BatchHalf | undefined): number[] {
  return rows.flatMap((row, r) => (half === undefined || row === half ? [r] : []));
}

function norm(values: Float32Array): number {
  let total = 0;
  for (const value of values) total += value * value;
  return Math.sqrt(total);
}

/** One setting of mode "trend" tried by the closed-loop pass. */
export interface ClosedLoopCandidate {
  /**
   * Forecast order of the trend observable (`PriorsHeader.trendOrder`); pass 2 fits the
   * coefficients for every order a candidate names. @defaultValue 1
   */
  readonly trendOrder?: number;
  /** How the trend coefficient is set. */
  readonly trendGain: TrendGain;
  /** The multiplier of the fitted coefficients, or the fixed coefficient. */
  readonly trendScale: number;
  /** Whether the prior term is added. @defaultValue true */
  readonly prior?: boolean;
  /**
   * Gain of the forecast's part beyond the first-order trend (`PriorsDefaults.curvatureGain`); only
   * with `trendGain: "fixed"`, `prior: false` and `trendOrder` >= 2. @defaultValue trendScale
   */
  readonly curvatureGain?: number;
}

/**
 * The closed-loop pass's default candidates. Order 1: fitted gains (trend + prior) scaled up, and
 * fixed gains around 1 with and without the prior term. Order 2 (the quadratic forecast through
 * the last three computed values): fitted gains at scale 1 and 1.25, fixed gains 0.9 to 1.1 with
 * and without the prior term. Which order wins depends on the schedule: on the demo model the
 * quadratic forecast was 3 dB closer to the uncached samples than the linear one at FORA 50% and
 * 1.4 to 1.9 dB further at FORA 25% and 75% (packages/eoc/README.md).
 */
export const CLOSED_LOOP_CANDIDATES: readonly ClosedLoopCandidate[] = [
  ...[1, 1.25, 1.5, 2].map((trendScale) => ({ trendOrder: 1, trendGain: "fitted" as const, trendScale })),
  ...[1, 1.25, 1.5].flatMap((trendScale) =>
    [true, false].map((prior) => ({ trendOrder: 1, trendGain: "fixed" as const, trendScale, prior })),
  ),
  ...[1, 1.25].map((trendScale) => ({ trendOrder: 2, trendGain: "fitted" as const, trendScale })),
  ...[0.9, 1, 1.1].flatMap((trendScale) =>
    [true, false].map((prior) => ({ trendOrder: 2, trendGain: "fixed" as const, trendScale, prior })),
  ),
  ...(
    [
      [0.8, 1.2],
      [0.9, 1.2],
      [0.9, 1.4],
      [1, 1.2],
    ] as const
  ).map(([trendScale, curvatureGain]) => ({
    trendOrder: 2,
    trendGain: "fixed" as const,
    trendScale,
    prior: false,
    curvatureGain,
  })),
];

/**
 * The closed loop's default race: every candidate on 4 samples, the best 6 on the rest. With 22
 * candidates and 32 samples, 256 runs instead of 704; on the demo model at 16 samples it made
 * the same choice as running all 352.
 */
export const CLOSED_LOOP_SCREEN = { samples: 4, keep: 6 } as const;

/** The closed loop's settings, with the race resolved (undefined: every candidate runs every sample). */
interface ClosedLoopSettings {
  readonly samples: number;
  readonly candidates: readonly ClosedLoopCandidate[];
  readonly screen: { readonly samples: number; readonly keep: number } | undefined;
}

function screenOptions(
  value: false | { samples?: number; keep?: number } | undefined,
  samples: number,
  candidates: number,
): ClosedLoopSettings["screen"] {
  if (value === false) return undefined;
  if (value !== undefined && (value === null || typeof value !== "object"))
    invalidArgument("options.closedLoop.screen", value, "false or { samples?, keep? }");
  const screenSamples = value?.samples ?? CLOSED_LOOP_SCREEN.samples;
  const keep = value?.keep ?? CLOSED_LOOP_SCREEN.keep;
  if (!Number.isInteger(screenSamples) || screenSamples < 1)
    invalidArgument("options.closedLoop.screen.samples", screenSamples, "an integer >= 1");
  if (!Number.isInteger(keep) || keep < 1)
    invalidArgument("options.closedLoop.screen.keep", keep, "an integer >= 1");
  // Nothing to screen out: every candidate would run every sample anyway.
  if (screenSamples >= samples || keep >= candidates) return undefined;
  return { samples: screenSamples, keep };
}

function closedLoopOptions(
  value: CalibrateOptions["closedLoop"],
  samples: number,
): ClosedLoopSettings | undefined {
  if (value === false) return undefined;
  if (value !== undefined && (value === null || typeof value !== "object"))
    invalidArgument("options.closedLoop", value, "false or { samples?, candidates? }");
  const count = value?.samples === undefined ? Math.min(32, samples) : value.samples;
  if (!Number.isInteger(count) || count < 1 || count > samples)
    invalidArgument("options.closedLoop.samples", count, `an integer in [1, ${samples}] (options.samples)`);
  const candidates = value?.candidates ?? CLOSED_LOOP_CANDIDATES;
  if (
    !Array.isArray(candidates) ||
    candidates.length === 0 ||
    candidates.some(
      (candidate) =>
        candidate === null ||
        typeof candidate !== "object" ||
        (candidate.trendGain !== "fitted" && candidate.trendGain !== "fixed") ||
        (candidate.prior !== undefined && typeof candidate.prior !== "boolean") ||
        (candidate.trendOrder !== undefined && !isTrendOrder(candidate.trendOrder)) ||
        typeof candidate.trendScale !== "number" ||
        !Number.isFinite(candidate.trendScale) ||
        candidate.trendScale < 0 ||
        (candidate.curvatureGain !== undefined &&
          (typeof candidate.curvatureGain !== "number" ||
            !Number.isFinite(candidate.curvatureGain) ||
            candidate.curvatureGain < 0 ||
            candidate.trendGain !== "fixed" ||
            candidate.prior !== false ||
            (candidate.trendOrder ?? 1) < 2)),
    )
  )
    invalidArgument(
      "options.closedLoop.candidates",
      candidates,
      `a non-empty list of { trendGain: "fitted" | "fixed", trendScale: number >= 0, prior?: boolean, trendOrder?: 1..${MAX_TREND_ORDER}, curvatureGain?: number >= 0 (with trendGain "fixed", prior false, trendOrder >= 2) }`,
    );
  return { samples: count, candidates, screen: screenOptions(value?.screen, count, candidates.length) };
}

/** Σ (a - b)² / Σ b². */
function relativeSquaredError(a: Float32Array, b: Float32Array): number {
  let error = 0;
  let energy = 0;
  for (let i = 0; i < b.length; i++) {
    error += (a[i]! - b[i]!) ** 2;
    energy += b[i]! ** 2;
  }
  return energy > 0 ? error / energy : error;
}

/**
 * Prior knowledge extraction of Error-Optimized Cache, in two passes over the calibration set.
 *
 * 1. Uncached: running means P[site][step] of every branch output the base policy decides on;
 *    then D[site][step] = P[step] - P[src(step)] (= mean_i (F_i[step] - F_i[src(step)]), since the
 *    same samples enter both means) and e = ||D|| / ||P[step]|| at every cell the policy reuses.
 * 2. Cached with shadow compute: the base policy runs for real (reused branches get the
 *    first-order forecast F_last + trend, or plain reuse: `fitTrajectory`), and at every reused
 *    branch the true value is computed too; per cell the dot products of the true error
 *    F_true - F_cached with the trend (the increment of the order-k forecast, for every order a
 *    candidate names; order 1: (F_last - F_prev)·(step - last)/(last - prev)) and with D are
 *    summed — per CFG pair in the guided combination, gate-weighted (`fitSpace`,
 *    `gateWeighted`): the normal equations of gamma, of (a, b) and of the trend-only gain.
 * 3. Closed loop (`closedLoop`): a few samples run with the corrector at each candidate trend
 *    setting (order, fitted gains scaled, fixed gains, prior term on or off); the one whose
 *    last-step stack inputs are closest to pass 1's is the default, and the file keeps its
 *    order's fits.
 *
 * Memory is fixed by sites x steps (running means, seven sums per cell, fold and order), never by the
 * number of samples. Rows are split by sample parity into two folds to choose tau on held-out rows.
 *
 * @example
 * const priors = await calibrate({
 *   runSample: (hook, i) => sampleWith(hook, seeds[i], labels[i]),
 *   basePolicy: parsePolicy("fora:interval=2"), steps: 20, depth: 28, samples: 64,
 *   descriptor: { modelHash, sampler: { respacing: "ddim20", sampler: "ddim", cfgScale: 4, guideChannels: 3 } },
 * });
 * await priors.save("priors.safetensors");
 */
export async function calibrate(options: CalibrateOptions): Promise<Priors> {
  if (options === null || typeof options !== "object")
    invalidArgument("options", options, "calibration options");
  const { runSample, basePolicy, descriptor, onProgress, signal } = options;
  if (typeof runSample !== "function")
    invalidArgument("options.runSample", runSample, "a function (hook, sampleIndex) => Promise<void>");
  if (basePolicy === null || typeof basePolicy?.decide !== "function")
    invalidArgument("options.basePolicy", basePolicy, 'a CachePolicy (e.g. parsePolicy("fora:interval=2"))');
  const steps = positiveInteger("options.steps", options.steps);
  const depth = positiveInteger("options.depth", options.depth);
  const samples = positiveInteger("options.samples", options.samples);
  const granularity = options.granularity ?? "channel";
  if (granularity !== "token-channel" && granularity !== "channel")
    invalidArgument("options.granularity", granularity, '"token-channel" or "channel"');
  const dtype = options.dtype ?? "F16";
  if (dtype !== "F16" && dtype !== "F32") invalidArgument("options.dtype", dtype, '"F16" or "F32"');
  const limits: FitLimits = {
    gammaMax: positiveNumber("options.gammaMax", options.gammaMax, 2),
    coefficientMax: positiveNumber("options.coefficientMax", options.coefficientMax, 4),
  };
  const fitSpace = options.fitSpace ?? "guided";
  if (fitSpace !== "guided" && fitSpace !== "rows")
    invalidArgument("options.fitSpace", fitSpace, '"guided" or "rows"');
  const fitTrajectory = options.fitTrajectory ?? "trend-corrected";
  if (fitTrajectory !== "trend-corrected" && fitTrajectory !== "reuse")
    invalidArgument("options.fitTrajectory", fitTrajectory, '"trend-corrected" or "reuse"');
  const gateWeighted = options.gateWeighted ?? true;
  if (typeof gateWeighted !== "boolean")
    invalidArgument("options.gateWeighted", gateWeighted, "true or false");
  const closedLoop = closedLoopOptions(options.closedLoop, samples);
  const fallbackOrder = options.trendOrder ?? 1;
  if (!isTrendOrder(fallbackOrder))
    invalidArgument("options.trendOrder", fallbackOrder, `an integer in [1, ${MAX_TREND_ORDER}]`);
  const kappa = options.kappa ?? 0;
  if (typeof kappa !== "number" || !(kappa >= -1 && kappa <= 1))
    invalidArgument("options.kappa", kappa, "a number in [-1, 1]");
  if (descriptor === null || typeof descriptor !== "object" || typeof descriptor.modelHash !== "string")
    invalidArgument("options.descriptor", descriptor, "{ modelHash, sampler }");
  const sampler = descriptor.sampler;
  if (
    sampler === null ||
    typeof sampler !== "object" ||
    typeof sampler.respacing !== "string" ||
    typeof sampler.sampler !== "string" ||
    typeof sampler.cfgScale !== "number"
  )
    invalidArgument("options.descriptor.sampler", sampler, "{ respacing, sampler, cfgScale, guideChannels }");

  const sites = policyBranchSites(basePolicy, depth);
  const sources = staticReuseSources(basePolicy, sites, steps, depth);
  const siteIndex = new Map(sites.map((site, i) => [site.key, i]));
  const checkAbort = () => {
    if (signal?.aborted) throw new DitcacheError("ABORTED", "calibrate: aborted");
  };

  // Rows of a site value (N, ...rest) reduced to the stored granularity.
  let valueShape: number[] | undefined;
  let rowLength = 0;
  const rowView = (data: Float32Array, row: number): Float32Array =>
    data.subarray(row * rowLength, (row + 1) * rowLength);
  const reduceRow = (row: Float32Array): Float32Array => {
    if (granularity === "token-channel") return row;
    const channels = valueShape![0]!;
    const out = new Float32Array(channels);
    const tokens = row.length / channels;
    for (let i = 0; i < row.length; i++) out[i % channels]! += row[i]! / tokens;
    return out;
  };
  const learnShape = (shape: readonly number[], key: string): void => {
    const rest = shape.slice(1);
    if (rest.length === 0) invalidArgument(`site ${key} value shape`, shape, "(rows, ..., channels)");
    if (valueShape === undefined) {
      valueShape = granularity === "token-channel" ? rest : [rest[rest.length - 1]!];
      rowLength = sizeOf(rest);
    } else if (sizeOf(rest) !== rowLength) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `calibrate: site ${key} has row size ${sizeOf(rest)}, others ${rowLength}`,
      );
    }
  };
  const checkStep = (step: StepInfo, backend: Backend | undefined): Backend => {
    if (step.count !== steps)
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `calibrate: runSample ran ${step.count} steps, expected options.steps = ${steps}`,
      );
    if (backend === undefined || typeof backend.read !== "function")
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        "calibrate: the model must call hook.beginForward(step, backend) before its sites",
      );
    return backend;
  };

  // The block stack's input at the last step: the embedded x of that step, a linear image of the
  // final sample (the last update moves it by a fraction of a percent). Its OUTPUT there is the
  // eps of an almost clean image, which tiny differences in x swing widely: no proxy.
  const isLastStackCall = (call: SiteCall): boolean =>
    call.site.kind === "blocks" && call.step.index === steps - 1;
  const uncachedInputs: Float32Array[] = [];

  // A cached pass's hook: the engine's, with `run` the caller's and the run's backend passed to it.
  const engineHook = (
    engine: CacheEngine,
    run: (call: SiteCall, backend: Backend | undefined) => Promise<Tensor>,
  ): SiteHook => {
    let backend: Backend | undefined;
    return {
      beginForward(current, currentBackend) {
        backend = checkStep(current, currentBackend);
        return engine.beginForward(current, currentBackend);
      },
      endForward() {
        engine.endForward();
      },
      run: (call) => run(call, backend),
    };
  };

  // ---------------------------------------------------------------- pass 1: P
  const means: (Float32Array | undefined)[] = new Array(sites.length * steps).fill(undefined);
  const counts = new Float64Array(sites.length * steps);
  let calibrationRows = 0;
  for (let sample = 0; sample < samples; sample++) {
    checkAbort();
    let backend: Backend | undefined;
    let step: StepInfo | undefined;
    const hook: SiteHook = {
      beginForward(current, currentBackend) {
        step = current;
        backend = checkStep(current, currentBackend);
        if (current.index === 0) calibrationRows += current.rows.length;
      },
      async run(call: SiteCall) {
        if (closedLoop && sample < closedLoop.samples && isLastStackCall(call)) {
          uncachedInputs[sample] = await checkStep(call.step, backend).read(call.input);
        }
        const out = await call.compute();
        const s = siteIndex.get(call.site.key);
        if (s === undefined) return out;
        const active = checkStep(step ?? call.step, backend);
        learnShape(out.shape, call.site.key);
        const data = await active.read(out);
        const slot = s * steps + call.step.index;
        const mean = means[slot] ?? new Float32Array(sizeOf(valueShape!));
        means[slot] = mean;
        for (let row = 0; row < out.shape[0]!; row++) {
          const value = reduceRow(rowView(data, row));
          const n = ++counts[slot]!;
          for (let i = 0; i < mean.length; i++) mean[i]! += (value[i]! - mean[i]!) / n;
        }
        return out;
      },
    };
    await runSample(hook, sample);
    onProgress?.({ status: "mean", sample: sample + 1, samples });
  }
  means.forEach((mean, slot) => {
    if (mean === undefined) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `calibrate: runSample never ran site ${sites[Math.floor(slot / steps)]!.key} at step ${slot % steps} (is options.depth right?)`,
      );
    }
  });
  const round = (values: Float32Array) =>
    dtype === "F16" ? float16ToFloat32Array(float32ToFloat16Array(values)) : values;

  // Cells: D = P[step] - P[src], e = ||D|| / ||P[step]||.
  const cells: CellEntry[] = [];
  const differences: Float32Array[] = [];
  const cellOf = new Map<string, number>();
  sources.forEach((row, s) => {
    row.forEach((source, step) => {
      if (source < 0) return;
      const now = means[s * steps + step]!;
      const then = means[s * steps + source]!;
      cellOf.set(`${s}@${step}`, cells.length);
      cells.push([s, step, source]);
      differences.push(round(now.map((value, i) => value - then[i]!)));
    });
  });
  const relativeErrors = round(
    Float32Array.from(cells, ([s, step], c) => {
      const p = norm(means[s * steps + step]!);
      return p > 0 ? norm(differences[c]!) / p : 0;
    }),
  );

  // ---------------------------------------------------------------- pass 2: fits
  // Statistics for every trend order the closed loop may choose (the observables differ, the
  // trajectory and the true errors are shared).
  const orders = [
    ...new Set([
      fallbackOrder,
      ...(closedLoop?.candidates ?? []).map((candidate) => candidate.trendOrder ?? 1),
    ]),
  ].sort((x, y) => x - y);
  const statistics = orders.map(() => new CellStatistics(cells.length));
  let gatesUsed = false;
  // F_last + (F_last - F_prev)·(step - last)/(last - prev): the order-1 Taylor forecast.
  const forecast = fitTrajectory === "trend-corrected" ? taylorCorrector({ order: 1 }) : undefined;
  for (let sample = 0; sample < samples; sample++) {
    checkAbort();
    const fold = sample % 2;
    const recorded: Recorded[] = [];
    const recorder: Corrector = {
      name: "eoc-calibration",
      spec: "eoc-calibration",
      historyLength: Math.max(...orders) + 1,
      async correct(context) {
        if (context.valueKind === "branch" && siteIndex.has(context.key)) {
          const history = [];
          for (const { step, value } of context.history)
            history.push({ step, data: await context.backend.read(value) });
          recorded.push({ half: context.half, sourceStep: context.sourceStep, history });
          // The forecast keeps the run near the uncached trajectory, where the final corrector keeps it.
          if (forecast) return forecast.correct(context);
        }
        return context.cached;
      },
    };
    const engine = createCacheEngine({ policy: basePolicy, corrector: recorder });
    const hook = engineHook(engine, async (call, backend) => {
      const s = siteIndex.get(call.site.key);
      const index = call.step.index;
      if (s === undefined || sources[s]![index]! < 0) return engine.run(call);
      const active = checkStep(call.step, backend);
      let trueValue: Float32Array | undefined;
      recorded.length = 0;
      const result = await engine.run({
        site: call.site,
        step: call.step,
        input: call.input,
        macs: call.macs,
        ...(call.indicator ? { indicator: call.indicator } : {}),
        ...(call.gate ? { gate: call.gate } : {}),
        compute: async () => {
          const out = await call.compute();
          trueValue = await active.read(out);
          return out;
        },
      });
      if (recorded.length === 0) return result;
      if (trueValue === undefined) {
        // The shadow compute: what the site would give on this cached trajectory.
        const out = await call.compute();
        try {
          trueValue = await active.read(out);
        } finally {
          active.dispose(out);
        }
      }
      const cell = cellOf.get(`${s}@${index}`)!;
      const gates = gateWeighted && call.gate ? await active.read(call.gate) : undefined;
      if (gates) gatesUsed = true;
      const gateWidth = gates ? gates.length / call.step.rows.length : 0;
      const observed: ObservedRow[] = [];
      for (const record of recorded) {
        if (record.sourceStep !== sources[s]![index]) {
          throw new DitcacheError(
            "UNSUPPORTED",
            `calibrate: base policy "${basePolicy.spec}" reused ${call.site.key} at step ${index} from step ${record.sourceStep}, its static table says ${sources[s]![index]}: decisions must depend on the step and site only`,
          );
        }
        const rows = rowsOf(call.step.rows, record.half);
        const steps = record.history.map((value) => value.step);
        const weightsByOrder = orders.map((order) => trendWeights(steps, index, order));
        rows.forEach((row, laneRow) => {
          const trends = weightsByOrder.map((weights) => {
            if (weights.length === 0) return undefined;
            const trend = new Float32Array(rowLength);
            weights.forEach((weight, j) => {
              const value = rowView(record.history[j]!.data, laneRow);
              for (let i = 0; i < rowLength; i++) trend[i]! += weight * value[i]!;
            });
            return trend;
          });
          const gate = gates?.subarray(row * gateWidth, (row + 1) * gateWidth);
          observed.push({
            half: call.step.rows[row]!,
            trueValue: rowView(trueValue!, row),
            cached: rowView(record.history[0]!.data, laneRow),
            trends,
            ...(gate ? { gate } : {}),
          });
        });
      }
      const targets = statistics.map((target) => target.data);
      const offset = statistics[0]!.offset(cell, fold);
      for (const item of fitRows(observed, fitSpace, sampler.cfgScale, differences[cell]!))
        accumulateRow(targets, offset, item);
      return result;
    });
    try {
      await runSample(hook, sample);
    } finally {
      engine.dispose();
    }
    onProgress?.({ status: "fit", sample: sample + 1, samples });
  }

  const calibration = descriptor.calibration ?? {};
  const rowSize = sizeOf(valueShape!);
  const difference = new Float32Array(cells.length * rowSize);
  differences.forEach((values, c) => {
    difference.set(values, c * rowSize);
  });
  const hasMean = options.storeMean ?? true;
  let mean: Float32Array | undefined;
  if (hasMean) {
    mean = new Float32Array(means.length * rowSize);
    means.forEach((values, slot) => {
      mean!.set(values!, slot * rowSize);
    });
  }
  /** The file's header and tensors with the fits of one trend order (closed-loop defaults unset). */
  const priorsOf = (order: number): { header: PriorsHeader; data: PriorsData } => {
    const orderStatistics = statistics[orders.indexOf(order)]!;
    const fits = orderStatistics.fits(limits);
    const report = orderStatistics.report(relativeErrors, limits);
    const header: PriorsHeader = {
      format: PRIORS_FORMAT,
      version: PRIORS_VERSION,
      modelHash: descriptor.modelHash,
      sampler: {
        respacing: sampler.respacing,
        sampler: sampler.sampler,
        cfgScale: sampler.cfgScale,
        guideChannels: sampler.guideChannels,
      },
      steps,
      depth,
      basePolicy: basePolicy.spec,
      ...(basePolicy.identity === undefined ? {} : { basePolicyIdentity: basePolicy.identity }),
      granularity,
      dtype,
      valueShape: valueShape!,
      sites: sites.map((site) => site.key),
      hasMean,
      trendOrder: order,
      cells,
      calibration: {
        samples,
        rows: calibrationRows,
        seeds: [...(calibration.seeds ?? [])],
        labels: [...(calibration.labels ?? [])],
        description: calibration.description ?? "",
        fitSpace,
        gateWeighted: gatesUsed,
        fitTrajectory,
      },
      defaults: {
        tau: {
          "trend+prior": report.terms["trend+prior"].tau,
          trend: report.terms.trend.tau,
          prior: report.terms.prior.tau,
        },
        kappa,
        gammaMax: limits.gammaMax,
        coefficientMax: limits.coefficientMax,
        globalGamma: orderStatistics.globalGamma(limits),
        trendGain: "fitted",
        trendScale: 1,
        prior: true,
        fixedTrendTau: report.fixedTrend.tau,
      },
      report,
    };
    const data: PriorsData = {
      ...(mean ? { mean } : {}),
      difference,
      relativeError: relativeErrors,
      gamma: Float32Array.from(fits, (fit) => fit.gamma),
      trendGain: Float32Array.from(fits, (fit) => fit.trendGain),
      trendCoefficient: Float32Array.from(fits, (fit) => fit.trendCoefficient),
      priorCoefficient: Float32Array.from(fits, (fit) => fit.priorCoefficient),
      priorGain: Float32Array.from(fits, (fit) => fit.priorGain),
      trendProjection: Float32Array.from(fits, (fit) => fit.trendProjection),
    };
    return { header, data };
  };
  // By default the pass runs where the model shows its block stack to the hook (DiTModel does);
  // asked for explicitly, it must.
  const stackSeen = uncachedInputs.length === closedLoop?.samples;
  if (closedLoop !== undefined && !stackSeen && options.closedLoop !== undefined) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      'calibrate: options.closedLoop needs a model that passes its block stack through the hook (a "blocks" site)',
    );
  }
  if (closedLoop === undefined || !stackSeen) {
    onProgress?.({ status: "done", sample: samples, samples });
    const { header, data } = priorsOf(fallbackOrder);
    return new Priors(header, data);
  }

  // ---------------------------------------------------------------- pass 3: trend setting
  const byOrder = new Map(orders.map((order) => [order, priorsOf(order)]));
  const { screen } = closedLoop;
  const entries = closedLoop.candidates.map(
    ({ trendOrder = 1, trendGain, trendScale, prior = true, curvatureGain }) => {
      const { header, data } = byOrder.get(trendOrder)!;
      const curvature = curvatureGain === undefined ? {} : { curvatureGain };
      return {
        setting: { trendOrder, trendGain, trendScale, prior, ...curvature },
        priors: new Priors(
          { ...header, defaults: { ...header.defaults, trendGain, trendScale, prior, ...curvature } },
          data,
        ),
        logError: 0,
        samples: 0,
        /** The error over the screen's samples, set when the race ran them. */
        screenError: undefined as number | undefined,
      };
    },
  );
  type Entry = (typeof entries)[number];
  const runs = screen
    ? entries.length * screen.samples + screen.keep * (closedLoop.samples - screen.samples)
    : entries.length * closedLoop.samples;
  let finished = 0;
  // Mean of logs (a geometric mean): the average per-sample PSNR is what the evaluation compares,
  // and an arithmetic mean lets one or two diverging samples pick the candidate.
  const meanLogError = (entry: Entry): number => entry.logError / entry.samples;
  /** Runs samples [from, to) with the entry's corrector, adding their log errors to it. */
  const score = async (entry: Entry, from: number, to: number): Promise<void> => {
    const corrector = eocCorrector(entry.priors);
    try {
      for (let sample = from; sample < to; sample++) {
        checkAbort();
        const engine = createCacheEngine({ policy: basePolicy, corrector });
        let input: Float32Array | undefined;
        const hook = engineHook(engine, async (call, backend) => {
          if (isLastStackCall(call)) input = await checkStep(call.step, backend).read(call.input);
          return engine.run(call);
        });
        try {
          await runSample(hook, sample);
        } finally {
          engine.dispose();
        }
        const reference = uncachedInputs[sample]!;
        if (input === undefined || input.length !== reference.length) {
          throw new DitcacheError(
            "INVALID_ARGUMENT",
            `calibrate: sample ${sample} gave no block-stack input of ${reference.length} values at the last step in the closed-loop pass (runSample must be deterministic per index)`,
          );
        }
        entry.logError += Math.log(Math.max(relativeSquaredError(input, reference), 1e-30));
        entry.samples++;
        onProgress?.({ status: "closed-loop", sample: ++finished, samples: runs });
      }
    } finally {
      corrector.dispose();
    }
  };
  let finalists: Entry[] = entries;
  if (screen) {
    for (const entry of entries) {
      await score(entry, 0, screen.samples);
      entry.screenError = Math.exp(meanLogError(entry));
    }
    // A stable sort: on a tie the earlier candidate goes on.
    finalists = [...entries].sort((a, b) => meanLogError(a) - meanLogError(b)).slice(0, screen.keep);
  }
  for (const entry of finalists) await score(entry, entry.samples, closedLoop.samples);
  const candidates = entries.map((entry) => ({
    ...entry.setting,
    relativeError: Math.exp(meanLogError(entry)),
    samples: entry.samples,
    ...(entry.screenError === undefined ? {} : { screenError: entry.screenError }),
  }));
  // Only candidates that ran every sample compete; the first of equals wins.
  const best = candidates
    .filter((candidate) => candidate.samples === closedLoop.samples)
    .reduce((a, b) => (b.relativeError < a.relativeError ? b : a));
  const { header, data } = byOrder.get(best.trendOrder)!;
  onProgress?.({ status: "done", sample: samples, samples });
  return new Priors(
    {
      ...header,
      defaults: {
        ...header.defaults,
        trendGain: best.trendGain,
        trendScale: best.trendScale,
        prior: best.prior,
        ...(best.curvatureGain === undefined ? {} : { curvatureGain: best.curvatureGain }),
      },
      report: {
        ...header.report,
        closedLoop: { samples: closedLoop.samples, ...(screen ? { screen } : {}), candidates },
      },
    },
    data,
  );
}
